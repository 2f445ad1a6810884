"""Prompt-based classification goes through Task and Predictor like every other task: the Python
API, `lmtune predict --zero-shot` and `lmtune evaluate --zero-shot` share one path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmtune.cli import main
from lmtune.config import ConfigError
from lmtune.data.records import DataError, Record
from conftest import tiny_config, write_csv

SHOTS = [("good film", "1"), ("superb story", "1"), ("bad film", "0"), ("awful plot", "0")]


@pytest.fixture(scope="module")
def prompted(tiny_model):
    from lmtune.inference.predictor import load_prompted

    return load_prompted(str(tiny_model), "1=good,0=bad", SHOTS, device="cpu")


def test_load_prompted_gives_a_predictor_with_the_scorers_predictions(prompted):
    from lmtune.inference.predictor import Predictor
    from lmtune.prompting import EncoderSimilarity, predictions

    assert isinstance(prompted, Predictor) and prompted.task.name == "prompted"
    assert prompted.labels == ["1", "0"] and isinstance(prompted.task.scorer, EncoderSimilarity)
    texts = [text for text, _ in SHOTS]
    got = prompted.predict(texts)
    # Each label's description, moved by what sets its shots apart from the other label's,
    # trusted as 2 shots against the description's 32.
    scorer = prompted.task.scorer
    means = np.stack([scorer.embed(["good film", "superb story"]).mean(0), scorer.embed(["bad film", "awful plot"]).mean(0)])
    centroids = scorer.embed(["good", "bad"]) + 2 / (2 + 32) * (means - means.mean(0))
    np.testing.assert_allclose(scorer.centroids, centroids / np.linalg.norm(centroids, axis=1, keepdims=True), atol=1e-5)
    scores = scorer.label_scores(texts)
    assert [p["label"] for p in got] == [["1", "0"][i] for i in scores.argmax(1)]
    expected = np.exp(scores - scores.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose([list(p["probabilities"].values()) for p in got], expected, rtol=1e-6)
    assert [p["score"] for p in got] == pytest.approx(expected.max(1).tolist())
    assert predictions(prompted.task.scorer, texts) == got  # the scorer-level helper is the same path


def test_evaluate_records_scores_labels_and_names_unknown_ones(prompted):
    from lmtune.prompting import evaluate

    records = [Record({"text": t, "label": float(v)}, "dev.csv", i + 2) for i, (t, v) in enumerate(SHOTS)]
    metrics = prompted.evaluate_records(records)  # 1.0 read from a file is the label "1"
    right = [p["label"] == v for p, (_, v) in zip(prompted.predict([t for t, _ in SHOTS]), SHOTS)]
    assert metrics["accuracy"] == pytest.approx(sum(right) / len(right)) and set(metrics["per_class"]) == {"1", "0"}
    assert evaluate(prompted.task.scorer, [t for t, _ in SHOTS], [v for _, v in SHOTS]) == metrics
    with pytest.raises(DataError, match=r"dev.csv:6: field 'label': label 'maybe' is not in --labels \(1, 0\)"):
        prompted.evaluate_records(records + [Record({"text": "dull", "label": "maybe"}, "dev.csv", 6)])
    with pytest.raises(ValueError, match="empty text"):
        prompted.predict(["good", " "])  # the same input checks as a trained model's


def test_the_prompted_task_cannot_be_trained(tiny_model, toy_data, tmp_path):
    from lmtune.pipeline import finetune

    cfg = tiny_config(tiny_model, toy_data, tmp_path)
    cfg.task = "prompted"
    with pytest.raises(ConfigError, match="the prompted task .* cannot be trained; fine-tune with --task "
                                          "classification"):
        finetune(cfg, quiet=True)
    assert not (tmp_path / "run").exists()


def test_zero_shot_commands(tiny_model, prompted, tmp_path, capsys):
    model = str(tiny_model)
    assert main(["predict", "--model", model, "--zero-shot", "--labels", "1=good,0=bad", "good", "bad"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["1", "0"] and lines[0].endswith("\tgood")
    assert float(lines[0].split("\t")[1]) > 0.5
    assert main(["predict", "--model", model, "--zero-shot", "--labels", "1=good,0=bad", "--json", "bad"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["text"] == "bad" and row["prediction"]["label"] == "0"

    data = write_csv(tmp_path / "dev.csv", [(t, v) for t, v in SHOTS], header=("sentence", "gold"))
    assert main(["predict", "--model", model, "--zero-shot", "--labels", "1=good,0=bad", "--input", str(data),
                 "--text-column", "sentence", "--output", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["sentence"] for r in rows] == [t for t, _ in SHOTS] and all("label" in r["prediction"] for r in rows)

    assert main(["evaluate", "--model", model, "--zero-shot", "--labels", "1=good,0=bad", "--data", str(data),
                 "--text-column", "sentence", "--label-column", "gold", "--shots", "4", "--shots-from", str(data),
                 "--output", str(tmp_path / "m.json")]) == 0
    assert f"4-shot, 4 examples of {data}" in capsys.readouterr().out
    records = [Record({"text": t, "label": v}, "dev.csv", i + 2) for i, (t, v) in enumerate(SHOTS)]
    assert json.loads((tmp_path / "m.json").read_text())["accuracy"] == prompted.evaluate_records(records)["accuracy"]
    assert main(["evaluate", "--model", model, "--zero-shot", "--labels", "1=good,0=bad",
                 "--data", str(data), "--text-column", "text"]) == 2
    assert "'text'" in capsys.readouterr().err  # the field the file lacks, named


def test_zero_shot_description_and_instruction_flags(tiny_model, prompted, tmp_path, capsys):
    """--description reaches the encoder's label descriptions; --instruction is a decoder's and
    an encoder refuses it by name."""
    from lmtune.inference.predictor import load_prompted

    data = write_csv(tmp_path / "dev.csv", [(t, v) for t, v in SHOTS], header=("sentence", "gold"))
    common = ["evaluate", "--model", str(tiny_model), "--zero-shot", "--labels", "1=good,0=bad", "--data", str(data),
              "--text-column", "sentence", "--label-column", "gold"]
    assert main([*common, "--description", "a {label} story", "--output", str(tmp_path / "m.json")]) == 0
    described = load_prompted(str(tiny_model), "1=good,0=bad", description="a {label} story")
    np.testing.assert_allclose(described.task.scorer.centroids,
                               described.task.scorer.embed(["a good story", "a bad story"]), atol=1e-6)
    records = [Record({"text": t, "label": v}, "dev.csv", i + 2) for i, (t, v) in enumerate(SHOTS)]
    assert json.loads((tmp_path / "m.json").read_text()) == described.evaluate_records(records)
    capsys.readouterr()
    assert main([*common, "--instruction", "Say good or bad."]) == 2
    assert "instruction applies to a decoder; this model is an encoder" in capsys.readouterr().err
