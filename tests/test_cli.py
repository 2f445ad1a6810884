"""The `lmtune` command end to end on the tiny model: train, evaluate, predict, data check."""

from __future__ import annotations

import json

import pytest

from lmtune.cli import main
from conftest import write_csv


@pytest.fixture(scope="module")
def cli_run(tiny_model, toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-runs")
    code = main(["train", "--model", str(tiny_model), "--train", str(toy_data["train"]),
                 "--validation", str(toy_data["validation"]), "--output-dir", str(out),
                 "--run-name", "cli", "--train.epochs", "8", "--train.learning-rate", "3e-3",
                 "--train.progress", "false", "--model.max_length=32"])
    assert code == 0
    return out / "cli"


def test_train_applies_overrides(cli_run):
    config = (cli_run / "config.yaml").read_text()
    assert "epochs: 8.0" in config and "learning_rate: 0.003" in config and "max_length: 32" in config


def test_predict_texts_and_files(cli_run, tmp_path, capsys):
    assert main(["predict", str(cli_run), "the film was good", "awful and dull"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"]
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "superb", "id": 1}\n{"text": "poor", "id": 2}\n')
    assert main(["predict", str(cli_run), "--input", str(source), "--output", str(tmp_path / "p.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2]
    assert [r["prediction"]["label"] for r in rows] == ["pos", "neg"]


def test_evaluate_command(cli_run, toy_data, capsys):
    assert main(["evaluate", str(cli_run), "--data", str(toy_data["validation"])]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "macro avg" in out


def test_data_check_lists_problems_with_counts(tiny_model, tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", [("good film", "pos"), ("", "neg"), ("good film", "pos"),
                                               ("bad " * 40, "neg")])
    dev = write_csv(tmp_path / "dev.csv", [("bad", "meh")])
    code = main(["data", "check", "--model", str(tiny_model), "--train", str(train),
                 "--validation", str(dev), "--max-length", "16"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"ERROR   {train}:3: field 'text': empty text" in out
    assert f"WARNING {train}:4: field 'text': duplicate of line 2" in out
    assert f"ERROR   {dev}:2: field 'label': label 'meh' does not occur in {train}" in out
    assert "1 over max length 16 (would be truncated)" in out
    assert "2 error(s), 1 warning(s)" in out


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["train", "--train", str(tmp_path / "missing.csv"), "--model", str(tmp_path)]) == 2
    assert "lmtune: error:" in capsys.readouterr().err
    assert main(["train", "--train", "x.csv", "--train.epoch", "2"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.epoch'" in err and "epochs" in err
    assert main(["train", "--train", "x.csv", "--train.batch-size", "many"]) == 2
    assert "train.batch_size expects a number, got 'many'" in capsys.readouterr().err
