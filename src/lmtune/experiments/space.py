"""The search space: a small YAML file over any config field, checked against the config schema.

    train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}   # float range (log scale)
    train.epochs: {low: 1, high: 4}                                # integer bounds: integers
    train.warmup_ratio: {low: 0.0, high: 0.2, step: 0.05}          # stepped range
    method.name: [full, lora]                                      # a list: choices
    lora.r: [4, 8, 16]

Keys are dotted (`train.learning_rate`) or nested under their group (`train: {learning_rate:
...}`). Every key, range end and choice is checked as a run's config is (unknown keys with the
closest one suggested, values in their field's range) before any trial runs.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, ConfigError, describe, validate

RANGE_KEYS = ("low", "high", "log", "step")
# The objective and where trials go are the search's own: a space cannot vary them.
NOT_SEARCHABLE = ("task", "train.metric_for_best", "train.greater_is_better", "train.output_dir",
                  "train.run_name", "train.overwrite", "train.progress")


@dataclass(frozen=True)
class Param:
    """One searched config field: a list of choices, or a numeric range."""

    key: str  # dotted config key, also the Optuna parameter name
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False  # integer bounds: suggest_int (ints stay ints)

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self, source: str) -> list[Any]:
        """Every value a grid search tries: the choices, an integer range, or a stepped float range."""
        if self.choices is not None:
            return list(self.choices)
        if self.integer:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None or self.log:
            raise ConfigError(f"{source}: {self.key}: a grid search needs a list of values or a stepped "
                              f"range ({{low: {self.low}, high: {self.high}, step: ...}}), not a continuous one")
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]

    def as_dict(self) -> Any:
        if self.choices is not None:
            return list(self.choices)
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    source: str  # the file it came from, for messages

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The trial's value for every searched key (Optuna define-by-run)."""
        return {p.key: p.suggest(trial) for p in self.params}

    def as_dict(self) -> dict[str, Any]:
        """Plain data (stored with the study, so a resume with another space is caught)."""
        return {p.key: p.as_dict() for p in self.params}

    def grid(self) -> dict[str, list[Any]]:
        return {p.key: p.grid_values(self.source) for p in self.params}


def load_space(space: str | Path | dict[str, Any], base: Config) -> SearchSpace:
    """The search space from a YAML file (or a dict), every key and value checked against the
    config schema and its ranges, before any trial runs."""
    source = "search space" if isinstance(space, dict) else str(space)
    if isinstance(space, dict):
        values: Any = space
    else:
        path = Path(space)
        if not path.is_file():
            raise ConfigError(f"{path}: search space file not found")
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(values, dict) or not values:
        raise ConfigError(f"{source}: expected a mapping of config keys to ranges or lists, e.g.\n"
                          "  train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}\n  method.name: [full, lora]")
    fields = {info.key: info for _, _, infos in describe() for info in infos}
    groups = {name for name, _, _ in describe() if name}
    params = []
    for key, value in _flattened(values, groups).items():
        key = str(key).replace("-", "_")
        _check_key(key, fields, groups, source)
        params.append(_param(key, value, fields[key].type_name, base, source))
    return SearchSpace(tuple(params), source)


def _flattened(values: dict[str, Any], groups: set[str]) -> dict[str, Any]:
    """`train: {learning_rate: {...}}` and `train.learning_rate: {...}` alike, as dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        is_range = isinstance(value, dict) and set(value) <= set(RANGE_KEYS)
        if str(key) in groups and isinstance(value, dict) and not is_range:
            flat.update({f"{key}.{sub}": subvalue for sub, subvalue in value.items()})
        else:
            flat[str(key)] = value
    return flat


def _check_key(key: str, fields: dict[str, Any], groups: set[str], source: str) -> None:
    from ..config import _closest_key

    if key in groups:
        raise ConfigError(f"{source}: {key!r} is a config group; search its fields ({key}.FIELD: ...)")
    if key not in fields:
        close = _closest_key(key)
        group = key.partition(".")[0]
        hint = (f"did you mean {close}?" if close else
                f"{group} has: {', '.join(k.partition('.')[2] for k in fields if k.startswith(group + '.'))}"
                if group in groups else f"config groups: {', '.join(sorted(groups))}")
        raise ConfigError(f"{source}: unknown config key {key!r}; {hint}")
    if key in NOT_SEARCHABLE or key.startswith(("search.", "serve.", "export.")):
        raise ConfigError(f"{source}: {key} cannot be searched: the search sets it (or it does not "
                          "change training); set it in the base config")


def _number(value: Any, what: str, source: str) -> float | int:
    """A YAML number; `1e-5` (which YAML reads as text) included."""
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{source}: {what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    try:
        number = float(str(value))
    except ValueError:
        raise ConfigError(f"{source}: {what} must be a number, got {value!r}") from None
    return int(number) if re.fullmatch(r"\s*[-+]?\d+\s*", str(value)) else number


def _param(key: str, value: Any, type_name: str, base: Config, source: str) -> Param:
    if isinstance(value, (list, tuple)):
        return _choices(key, list(value), type_name, base, source)
    if isinstance(value, dict):
        return _range(key, value, type_name, base, source)
    raise ConfigError(f"{source}: {key}: give a list of choices ([a, b, c]) or a range "
                      f"({{low: ..., high: ...[, log: true][, step: ...]}}), not {value!r}")


def _choices(key: str, values: list[Any], type_name: str, base: Config, source: str) -> Param:
    if not values:
        raise ConfigError(f"{source}: {key}: the list of choices is empty")
    choices = []
    for value in values:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{source}: {key}: each choice must be a single value, got {value!r}")
        if type_name in ("int", "float") and isinstance(value, str) and value.lower() not in ("none", "null"):
            value = _number(value, f"{key} choice {value!r}", source)
        _check_value(base, key, value, source)
        choices.append(value)
    if len(set(map(repr, choices))) < len(choices):
        raise ConfigError(f"{source}: {key}: the choices {values!r} repeat a value")
    return Param(key, choices=tuple(choices))


def _range(key: str, spec: dict[str, Any], type_name: str, base: Config, source: str) -> Param:
    import difflib

    for name in spec:
        if name not in RANGE_KEYS:
            close = difflib.get_close_matches(str(name), RANGE_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"a range has {', '.join(RANGE_KEYS)}"
            raise ConfigError(f"{source}: {key}: unknown range setting {name!r}; {hint}")
    if type_name not in ("int", "float"):
        raise ConfigError(f"{source}: {key} takes a {type_name}, not a number: give a list of choices")
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{source}: {key}: a range needs both low and high, got {spec!r}")
    low, high = _number(spec["low"], f"{key}.low", source), _number(spec["high"], f"{key}.high", source)
    step = None if spec.get("step") is None else _number(spec["step"], f"{key}.step", source)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{source}: {key}: log must be true or false, got {log!r}")
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError(f"{source}: {key}: bad range: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{source}: {key}: a log range needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{source}: {key}: step must be > 0 and cannot be combined with log, got {step}")
    integer = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    if type_name == "int" and not integer:
        if not all(float(v).is_integer() for v in (low, high, step) if v is not None):
            raise ConfigError(f"{source}: {key} takes whole numbers: give integer bounds, got {low}..{high}")
        low, high, step, integer = int(low), int(high), None if step is None else int(step), True
    for value in (low, high):  # the ends in the field's own range (e.g. warmup_ratio < 1)
        _check_value(base, key, value, source)
    return Param(key, low=low, high=high, log=log, step=step, integer=integer)


def _check_value(base: Config, key: str, value: Any, source: str) -> None:
    """`value` set on the base config must pass the same checks a run's config does."""
    trial = copy.deepcopy(base)
    trial.override(key, value, source)
    try:
        validate(trial)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {key}: {value!r} cannot be used: {exc}") from None
