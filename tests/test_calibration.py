"""Calibration by temperature scaling: the metrics on hand-made examples, the fit on
over-confident scores, and the whole path on tiny runs (fit after training, the Predictor's
calibrated and raw scores, `lmtune evaluate`, `lmtune calibrate`, NER, refusals)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from conftest import make_task, tiny_config
from lmtune.evaluation.calibration import (CalibrationScores, calibration_metrics, fit_temperature, nll,
                                           probabilities)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---- the numbers ---------------------------------------------------------------------------------
def test_ece_mce_brier_nll_match_hand_computed_values():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.15, 0.85], [0.7, 0.3]])
    data = CalibrationScores(np.log(probs), np.array([0, 1, 1, 1]), "softmax")
    m = calibration_metrics(data)
    # top-class confidences .9 .9 .85 .7, right / wrong / right / wrong; 15 bins of width 1/15:
    # (13.3, 14.0] holds .9 .9 (accuracy .5), (12, 13.3] .85 (1), (10, 10.7] .7 (0)
    assert m["ece"] == pytest.approx((2 * 0.4 + 0.15 + 0.7) / 4)  # 0.4125
    assert m["mce"] == pytest.approx(0.7)
    assert m["brier"] == pytest.approx((0.02 + 1.62 + 0.045 + 0.98) / 4)
    assert m["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.1) + math.log(0.85) + math.log(0.3)) / 4)
    assert m["examples"] == 4


def test_multi_label_ece_counts_every_example_label_probability():
    p = np.array([[0.9, 0.25], [0.62, 0.1]])
    data = CalibrationScores(np.log(p / (1 - p)), np.array([[1, 0], [0, 0]]), "sigmoid")
    m = calibration_metrics(data)
    assert m["ece"] == pytest.approx((0.1 + 0.25 + 0.62 + 0.1) / 4)  # each alone in its bin
    assert m["brier"] == pytest.approx((0.01 + 0.0625 + 0.3844 + 0.01) / 4)
    assert m["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.75) + math.log(0.38) + math.log(0.9)) / 4)


def _scores(scale: float, seed: int = 0, n: int = 600, k: int = 3) -> CalibrationScores:
    """Logits that are right ~70% of the time, sharpened by `scale` (over-confident when > 1)."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), gold] += 1.2
    return CalibrationScores(logits * scale, gold, "softmax")


@pytest.mark.parametrize("scale, direction", [(8.0, 1), (0.2, -1)])
def test_temperature_keeps_the_argmax_and_lowers_nll(scale, direction):
    data = _scores(scale)
    t = fit_temperature(data)
    assert np.sign(math.log(t)) == direction  # over-confident: T > 1 softens; under-confident: T < 1
    assert (probabilities(data.scores, "softmax", t).argmax(-1) == data.scores.argmax(-1)).all()
    before, after = calibration_metrics(data), calibration_metrics(data, t)
    assert after["nll"] < before["nll"] - 0.05
    assert after["ece"] < before["ece"] / 2
    assert nll(data, t) <= min(nll(data, t * 1.05), nll(data, t / 1.05))  # a minimum, not just lower
    assert fit_temperature(data) == t  # deterministic


def test_sigmoid_fit_softens_over_confident_multi_label_scores():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, (300, 4))
    data = CalibrationScores((np.where(gold, 1.0, -1.0) + rng.normal(0, 1.5, gold.shape)) * 6, gold, "sigmoid")
    t = fit_temperature(data)
    assert t > 1 and nll(data, t) < nll(data, 1.0)


def test_data_without_confident_mistakes_fits_no_temperature():
    from lmtune.evaluation.calibration import fit_report

    gold = np.arange(40) % 2
    data = CalibrationScores(np.stack([1 - gold, gold], -1) * 3.0, gold, "softmax")  # all right
    record = fit_report(data, {"data": "validation"})
    assert record["temperature"] == 1.0 and "no temperature fitted" in record["note"]
    assert record["after"] == record["before"]


def test_bad_scores_are_clear_errors():
    with pytest.raises(ValueError, match="kind 'softmax2'"):
        calibration_metrics(CalibrationScores(np.zeros((2, 2)), np.zeros(2), "softmax2"))
    with pytest.raises(ValueError, match="at least one example"):
        fit_temperature(CalibrationScores(np.zeros((0, 3)), np.zeros(0), "softmax"))


# ---- tiny runs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cls_run(tiny_model, toy_data, tmp_path_factory):
    from lmtune import finetune

    # a high learning rate for few steps: a tiny model that is confident, and not always right
    cfg = tiny_config(tiny_model, toy_data, tmp_path_factory.mktemp("calibration"), epochs=2)
    return finetune(cfg, quiet=True).root


def test_training_fits_a_temperature_on_validation_data(cls_run, toy_data):
    record = json.loads((cls_run / "calibration.json").read_text())
    assert record["fitted_on"] == {"data": "validation", "file": str(toy_data["validation"])}
    assert record["kind"] == "softmax" and record["before"]["examples"] == 60
    assert record["after"]["nll"] <= record["before"]["nll"]
    assert 0.05 < record["temperature"] < 20 and record["temperature"] != pytest.approx(1.0, abs=1e-3)
    metrics = json.loads((cls_run / "metrics.json").read_text())
    assert metrics["calibration"] == {k: record[k] for k in ("temperature", "before", "after")}
    assert (cls_run / "reliability.png").stat().st_size > 1000


def test_predictions_use_the_temperature_and_raw_scores_stay_available(cls_run):
    import lmtune

    texts = ["good film", "the plot was awful", "quite a dull movie and it was so lovely"]
    calibrated, raw = lmtune.load(cls_run), lmtune.load(cls_run, calibrated=False)
    t = json.loads((cls_run / "calibration.json").read_text())["temperature"]
    assert calibrated.temperature == pytest.approx(t) and raw.temperature is None
    logits = np.stack(raw.logits([raw.task.make_record(x, None, i) for i, x in enumerate(texts)])[0])
    labels = raw.labels
    for scale, predictor in ((t, calibrated), (1.0, raw)):
        expected = _softmax(logits / scale)
        for row, prediction in zip(expected, predictor.predict(texts)):
            assert [prediction["probabilities"][label] for label in labels] == pytest.approx(row.tolist(), abs=1e-5)
    assert [p["label"] for p in calibrated.predict(texts)] == [labels[i] for i in logits.argmax(-1)]
    assert [p["label"] for p in raw.predict(texts)] == [labels[i] for i in logits.argmax(-1)]


def test_evaluate_reproduces_the_metrics_and_reports_calibrated_scores(cls_run, toy_data):
    from lmtune import evaluate

    metrics = evaluate(cls_run, toy_data["validation"], quiet=True)
    record = json.loads((cls_run / "calibration.json").read_text())
    recorded = json.loads((cls_run / "metrics.json").read_text())["validation"]
    assert metrics["accuracy"] == recorded["accuracy"]
    assert metrics["calibration"]["temperature"] == pytest.approx(record["temperature"])
    for side in ("before", "after"):  # the same data it was fitted on: the same figures
        assert metrics["calibration"][side]["ece"] == pytest.approx(record[side]["ece"], abs=1e-5)
    report = (cls_run / "eval" / "dev" / "report.txt").read_text()
    assert "calibrated (temperature" in report


def test_cli_predict_raw_scores(cls_run, capsys):
    from lmtune.cli import main

    scores = {}
    for flags in ((), ("--raw-scores",)):
        assert main(["predict", str(cls_run), "the plot was good", "--json", *flags]) == 0
        scores[flags] = json.loads(capsys.readouterr().out)["prediction"]
    calibrated, raw = scores[()], scores[("--raw-scores",)]
    assert calibrated["label"] == raw["label"] and calibrated["score"] != pytest.approx(raw["score"], abs=1e-6)


def test_calibrate_command_refits_and_keeps_the_previous_fit(cls_run, toy_data, tmp_path, capsys):
    from conftest import toy_rows, write_csv
    from lmtune.cli import main

    run = shutil.copytree(cls_run, tmp_path / "run")
    held_out = write_csv(tmp_path / "held.csv", toy_rows(80, seed=9))
    old = json.loads((run / "calibration.json").read_text())
    assert main(["calibrate", str(run), "--data", str(held_out)]) == 0
    out = capsys.readouterr().out
    assert "before" in out and "after" in out and "ece" in out
    new = json.loads((run / "calibration.json").read_text())
    assert new["fitted_on"]["data"] == str(held_out) and new["fitted_on"]["rows"] == 80
    assert new["previous"] == old and new["temperature"] != old["temperature"]
    assert new["after"]["nll"] <= new["before"]["nll"]
    import lmtune

    assert lmtune.load(run).temperature == pytest.approx(new["temperature"])


def test_ner_run_calibrates_every_labelled_word(tiny_model, ner_data, tmp_path):
    import lmtune
    from lmtune.data import read_table

    cfg = tiny_config(tiny_model, ner_data, tmp_path)
    cfg.task = "ner"
    run = lmtune.finetune(cfg, quiet=True).root
    record = json.loads((run / "calibration.json").read_text())
    words = sum(len(r.fields["tokens"]) for r in read_table(ner_data["validation"], "conll").records)
    assert record["kind"] == "softmax" and record["before"]["examples"] == words
    calibrated, raw = lmtune.load(run), lmtune.load(run, calibrated=False)
    sentence = ["alice", "met", "bob", "in", "paris"]
    records = [raw.task.make_record(sentence)]
    logits, encoded = raw.logits(records)
    (row, _), = raw.task.word_logits(logits, encoded)
    for scale, predictor in ((record["temperature"], calibrated), (1.0, raw)):
        probs = _softmax(row / scale)
        prediction = predictor.predict([sentence])[0]
        assert prediction["entities"]  # scores to compare
        for entity in prediction["entities"]:
            first = sentence.index(entity["text"].split()[0])
            span = range(first, first + len(entity["text"].split()))
            expected = np.mean([probs[i, raw.task.labels.index(prediction["tags"][i])] for i in span])
            assert entity["score"] == pytest.approx(expected, abs=1e-5)
    assert "calibration" in lmtune.evaluate(run, ner_data["validation"], quiet=True)


def test_qa_and_generation_refuse_calibration(tmp_path, capsys):
    from lmtune.cli import main
    from lmtune.config import Config

    for name in ("qa", "generation"):
        task = make_task(name)
        assert not task.calibratable
        with pytest.raises(ValueError, match=f"{name} runs cannot be calibrated"):
            task.calibration_scores([], None)
    cfg = Config()
    cfg.task = "qa"
    (tmp_path / "qa-run").mkdir()
    cfg.save(tmp_path / "qa-run" / "config.yaml")
    assert main(["calibrate", str(tmp_path / "qa-run"), "--data", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "qa runs cannot be calibrated" in err and "Traceback" not in err


def test_a_run_without_validation_data_predicts_raw_scores(tiny_model, toy_data, tmp_path):
    import lmtune

    cfg = tiny_config(tiny_model, toy_data, tmp_path, epochs=1)
    cfg.data.validation = None
    run = lmtune.finetune(cfg, quiet=True).root
    assert not (run / "calibration.json").exists() and not (run / "reliability.png").exists()
    assert "calibration" not in json.loads((run / "metrics.json").read_text())
    predictor = lmtune.load(run)
    assert predictor.temperature is None
    logits = predictor.logits([predictor.task.make_record("good film")], calibrated=False)[0][0]
    probs = predictor.predict(["good film"])[0]["probabilities"]
    assert [probs[label] for label in predictor.labels] == pytest.approx(_softmax(logits).tolist(), abs=1e-6)
