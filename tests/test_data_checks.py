"""Every data check names the file, line and field, and nothing is dropped silently."""

from __future__ import annotations

import json

import pytest

from lmtune.config import Config
from lmtune.data.records import DataError
from lmtune.pipeline import prepare_data
from lmtune.tasks import get_task
from conftest import write_csv


def _cfg(train, validation=None, **data) -> Config:
    cfg = Config()
    cfg.data.train = str(train)
    cfg.data.validation = str(validation) if validation else None
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def _errors(cfg: Config) -> str:
    with pytest.raises(DataError) as info:
        prepare_data(cfg, get_task(cfg))
    return str(info.value)


GOOD = [("a fine film", "pos"), ("a dull film", "neg"), ("great acting", "pos"), ("poor plot", "neg")]


def test_empty_text_names_file_line_field(tmp_path):
    train = write_csv(tmp_path / "train.csv", GOOD + [("   ", "pos")])
    message = _errors(_cfg(train))
    assert f"{train}:6: field 'text': empty text" in message


def test_missing_label(tmp_path):
    train = write_csv(tmp_path / "train.csv", GOOD + [("an odd one", "")])
    assert f"{train}:6: field 'label': empty label" in _errors(_cfg(train))


def test_missing_column_is_one_error_naming_the_columns(tmp_path):
    train = write_csv(tmp_path / "train.csv", GOOD)
    message = _errors(_cfg(train, text_column="review"))
    assert message == (f"{train}: no column 'review' (columns: text, label); "
                       "set --text-column to the column that holds it")


def test_unseen_validation_label(tmp_path):
    train = write_csv(tmp_path / "train.csv", GOOD)
    dev = write_csv(tmp_path / "dev.csv", [("fine", "pos"), ("meh", "neutral")])
    message = _errors(_cfg(train, dev))
    assert f"{dev}:3: field 'label': label 'neutral' does not occur in {train}" in message


def test_undecodable_bytes(tmp_path):
    train = tmp_path / "train.csv"
    train.write_bytes(b"text,label\na fine film,pos\ncaf\xe9 bad,neg\ndull,neg\n")
    message = _errors(_cfg(train))
    assert f"{train}:3: undecodable bytes" in message and "UTF-8" in message


def test_wrong_field_count(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\na fine film,pos\nbad,neg,extra\ndull,neg\n")
    assert f"{train}:3: expected 2 fields (text, label), found 3" in _errors(_cfg(train))


def test_duplicates_and_overlap_are_warnings_with_lines(tmp_path):
    train = write_csv(tmp_path / "train.csv", GOOD + [("a fine film", "pos"), ("great acting", "neg")])
    dev = write_csv(tmp_path / "dev.csv", [("poor plot", "neg"), ("lovely", "pos")])
    cfg = _cfg(train, dev)
    splits, report, issues = prepare_data(cfg, get_task(cfg))
    text = [str(i) for i in issues]
    assert f"{train}:6: field 'text': duplicate of line 2 (kept; remove it if unintended)" in text
    assert any(t.startswith(f"{train}:7: field 'text': same text as line 4 with a different label")
               for t in text)
    assert any(t.startswith(f"{dev}:2: field 'text': also in the training data ({train}:5)") for t in text)
    assert len(splits["train"].records) == 6  # warnings keep rows
    assert report["train"]["warnings"] == 2 and report["validation"]["warnings"] == 1


def test_skip_policy_counts_every_dropped_row(tmp_path):
    train = tmp_path / "train.csv"
    train.write_bytes(b"text,label\na fine film,pos\n,neg\ncaf\xe9,neg\ndull,neg\ngood,\n")
    cfg = _cfg(train, on_error="skip")
    splits, report, _ = prepare_data(cfg, get_task(cfg))
    assert [r.line for r in splits["train"].records] == [2, 5]
    assert report["train"]["rows_skipped"] == 3
    assert report["train"]["rows_used"] + report["train"]["rows_skipped"] == 5


def test_all_errors_reported_at_once(tmp_path):
    train = write_csv(tmp_path / "train.csv", GOOD + [("", "pos"), ("x", ""), ("", "")])
    message = _errors(_cfg(train))
    assert "4 data problem(s)" in message


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_formats_read_the_same(tmp_path, suffix):
    path = tmp_path / f"train.{suffix}"
    if suffix in ("csv", "tsv"):
        write_csv(path, GOOD, delimiter="," if suffix == "csv" else "\t")
    elif suffix == "jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in GOOD))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": [t for t, _ in GOOD], "label": [l for _, l in GOOD]}), path)
    cfg = _cfg(path)
    task = get_task(cfg)
    splits, _, _ = prepare_data(cfg, task)
    assert [r.fields["text"] for r in splits["train"].records] == [t for t, _ in GOOD]
    assert task.labels == ["neg", "pos"]


def test_text_pairs_and_multi_label(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"premise": "a", "hypothesis": "b", "tags": ["sports", "politics"]},
            {"premise": "c", "hypothesis": "d", "tags": "science"},
            {"premise": "e", "hypothesis": "f", "tags": ["science", "sports"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(path, text_column="premise", text_pair_column="hypothesis", label_column="tags",
               multi_label=True)
    task = get_task(cfg)
    prepare_data(cfg, task)
    assert task.labels == ["politics", "science", "sports"]
    assert task.model_config()["problem_type"] == "multi_label_classification"


def test_separator_joined_multi_label(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("a", "x|y"), ("b", "y"), ("c", "z|x")])
    cfg = _cfg(train, multi_label=True, label_separator="|")
    task = get_task(cfg)
    prepare_data(cfg, task)
    assert task.labels == ["x", "y", "z"]
