"""Shared fixtures: a tiny random BERT (built in-process, no download) and toy data files."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

POSITIVE = ["good", "great", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "film", "plot", "was", "really", "quite", "a", "movie", "story", "acting", "very",
          "and", "it", "so", "ending"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER,
         "sports", "politics", "science", "!", ",", ".", "alice", "bob", "carol", "paris",
         "london", "rome", "visited", "met", "in", "with", "today", "#", "##s"]


def free_port() -> int:
    """A TCP port nothing listens on now, for a process group's rendezvous (parallel runs of
    the multi-process tests must not share accelerate's default port)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_tiny_model(folder: Path, layers: int = 2) -> Path:
    """A 2-layer BERT with a word-level vocabulary; weights random but seeded."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


def toy_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Sentences whose label is given by one sentiment word among filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.sample(FILLER, rng.randint(2, 8))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple], header: tuple = ("text", "label"), delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def no_dropout_model(tmp_path_factory) -> Path:
    """Dropout off: runs that differ only in batching compute the same function."""
    import json

    folder = make_tiny_model(tmp_path_factory.mktemp("tiny-nodrop"))
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("toy-data")
    rows = toy_rows(260, seed=1)
    return {"train": write_csv(folder / "train.csv", rows[:200]),
            "validation": write_csv(folder / "dev.csv", rows[200:]),
            "folder": folder}


PEOPLE, PLACES = ["alice", "bob", "carol"], ["paris", "london", "rome"]
FILL = ["the", "film", "was", "really", "quite", "and", "it", "so", "today", "with", "met", "visited"]


def ner_sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    words, tags = [], []
    for _ in range(rng.randint(3, 9)):
        roll = rng.random()
        if roll < 0.2:
            words += [rng.choice(PEOPLE), rng.choice(PEOPLE)]
            tags += ["B-person", "I-person"]
        elif roll < 0.35:
            words.append(rng.choice(PLACES))
            tags.append("B-location")
        else:
            words.append(rng.choice(FILL))
            tags.append("O")
    return words, tags


def write_conll(path, sentences, sep="\t", breaks="\n"):
    with open(path, "w") as handle:
        handle.write(f"-DOCSTART-{sep}O\n\n")
        for words, tags in sentences:
            handle.writelines(f"{w}{sep}{t}\n" for w, t in zip(words, tags))
            handle.write(breaks)
    return path


@pytest.fixture(scope="session")
def ner_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ner")
    rng = random.Random(5)
    sentences = [ner_sentence(rng) for _ in range(260)]
    return {"train": write_conll(folder / "train.conll", sentences[:200]),
            "validation": write_conll(folder / "dev.conll", sentences[200:], sep=" ", breaks="\t\n")}



QA_CONTEXT = "alice met bob in paris today . the film was good and carol visited rome ."


def squad_file(path: Path, qas: list[dict], context: str = QA_CONTEXT) -> Path:
    import json

    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": qas}]}]}))
    return path


def qa_questions(n_repeats: int) -> list[dict]:
    pairs = [("who met bob ?", "alice"), ("where ?", "paris"), ("who visited rome ?", "carol")]
    return [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": QA_CONTEXT.index(a)}]}
            for i, (q, a) in enumerate(pairs * n_repeats)]


@pytest.fixture(scope="session")
def qa_data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("qa-data")
    qas = qa_questions(20)
    return {"train": squad_file(folder / "train.json", qas), "validation": squad_file(folder / "dev.json", qas[:6])}


def make_task(name: str, **overrides):
    """A task object on the default config; overrides are dotted keys, e.g. {"data.tag_scheme": "iob1"}."""
    from lmtune.config import Config
    from lmtune.tasks import get_task

    cfg = Config()
    cfg.task = name
    for key, value in overrides.items():
        cfg.override(key, value)
    return get_task(cfg)


def tiny_config(tiny_model: Path, toy_data: dict, out: Path, **train):
    """A fast config on the tiny model; keyword arguments override train fields."""
    from lmtune.config import Config

    cfg = Config()
    cfg.model.name = str(tiny_model)
    cfg.model.max_length = 32
    cfg.data.train = str(toy_data["train"])
    cfg.data.validation = str(toy_data["validation"])
    cfg.train.output_dir = str(out)
    cfg.train.run_name = "run"
    cfg.train.epochs = 3
    cfg.train.batch_size = 16
    cfg.train.learning_rate = 3e-3
    cfg.train.logging_steps = 1
    cfg.train.progress = False
    cfg.train.num_threads = 1
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


# ---- a tiny decoder for generation -------------------------------------------------------------
LLAMA_WORDS = ["<pad>", "<unk>", "<s>", "</s>", "where", "did", "go", "?", "answer", ":", "is",
               *PEOPLE, *PLACES, *POSITIVE, *NEGATIVE, *FILLER, "positive", "negative", "review", "."]
GOES_TO = {"alice": "paris", "bob": "london", "carol": "rome"}


def make_tiny_llama(folder: Path) -> Path:
    """A 2-layer Llama with a word-level tokenizer (<s>, </s>, <pad>); random but seeded."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = list(dict.fromkeys(LLAMA_WORDS))
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(str(folder))
    config = LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def gen_rows(n: int, seed: int) -> list[dict]:
    """'where did alice go ?' -> 'paris', with filler words so prompts differ in length."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        person = rng.choice(PEOPLE)
        filler = rng.sample(FILLER, rng.randint(0, 5))
        rows.append({"prompt": " ".join([*filler, "where", "did", person, "go", "?"]),
                     "response": GOES_TO[person]})
    return rows


@pytest.fixture(scope="session")
def gen_data(tmp_path_factory) -> dict[str, Path]:
    import json

    folder = tmp_path_factory.mktemp("gen-data")
    rows = gen_rows(160, seed=3)
    paths = {}
    for split, part in (("train", rows[:120]), ("validation", rows[120:])):
        paths[split] = folder / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in part))
    return paths


@pytest.fixture
def no_wordnet(tmp_path, monkeypatch) -> None:
    """A machine without WordNet, whatever this one has installed."""
    from lmtune.data import synonyms

    monkeypatch.delenv(synonyms.WORDNET_ENV, raising=False)
    monkeypatch.setattr(synonyms, "_WORDNET_DIRS", (str(tmp_path / "nowhere"),))
