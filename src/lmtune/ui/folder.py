"""The runs folder as the dashboard reads it: run summaries (experiments.runs, cached while a
run's files are unchanged), one run's details, search studies and continual sequences.
Read-only: nothing here writes under the folder."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..experiments.runs import RunSummary, is_run_folder, read_json, run_folders, run_under, summarize

# The files whose change can change a run's summary.
WATCHED = ("config.yaml", "metrics.json", "status.json", "train_log.jsonl")


def run_id(name: str) -> str:
    """A run's name as one URL path segment: "study/trial-003" -> "study:trial-003"."""
    return name.replace("/", ":")


def _stamp(folder: Path) -> tuple[int, ...]:
    stamps = []
    for name in WATCHED:
        try:
            stamps.append((folder / name).stat().st_mtime_ns)
        except OSError:
            stamps.append(0)
    return tuple(stamps)


class RunsView:
    """The runs under `root`. Summaries are cached per folder until one of its WATCHED files
    changes; a running run is read afresh each time (its process may have died since)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._cache: dict[Path, tuple[tuple[int, ...], RunSummary]] = {}
        self._lock = threading.Lock()

    def runs(self) -> list[RunSummary]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder (runs are under --train.output-dir, runs/ by default)")
        now = time.time()
        return [self._summary(folder, now) for folder in run_folders(self.root)]

    def _summary(self, folder: Path, now: float) -> RunSummary:
        stamp = _stamp(folder)
        with self._lock:
            cached = self._cache.get(folder)
        if cached and cached[0] == stamp and cached[1].status != "running":
            return cached[1]
        summary = summarize(folder, self.root, now)
        with self._lock:
            self._cache[folder] = (stamp, summary)
        return summary

    def run(self, rid: str) -> RunSummary:
        """The run with this id; FileNotFoundError for any id that does not name a run folder
        inside the root (a "/" in it, "..", an absolute path, a symlink out)."""
        if "/" in rid:
            raise FileNotFoundError(f"{rid!r}: not a run id")
        folder = run_under(self.root, rid.replace(":", "/"))
        return self._summary(folder, time.time())


def report(run: RunSummary) -> dict[str, Any]:
    """The per-class report of a finished run (validation, else test): per_class, confusion
    matrix and its labels (NER names them; classification's follow the per-class order)."""
    results = read_json(run.path / "metrics.json")
    found = results.get("validation_report") or results.get("test_report") or {}
    per_class = found.get("per_class") or {}
    labels = found.get("confusion_labels") or list(per_class)
    matrix = found.get("confusion_matrix")
    if not (isinstance(matrix, list) and len(matrix) == len(labels)):
        matrix = None
    return {"per_class": per_class, "confusion": matrix, "labels": [str(x) for x in labels]}


def read_text(path: Path, limit: int = 200_000) -> str:
    try:
        return path.read_text(errors="replace")[:limit]
    except OSError:
        return ""


@dataclass
class Study:
    name: str  # its folder under the root
    summary: dict[str, Any]  # summary.json as search wrote it ({} while a study has none yet)
    trials: list[dict[str, Any]]  # number, state, value, params, run (its run id, when listed)


@dataclass
class Sequence:
    name: str
    report: dict[str, Any]  # report.json of a continual run


def _walk_special(root: Path) -> tuple[list[Path], list[Path]]:
    """Study folders (study.db or summary.json) and continual folders (report.json with a
    matrix) under root; run folders are not searched inside."""
    studies, sequences = [], []
    for here, subfolders, files in os.walk(root):
        folder = Path(here)
        if is_run_folder(folder):
            subfolders[:] = []
            continue
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        if "study.db" in files or "summary.json" in files:
            studies.append(folder)
        if "report.json" in files and "continual.json" in files:
            sequences.append(folder)
    return studies, sequences


def studies(root: Path, runs: list[RunSummary]) -> list[Study]:
    """Search studies: trials from summary.json, or (a study still running) from its trial folders."""
    found = []
    by_path = {r.path.resolve(): r for r in runs}
    for folder in _walk_special(root)[0]:
        summary = read_json(folder / "summary.json")
        if summary.get("trials"):
            trials = [dict(t) for t in summary["trials"] if isinstance(t, dict)]
        else:
            trials = [{"number": r.name, "state": r.status, "value": r.value, "params": {},
                       "run_dir": str(r.path)} for r in runs if r.path.resolve().is_relative_to(folder.resolve())]
        for trial in trials:
            listed = by_path.get(Path(str(trial.get("run_dir") or "")).resolve()) if trial.get("run_dir") else None
            trial["run"] = run_id(listed.name) if listed else None
        found.append(Study(folder.relative_to(root).as_posix() or folder.name, summary, trials))
    return found


def sequences(root: Path) -> list[Sequence]:
    """Continual runs with their report (accuracy matrix per split, transfer metrics)."""
    found = []
    for folder in _walk_special(root)[1]:
        data = read_json(folder / "report.json")
        if isinstance(data.get("matrix"), dict):
            found.append(Sequence(folder.relative_to(root).as_posix() or folder.name, data))
    return found
