"""The continual sequence file: read and checked before anything trains (every mistake is one
ConfigError naming the file, the step and the field), step label sets read as a run reads them,
and the head(s) decided from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmtune.config import Config, ConfigError
from lmtune.experiments.continual.sequence import (Heads, Sequence, Step, read_sequence, read_step_labels,
                                                   resolve_heads)


def _tsv(path: Path, rows: list[tuple[str, str]], header: str = "text\tlabel") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *("\t".join(row) for row in rows)]) + "\n")
    return path


def _sequence_file(folder: Path, text: str, name: str = "tasks.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """trec/ and news/ training files (and a trec dev file) beside the sequence file."""
    _tsv(tmp_path / "trec" / "train.tsv", [("what is it", "DESC"), ("who is she", "HUM"),
                                            ("what was that", "DESC")])
    _tsv(tmp_path / "trec" / "dev.tsv", [("who was he", "HUM")])
    _tsv(tmp_path / "news" / "train.tsv", [("goal scored", "sports"), ("vote held", "politics")])
    return tmp_path


VALID = """\
name: my-run
heads: per-step
config:
  train: {epochs: 2}
steps:
  - name: trec
    train: trec/train.tsv
    validation: trec/dev.tsv
    label_column: label
  - name: news
    train: {news}
    task: classification
    labels: [sports, politics]
"""


def test_a_valid_file_parses_with_paths_resolved_against_its_folder(data, monkeypatch):
    news = data / "news" / "train.tsv"
    _sequence_file(data, VALID.replace("{news}", str(news)))
    monkeypatch.chdir(data.parent)  # a relative sequence path; step paths follow the file's folder
    path = Path(data.name) / "tasks.yaml"
    sequence = read_sequence(path)
    assert (sequence.path, sequence.name, sequence.heads, sequence.labels) == (path, "my-run", "per-step", None)
    assert sequence.config == {"train": {"epochs": 2}}
    trec, news_step = sequence.steps
    assert trec == Step("trec", data / "trec" / "train.tsv", data / "trec" / "dev.tsv", None,
                        None, None, "label", None, None, line=6)
    assert news_step.train == news and news_step.line == 10  # an absolute path is kept as it is
    assert news_step.labels == ["sports", "politics"] and news_step.task == "classification"
    assert trec.train.is_absolute()


def test_name_defaults_to_the_file_stem_and_optional_parts_to_none(data):
    sequence = read_sequence(_sequence_file(data, "steps:\n  - {name: trec, train: trec/train.tsv}\n",
                                            name="my-seq.yml"))
    assert (sequence.name, sequence.heads, sequence.labels, sequence.config) == ("my-seq", None, None, {})
    assert sequence.steps[0].validation is None and sequence.steps[0].line == 2


ONE = "  - name: trec\n    train: trec/train.tsv\n"
BAD_FILES = [
    ("[1, 2]\n", ["expected a mapping with steps:", "got list"]),
    ("", ["it is empty"]),
    ("steps: [\n", ["not valid YAML"]),
    ("step:\n" + ONE, ["unknown key 'step'", "did you mean 'steps'?", "allowed: name, heads, labels, config, steps"]),
    ("name: x\n", ["steps: is missing", "name: and train:"]),
    ("steps: []\n", ["steps: is []"]),
    ("steps: trec\n", ["steps: is 'trec'"]),
    ("steps:\n  - trec\n", ["step 1 (line 2): expected a mapping", "'trec'"]),
    ("steps:\n  -\n", ["step 1 (line 2): is empty"]),
    ("steps:\n" + ONE + "  - {}\n", ["step 2 (line 4): is empty", "name: and train:"]),
    ("steps:\n  - train: trec/train.tsv\n", ["step 1 (line 2): name: missing"]),
    ("steps:\n  - name: trec\n", ["step 'trec': train: missing"]),
    ("steps:\n  - name: trec\n    trian: trec/train.tsv\n",
     ["step 'trec': unknown key 'trian'", "did you mean 'train'?", "allowed: name, train, validation"]),
    ("steps:\n" + ONE + ONE, ["step 'trec' (step 2): name: step 1 has the same name"]),
    ("steps:\n  - {name: a b, train: trec/train.tsv}\n", ["step 1 (line 2): name: 'a b' cannot name a folder"]),
    ("steps:\n  - {name: .hidden, train: trec/train.tsv}\n", ["name: '.hidden' cannot name a folder"]),
    ("steps:\n  - {name: a/b, train: trec/train.tsv}\n", ["name: 'a/b' cannot name a folder"]),
    ("steps:\n  - {name: trec, train: trec/tran.tsv}\n",
     ["step 'trec': train: {data}/trec/tran.tsv does not exist", "did you mean {data}/trec/train.tsv?"]),
    ("steps:\n  - {name: trec, train: trec/train.tsv, validation: trec}\n",
     ["step 'trec': validation: {data}/trec is a directory"]),
    ("steps:\n  - {name: trec, train: trec/train.tsv, test: [a]}\n", ["step 'trec': test: expected a file path"]),
    ("steps:\n  - {name: trec, train: trec/train.tsv, task: ner}\n",
     ["step 'trec': task: 'ner' is not supported", "supports classification only"]),
    ("config: {task: qa}\nsteps:\n" + ONE, ["step 'trec': task: 'qa' is not supported"]),
    ("steps:\n" + ONE + "  - {name: b, train: trec/train.tsv, task: ner}\n",
     ["step 'b': task: 'ner' differs from step 'trec''s 'classification'"]),
    ("steps:\n  - {name: trec, train: trec/train.tsv, label_column: 3}\n",
     ["step 'trec': label_column: expected a name"]),
    ("heads: sharde\nsteps:\n" + ONE, ["heads: 'sharde': choose one of auto, shared, per-step"]),
    ("labels: []\nsteps:\n" + ONE, ["labels: expected a non-empty list"]),
    ("labels: a\nsteps:\n" + ONE, ["labels: expected a non-empty list", "got 'a'"]),
    ("labels: [a, b, a]\nsteps:\n" + ONE, ["labels: 'a' is listed twice"]),
    ("labels: [yes, no]\nsteps:\n" + ONE, ["labels: True is not a label", "quote yes/no"]),
    ("steps:\n  - {name: trec, train: trec/train.tsv, labels: [a, {b: c}]}\n",
     ["step 'trec': labels: {'b': 'c'} is not a label"]),
    ("name: ../up\nsteps:\n" + ONE, ["name: '../up' cannot name a folder"]),
    ("config:\n  train: {epoch: 2}\nsteps:\n" + ONE, ["config: unknown key 'train.epoch'; did you mean train.epochs?"]),
    ("config:\n  trian: {epochs: 2}\nsteps:\n" + ONE, ["config: unknown key 'trian.epochs'"]),
    ("config: [1]\nsteps:\n" + ONE, ["config: expected a mapping of groups"]),
    ("config:\n  train: {epochs: {x: 1}}\nsteps:\n" + ONE, ["config: a value has the wrong shape"]),
    ("config:\n  data: {train: x.tsv}\nsteps:\n" + ONE, ["config: data.train: each step names its own files"]),
    ("steps:\n  - name: trec\n    train: trec/train.tsv\n    train: trec/dev.tsv\n",
     ["line 4: key 'train' is given twice (also on line 3)"]),
]


@pytest.mark.parametrize("text, expected", BAD_FILES, ids=[f"bad{i}" for i in range(len(BAD_FILES))])
def test_each_mistake_is_one_error_naming_the_file_step_and_field(data, text, expected):
    path = _sequence_file(data, text)
    with pytest.raises(ConfigError) as caught:
        read_sequence(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for part in expected:
        assert part.replace("{data}", str(data)) in message, message


def test_a_missing_or_directory_sequence_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="sequence file not found"):
        read_sequence(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        read_sequence(tmp_path)


# ---- step labels ----------------------------------------------------------------------------
def _read(folder: Path, steps: str) -> Sequence:
    return read_sequence(_sequence_file(folder, "steps:\n" + steps))


def test_step_labels_are_read_from_each_training_file_sorted_as_a_run_sorts_them(data):
    _tsv(data / "nums.tsv", [("a", "10"), ("b", "2"), ("c", "10")])
    sequence = _read(data, ONE + "  - {name: news, train: news/train.tsv}\n  - {name: nums, train: nums.tsv}\n")
    assert read_step_labels(sequence, Config()) == {
        "trec": ["DESC", "HUM"], "news": ["politics", "sports"], "nums": ["2", "10"]}


def test_a_steps_own_labels_are_kept_in_its_order_when_the_file_stays_within_them(data):
    sequence = _read(data, ONE + "    labels: [HUM, LOC, DESC]\n")
    assert read_step_labels(sequence, Config()) == {"trec": ["HUM", "LOC", "DESC"]}
    outside = _read(data, ONE + "    labels: [DESC, LOC]\n")
    with pytest.raises(ConfigError) as caught:
        read_step_labels(outside, Config())
    train = data / "trec" / "train.tsv"
    assert str(caught.value).startswith(f"{outside.path}: step 'trec': labels: {train}:3: label 'HUM' "
                                        "is not in the step's labels (DESC, LOC)")


def test_columns_come_from_the_step_else_the_base_config(data):
    _tsv(data / "other.tsv", [("x", "a"), ("y", "b")], header="sentence\ty")
    step_columns = _read(data, "  - {name: o, train: other.tsv, text_column: sentence, label_column: y}\n")
    assert read_step_labels(step_columns, Config()) == {"o": ["a", "b"]}
    base = Config.from_dict({"data": {"text_column": "sentence", "label_column": "y"}})
    assert read_step_labels(_read(data, "  - {name: o, train: other.tsv}\n"), base) == {"o": ["a", "b"]}


def test_a_missing_column_names_the_step_file_and_column_and_lists_the_columns(data):
    _tsv(data / "other.tsv", [("x", "a"), ("y", "b")], header="text\tlabels")
    sequence = _read(data, "  - {name: o, train: other.tsv}\n")
    with pytest.raises(ConfigError) as caught:
        read_step_labels(sequence, Config())
    message = str(caught.value)
    assert message.startswith(f"{sequence.path}: step 'o': {data / 'other.tsv'}: no column 'label' "
                              "(columns: text, labels)"), message
    assert "did you mean 'labels'? Set label_column: labels" in message


def test_an_empty_or_single_label_training_file_is_an_error_for_its_step(data):
    (data / "empty.tsv").write_text("text\tlabel\n")
    with pytest.raises(ConfigError) as caught:
        read_step_labels(_read(data, "  - {name: e, train: empty.tsv}\n"), Config())
    assert "step 'e': train: " in str(caught.value) and "file has no rows" in str(caught.value)
    _tsv(data / "one.tsv", [("x", "a"), ("y", "a")])
    with pytest.raises(ConfigError, match="step 'one': train: .*found 1 distinct label"):
        read_step_labels(_read(data, "  - {name: one, train: one.tsv}\n"), Config())


# ---- heads ----------------------------------------------------------------------------------
def _steps(*names: str, labels: list[str] | None = None) -> Sequence:
    return Sequence(Path("seq.yaml"), "seq", None, labels, {},
                    [Step(name, Path(f"{name}.tsv")) for name in names])


def test_auto_picks_a_shared_head_when_every_step_has_the_same_labels():
    heads = resolve_heads(_steps("a", "b"), {"a": ["neg", "pos"], "b": ["neg", "pos"]}, "auto")
    assert heads == Heads("shared", ["neg", "pos"], [["neg", "pos"]], {"a": 0, "b": 0})


def test_auto_picks_a_head_per_step_when_no_two_steps_share_a_label():
    heads = resolve_heads(_steps("a", "b"), {"a": ["x", "y"], "b": ["z"]}, "auto")
    assert heads == Heads("per-step", ["x", "y", "z"], [["x", "y"], ["z"]], {"a": 0, "b": 1})


def test_auto_with_labels_listed_is_a_shared_head_in_their_order():
    heads = resolve_heads(_steps("a", "b", labels=["z", "y", "x"]), {"a": ["x", "y"], "b": ["z"]}, "auto")
    assert heads == Heads("shared", ["z", "y", "x"], [["z", "y", "x"]], {"a": 0, "b": 0})


def test_auto_with_overlapping_label_sets_names_the_two_steps_and_the_shared_labels():
    labels = {"a": ["x", "y"], "b": ["q"], "c": ["y", "z"]}
    with pytest.raises(ConfigError) as caught:
        resolve_heads(_steps("a", "b", "c"), labels, "auto")
    message = str(caught.value)
    assert message.startswith("seq.yaml: heads: auto: steps 'a' and 'c' share label(s) y"), message
    assert "heads: shared with a labels: list" in message


def test_shared_takes_the_first_steps_labels_and_rejects_a_label_it_does_not_know():
    heads = resolve_heads(_steps("a", "b"), {"a": ["x", "y", "z"], "b": ["z", "x"]}, "shared")
    assert heads == Heads("shared", ["x", "y", "z"], [["x", "y", "z"]], {"a": 0, "b": 0})
    with pytest.raises(ConfigError) as caught:
        resolve_heads(_steps("a", "b"), {"a": ["x", "y"], "b": ["x", "w"]}, "shared")
    assert str(caught.value) == ("seq.yaml: step 'b': label 'w' in b.tsv is not one the shared head knows "
                                 "(x, y); list every label under labels: in the sequence file, or set "
                                 "heads: per-step")


def test_per_step_needs_distinct_label_names_across_steps_and_no_shared_labels_list():
    heads = resolve_heads(_steps("a", "b"), {"a": ["x"], "b": ["y", "z"]}, "per-step")
    assert heads == Heads("per-step", ["x", "y", "z"], [["x"], ["y", "z"]], {"a": 0, "b": 1})
    with pytest.raises(ConfigError, match=r"step 'b': label 'x' is also a label of step 'a'"):
        resolve_heads(_steps("a", "b"), {"a": ["x"], "b": ["y", "x"]}, "per-step")
    with pytest.raises(ConfigError, match="labels: lists a shared head's labels, but heads is per-step"):
        resolve_heads(_steps("a", labels=["x"]), {"a": ["x"]}, "per-step")


def test_an_unknown_heads_mode_or_a_step_without_labels_is_an_error():
    with pytest.raises(ConfigError, match="seq.yaml: heads: 'both': choose one of auto, shared, per-step"):
        resolve_heads(_steps("a"), {"a": ["x"]}, "both")
    with pytest.raises(ConfigError, match="seq.yaml: step 'b': no label set"):
        resolve_heads(_steps("a", "b"), {"a": ["x"]}, "auto")


def test_read_labels_then_heads_end_to_end(data):
    sequence = _read(data, ONE + "  - {name: news, train: news/train.tsv}\n")
    heads = resolve_heads(sequence, read_step_labels(sequence, Config()), "auto")
    assert heads.mode == "per-step" and heads.labels == ["DESC", "HUM", "politics", "sports"]
