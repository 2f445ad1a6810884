"""A saved run reloads with plain transformers and predicts the same as lmtune.load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lmtune
from lmtune.pipeline import finetune
from conftest import tiny_config


@pytest.fixture(scope="module")
def trained_run(tiny_model, toy_data, tmp_path_factory):
    cfg = tiny_config(tiny_model, toy_data, tmp_path_factory.mktemp("runs"), epochs=8)
    return finetune(cfg, quiet=True)


TEXTS = ["the film was good", "really dull plot", "a superb story and very lovely acting", "bad"]


def test_plain_transformers_matches_lmtune_load(trained_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(trained_run.model)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(trained_run.model))
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    plain_probs = logits.softmax(-1).numpy()
    plain_labels = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]

    predictions = lmtune.load(trained_run.root, calibrated=False).predict(TEXTS)  # raw: no temperature
    assert [p["label"] for p in predictions] == plain_labels
    ours = np.array([[p["probabilities"][l] for l in ("neg", "pos")] for p in predictions])
    np.testing.assert_allclose(ours, plain_probs, atol=1e-5)
    assert [p["label"] for p in predictions] == ["pos", "neg", "pos", "neg"]


def test_predict_validates_inputs(trained_run):
    model = lmtune.load(trained_run.root)
    assert model.predict([]) == []
    assert model.predict("good")[0]["label"] == "pos"
    with pytest.raises(TypeError, match="input 1: expected a string"):
        model.predict(["good", 3])
    with pytest.raises(ValueError, match="trained on single texts"):
        model.predict(["good"], pairs=["bad"])


def test_a_path_that_is_not_a_run_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        lmtune.load(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not an lmtune run folder"):
        lmtune.load(tmp_path)


def test_empty_inputs_are_refused_like_in_training(trained_run):
    model = lmtune.load(trained_run.root)
    with pytest.raises(ValueError, match="input 1: empty text; there is nothing to predict from"):
        model.predict(["good", "   "])


def test_each_prediction_says_whether_its_input_was_truncated(trained_run, capsys):
    from lmtune.cli import main

    long_text = " ".join(["good"] * 200)  # 202 tokens for a model that reads 32
    short, cut = lmtune.load(trained_run.root).predict(["good", long_text])
    assert short["truncated"] is False and short["tokens"] == 3
    assert cut["truncated"] is True and cut["tokens"] == 202
    assert main(["predict", str(trained_run.root), "good", long_text]) == 0
    assert "1 of 2 input(s) were longer than 32 tokens and were truncated" in capsys.readouterr().err


def test_a_finished_run_keeps_its_model_and_no_checkpoints(trained_run, toy_data, tiny_model, tmp_path):
    """Checkpoints serve resume only: a finished run folder is its model plus small files."""
    assert not trained_run.checkpoints.exists()
    model_bytes = sum(f.stat().st_size for f in trained_run.model.rglob("*") if f.is_file())
    run_bytes = sum(f.stat().st_size for f in trained_run.root.rglob("*") if f.is_file())
    assert run_bytes <= 1.1 * model_bytes + 200_000  # plots and logs: a few tens of kB here
    with pytest.raises(FileNotFoundError, match="this run finished .* --train.keep-checkpoints true"):
        finetune(None, resume=trained_run.root, quiet=True)
    kept = finetune(tiny_config(tiny_model, toy_data, tmp_path, max_steps=2, keep_checkpoints=True), quiet=True)
    assert (kept.checkpoints / "latest.txt").is_file() and (kept.checkpoints / "best.txt").is_file()


def test_evaluate_writes_report(trained_run, toy_data):
    metrics = lmtune.evaluate(trained_run.root, toy_data["validation"], quiet=True)
    out = trained_run.root / "eval" / "dev"
    assert (out / "report.txt").read_text().startswith(" " * 12)
    assert (out / "confusion_matrix.png").is_file()
    assert metrics["accuracy"] >= 0.9
    assert sum(sum(row) for row in metrics["confusion_matrix"]) == 60


@pytest.mark.integration
def test_packaged_minilm_reloads_with_plain_transformers(tmp_path):
    """The real default model: a few steps, then the saved folder loads with plain transformers."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmtune.config import Config

    cfg = Config.from_yaml(__import__("pathlib").Path(__file__).parents[1] / "examples" / "demo.yaml")
    cfg.train.max_steps, cfg.train.eval_strategy = 3, "no"
    cfg.train.output_dir, cfg.train.progress = str(tmp_path), False
    cfg.data.train = str(__import__("pathlib").Path(__file__).parents[1] / cfg.data.train)
    cfg.data.validation = None
    run = finetune(cfg, quiet=True)
    texts = ["a joy to watch", "a chore to sit through"]
    model = AutoModelForSequenceClassification.from_pretrained(str(run.model)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run.model))
    with torch.no_grad():
        probs = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    ours = lmtune.load(run.root).predict(texts)
    for row, prediction in zip(probs, ours):
        assert prediction["probabilities"]["positive"] == pytest.approx(float(row[1]), abs=1e-5)
    assert model.config.id2label == {0: "negative", 1: "positive"}
