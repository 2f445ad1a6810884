"""Continued pretraining (issue 21): masked-LM and causal-LM on unlabeled text, block packing,
plain-text input, and a pretraining run as the base of a fine-tuning run."""

from __future__ import annotations

import json
import math

import pytest
import torch

import lmtune
from lmtune.data.blocks import pack_blocks
from lmtune.data.readers import read_table
from lmtune.data.records import DataError, Record
from lmtune.pipeline import finetune
from conftest import make_task, tiny_config, toy_rows, write_csv


def _texts(rows):
    return "\n".join(text for text, _ in rows) + "\n"


@pytest.fixture(scope="module")
def text_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text-data")
    rows = toy_rows(240, seed=7)
    (folder / "train.txt").write_text(_texts(rows[:200]))
    (folder / "dev.txt").write_text(_texts(rows[200:]))
    return {"train": folder / "train.txt", "validation": folder / "dev.txt", "folder": folder}


@pytest.fixture(scope="module")
def mlm_run(tiny_model, text_data, tmp_path_factory):
    cfg = tiny_config(tiny_model, text_data, tmp_path_factory.mktemp("mlm-run"), max_steps=6,
                      eval_strategy="steps", eval_steps=3)
    cfg.task = "mlm"
    return finetune(cfg, quiet=True)


# ---- packing and masking ------------------------------------------------------------------------
def test_packing_keeps_every_token_once_in_order():
    docs = [list(range(100 * d, 100 * d + n)) for d, n in enumerate([5, 37, 1, 12, 64])]
    blocks = pack_blocks(docs, size=10, separator=-1)
    stream = [t for block in blocks.ids for t in block]
    assert [t for t in stream if t != -1] == [t for doc in docs for t in doc]  # each token once, in order
    assert stream.count(-1) == len(docs) - 1  # a separator between documents, none at the end
    assert all(len(b) == 10 for b in blocks.ids[:-1]) and 0 < len(blocks.ids[-1]) <= 10
    assert blocks.tokens == 119 and blocks.lengths == [5, 37, 1, 12, 64]
    assert blocks.first_document[:3] == [0, 1, 1]


def _large_mask_sample(whole_word: bool = False):
    task = make_task("mlm", **({"data.whole_word_mask": True} if whole_word else {}))
    task.vocab = (4, 1000)  # [MASK] id, vocabulary size
    n, rows = 128, 200
    ids = torch.randint(10, 1000, (rows, n))
    features = [{"input_ids": row.tolist(), "block": i, "maskable": [False] + [True] * (n - 2) + [False],
                 "word_starts": [True] * n if not whole_word else [i % 3 == 0 for i in range(n)]}
                for i, row in enumerate(ids)]
    masked, labels = task.mask(ids, features, seed=0)
    return ids, masked, labels


def test_masking_rate_and_80_10_10_split_hold_on_a_large_sample():
    ids, masked, labels = _large_mask_sample()
    chosen = labels != -100
    maskable = 200 * 126
    k = int(chosen.sum())
    assert abs(k / maskable - 0.15) < 4 * math.sqrt(0.15 * 0.85 / maskable)
    assert not chosen[:, 0].any() and not chosen[:, -1].any()  # special tokens are never masked
    assert torch.equal(labels[chosen], ids[chosen])
    as_mask = (masked[chosen] == 4).float().mean().item()
    kept = (masked[chosen] == ids[chosen]).float().mean().item()  # includes random draws of the same id
    for share, expected in ((as_mask, 0.8), (kept, 0.1 + 0.1 / 990), (1 - as_mask - kept, 0.1 - 0.1 / 990)):
        assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / k)
    assert torch.equal(masked[~chosen], ids[~chosen])  # the rest untouched


def test_whole_word_masking_masks_all_pieces_of_a_word():
    _, _, labels = _large_mask_sample(whole_word=True)
    chosen = labels != -100
    words = chosen[:, 3:126].reshape(200, 41, 3).sum(-1)  # words of 3 pieces start at 3, 6, ... 123
    assert ((words == 0) | (words == 3)).all() and (words == 3).any()
    assert 0.1 < chosen.float().mean().item() < 0.2


def test_masks_are_seeded_per_block_and_fixed_in_evaluation():
    task = make_task("mlm")
    task.vocab = (4, 50)
    features = [{"input_ids": list(range(5, 45)), "block": b, "maskable": [True] * 40, "word_starts": [True] * 40}
                for b in range(2)]
    with torch.no_grad():
        first, second = task.collate(features, 0), task.collate(features[::-1], 0)
    assert torch.equal(first["labels"][0], second["labels"][1])  # block 0 masked alike in any batch
    assert not torch.equal(first["labels"][0], first["labels"][1])
    torch.manual_seed(1)
    a = task.collate(features, 0)["labels"]
    torch.manual_seed(1)
    assert torch.equal(a, task.collate(features, 0)["labels"])  # training: reproducible from the seed
    assert not torch.equal(a, task.collate(features, 0)["labels"])  # and fresh on each visit


# ---- plain-text input and bad input -------------------------------------------------------------
def test_text_files_are_lines_or_blank_line_paragraphs(tmp_path):
    lines = tmp_path / "a.txt"
    lines.write_text("first doc\nsecond doc\n")
    assert [r.fields["text"] for r in read_table(lines, usual="text").records] == ["first doc", "second doc"]
    paragraphs = tmp_path / "b.txt"
    paragraphs.write_text("one\ntwo\n\n\nthree\n")
    records = read_table(paragraphs, "text").records
    assert [(r.fields["text"], r.line, r.last_line) for r in records] == [("one\ntwo", 1, 2), ("three", 5, 5)]


def test_bad_inputs_get_clear_errors(tiny_model, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match=f"{empty}: file has no rows .*it is empty"):
        read_table(empty, usual="text")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary")
    with pytest.raises(DataError, match=f"{binary}: looks like a binary file \\(a NUL byte at offset 4\\)"):
        read_table(binary, usual="text")
    table = write_csv(tmp_path / "t.csv", [("a", "b")], header=("body", "label"))
    cfg = tiny_config(tiny_model, {"train": table, "validation": table}, tmp_path)
    cfg.task = "mlm"
    with pytest.raises(DataError, match=r"t\.csv.*'text'.*body, label.*--data.text-column"):
        finetune(cfg, quiet=True)


# ---- runs ---------------------------------------------------------------------------------------
def test_mlm_run_reloads_with_plain_transformers_and_evaluate_reproduces_it(mlm_run, text_data):
    from transformers import AutoModelForMaskedLM

    metrics = json.loads(mlm_run.metrics.read_text())
    validation = metrics["validation"]
    assert validation["perplexity"] == pytest.approx(math.exp(validation["masked_loss"]))
    assert validation["masked_tokens"] > 0 and validation["blocks"] >= 1
    assert metrics["data"]["train"]["format"] == "text"
    model = AutoModelForMaskedLM.from_pretrained(str(mlm_run.model))
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # the new head is tied
    reloaded = lmtune.evaluate(mlm_run.root, text_data["validation"], quiet=True)
    assert reloaded["masked_loss"] == pytest.approx(validation["masked_loss"], rel=1e-6)
    (fills,) = lmtune.load(mlm_run.root).predict(["the film was [MASK]"])[0]["masks"]
    assert len(fills) == 5 and fills[0]["score"] >= fills[-1]["score"]


def test_an_mlm_run_is_the_base_of_a_classification_run(mlm_run, tiny_model, toy_data, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from lmtune.models import load_model, resolve_model

    assert resolve_model(str(mlm_run.root)) == mlm_run.model
    pretrained = load_file(str(mlm_run.model / "model.safetensors"))
    base = load_file(str(tiny_model / "model.safetensors"))
    assert torch.equal(pretrained["bert.pooler.dense.weight"], base["pooler.dense.weight"])  # the pooler kept
    model, new = load_model(resolve_model(str(mlm_run.root)), AutoModelForSequenceClassification, num_labels=2)
    layer = "bert.encoder.layer.1.attention.self.query.weight"
    assert torch.equal(model.state_dict()[layer], pretrained[layer])
    assert not torch.equal(pretrained[layer], base[layer.removeprefix("bert.")])  # pretraining changed it
    assert not any("pooler" in key for key in new)  # only the classifier is new
    cfg = tiny_config(mlm_run.root, toy_data, tmp_path, max_steps=2)
    run = finetune(cfg, quiet=True)
    assert json.loads(run.metrics.read_text())["validation"]["accuracy"] >= 0


def test_mlm_with_lora_trains_and_reloads(tiny_model, text_data, tmp_path):
    cfg = tiny_config(tiny_model, text_data, tmp_path, max_steps=2, eval_strategy="steps", eval_steps=2)
    cfg.task, cfg.method.name = "mlm", "lora"
    run = finetune(cfg, quiet=True)
    recorded = json.loads(run.metrics.read_text())["validation"]
    assert lmtune.evaluate(run.root, text_data["validation"], quiet=True)["masked_loss"] == pytest.approx(
        recorded["masked_loss"], rel=1e-6)


def test_clm_run_on_a_tiny_llama(tiny_llama, tmp_path):
    from transformers import AutoModelForCausalLM

    from conftest import LLAMA_WORDS

    words = LLAMA_WORDS[4:]
    docs = [" ".join(words[(i * 7) % len(words):(i * 7) % len(words) + 3 + i % 9]) for i in range(120)]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    data = {"train": tmp_path / "corpus.jsonl", "validation": tmp_path / "corpus.jsonl"}
    cfg = tiny_config(tiny_llama, data, tmp_path, max_steps=8, eval_strategy="steps", eval_steps=8)
    cfg.task = "clm"
    run = finetune(cfg, quiet=True)
    metrics = json.loads(run.metrics.read_text())["validation"]
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["token_loss"]))
    assert metrics["document_tokens"] == sum(len(d.split()) for d in docs)
    AutoModelForCausalLM.from_pretrained(str(run.model))
    (out,) = lmtune.load(run.root).predict(["alice"], max_new_tokens=3)
    assert isinstance(out["generated_text"], str)


def test_clm_blocks_start_with_bos_and_separate_documents_with_eos(tiny_llama):
    from lmtune.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_llama)
    task = make_task("clm")
    records = [Record({"text": "alice go"}, "x", 1), Record({"text": "bob"}, "x", 2)]
    (feature,) = task.encode(records, tokenizer, max_length=16).features
    assert feature["input_ids"] == [tokenizer.bos_token_id, *tokenizer("alice go bob", add_special_tokens=False)[
        "input_ids"][:2], tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("bob")]
    batch = task.collate([feature], tokenizer.pad_token_id)
    assert torch.equal(batch["labels"], batch["input_ids"])
