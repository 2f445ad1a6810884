"""Per-example predictions for error analysis: <run>/predictions/<split>.jsonl after training and
<run>/eval/<name>/predictions.jsonl from `lmtune evaluate`, for every task."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lmtune
from lmtune.data.records import Dataset, Record
from lmtune.evaluation.examples import read_examples
from lmtune.evaluation.squad_metrics import normalize_answer
from lmtune.pipeline import finetune
from lmtune.tasks.base import Encoded
from conftest import gen_rows, make_task, tiny_config, toy_rows, write_csv

KEYS = ["index", "line", "text", "pair", "gold", "predicted", "gold_classes", "predicted_classes",
        "correct", "loss", "probabilities", "spans"]


def check_rows(rows: list[dict], count: int) -> None:
    """The format's keys, one row per example in order, finite losses, and the worst-loss row
    one the model gets wrong whenever any is wrong."""
    assert len(rows) == count
    assert [r["index"] for r in rows] == list(range(count))
    assert all(list(r) == KEYS for r in rows)
    assert all(math.isfinite(r["loss"]) and r["loss"] >= 0 for r in rows)
    assert all(isinstance(r["correct"], bool) for r in rows)
    if not all(r["correct"] for r in rows):
        assert not max(rows, key=lambda r: r["loss"])["correct"]


# ---- classification ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cls_run(tiny_model, toy_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples-cls")
    cfg = tiny_config(tiny_model, toy_data, folder, epochs=3, learning_rate=5e-3)
    cfg.data.test = str(write_csv(folder / "test.csv", toy_rows(12, seed=9)))
    return finetune(cfg, quiet=True).root


def test_classification_writes_one_row_per_validation_and_test_example(cls_run, toy_data):
    validation = read_examples(cls_run / "predictions" / "validation.jsonl")
    check_rows(validation, 60)
    check_rows(read_examples(cls_run / "predictions" / "test.jsonl"), 12)
    texts = [line.split(",")[0] for line in toy_data["validation"].read_text().splitlines()[1:]]
    assert [r["text"] for r in validation] == texts  # file order
    assert [r["line"] for r in validation] == list(range(2, 62))
    for row in validation:
        assert row["correct"] == (row["gold"] == row["predicted"])
        assert row["gold_classes"] == [row["gold"]] and row["predicted_classes"] == [row["predicted"]]
        assert row["pair"] is None and row["spans"] is None
        probs = row["probabilities"]
        assert sorted(probs) == ["neg", "pos"] and sum(probs.values()) == pytest.approx(1, abs=1e-5)
        assert max(probs, key=probs.get) == row["predicted"]
        assert row["loss"] == pytest.approx(-math.log(probs[row["gold"]]), rel=1e-4)


def test_accuracy_from_the_rows_is_the_recorded_one(cls_run):
    import json

    rows = read_examples(cls_run / "predictions" / "validation.jsonl")
    metrics = json.loads((cls_run / "metrics.json").read_text())
    assert np.mean([r["correct"] for r in rows]) == pytest.approx(metrics["validation"]["accuracy"])


def test_evaluate_writes_the_same_rows_beside_its_report(cls_run, toy_data):
    lmtune.evaluate(cls_run, toy_data["validation"], quiet=True)
    evaluated = read_examples(cls_run / "eval" / "dev" / "predictions.jsonl")
    trained = read_examples(cls_run / "predictions" / "validation.jsonl")
    assert [r["predicted"] for r in evaluated] == [r["predicted"] for r in trained]
    assert [r["loss"] for r in evaluated] == pytest.approx([r["loss"] for r in trained], rel=1e-4)


def test_no_predictions_when_switched_off(tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path, max_steps=1)
    cfg.eval.write_predictions = False
    assert not (finetune(cfg, quiet=True).root / "predictions").exists()


def _encoded_task(records: list[Record], **overrides) -> tuple:
    task = make_task("classification", **overrides)
    task.fit(Dataset("t.csv", records))
    labels = [{"labels": f["labels"]} for f in task.encode(records, _WordTokenizer(), 16).features]
    return task, Encoded(labels, records)


class _WordTokenizer:
    """Enough of a tokenizer for encoding labels: one id per word."""

    def __call__(self, texts, pairs=None, **kwargs):
        return {"input_ids": [[1] * len(t.split()) for t in texts]}


def test_pair_classification_rows_show_both_texts():
    records = [Record({"text": f"q{i}", "pair": f"p{i}", "label": lab}, "t.csv", i + 2)
               for i, lab in enumerate(["a", "b", "a"])]
    task, encoded = _encoded_task(records, **{"data.text_pair_column": "pair"})
    logits = [np.array([2.0, 0.0]), np.array([3.0, 0.0]), np.array([0.0, 1.0])]
    rows = task.example_rows(logits, encoded)
    check_rows(rows, 3)
    assert [(r["text"], r["pair"]) for r in rows] == [("q0", "p0"), ("q1", "p1"), ("q2", "p2")]
    assert [r["correct"] for r in rows] == [True, False, False]
    assert rows[1]["loss"] == pytest.approx(math.log(1 + math.exp(3)), rel=1e-6)  # -log softmax(0 | 3, 0)


def test_multi_label_rows_compare_label_sets():
    records = [Record({"text": "x y", "label": lab}, "t.csv", i + 2)
               for i, lab in enumerate(["a,b", "b", "c"])]
    task, encoded = _encoded_task(records, **{"data.multi_label": True, "data.label_separator": ","})
    logits = [np.array([5.0, 5.0, -5.0]), np.array([5.0, 5.0, -5.0]), np.array([-5.0, -5.0, -5.0])]
    rows = task.example_rows(logits, encoded)
    check_rows(rows, 3)
    assert [r["gold"] for r in rows] == ["a, b", "b", "c"]
    assert [r["predicted_classes"] for r in rows] == [["a", "b"], ["a", "b"], []]
    assert [r["correct"] for r in rows] == [True, False, False]
    bce = lambda z, y: math.log(1 + math.exp(z)) - y * z  # noqa: E731
    assert rows[2]["loss"] == pytest.approx((bce(-5, 0) * 2 + bce(-5, 1)) / 3, rel=1e-6)
    assert set(rows[0]["probabilities"]) == {"a", "b", "c"}


# ---- NER ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ner_run(tiny_model, ner_data, tmp_path_factory):
    cfg = tiny_config(tiny_model, ner_data, tmp_path_factory.mktemp("examples-ner"), epochs=4,
                      learning_rate=5e-3)
    cfg.task = "ner"
    return finetune(cfg, quiet=True).root


def test_ner_rows_give_entities_as_text_types_and_spans(ner_run):
    rows = read_examples(ner_run / "predictions" / "validation.jsonl")
    check_rows(rows, 60)
    assert any(r["correct"] for r in rows) and any(r["spans"]["predicted"] for r in rows)
    for row in rows:
        text = row["text"]
        for side in ("gold", "predicted"):
            spans = row["spans"][side]
            shown = "; ".join(f"{s['label']}: {text[s['start']:s['end']]}" for s in spans) or "(none)"
            assert row[side] == shown  # each span slices its entity's words out of the text
            assert row[f"{side}_classes"] == sorted({s["label"] for s in spans})
        assert row["correct"] == (row["spans"]["gold"] == row["spans"]["predicted"])
        assert row["probabilities"] is None and row["pair"] is None


def test_ner_text_is_the_words_joined_by_spaces(ner_run, ner_data):
    from lmtune.data import read_table

    words = [r.fields["tokens"] for r in read_table(ner_data["validation"]).records]
    rows = read_examples(ner_run / "predictions" / "validation.jsonl")
    assert [r["text"] for r in rows] == [" ".join(w) for w in words]


# ---- QA ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qa_run(tiny_model, qa_data, tmp_path_factory):
    cfg = tiny_config(tiny_model, qa_data, tmp_path_factory.mktemp("examples-qa"), epochs=3)
    cfg.task, cfg.model.max_length = "qa", 64
    return finetune(cfg, quiet=True).root


def test_qa_rows_give_answers_as_spans_of_the_context(qa_run):
    rows = read_examples(qa_run / "predictions" / "validation.jsonl")
    check_rows(rows, 6)
    for row in rows:
        gold, found = row["spans"]["gold"], row["spans"]["predicted"]
        assert row["text"][gold[0]["start"]:gold[0]["end"]] == row["gold"]
        assert [row["text"][s["start"]:s["end"]] for s in found] == ([row["predicted"]] if row["predicted"] else [])
        assert row["correct"] == (normalize_answer(row["predicted"]) == normalize_answer(row["gold"]))
        assert row["pair"].endswith("?") and row["gold_classes"] == row["predicted_classes"] == []


def test_qa_loss_is_one_minus_f1_when_no_window_holds_the_answer():
    task = make_task("qa")
    record = Record({"question": "who ?", "context": "alice met bob",
                     "answers": [{"text": "bob", "answer_start": 10}]}, "q.json", 1)
    offsets = [None, None, (0, 5), (6, 9)]  # a window that ends before "bob"
    encoded = Encoded([{"input_ids": [0, 1, 2, 3], "record": 0, "offsets": offsets}], [record])
    row = np.zeros((4, 2), dtype=np.float32)
    row[3] = 5.0  # predicts "met"
    (result,) = task.example_rows([row], encoded)
    assert result["predicted"] == "met" and result["correct"] is False and result["loss"] == 1.0


# ---- generation --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gen_run(tiny_llama, gen_data, tmp_path_factory):
    cfg = tiny_config(tiny_llama, gen_data, tmp_path_factory.mktemp("examples-gen"), epochs=1, batch_size=8)
    cfg.task = "generation"
    return finetune(cfg, quiet=True).root


def test_generation_rows_hold_the_response_loss_without_generating(gen_run):
    rows = read_examples(gen_run / "predictions" / "validation.jsonl")
    check_rows(rows, 40)
    assert all(r["predicted"] is None and r["correct"] is False for r in rows)
    assert all(r["text"].endswith("?") and r["gold"] in ("paris", "london", "rome") for r in rows)


def test_evaluate_generates_the_outputs_of_a_generation_run(gen_run, tmp_path):
    import json

    path = tmp_path / "few.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in gen_rows(3, seed=8)))
    lmtune.evaluate(gen_run, path, quiet=True)
    rows = read_examples(gen_run / "eval" / "few" / "predictions.jsonl")
    check_rows(rows, 3)
    assert all(isinstance(r["predicted"], str) for r in rows)
    assert [r["correct"] for r in rows] == [normalize_answer(r["predicted"]) == normalize_answer(r["gold"])
                                           for r in rows]


def test_packed_rows_give_each_example_its_own_loss(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmtune.forward import batched_logits

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama))
    records = [Record(r, "g.jsonl", i + 1) for i, r in enumerate(gen_rows(6, seed=1))]
    losses = []
    for packing in (False, True):
        task = make_task("generation", **{"data.packing": packing})
        encoded = task.encode(records, tokenizer, 64)
        logits, _ = batched_logits(model, encoded.features, 4, tokenizer.pad_token_id, model.device, task)
        losses.append([r["loss"] for r in task.example_rows(logits, encoded)])
    assert len(encoded.features) < len(records)  # the second encoding packed several per row
    assert losses[1] == pytest.approx(losses[0], abs=1e-4)


def test_predictions_come_from_the_best_evaluation_without_a_second_pass(tiny_model, toy_data, tmp_path,
                                                                          monkeypatch):
    """Training keeps the outputs of the evaluation that picked the weights: the validation split
    is not forwarded again for the predictions file and calibration, and what is written is what
    the saved model gives, even when the best evaluation is not the last (here: the worst
    accuracy counts as best)."""
    import json

    import lmtune.forward as forward

    cfg = tiny_config(tiny_model, toy_data, tmp_path, epochs=3, learning_rate=5e-3)
    cfg.train.metric_for_best, cfg.train.greater_is_better = "accuracy", False
    calls = []
    original = forward.batched_logits
    monkeypatch.setattr(forward, "batched_logits", lambda *a, **k: calls.append(1) or original(*a, **k))
    run = finetune(cfg, quiet=True).root
    assert calls == []  # evaluations go through batched_outputs; nothing forwarded afterwards
    metrics = json.loads((run / "metrics.json").read_text())
    evals = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    evals = [row for row in evals if row.get("kind") == "eval"]
    best = next(r for r in evals if r["step"] == metrics["training"]["best_step"])
    assert best["accuracy"] == min(r["accuracy"] for r in evals) and best is not evals[-1]
    monkeypatch.undo()
    trained = read_examples(run / "predictions" / "validation.jsonl")
    lmtune.evaluate(run, toy_data["validation"], quiet=True)
    evaluated = read_examples(run / "eval" / "dev" / "predictions.jsonl")
    assert [r["predicted"] for r in trained] == [r["predicted"] for r in evaluated]
    assert [r["loss"] for r in trained] == pytest.approx([r["loss"] for r in evaluated], rel=1e-4)
