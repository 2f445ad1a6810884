"""Token classification: readers, tag schemes, windows over long inputs, offsets, reload."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lmtune.config import Config
from lmtune.data import read_table
from lmtune.data.records import Record
from lmtune.data.tags import entity_spans, to_iob2
from lmtune.pipeline import finetune, prepare_data
from lmtune.tasks import get_task
from lmtune.tasks.base import Encoded
from conftest import make_task, SHARED_DATA, tiny_config, write_conll

@pytest.fixture(scope="module")
def ner_run(tiny_model, ner_data, tmp_path_factory):
    cfg = tiny_config(tiny_model, ner_data, tmp_path_factory.mktemp("ner-runs"), epochs=30,
                      learning_rate=5e-3)
    cfg.task = "ner"
    return finetune(cfg, quiet=True)


def _task(**options):
    return make_task("ner", **{f"data.{k}": v for k, v in options.items()})


@pytest.mark.skipif(not (SHARED_DATA / "wnut17").is_dir(), reason="../shared/data/wnut17 not present")
def test_wnut17_files_read_as_they_are():
    expected = {"train": (3394, 62730), "dev": (1009, 15733), "test": (1287, 23394)}
    for split, (sentences, tokens) in expected.items():
        dataset = read_table(SHARED_DATA / "wnut17" / f"{split}.conll")
        assert dataset.issues == []
        assert len(dataset.records) == sentences
        assert sum(len(r.fields["tokens"]) for r in dataset.records) == tokens
        assert all(len(r.fields["tokens"]) == len(r.fields["tags"]) for r in dataset.records)


def test_conll_layouts_and_line_numbers(tmp_path):
    path = tmp_path / "four.conll"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                    "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n   \n")
    dataset = read_table(path)
    assert [r.fields["tokens"] for r in dataset.records] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [r.fields["tags"] for r in dataset.records] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert [r.line for r in dataset.records] == [3, 6]


def test_tag_schemes_convert_to_iob2():
    assert to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], "iob1") == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]
    assert to_iob2(["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"], "bioes") == ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC"]
    assert entity_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5)]


def test_inconsistent_tags_are_reported_with_line(tmp_path):
    path = write_conll(tmp_path / "t.conll", [(["a", "b", "c"], ["O", "I-person", "O"]),
                                              (["d"], ["B-location"])])
    cfg = Config()
    cfg.task, cfg.data.train = "ner", str(path)
    _, _, issues = prepare_data(cfg, get_task(cfg))
    assert [str(i) for i in issues] == [
        f"{path}:4: field 'tag': inconsistent tag sequence: I-person follows O "
        "(read as the start of a new entity)"]


def test_jsonl_tokens_and_char_spans_give_the_same_tags(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"tokens": ["Alice", "met", "Bob", "Stone", "."],
                                "tags": ["B-person", "O", "B-person", "I-person", "O"]}) + "\n" +
                    json.dumps({"text": "Alice met Bob Stone.",
                                "entities": [{"start": 0, "end": 5, "label": "person"},
                                             {"start": 10, "end": 19, "label": "person"}]}) + "\n")
    task = _task()
    dataset = read_table(path)
    task.fit(dataset)
    first, second = (task.tags(r) for r in dataset.records)
    assert first == second == ["B-person", "O", "B-person", "I-person", "O"]


def _oracle_logits(task, encoded: Encoded, gold: list[list[str]], edge_noise: int = 0) -> list[np.ndarray]:
    """Logits that give each word its gold tag, except words within `edge_noise` words of a
    window edge, which get O (as a model with little context might)."""
    index = {label: i for i, label in enumerate(task.labels)}
    out = []
    for feature in encoded.features:
        row = np.zeros((len(feature["input_ids"]), len(task.labels)), dtype=np.float32)
        words = [(p, w) for p, w in enumerate(feature["words"]) if w >= 0]
        for k, (p, w) in enumerate(words):
            near_edge = min(k, len(words) - 1 - k) < edge_noise
            row[p, index["O" if near_edge else gold[feature["record"]][w]]] = 5.0
        out.append(row)
    return out


def test_long_document_is_predicted_in_full_and_boundary_entity_found_once(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    task = _task(window_overlap=8)
    task.labels = ["O", "B-person", "I-person"]
    words = [random.Random(i).choice(["the", "film", "was", "so"]) for i in range(2000)]
    tags = ["O"] * 2000
    # Find where the first window ends, and put a two-word entity across that boundary.
    probe = task.encode([Record({"tokens": words, "tags": tags}, "doc", 1)], tokenizer, 32)
    first_window_words = [w for w in probe.features[0]["words"] if w >= 0]
    boundary = first_window_words[-1]
    words[boundary:boundary + 2] = ["alice", "bob"]
    tags[boundary:boundary + 2] = ["B-person", "I-person"]
    record = Record({"tokens": words, "tags": tags}, "doc", 1)
    encoded = task.encode([record], tokenizer, 32)
    assert encoded.windowed == 1 and len(encoded.features) > 60
    assert all(len(f["input_ids"]) <= 32 for f in encoded.features)
    logits = _oracle_logits(task, encoded, [tags], edge_noise=2)
    result = task.decode(logits, encoded)[0]
    assert len(result["tags"]) == 2000 and result["tags"] == tags
    assert [(e["type"], e["text"]) for e in result["entities"]] == [("person", "alice bob")]


def test_entity_offsets_slice_the_original_text():
    task = _task()
    task.labels = ["O", "B-location", "I-location", "B-person", "I-person"]
    text = "Bob  met Bob (again!) in  New York,   then Bob left."
    record = task.make_record(text)
    words, spans, _ = task.words(record)
    assert words == ["Bob", "met", "Bob", "(", "again", "!", ")", "in", "New", "York", ",", "then",
                     "Bob", "left", "."]
    gold = ["O"] * len(words)
    gold[2], gold[8], gold[9], gold[12] = "B-person", "B-location", "I-location", "B-person"
    from transformers import AutoTokenizer

    from lmtune.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model("minilm")))  # real word pieces
    encoded = task.encode([record], tokenizer, 64, with_labels=False)
    entities = task.decode(_oracle_logits(task, encoded, [gold]), encoded)[0]["entities"]
    assert [(e["type"], e["start"], e["end"]) for e in entities] == [
        ("person", 9, 12), ("location", 26, 34), ("person", 43, 46)]
    for entity in entities:
        assert text[entity["start"]:entity["end"]] == entity["text"]
    assert [e["text"] for e in entities] == ["Bob", "New York", "Bob"]


def test_trained_ner_model_predicts_and_reloads_with_plain_transformers(ner_run):
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    import lmtune

    metrics = json.loads(ner_run.metrics.read_text())
    assert metrics["validation"]["f1"] > 0.8
    assert set(metrics["validation_report"]["per_class"]) == {"person", "location"}
    model = lmtune.load(ner_run.root)
    text = "today alice bob visited  rome, so the film was really quite ..."
    result = model.predict([text])[0]
    found = [(e["type"], e["text"]) for e in result["entities"]]
    assert ("person", "alice bob") in found and ("location", "rome") in found
    for entity in result["entities"]:
        assert text[entity["start"]:entity["end"]] == entity["text"]

    plain = AutoModelForTokenClassification.from_pretrained(str(ner_run.model)).eval()
    assert plain.config.id2label[0] == "O" and set(plain.config.label2id) == set(model.task.labels)
    tokenizer = AutoTokenizer.from_pretrained(str(ner_run.model))
    words = ["today", "alice", "bob", "visited", "rome"]
    inputs = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        ids = plain(**inputs).logits.argmax(-1)[0].tolist()
    word_ids = inputs.word_ids(0)
    plain_tags = [plain.config.id2label[ids[p]] for p, w in enumerate(word_ids)
                  if w is not None and (p == 0 or word_ids[p - 1] != w)]
    assert plain_tags == model.predict([words])[0]["tags"]


def test_balanced_class_weights_favour_rare_tags(ner_data):
    cfg = Config()
    cfg.task, cfg.data.train, cfg.train.class_weights = "ner", str(ner_data["train"]), "balanced"
    task = get_task(cfg)
    task.fit(read_table(cfg.data.train))
    weights = dict(zip(task.labels, task.class_weights.tolist()))
    assert weights["O"] < weights["B-person"] and weights["O"] < 1.0
    logits = __import__("torch").zeros((1, 2, len(task.labels)))
    labels = __import__("torch").tensor([[0, task.labels.index("B-location")]])
    assert float(task.loss(logits, labels)) == pytest.approx(np.log(len(task.labels)))


def test_decoding_keeps_entities_whole_where_argmax_would_break_them():
    from lmtune.data.tags import best_valid_tags

    labels = ["O", "B-loc", "I-loc", "B-per", "I-per"]
    probs = np.array([[0.50, 0.45, 0.01, 0.02, 0.02],   # argmax O, then I-loc I-loc: strict
                      [0.05, 0.05, 0.80, 0.05, 0.05],   # scoring would drop a broken entity
                      [0.05, 0.05, 0.60, 0.25, 0.05],
                      [0.05, 0.05, 0.10, 0.05, 0.75]])  # I-per right after I-loc is invalid
    tags = best_valid_tags(np.log(probs), labels)
    assert tags == ["B-loc", "I-loc", "B-per", "I-per"]  # the valid path with the most probability
    assert best_valid_tags(np.log(probs[:0]), labels) == []
