"""Loop observers: the JSONL log, the progress bar, and user hooks.

Callbacks watch the loop and may ask it to stop (`loop_state["stop"] = True`); they never
change how a step is computed, so the loop stays the one tested implementation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class Callback:
    def on_train_begin(self, info: dict[str, Any]) -> None: ...

    def on_step(self, row: dict[str, Any], loop_state: dict[str, Any]) -> None: ...

    def on_evaluate(self, row: dict[str, Any], loop_state: dict[str, Any]) -> None: ...

    def on_train_end(self, info: dict[str, Any]) -> None: ...


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

    def on_step(self, row: dict[str, Any], loop_state: dict[str, Any]) -> None:
        self._write(row)

    def on_evaluate(self, row: dict[str, Any], loop_state: dict[str, Any]) -> None:
        self._write(row)


class ProgressBar(Callback):
    """A rich progress bar with loss, throughput and ETA; evaluation results print as lines."""

    def __init__(self, metric: str):
        self.metric = metric
        self.progress = None

    def on_train_begin(self, info: dict[str, Any]) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} samples/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            transient=not sys.stdout.isatty(),
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=info["total_steps"], completed=info["step"],
                                           loss="-", speed="-")

    def on_step(self, row: dict[str, Any], loop_state: dict[str, Any]) -> None:
        self.progress.update(self.task, completed=row["step"], loss=f"{row['loss']:.4f}",
                             speed=f"{row['samples_per_s']:.0f}")

    def on_evaluate(self, row: dict[str, Any], loop_state: dict[str, Any]) -> None:
        value = row.get(self.metric)
        shown = f"{self.metric} {value:.4f}" if isinstance(value, float) else ""
        self.progress.console.print(f"eval step {row['step']} epoch {row['epoch']:.2f}: "
                                    f"loss {row['loss']:.4f} {shown}")

    def on_train_end(self, info: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress.stop()
