"""A view over many runs: list, sort, filter and compare run folders (`lmtune runs`).

Every run folder under a directory counts, at any depth (a search's trials are run folders
under its study folder: runs/<study>/trial-003/), so one listing shows single runs and
searches alike. The command prints what `list_runs` and `compare_runs` return, so a dashboard
can show the same thing from the same code.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..run import RunFolder

# Sort/filter keys that name a column of the listing, and the summary field each reads.
COLUMNS = {"name": "name", "task": "task", "method": "method", "model": "model", "status": "status",
           "metric": "value", "value": "value", "time": "seconds", "seconds": "seconds",
           "started": "started"}
# Config keys that name or place a run, or only change what is printed or where it is tracked,
# and groups read by other commands: never listed as "hyperparameters that differ".
NOT_HYPERPARAMETERS = {"train.run_name", "train.output_dir", "train.overwrite", "train.progress",
                       "train.report_to", "train.tracking_uri"}
NOT_HYPERPARAMETER_GROUPS = ("serve.", "export.", "search.")
# Files besides config.yaml that only a run folder has (a study folder may keep a config.yaml).
RUN_FILES = ("status.json", "metrics.json", "train_log.jsonl", "model", "checkpoints")
# Fields of an evaluation row in train_log.jsonl that are not metrics.
LOG_FIELDS = {"kind", "step", "epoch", "best", "evals_since_best", "early_stop"}


@dataclass
class RunSummary:
    """One run as `lmtune runs` lists it."""

    name: str  # its path under the listed folder: "sst2-lora", "study/trial-003"
    path: Path
    task: str | None
    method: str | None
    model: str | None  # the base model as the config names it (a local folder by its name)
    status: str  # finished | running | failed | interrupted
    metric: str | None  # train.metric_for_best
    value: float | None  # its best validation value (an unfinished run: the best evaluation so far)
    seconds: float | None  # training time of a finished run, else time since (or until) it stopped
    started: float | None  # when its last training process started (Unix time)
    note: str = ""  # failed: the error; interrupted: what stopped it
    metrics: dict[str, Any] = field(default_factory=dict)  # validation scalars; test ones as test.<name>
    config: dict[str, Any] = field(default_factory=dict)  # flattened: {"train.learning_rate": 3e-05, ...}

    def get(self, key: str) -> Any:
        """A column (status, time, ...), then a metric (accuracy, test.f1), then a config key."""
        if key in COLUMNS:
            return getattr(self, COLUMNS[key])
        if key in self.metrics:
            return self.metrics[key]
        return self.config.get(key)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def list_runs(directory: str | Path = "runs", now: float | None = None) -> list[RunSummary]:
    """Every run folder under `directory` (or `directory` itself, if it is one), by name."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (runs are under --train.output-dir, runs/ by default)")
    folders = run_folders(root)
    if not folders:
        raise FileNotFoundError(f"{root}: no run folders in it (a run folder holds config.yaml and what "
                                "training wrote: status.json, metrics.json, ...); train one with `lmtune train`")
    now = time.time() if now is None else now
    return [summarize(folder, root, now) for folder in folders]


def run_folders(root: Path) -> list[Path]:
    """Run folders at any depth under `root`, sorted; a run folder's own subfolders are not searched."""
    if is_run_folder(root):
        return [root]
    found = []
    for here, subfolders, _ in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        if Path(here) != root and is_run_folder(Path(here)):
            found.append(Path(here))
            subfolders[:] = []
    return sorted(found)


def is_run_folder(path: Path) -> bool:
    return (path / "config.yaml").is_file() and any((path / name).exists() for name in RUN_FILES)


def summarize(folder: Path, root: Path | None = None, now: float | None = None) -> RunSummary:
    """What one run folder says about itself: config, status, best metric, time."""
    now = time.time() if now is None else now
    run = RunFolder(folder)
    config = flatten(_read_yaml(run.config))
    status, note = run.current_status(now)
    record = run.read_status()
    results = read_json(run.metrics)
    metrics = _result_metrics(results) if results else _log_metrics(run.log)
    metric = config.get("train.metric_for_best")
    value = metrics.get(metric, metrics.get(f"test.{metric}")) if metric else None
    model = config.get("model.name")
    if isinstance(model, str) and Path(model).expanduser().is_absolute():
        model = Path(model).name  # a local folder (stored as an absolute path): its name
    name = folder.name if root is None or folder == root else folder.relative_to(root).as_posix()
    return RunSummary(
        name=name, path=folder, task=config.get("task"), method=config.get("method.name"), model=model,
        status=status, metric=metric, value=value if isinstance(value, (int, float)) else None,
        seconds=_seconds(status, record, results, now), started=record.get("started"), note=note,
        metrics=metrics, config=config)


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: {"train": {"epochs": 3}} -> {"train.epochs": 3}."""
    if not isinstance(values, dict):
        return {prefix: values} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def differing_keys(runs: Sequence[RunSummary]) -> list[str]:
    """Config keys (in config order) whose values are not the same in every run: the
    hyperparameters that tell these runs apart."""
    keys = list(dict.fromkeys(k for run in runs for k in run.config))
    return [k for k in keys if k not in NOT_HYPERPARAMETERS and not k.startswith(NOT_HYPERPARAMETER_GROUPS)
            and len({_canonical(run.config.get(k)) for run in runs}) > 1]


def sort_runs(runs: Sequence[RunSummary], key: str) -> list[RunSummary]:
    """Sorted by a column, metric or config key; "-key" for descending. Runs without the key go last."""
    descending, key = key.startswith("-"), key.lstrip("-+")
    check_key(runs, key, "--sort")
    present = [r for r in runs if r.get(key) is not None]
    present.sort(key=lambda r: _order(r.get(key)), reverse=descending)
    return present + [r for r in runs if r.get(key) is None]


_FILTER = re.compile(r"^\s*([^\s=!<>~]+)\s*(==|!=|>=|<=|=|>|<|~)\s*(.*?)\s*$")
_COMPARE = {"=": lambda a, b: a == b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
            ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b}


def filter_runs(runs: Sequence[RunSummary], expressions: Iterable[str]) -> list[RunSummary]:
    """The runs every expression holds for: KEY=VALUE, !=, >, >=, <, <=, or KEY~TEXT (contains);
    KEY is a column, metric or config key (status=finished, method.name=lora, accuracy>0.9)."""
    kept = list(runs)
    for expression in expressions:
        match = _FILTER.match(expression)
        if not match:
            raise ValueError(f"--filter {expression!r}: expected KEY=VALUE (or != > >= < <= ~), e.g. "
                             "status=finished, method.name=lora, accuracy>0.9")
        key, op, text = match.groups()
        check_key(runs, key, "--filter")
        kept = [r for r in kept if _holds(r.get(key), op, text, expression)]
    return kept


def is_filter_expression(text: str) -> bool:
    """Whether `text` has the form of a --filter expression (KEY op VALUE)."""
    return bool(_FILTER.match(text))


def check_key(runs: Sequence[RunSummary], key: str, flag: str) -> None:
    """Stop at a key no listed run has, naming the closest one."""
    known = list(COLUMNS) + list(dict.fromkeys(k for r in runs for k in (*r.metrics, *r.config)))
    if key in known:
        return
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    metrics = ", ".join(list(dict.fromkeys(k for r in runs for k in r.metrics))[:8]) or "none"
    raise ValueError(f"{flag} {key!r}: not a column, metric or config key of these runs{hint} (columns: "
                     f"{', '.join(c for c in COLUMNS if c not in ('value', 'seconds'))}; metrics: {metrics}; "
                     "config keys as group.field, e.g. train.learning_rate)")


def find_run(runs: Sequence[RunSummary], name: str, root: Path) -> RunSummary:
    """A run by its listed name, or by its folder's path."""
    for run in runs:
        if name in (run.name, str(run.path)) or Path(name).resolve() == run.path.resolve():
            return run
    if is_run_folder(Path(name)):  # a run outside the listed folder
        return summarize(Path(name))
    close = difflib.get_close_matches(name, [r.name for r in runs], n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    shown = ", ".join(r.name for r in runs[:10]) + (", ..." if len(runs) > 10 else "")
    there = f"runs there: {shown}" if runs else "no runs there"
    raise ValueError(f"--compare {name!r}: not a run under {root} nor a run folder; {hint}{there}")


def compare_runs(directory: str | Path, names: Sequence[str]) -> dict[str, Any]:
    """Runs side by side: the config keys that differ, every metric with its difference from
    the first run, and the same per class where the runs have a per-class report."""
    if len(names) < 2:
        raise ValueError("--compare needs two runs or more: --compare A B [C ...]")
    root = Path(directory)
    try:
        listed = list_runs(root)
    except FileNotFoundError:  # no runs there: the names may still be run folders
        listed = []
    runs = [find_run(listed, name, root) for name in names]
    metric_names = list(dict.fromkeys(k for r in runs for k in ([r.metric] if r.metric else []) + list(r.metrics)))
    metrics = {name: [r.metrics.get(name) for r in runs] for name in metric_names}
    return {
        "runs": [r.name for r in runs],
        "status": [r.status for r in runs],
        "seconds": [r.seconds for r in runs],
        "config": {key: [r.config.get(key) for r in runs] for key in differing_keys(runs)},
        "metrics": metrics,
        "deltas": {name: _deltas(values) for name, values in metrics.items()},
        "per_class": _per_class([read_json(r.path / "metrics.json") for r in runs]),
    }


# ---- reading a run folder ------------------------------------------------------------------
def _read_yaml(path: Path) -> dict[str, Any]:
    """The raw config (not validated: a listing shows runs of other versions too)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: a listing of hundreds stays fast
    try:
        values = yaml.load(path.read_text(), Loader=loader)
    except (OSError, yaml.YAMLError):
        return {}
    return values if isinstance(values, dict) else {}


def read_json(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def _numbers(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in LOG_FIELDS}


def _result_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """A finished run's validation metrics (of its best evaluation), and test ones as test.<name>."""
    return {**_numbers(results.get("validation") or {}), **_numbers(results.get("test") or {}, "test.")}


def _log_metrics(log: Path) -> dict[str, Any]:
    """An unfinished run's best evaluation so far (else its last one) from train_log.jsonl; a
    line being written as we read is skipped."""
    evaluations = [row for row in read_log(log)[0] if row.get("kind") == "eval"]
    best = [row for row in evaluations if row.get("best")]
    return _numbers((best or evaluations or [{}])[-1])


def read_log(log: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """train_log.jsonl's rows from byte `offset` on, and the offset to read on from (for
    following a running training). A last line still being written is left for the next read;
    an unreadable complete line is skipped."""
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return [], offset
    complete = data[: data.rfind(b"\n") + 1]
    rows = []
    for line in complete.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, offset + len(complete)


def run_under(root: Path, name: str) -> Path:
    """The run folder called `name` (as list_runs names it: "a" or "study/trial-003") inside
    `root`, and never outside it: absolute names, "..", and symlinks that lead out are refused
    (FileNotFoundError), as is a folder that is not a run folder."""
    parts = name.split("/")
    if not name or Path(name).is_absolute() or "\\" in name or "\0" in name or \
            any(part in ("", ".", "..") for part in parts):
        raise FileNotFoundError(f"{name!r}: not a run name under {root}")
    base = root.resolve()
    folder = base.joinpath(*parts).resolve()
    if not folder.is_relative_to(base) or not is_run_folder(folder):
        raise FileNotFoundError(f"{name!r}: no run folder of that name under {root}")
    return root / folder.relative_to(base)  # as list_runs gives paths: under `root` as given


def _seconds(status: str, record: dict[str, Any], results: dict[str, Any], now: float) -> float | None:
    """Training seconds of a finished run; else from its start to its end, its last heartbeat
    (killed without a word) or now (running)."""
    trained = (results.get("training") or {}).get("seconds")
    if status == "finished" and isinstance(trained, (int, float)):
        return float(trained)
    started = record.get("started")
    if not isinstance(started, (int, float)):
        return float(trained) if isinstance(trained, (int, float)) else None
    end = record.get("ended") or (record.get("heartbeat") if status != "running" else None) or now
    return max(float(end) - started, 0.0)


# ---- comparing -----------------------------------------------------------------------------
def _deltas(values: Sequence[Any]) -> list[float | None]:
    """Each value minus the first run's (None where either is not a number)."""
    first = values[0]
    return [value - first if _is_number(value) and _is_number(first) else None for value in values]


def _per_class(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[Any]]]]:
    """{label: {stat: {"values": [...], "deltas": [...]}}} over the labels any run reports."""
    reports = [((r.get("validation_report") or r.get("test_report") or {}).get("per_class") or {})
               for r in results]
    if sum(1 for report in reports if report) < 2:
        return {}
    out: dict[str, dict[str, dict[str, list[Any]]]] = {}
    for label in dict.fromkeys(label for report in reports for label in report):
        stats = dict.fromkeys(s for report in reports for s in (report.get(label) or {}))
        out[label] = {}
        for stat in stats:
            values = [(report.get(label) or {}).get(stat) for report in reports]
            out[label][stat] = {"values": values, "deltas": _deltas(values)}
    return out


# ---- values --------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _order(value: Any) -> tuple[int, Any]:
    """Numbers before text, each in its own order (runs may mix them under one key)."""
    return (0, float(value)) if _is_number(value) or isinstance(value, bool) else (1, str(value))


def _parse(text: str) -> Any:
    """A filter's value as the config would hold it: a number, true/false, none, or text."""
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text.strip("'\"")


def _equal(actual: Any, wanted: Any, text: str) -> bool:
    if _is_number(actual) and _is_number(wanted):
        return float(actual) == float(wanted)
    if isinstance(actual, bool):
        return actual == wanted
    return str(actual) == text.strip("'\"")


def _holds(actual: Any, op: str, text: str, expression: str) -> bool:
    if op == "~":
        return actual is not None and text.lower() in str(actual).lower()
    wanted = _parse(text)
    if actual is None or wanted is None:
        return _COMPARE[op](actual, wanted) if op in ("=", "==", "!=") else False
    if op in ("=", "==", "!="):
        return _equal(actual, wanted, text) != (op == "!=")
    if _is_number(actual) != _is_number(wanted):
        raise ValueError(f"--filter {expression!r}: {op} compares numbers with numbers, and text with "
                         f"text (this key holds {actual!r})")
    return _COMPARE[op](actual, wanted) if _is_number(actual) else _COMPARE[op](str(actual), text)


# ---- printing (the command's output) -------------------------------------------------------
STATUS_STYLES = {"finished": "green", "running": "cyan", "failed": "red", "interrupted": "yellow"}


def console() -> Any:
    """A rich console; off a terminal (a pipe, a log) tables keep their natural width instead
    of folding at 80 columns."""
    from rich.console import Console

    shown = Console(highlight=False)
    return shown if shown.is_terminal else Console(highlight=False, width=100_000)


def print_runs(runs: Sequence[RunSummary], out: Any = None) -> None:
    """The listing: one line per run, then why each failed or interrupted one stopped."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out = out or console()
    keys = differing_keys(runs)
    metrics = {r.metric for r in runs if r.metric}
    single = len(metrics) == 1
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header in ("name", "task", "method", "model", "status"):
        table.add_column(header)
    table.add_column(next(iter(metrics)) if single else "best metric", justify="right")
    table.add_column("time", justify="right")
    for key in keys:
        table.add_column(key, justify="right")
    for r in runs:
        best = show(r.value, 4) if single or r.value is None else f"{r.metric} {show(r.value, 4)}"
        table.add_row(r.name, r.task or "-", r.method or "-", r.model or "-",
                      Text(r.status, style=STATUS_STYLES.get(r.status, "")), best, duration(r.seconds),
                      *(show(r.config.get(k)) for k in keys))
    out.print(table)
    for r in runs:
        if r.note and r.status != "finished":
            out.print(f"{r.name}: {r.status}: {r.note}")


def print_comparison(result: dict[str, Any], out: Any = None) -> None:
    """compare_runs as tables: the config keys that differ, then metrics (and per class) with
    each run's difference from the first."""
    from rich import box
    from rich.table import Table

    out = out or console()
    names = result["runs"]
    config = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="config (differences only)", title_justify="left")
    config.add_column("key")
    for name in names:
        config.add_column(name, justify="right")
    for key, values in result["config"].items():
        config.add_row(key, *(show(v) for v in values))
    if result["config"]:
        out.print(config)
    else:
        out.print("config: the same in every run")
    metrics = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"metrics (differences from {names[0]})",
                    title_justify="left")
    metrics.add_column("metric")
    for name in names:
        metrics.add_column(name, justify="right")
    metrics.add_row("status", *result["status"])
    metrics.add_row("time", *(duration(s) for s in result["seconds"]))
    for key, values in result["metrics"].items():
        metrics.add_row(key, *_with_deltas(values, result["deltas"][key]))
    out.print(metrics)
    if result["per_class"]:
        per_class = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left",
                          title=f"per class (validation; differences from {names[0]})")
        per_class.add_column("class")
        per_class.add_column("stat")
        for name in names:
            per_class.add_column(name, justify="right")
        for label, stats in result["per_class"].items():
            for stat, row in stats.items():
                if stat != "support":
                    per_class.add_row(str(label), stat, *_with_deltas(row["values"], row["deltas"]))
        out.print(per_class)


def _with_deltas(values: Sequence[Any], deltas: Sequence[Any]) -> list[str]:
    cells = [show(values[0], 4)]
    for value, delta in zip(values[1:], deltas[1:]):
        change = "" if delta is None else f" ({delta:+d})" if isinstance(delta, int) else f" ({delta:+.4f})"
        cells.append(show(value, 4) + change)
    return cells


def show(value: Any, digits: int | None = None) -> str:
    """A value for a table cell: floats short, long paths by their last two parts."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if digits else f"{value:.4g}"
    if isinstance(value, str) and len(value) > 40 and "/" in value:
        return ".../" + "/".join(Path(value).parts[-2:])
    return str(value)


def duration(seconds: float | None) -> str:
    """12.3s, 4m05s, 2h07m."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
