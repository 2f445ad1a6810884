"""The built-in callbacks: the JSONL log, the progress display and early stopping.

Each is a plain user of the loop's extension points (training/hooks.py), as a user's own
callback would be.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .hooks import Callback, Control

__all__ = ["Callback", "Control", "EarlyStopping", "Heartbeat", "JsonlLog", "ProgressBar"]


class EarlyStopping(Callback):
    """Stops training after `patience` evaluations without a new best (by
    train.metric_for_best). It reads `evals_since_best` from the evaluation row, which the
    loop keeps in its checkpointed state, so a resumed run stops where an uninterrupted one would."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_evaluate(self, row: dict[str, Any], control: Control) -> None:
        if self.patience and row["evals_since_best"] >= self.patience:
            control.stop = True
            row["early_stop"] = True


class JsonlLog(Callback):
    """Appends one JSON object per logged step and per evaluation; resume trims later rows."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            kept = [r for r in rows if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif resume_step is None:
            self.path.write_text("")

    def _write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def on_step(self, row: dict[str, Any], control: Control) -> None:
        self._write(row)

    def on_evaluate(self, row: dict[str, Any], control: Control) -> None:
        self._write(row)


class Heartbeat(Callback):
    """Calls `beat` when training starts, at every evaluation and checkpoint, and at logged
    steps at most every `interval_s`: the run's status file then says when its process was last
    seen alive, so a listing can tell a live run on another machine from one that died silently."""

    def __init__(self, beat: Callable[[], None], interval_s: float = 30.0):
        self.beat, self.interval_s = beat, interval_s
        self.last = float("-inf")

    def _beat(self, force: bool = True) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.interval_s:
            self.last = now
            try:
                self.beat()
            except OSError:  # bookkeeping (a full disk, a read-only folder) never stops training
                pass

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self._beat()

    def on_step(self, row: dict[str, Any], control: Control) -> None:
        self._beat(force=False)

    def on_evaluate(self, row: dict[str, Any], control: Control) -> None:
        self._beat()

    def on_save(self, checkpoint: Path, control: Control) -> None:
        self._beat()


class ProgressBar(Callback):
    """A rich progress bar with loss, throughput and ETA; evaluation results print as lines.

    When stdout is not a terminal (CI, nohup, a log file) a live bar would show nothing, so a
    plain line (step/total, loss, samples/s, ETA) is printed every `interval_s` and at the end.
    """

    interval_s: float = 30.0

    def __init__(self, metric: str | None, interval_s: float | None = None):
        self.metric = metric
        self.progress = None
        self.plain = not sys.stdout.isatty()
        if interval_s is not None:
            self.interval_s = interval_s

    def on_train_begin(self, info: dict[str, Any]) -> None:
        if self.plain:
            self.total, self.first_step = info["total_steps"], info["step"]
            self.started = self.last_line = time.monotonic()
            resuming = f", resuming at step {self.first_step}" if self.first_step else ""
            print(f"train: {self.total} steps{resuming}", flush=True)
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} samples/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=info["total_steps"], completed=info["step"],
                                           loss="-", speed="-")

    def on_step(self, row: dict[str, Any], control: Control) -> None:
        if self.plain:
            now, step = time.monotonic(), row["step"]
            if now - self.last_line >= self.interval_s or step >= self.total:
                self.last_line = now
                done = max(step - self.first_step, 1)
                eta = (now - self.started) / done * (self.total - step)
                print(f"train step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%): "
                      f"loss {row['loss']:.4f}, {row['samples_per_s']:.1f} samples/s, "
                      f"elapsed {_clock(now - self.started)}, ETA {_clock(eta)}", flush=True)
            return
        self.progress.update(self.task, completed=row["step"], loss=f"{row['loss']:.4f}",
                             speed=f"{row['samples_per_s']:.0f}")

    def on_evaluate(self, row: dict[str, Any], control: Control) -> None:
        value = row.get(self.metric)
        shown = f"{self.metric} {value:.4f}" if isinstance(value, float) else ""
        line = f"eval step {row['step']} epoch {row['epoch']:.2f}: loss {row['loss']:.4f} {shown}"
        if self.plain:
            print(line.rstrip(), flush=True)
        else:
            self.progress.console.print(line)

    def on_train_end(self, info: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.stop()


def _clock(seconds: float) -> str:
    """Seconds as h:mm:ss (or m:ss under an hour), as progress bars show time."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
