"""Extractive QA: readers and checks, windows over long contexts, SQuAD metrics, reload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmtune.config import Config
from lmtune.data import read_table
from lmtune.data.records import Record
from lmtune.evaluation.squad_metrics import normalize_answer, squad_scores
from lmtune.pipeline import finetune, prepare_data
from lmtune.tasks import get_task
from conftest import make_task, QA_CONTEXT, squad_file, tiny_config

CONTEXT = QA_CONTEXT


def _task(**options):
    return make_task("qa", **{f"eval.{k}": v for k, v in options.items()})


def test_squad_json_and_jsonl_read_alike(tmp_path):
    start = CONTEXT.index("paris")
    squad = squad_file(tmp_path / "s.json", [{"id": "q1", "question": "where did alice meet bob ?",
                                              "answers": [{"text": "paris", "answer_start": start}]}])
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text(json.dumps({"id": "q1", "question": "where did alice meet bob ?", "context": CONTEXT,
                                 "answers": {"text": ["paris"], "answer_start": [start]}}) + "\n")
    from lmtune.tasks.qa import gold_answers

    a, b = read_table(squad).records[0], read_table(jsonl).records[0]
    assert gold_answers(a) == gold_answers(b) == [{"text": "paris", "answer_start": start}]
    assert a.fields["question"] == b.fields["question"]


def test_misplaced_answer_is_reported_with_question_id_and_counted(tmp_path):
    path = squad_file(tmp_path / "bad.json", [
        {"id": "good", "question": "who ?", "answers": [{"text": "bob", "answer_start": CONTEXT.index("bob")}]},
        {"id": "q-bad", "question": "where ?", "answers": [{"text": "rome", "answer_start": 3}]}])
    cfg = Config()
    cfg.task, cfg.data.train, cfg.data.on_error = "qa", str(path), "skip"
    splits, report, issues = prepare_data(cfg, get_task(cfg))
    assert [str(i) for i in issues] == [
        f"{path}:2: field 'answers': question id q-bad: answer 'rome' is not at answer_start 3 "
        "(the context there reads 'ce m') (fix answer_start, or pass --data.on-error skip to leave it out)"]
    assert len(splits["train"].records) == 1 and report["train"]["rows_skipped"] == 1


@pytest.mark.parametrize("prediction,golds,em,f1", [
    ("The Denver Broncos!", ["denver broncos"], 100.0, 100.0),       # case, article, punctuation
    ("  denver   broncos ", ["Denver Broncos"], 100.0, 100.0),         # whitespace
    ("the Broncos", ["Denver Broncos", "Broncos"], 100.0, 100.0),      # best of several golds
    ("Denver", ["Denver Broncos"], 0.0, 100 * 2 * (1 * 0.5) / 1.5),   # P=1, R=0.5 -> F1 2/3
    ("an apple a day", ["apple day"], 100.0, 100.0),
    ("blue", ["red"], 0.0, 0.0),
])
def test_squad_metric_cases(prediction, golds, em, f1):
    scores = squad_scores([prediction], [golds])
    assert scores["exact_match"] == pytest.approx(em) and scores["f1"] == pytest.approx(f1)


def test_normalization():
    assert normalize_answer("An  Example, of THE rules.") == "example of rules"


def test_answer_in_last_window_of_a_long_context(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    task = _task()
    filler = " ".join(["the film was really quite good and"] * 14)  # ~100 words per copy
    context = f"{filler} {filler} {filler} bob visited london today ."
    start = context.index("london")
    record = Record({"id": "x", "question": "where did bob go ?", "context": context,
                     "answers": [{"text": "london", "answer_start": start}]}, "doc", 1)
    encoded = task.encode([record], tokenizer, 96)
    assert len(tokenizer(context)["input_ids"]) > 3 * 96 and encoded.windowed == 1
    targets = [f["labels"] for f in encoded.features]
    assert all(t == (0, 0) for t in targets[:-1]) and targets[-1] != (0, 0)
    # Logits that point at the gold tokens in the window that holds them, and at a worse
    # distractor span in the first window.
    logits = []
    for feature in encoded.features:
        row = np.full((len(feature["input_ids"]), 2), -5.0, dtype=np.float32)
        s, e = feature["labels"]
        if (s, e) != (0, 0):
            row[s, 0], row[e, 1] = 6.0, 6.0
        else:
            context_positions = [i for i, o in enumerate(feature["offsets"]) if o is not None]
            row[context_positions[3], 0], row[context_positions[4], 1] = 4.0, 4.0
        row[0] = 1.0  # [CLS]: "no answer here", weaker than both
        logits.append(row)
    answer = task.decode(logits, encoded)[0]
    assert (answer["answer"], answer["start"], answer["end"]) == ("london", start, start + 6)
    top = task.decode(logits, encoded, top_k=2)[0]
    assert [a["answer"] for a in top][0] == "london" and len(top) == 2
    assert top[0]["score"] > top[1]["score"]


def test_spans_never_cover_the_question_and_null_threshold(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    task = _task(null_threshold=0.0)
    record = Record({"id": "x", "question": "who met bob ?", "context": CONTEXT}, "<input>", 1)
    encoded = task.encode([record], tokenizer, 64, with_labels=False)
    feature = encoded.features[0]
    row = np.zeros((len(feature["input_ids"]), 2), dtype=np.float32)
    row[1, 0], row[2, 1] = 9.0, 9.0  # a span inside the question: must be ignored
    row[0] = 5.0  # null beats every context span
    answer = task.decode([row], encoded)[0]
    assert answer["answer"] == "" and answer["start"] == -1


@pytest.fixture(scope="module")
def qa_run(tiny_model, qa_data, tmp_path_factory):
    cfg = tiny_config(tiny_model, qa_data, tmp_path_factory.mktemp("qa-runs"), epochs=15)
    cfg.task, cfg.model.max_length = "qa", 64
    return finetune(cfg, quiet=True)


def test_trained_qa_model_reloads_with_plain_transformers(qa_run):
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    import lmtune

    run = qa_run
    metrics = json.loads(run.metrics.read_text())
    assert metrics["validation"]["f1"] > 60
    model = lmtune.load(run.root)
    answer = model.predict("who visited rome ?", CONTEXT)[0]
    assert CONTEXT[answer["start"]:answer["end"]] == answer["answer"]
    plain = AutoModelForQuestionAnswering.from_pretrained(str(run.model)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run.model))
    inputs = tokenizer("who visited rome ?", CONTEXT, return_tensors="pt", return_offsets_mapping=True)
    offsets = inputs.pop("offset_mapping")[0]
    with torch.no_grad():
        out = plain(**inputs)
    types = inputs["token_type_ids"][0]
    start_logits = out.start_logits[0].masked_fill(types == 0, -1e9)
    end_logits = out.end_logits[0].masked_fill(types == 0, -1e9)
    s = int(start_logits.argmax())
    e = s + int(end_logits[s:s + 30].argmax())
    assert CONTEXT[int(offsets[s][0]):int(offsets[e][1])] == answer["answer"]


def test_cli_predicts_answers_with_offsets(qa_run, capsys):
    from lmtune.cli import main

    assert main(["predict", str(qa_run.root), "--question", "who visited rome ?", "--context", CONTEXT,
                 "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    answer, span, _ = lines[0].split("\t")
    start, end = map(int, span.strip("[]").split(":"))
    assert repr(CONTEXT[start:end]) == answer
    assert main(["predict", str(qa_run.root), "--question", "who ?"]) == 2
