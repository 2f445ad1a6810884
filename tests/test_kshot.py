"""K-shot sampling (--train.examples-per-class): balanced, seeded, in file order, refused where
it cannot be honoured, and wired through the data report, a real run and the CLI."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lmtune.cli import _normalized, build_config, main, make_parser
from lmtune.config import Config, ConfigError, validate
from lmtune.data.records import Record
from lmtune.data.sampling import sample_per_class
from lmtune.pipeline import finetune, prepare_data
from lmtune.tasks import get_task
from conftest import make_task, tiny_config, write_csv


def _records(labels: list[str]) -> list[Record]:
    return [Record({"text": f"row {i}", "label": label}, "data.csv", i + 2) for i, label in enumerate(labels)]


def _label(record: Record) -> list[str]:
    return [record.fields["label"]]


LABELS = ["a", "b", "c"] * 6 + ["a", "a", "c"]  # a: 8, b: 6, c: 7, interleaved


def test_sample_is_balanced_seeded_and_in_file_order():
    records = _records(LABELS)
    sample = sample_per_class(records, _label, 3, seed=42, source="data.csv")
    assert Counter(r.fields["label"] for r in sample) == {"a": 3, "b": 3, "c": 3}
    lines = [r.line for r in sample]
    assert lines == sorted(lines) and len(set(lines)) == 9
    again = sample_per_class(records, _label, 3, seed=42, source="data.csv")
    assert [r.line for r in again] == lines
    other = sample_per_class(records, _label, 3, seed=7, source="data.csv")
    assert [r.line for r in other] != lines
    # The draw does not depend on the order classes first appear in (each class's rows kept in order).
    grouped = sorted(records, key=lambda r: r.fields["label"], reverse=True)  # c rows, b rows, a rows
    assert sorted(r.line for r in sample_per_class(grouped, _label, 3, 42, "data.csv")) == lines


def test_multi_label_draws_until_every_label_has_k_counting_earlier_draws():
    records = _records(["a|b"] * 4 + ["b"] * 4 + ["c"] * 3 + ["b|c"] * 2)

    def labels(record: Record) -> list[str]:
        return record.fields["label"].split("|")

    sample = sample_per_class(records, labels, 2, seed=1, source="data.csv")
    per_label = Counter(label for r in sample for label in labels(r))
    assert per_label["a"] == 2 and per_label["b"] >= 2 and per_label["c"] == 2
    # a's two rows (both a|b) already give b its 2, so b draws nothing; c draws 2 more.
    assert len(sample) == 4
    assert [r.fields["label"] for r in sample[:2]] == ["a|b", "a|b"]
    assert [r.line for r in sample] == sorted(r.line for r in sample)


def test_a_class_short_of_k_is_refused_naming_it_and_the_file():
    with pytest.raises(ConfigError) as error:
        sample_per_class(_records(LABELS), _label, 7, seed=42, source="/x/train.tsv")
    message = str(error.value)
    assert message.startswith("--train.examples-per-class 7: class 'b' has only 6 rows in /x/train.tsv")
    assert "'a'" not in message and "'c'" not in message  # they have 7 or more
    assert "lower --train.examples-per-class or add rows" in message


def test_classification_says_its_classes_and_other_tasks_refuse():
    single = make_task("classification")
    assert single.has_classes and single.record_classes(_records(["pos"])[0]) == ["pos"]
    multi = make_task("classification", **{"data.multi_label": True, "data.label_separator": "|"})
    assert multi.record_classes(_records(["x| y"])[0]) == ["x", "y"]
    ner = make_task("ner")
    assert not ner.has_classes
    with pytest.raises(ConfigError, match="ner has no classes to sample K rows of each from"):
        ner.record_classes(_records(["O"])[0])


def test_a_negative_k_is_refused_at_validation(toy_data):
    cfg = Config()
    cfg.data.train = str(toy_data["train"])
    cfg.train.examples_per_class = -1
    with pytest.raises(ConfigError, match="--train.examples-per-class must be >= 0"):
        validate(cfg)


def test_a_task_without_classes_is_refused_before_any_file_is_read(tmp_path):
    cfg = Config()
    cfg.task = "ner"
    cfg.data.train = str(tmp_path / "missing.conll")  # never opened: the refusal comes first
    cfg.train.examples_per_class = 4
    with pytest.raises(ConfigError, match="--train.examples-per-class: ner has no classes"):
        prepare_data(cfg, get_task(cfg))


def test_prepare_data_samples_train_only_and_reports_it(toy_data):
    cfg = Config()
    cfg.data.train, cfg.data.validation = str(toy_data["train"]), str(toy_data["validation"])
    cfg.train.examples_per_class = 5
    splits, report, _ = prepare_data(cfg, task := get_task(cfg))
    assert Counter(r.fields["label"] for r in splits["train"].records) == {"neg": 5, "pos": 5}
    assert report["train"]["rows_read"] == 200
    assert report["train"]["rows_used"] == report["train"]["rows_sampled"] == 10
    assert report["train"]["examples_per_class"] == 5
    assert report["validation"]["rows_used"] == len(splits["validation"].records) == 60
    assert task.label_counts == {"neg": 5, "pos": 5}  # refit on the sample
    assert splits["train"].notes[-1] == "train: 10 of 200 rows drawn, 5 per class (seed 42)"


def test_a_class_whose_rows_all_had_errors_is_refused(tmp_path):
    rows = [(f"good film {i}", "pos") for i in range(4)] + [(f"bad film {i}", "neg") for i in range(4)]
    train = write_csv(tmp_path / "train.csv", [*rows, ("", "meh")])
    cfg = Config()
    cfg.data.train, cfg.data.on_error = str(train), "skip"
    cfg.train.examples_per_class = 2
    with pytest.raises(ConfigError, match=r"class\(es\) 'meh' have no rows left in .*train\.csv"):
        prepare_data(cfg, get_task(cfg))


def test_a_kshot_run_trains_on_k_rows_per_class(tiny_model, toy_data, tmp_path, capsys):
    cfg = tiny_config(tiny_model, toy_data, tmp_path, examples_per_class=4, epochs=2)
    run = finetune(cfg)
    metrics = json.loads(run.metrics.read_text())
    train = metrics["data"]["train"]
    assert (train["rows_read"], train["rows_used"], train["rows_sampled"], train["examples_per_class"]) \
        == (200, 8, 8, 4)
    assert metrics["training"]["steps"] == 2  # 8 rows fit one batch of 16: one step an epoch
    out = capsys.readouterr().out
    assert "train: 8 of 200 rows drawn, 4 per class (seed 42)" in out
    assert "8 training examples" in out


def test_the_cli_flag_parses_and_is_listed(tiny_model, toy_data, capsys):
    args, extra = make_parser().parse_known_args(_normalized(
        ["train", "--train", str(toy_data["train"]), "--train.examples-per-class", "8"]))
    assert build_config(args, extra).train.examples_per_class == 8
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--train.examples-per-class" in capsys.readouterr().out
    code = main(["data", "check", "--model", str(tiny_model), "--train", str(toy_data["train"]),
                 "--train.examples_per_class", "3"])
    out = capsys.readouterr().out
    assert code == 0 and "train: 6 of 200 rows drawn, 3 per class (seed 42)" in out
    assert "6 drawn, 3 per class; the figures below are theirs" in out
