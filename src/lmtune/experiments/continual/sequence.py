"""The sequence file of `lmtune continual`: its steps, read and checked before anything trains,
so a mistake is one error naming the file, the step and the field, not a failure at step 3.

    name: tasks                # the continual run's folder name (default: the file's stem)
    heads: auto                # auto | shared | per-step (default: --continual.heads)
    labels: [a, b]             # a shared head's labels, in head order
    config:                    # a base run config, grouped as in a run YAML
      train: {epochs: 2}
    steps:
      - name: trec             # the step's run folder: letters, digits, - _ . (not first)
        train: trec/train.tsv  # paths are relative to this file's folder
        validation: trec/dev.tsv
        test: trec/test.tsv
        text_column: text      # text_column, text_pair_column, label_column: default config's data.*
        labels: [DESC, ENTY]   # this step's labels (default: those in its training file)
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...config import Config, ConfigError

TOP_KEYS = ("name", "heads", "labels", "config", "steps")
STEP_KEYS = ("name", "train", "validation", "test", "text_column", "text_pair_column", "label_column",
             "task", "labels")
FILE_KEYS = ("train", "validation", "test")
COLUMN_KEYS = ("text_column", "text_pair_column", "label_column")
TEXT_KEYS = (*COLUMN_KEYS, "task")
HEADS = ("auto", "shared", "per-step")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


@dataclass
class Step:
    """One step of a sequence: an ordinary run's data, and its label set if the file gives it."""

    name: str
    train: Path
    validation: Path | None = None
    test: Path | None = None
    text_column: str | None = None  # None (all three): the base config's data.* field
    text_pair_column: str | None = None
    label_column: str | None = None
    task: str | None = None  # None: the base config's
    labels: list[str] | None = None  # None: those in the training file
    line: int | None = None  # the line of the sequence file the step starts on


@dataclass
class Sequence:
    path: Path
    name: str
    heads: str | None  # None: the caller's default (--continual.heads)
    labels: list[str] | None  # a shared head's labels, in head order
    config: dict[str, Any]  # the base run config's groups, as in a run YAML
    steps: list[Step]


@dataclass
class Heads:
    """The classifier head(s) the steps train: one shared label set, or one group per step."""

    mode: str  # shared | per-step
    labels: list[str]  # every output of the head, in order
    groups: list[list[str]]  # shared: one group; per-step: each step's labels
    group_of_step: dict[str, int]  # step name -> index into groups


# ---- reading the file ---------------------------------------------------------------------
def read_sequence(path: str | Path) -> Sequence:
    """The sequence file, every field checked and every data file found, before any training."""
    path = Path(path)
    source = str(path)
    values, root = _load(path)
    _check_keys(values, TOP_KEYS, source)
    config, base = _base_config(values.get("config"), source)
    heads = values.get("heads")
    if heads is not None and heads not in HEADS:
        raise ConfigError(f"{source}: heads: {heads!r}: choose one of {', '.join(HEADS)}")
    labels = None if values.get("labels") is None else _label_list(values["labels"], f"{source}: labels")
    name = path.stem if values.get("name") is None else _folder_name(values["name"], f"{source}: name")
    raw_steps = values.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        got = "is missing" if raw_steps is None else f"is {raw_steps!r}"
        raise ConfigError(f"{source}: steps: {got}; give a list of steps, each with name: and train:")
    lines = _step_lines(root)
    steps = [_read_step(raw, index, lines.get(index), path)
             for index, raw in enumerate(raw_steps, start=1)]
    _check_distinct_names(steps, source)
    _check_tasks(steps, base.task, source)
    return Sequence(path, name, heads, labels, config, steps)


def _load(path: Path) -> tuple[dict[str, Any], yaml.Node]:
    """The file's mapping and its YAML node tree (for line numbers), read once."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give the sequence file (YAML) itself")
    if not path.is_file():
        raise ConfigError(f"{path}: sequence file not found")
    try:
        loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the sequence file: {exc}") from exc
    try:
        root = loader.get_single_node()
        values = None if root is None else loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    if not isinstance(values, dict):
        got = "it is empty" if values is None else f"got {type(values).__name__}"
        raise ConfigError(f"{path}: expected a mapping with steps: (and name:, heads:, labels:, "
                          f"config:); {got}")
    _check_duplicate_keys(root, str(path), set())
    return values, root


def _check_duplicate_keys(node: yaml.Node, source: str, seen_nodes: set[int]) -> None:
    """A key given twice is a mistake YAML hides (it keeps the last): say where."""
    if id(node) in seen_nodes:  # an alias: already walked
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                line = key.start_mark.line + 1
                if key.value in lines:
                    raise ConfigError(f"{source}: line {line}: key {key.value!r} is given twice (also on "
                                      f"line {lines[key.value]}); YAML would keep only the last")
                lines[key.value] = line
            _check_duplicate_keys(value, source, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, source, seen_nodes)


def _step_lines(root: yaml.Node) -> dict[int, int]:
    """Step number (1-based) -> the line it starts on."""
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "steps" and isinstance(value, yaml.SequenceNode):
            return {index: item.start_mark.line + 1 for index, item in enumerate(value.value, start=1)}
    return {}


def _check_keys(values: dict[Any, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in values:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}; {hint}allowed: {', '.join(allowed)}")


def _base_config(values: Any, source: str) -> tuple[dict[str, Any], Config]:
    """The `config:` groups, checked as a run YAML's are; the data files are the steps' own."""
    where = f"{source}: config"
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of groups (model, train, method, ...), got {values!r}")
    try:
        cfg = Config.from_dict(values, source=where)
    except TypeError as exc:  # a mapping or list where a number belongs
        raise ConfigError(f"{where}: a value has the wrong shape: {exc}") from exc
    for key in FILE_KEYS:
        if getattr(cfg.data, key) is not None:
            raise ConfigError(f"{where}: data.{key}: each step names its own files under steps:; "
                              "remove it here")
    return values, cfg


# ---- steps ----------------------------------------------------------------------------------
def _read_step(raw: Any, index: int, line: int | None, path: Path) -> Step:
    where = f"{path}: step {index}" + (f" (line {line})" if line else "")
    if raw is None or (isinstance(raw, dict) and not raw):
        raise ConfigError(f"{where}: is empty; give at least name: and train:")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping (name:, train:, ...), got {raw!r}")
    if isinstance(raw.get("name"), str) and _FOLDER_NAME.fullmatch(raw["name"]):
        where = f"{path}: step {raw['name']!r}"
    _check_keys(raw, STEP_KEYS, where)
    if raw.get("name") is None:
        raise ConfigError(f"{where}: name: missing; every step needs a name (it names the step's run folder)")
    name = _folder_name(raw["name"], f"{where}: name")
    where = f"{path}: step {name!r}"
    if raw.get("train") is None:
        raise ConfigError(f"{where}: train: missing; give the step's training file")
    folder = path.parent.absolute()
    files = {key: _data_file(raw.get(key), folder, f"{where}: {key}") for key in FILE_KEYS}
    texts = {key: _optional_text(raw.get(key), f"{where}: {key}") for key in TEXT_KEYS}
    labels = None if raw.get("labels") is None else _label_list(raw["labels"], f"{where}: labels")
    return Step(name, **files, **texts, labels=labels, line=line)


def _folder_name(value: Any, where: str) -> str:
    """A name that is safe as one folder name on every system."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{where}: expected a name, got {value!r}")
    name = str(value)
    if not _FOLDER_NAME.fullmatch(name):
        raise ConfigError(f"{where}: {name!r} cannot name a folder; use letters, digits, '-', '_' and '.' "
                          "(not first)")
    return name


def _data_file(value: Any, folder: Path, where: str) -> Path | None:
    """The file, relative to the sequence file's folder, that exists and is a file."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a file path, got {value!r}")
    resolved = folder / Path(value).expanduser()
    if resolved.is_dir():
        raise ConfigError(f"{where}: {resolved} is a directory, not a data file")
    if not resolved.is_file():
        names = [p.name for p in resolved.parent.iterdir() if p.is_file()] if resolved.parent.is_dir() else []
        close = difflib.get_close_matches(resolved.name, names, n=1)
        hint = f"; did you mean {resolved.parent / close[0]}?" if close else ""
        raise ConfigError(f"{where}: {resolved} does not exist{hint}")
    return resolved


def _optional_text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a name, got {value!r}")
    return value


def _label_list(value: Any, where: str) -> list[str]:
    """Distinct labels as text (whole numbers too: a label column of 0/1 reads as "0"/"1")."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of labels, e.g. [negative, positive]; "
                          f"got {value!r}")
    labels: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)) or not str(item).strip():
            raise ConfigError(f"{where}: {item!r} is not a label; labels are text or whole numbers "
                              "(quote yes/no/true/false: YAML reads them as booleans)")
        label = str(item).strip()
        if label in labels:
            raise ConfigError(f"{where}: {label!r} is listed twice; labels must be distinct")
        labels.append(label)
    return labels


def _check_distinct_names(steps: list[Step], source: str) -> None:
    first: dict[str, int] = {}
    for index, step in enumerate(steps, start=1):
        if step.name in first:
            raise ConfigError(f"{source}: step {step.name!r} (step {index}): name: step {first[step.name]} "
                              "has the same name; step names must be distinct (each names a run folder)")
        first[step.name] = index


def _check_tasks(steps: list[Step], default: str, source: str) -> None:
    """One task for the whole sequence, and one the continual strategies support."""
    kinds = [(step, step.task or default) for step in steps]
    first, first_kind = kinds[0]
    for step, kind in kinds[1:]:
        if kind != first_kind:
            raise ConfigError(f"{source}: step {step.name!r}: task: {kind!r} differs from step {first.name!r}'s "
                              f"{first_kind!r}; every step of a sequence has the same task")
    from ...tasks import TASKS, task_class

    if first_kind not in TASKS or not task_class(first_kind).learns_in_sequence:
        able = [name for name in TASKS if task_class(name).learns_in_sequence]
        raise ConfigError(f"{source}: step {first.name!r}: task: {first_kind!r} is not supported; continual "
                          f"learning supports {', '.join(able)} only")


# ---- labels and heads ---------------------------------------------------------------------
def read_step_labels(sequence: Sequence, base: Config) -> dict[str, list[str]]:
    """Each step's label set, read as a run of the step would read it (lmtune's readers, the
    classification task's label parsing and order), so heads are decided before any training."""
    return {step.name: _step_labels(sequence, step, base) for step in sequence.steps}


def _step_config(step: Step, base: Config) -> Config:
    cfg = copy.deepcopy(base)
    cfg.data.train = str(step.train)
    for key in COLUMN_KEYS:
        if getattr(step, key) is not None:
            setattr(cfg.data, key, getattr(step, key))
    return cfg


def _step_labels(sequence: Sequence, step: Step, base: Config) -> list[str]:
    from ...data.checks import check_columns
    from ...data.readers import read_table
    from ...tasks.classification import ClassificationTask

    where = f"{sequence.path}: step {step.name!r}"
    task = ClassificationTask(_step_config(step, base))
    try:
        dataset = read_table(step.train, task.cfg.data.format, usual=task.default_format)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{where}: train: {exc}") from exc
    # Named as the step's keys, not the run's flags: "set label_column: to the column ...".
    wanted = [(column, flag.lstrip("-").replace("-", "_") + ":" if flag else None)
              for column, flag in task.required_columns(dataset.columns)]
    missing = check_columns(dataset, wanted)
    if missing:
        raise ConfigError(f"{where}: {missing[0]}")
    if step.labels is None:
        try:
            task.fit(dataset)
        except ValueError as exc:
            raise ConfigError(f"{where}: train: {exc}") from exc
        return list(task.labels)
    known = set(step.labels)
    for record in dataset.records:
        for label in task.label_values(record):
            if label not in known:
                raise ConfigError(f"{where}: labels: {record.where}: label {label!r} is not in the step's "
                                  f"labels ({', '.join(step.labels)}); add it to labels:, or fix the row")
    return list(step.labels)


def resolve_heads(sequence: Sequence, step_labels: dict[str, list[str]], heads: str) -> Heads:
    """The head(s) the steps train: `heads` is auto | shared | per-step (the sequence file's
    heads:, else --continual.heads); auto picks shared when every step has the same labels
    (or the file lists them), per-step when no two steps share one."""
    source = str(sequence.path)
    if heads not in HEADS:
        raise ConfigError(f"{source}: heads: {heads!r}: choose one of {', '.join(HEADS)}")
    labels: dict[str, list[str]] = {}
    for step in sequence.steps:
        if step.name not in step_labels:
            raise ConfigError(f"{source}: step {step.name!r}: no label set given for it "
                              "(read_step_labels reads them)")
        labels[step.name] = list(step_labels[step.name])
    if heads == "auto":
        heads = _auto_heads(sequence, labels)
    return _shared_head(sequence, labels) if heads == "shared" else _per_step_heads(sequence, labels)


def _auto_heads(sequence: Sequence, labels: dict[str, list[str]]) -> str:
    if sequence.labels is not None:  # a listed label set is a shared head's
        return "shared"
    sets = {name: set(values) for name, values in labels.items()}
    first = next(iter(sets.values()))
    if all(values == first for values in sets.values()):
        return "shared"
    names = list(sets)
    overlapping = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if sets[a] & sets[b]]
    if not overlapping:
        return "per-step"
    a, b = next(((a, b) for a, b in overlapping if sets[a] != sets[b]), overlapping[0])
    common = [label for label in labels[a] if label in sets[b]]
    raise ConfigError(f"{sequence.path}: heads: auto: steps {a!r} and {b!r} share label(s) {', '.join(common)}, "
                      "but the steps' label sets are neither all the same (one shared head) nor all distinct "
                      "(a head per step); set heads: shared with a labels: list of every label, or rename "
                      "the labels so that no two steps share one")


def _shared_head(sequence: Sequence, labels: dict[str, list[str]]) -> Heads:
    head = list(sequence.labels) if sequence.labels is not None else list(labels[sequence.steps[0].name])
    known = set(head)
    for step in sequence.steps:
        for label in labels[step.name]:
            if label not in known:
                raise ConfigError(f"{sequence.path}: step {step.name!r}: label {label!r} in {step.train} is not "
                                  f"one the shared head knows ({', '.join(head)}); list every label under "
                                  "labels: in the sequence file, or set heads: per-step")
    return Heads("shared", head, [list(head)], {step.name: 0 for step in sequence.steps})


def _per_step_heads(sequence: Sequence, labels: dict[str, list[str]]) -> Heads:
    if sequence.labels is not None:
        raise ConfigError(f"{sequence.path}: labels: lists a shared head's labels, but heads is per-step; "
                          "remove labels:, or set heads: shared")
    owner: dict[str, str] = {}
    for step in sequence.steps:
        for label in labels[step.name]:
            if label in owner:
                raise ConfigError(f"{sequence.path}: step {step.name!r}: label {label!r} is also a label of step "
                                  f"{owner[label]!r}; with a head per step, label names must be distinct across "
                                  f"steps: rename them (e.g. '{step.name}/{label}'), or set heads: shared")
            owner[label] = step.name
    groups = [list(labels[step.name]) for step in sequence.steps]
    return Heads("per-step", [label for group in groups for label in group], groups,
                 {step.name: index for index, step in enumerate(sequence.steps)})
