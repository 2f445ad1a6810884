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


def test_version(capsys):
    import lmtune

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"lmtune {lmtune.__version__}\n" == "lmtune 0.1.0\n"


def _squeezed(text: str) -> str:
    """Text without whitespace: argparse re-wraps help lines (and may break at hyphens)."""
    return "".join(text.split())


def test_train_help_lists_every_config_field_with_default_and_description(capsys):
    import dataclasses

    from lmtune.config import Config, describe

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = _squeezed(capsys.readouterr().out)
    infos = [info for _, _, group in describe() for info in group]
    # describe() walks the dataclasses themselves: every field of every group, none left out.
    groups = [f for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory)]
    assert len(infos) == len(dataclasses.fields(Config)) - len(groups) + sum(
        len(dataclasses.fields(g.default_factory)) for g in groups)
    for info in infos:
        assert info.help, f"{info.key} has no description"
        flag = "--task" if info.key == "task" else f"--{info.key.replace('_', '-')}"
        default = "none" if info.value is None else str(info.value).lower() if isinstance(info.value, bool) \
            else str(info.value)
        metavar = "TASK" if info.key == "task" else f"[{info.type_name.upper()}]" if info.type_name == "bool" \
            else info.type_name.upper()
        assert _squeezed(f"{flag} {metavar} {info.help} (default: {default})") in shown, info.key
    assert _squeezed("--train.learning-rate FLOAT peak learning rate") in shown
    assert _squeezed("--train.epochs FLOAT passes over the training data (fractions allowed) (default: 3.0)") in shown


def test_config_command_prints_commented_yaml_that_loads_back_and_validates(toy_data, tmp_path, capsys):
    from lmtune.config import Config, describe, validate

    assert main(["config", "--task", "ner", "--method", "lora", "--lora.r", "4"]) == 0
    text = capsys.readouterr().out
    path = tmp_path / "ner.yaml"
    path.write_text(text)
    cfg = Config.from_yaml(path)
    assert (cfg.task, cfg.method.name, cfg.lora.r) == ("ner", "lora", 4)
    expected = Config()
    expected.task, expected.method.name, expected.lora.r = "ner", "lora", 4
    assert cfg == expected  # every other field at its default
    for _, _, infos in describe():
        for info in infos:
            leaf = info.key.rsplit(".", 1)[-1]
            assert any(line.strip().startswith(f"{leaf}:") and line.endswith(f"# {info.help}")
                       for line in text.splitlines()), info.key
    cfg.data.train = str(toy_data["train"])  # the one field a run cannot default
    validate(cfg)


def test_unknown_flags_suggest_the_closest_one(capsys):
    assert main(["train", "--train", "x.csv", "--train.learnig-rate", "1e-4"]) == 2
    assert ("unknown key 'train.learnig_rate'; did you mean --train.learning-rate?"
            in capsys.readouterr().err)
    assert main(["train", "--train", "x.csv", "--epoch", "3"]) == 2
    assert "unknown option '--epoch'; did you mean --epochs?" in capsys.readouterr().err
    assert main(["train", "--train", "x.csv", "--train.threshold", "0.3"]) == 2  # a field of another group
    assert "did you mean --eval.threshold?" in capsys.readouterr().err
    assert main(["predict", "runs/x", "--tpo-k", "2"]) == 2
    assert "unknown option '--tpo-k'; did you mean --top-k?" in capsys.readouterr().err


def test_model_card_has_hub_metadata_and_a_findable_base_model(cli_run, tiny_model):
    import yaml

    card = (cli_run / "README.md").read_text()
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["base_model"] == str(tiny_model.resolve())  # a local folder: its path
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert meta["tags"][0] == "lmtune" and "accuracy" in meta["metrics"]
    assert "None" not in card and "- test:" not in card  # no test split was given
    assert "- validation: `" in card


def test_packaged_aliases_are_named_by_their_hub_id():
    from lmtune.models import base_model_id

    assert base_model_id("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_id("smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_model_id("someone/some-model") == "someone/some-model"


def test_progress_lines_when_stdout_is_not_a_terminal(tiny_model, toy_data, tmp_path, capsys, monkeypatch):
    from lmtune.training.callbacks import ProgressBar

    monkeypatch.setattr(ProgressBar, "interval_s", 0.0)  # a line at every logged step
    assert main(["train", "--model", str(tiny_model), "--train", str(toy_data["train"]),
                 "--output-dir", str(tmp_path), "--run-name", "p", "--train.epochs", "1",
                 "--train.batch-size", "50", "--train.logging-steps", "1", "--model.max-length", "32",
                 "--train.num-threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if line.startswith("train step ")]
    assert [line.split()[2] for line in progress] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(" loss " in line and "samples/s" in line and "ETA" in line for line in progress)
    header = [line for line in lines if line.startswith("lmtune: classification / full on ")]
    assert len(header) == 1 and header[0].endswith("model inputs)")  # one unwrapped line
    assert len(header[0]) > 80
