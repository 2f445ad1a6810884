"""The run folder: one self-describing directory per training run.

    <run>/config.yaml        resolved config (what `--resume` and `lmtune.load` read)
    <run>/model/             best weights (safetensors) + tokenizer + config with label maps
    <run>/metrics.json       validation/test metrics, data report, speed, parameter counts
    <run>/train_log.jsonl    one JSON object per logged step and per evaluation
    <run>/learning_curve.png, confusion_matrix.png
    <run>/calibration.json   the temperature predictions divide logits by (fitted on validation
                             data, or refitted by `lmtune calibrate`), with metrics before/after;
                             reliability.png beside it
    <run>/predictions/       validation.jsonl (test.jsonl): one row per example of the split with
                             the final model's prediction, gold, loss (evaluation/examples.py)
    <run>/README.md          model card
    <run>/checkpoints/       latest (for resume) and best checkpoints
    <run>/status.json        running | finished | failed | interrupted; the training process's
                             pid, host, start and heartbeat (what `lmtune runs` reads)

status.json is replaced atomically. A run whose status says running but whose process is gone
(same host, pid not alive; another host, heartbeat older than STALE_AFTER_S) was killed
without a word (kill -9, a lost machine) and reads as interrupted.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config, ConfigError

# A running run on another machine whose heartbeat is this old is taken as dead (its pid cannot
# be checked from here). The heartbeat is refreshed at logged steps (at most every 30 s),
# evaluations and checkpoints, so only an evaluation longer than this would be misread.
STALE_AFTER_S = 3600.0


@dataclass
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.json"

    @property
    def predictions(self) -> Path:
        """validation.jsonl (and test.jsonl): the final model's per-example predictions."""
        return self.root / "predictions"

    @property
    def log(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def card(self) -> Path:
        return self.root / "README.md"

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    def set_status(self, status: str, **fields: Any) -> None:
        """Write status.json. `running` records this process (pid, host, start time), so that a
        listing can tell a live run from one killed without a word; the other statuses keep
        those and add when the run ended."""
        now = time.time()
        record: dict[str, Any] = {"status": status}
        if status == "running":
            record.update(pid=os.getpid(), host=socket.gethostname(), started=now, heartbeat=now,
                          process_started=_process_started(os.getpid()))
        else:
            previous = self.read_status()
            record.update({k: previous[k] for k in ("pid", "host", "started", "heartbeat") if k in previous})
            record["ended"] = now
        record.update(fields)
        self._write_status(record)

    def set_ended(self, error: BaseException) -> None:
        """failed (with the error's first line), or interrupted for Ctrl-C, SIGTERM and exits;
        nothing when the folder was removed (a run that failed before its first checkpoint)."""
        if not self.root.is_dir():
            return
        try:
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                self.set_status("interrupted", error=_interruption(error))
            else:
                message = (str(error).strip().splitlines() or [""])[0][:300]
                self.set_status("failed", error=f"{type(error).__name__}: {message}".rstrip(": "))
        except OSError:  # bookkeeping never hides the error that stopped the run
            pass

    def heartbeat(self) -> None:
        """Say the training process is still alive (training.callbacks.Heartbeat calls this)."""
        record = self.read_status()
        if record.get("status") == "running":
            record["heartbeat"] = time.time()
            self._write_status(record)

    def read_status(self) -> dict[str, Any]:
        """status.json as written ({} for a run from before status files, or an unreadable one)."""
        try:
            record = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def current_status(self, now: float | None = None) -> tuple[str, str]:
        """(status, note) as things stand: a `running` run whose process is gone is interrupted
        (note says why); a run without status.json is judged by its files."""
        record = self.read_status()
        status = record.get("status")
        if status is None:  # written before status files existed
            if self.metrics.is_file() and self.model.is_dir():
                return "finished", ""
            return "interrupted", "no status.json; the run never finished"
        if status == "running":
            gone = _process_gone(record, time.time() if now is None else now)
            if gone:
                return "interrupted", gone
        return str(status), str(record.get("error", ""))

    def _write_status(self, record: dict[str, Any]) -> None:
        """Replace status.json in one step (a reader never sees half a file); never creates the
        run folder."""
        if not self.root.is_dir():
            return
        temporary = self.status_file.with_name(f".status.json.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record, indent=1))
        os.replace(temporary, self.status_file)

    def load_config(self) -> Config:
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such run folder (runs are under --output-dir, "
                                    "runs/ by default)")
        if not self.config.is_file():
            raise FileNotFoundError(f"{self.root}: not an lmtune run folder (no config.yaml)")
        return Config.from_yaml(self.config)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        self.metrics.write_text(json.dumps(metrics, indent=1))

    def drop_checkpoints(self) -> None:
        """Remove the resume checkpoints of a finished run (model/ holds its result)."""
        import shutil

        shutil.rmtree(self.checkpoints, ignore_errors=True)

    def log_rows(self) -> list[dict[str, Any]]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def _interruption(error: BaseException) -> str:
    """What stopped a run: Ctrl-C, a signal (an exit code 128 + N, as a shell reports it), an exit."""
    if isinstance(error, KeyboardInterrupt):
        return "KeyboardInterrupt (Ctrl-C)"
    code = getattr(error, "code", None)
    if isinstance(code, int) and 128 < code < 128 + 65:
        import signal

        try:
            return f"stopped by {signal.Signals(code - 128).name}"
        except ValueError:
            pass
    return f"SystemExit({code!r})"


def _process_started(pid: int) -> float | None:
    """When a process started (tells a live run's process from a later one given its pid)."""
    try:
        import psutil  # installed with accelerate

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - no psutil, or no such process: the pid alone must do
        return None


def _process_gone(record: dict[str, Any], now: float) -> str:
    """Why a run recorded as running has no live process, or "" if it may still be running."""
    pid, host = record.get("pid"), record.get("host")
    if host == socket.gethostname() and isinstance(pid, int):
        if not _alive(pid, record.get("process_started")):
            return f"process {pid} is gone (killed, or the machine restarted)"
        return ""
    heartbeat = record.get("heartbeat")
    if isinstance(heartbeat, (int, float)) and now - heartbeat > STALE_AFTER_S:
        return f"no heartbeat from {host} for {(now - heartbeat) / 3600:.1f} h"
    return ""


def _alive(pid: int, started: float | None) -> bool:
    """Whether `pid` is the live process that wrote the status (not a later one given its pid)."""
    try:
        import psutil
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # access denied: another user's process, alive
        return True


def new_run(cfg: Config) -> RunFolder:
    """Create the folder for a new run; refuse to overwrite a finished one unless asked."""
    name = cfg.train.run_name or f"{cfg.task}-{Path(cfg.model.name).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(cfg.train.output_dir) / name
    if root.exists() and any(root.iterdir()) and not cfg.train.overwrite:
        raise ConfigError(
            f"{root} already exists: continue it with `lmtune train --resume {root}`, replace it "
            f"with --train.overwrite true, or choose another --train.run-name"
        )
    if root.exists() and cfg.train.overwrite:
        import shutil

        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    cfg.train.run_name = name
    return RunFolder(root)


def _table(rows: dict[str, Any]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    for key, value in rows.items():
        if isinstance(value, float):
            lines.append(f"| {key} | {value:.4f} |")
        elif isinstance(value, int):
            lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


def _front_matter(cfg: Config, base: str, metrics: dict[str, Any], pipeline_tag: str | None) -> str:
    """The YAML metadata header hub model cards start with (what the hub indexes and shows)."""
    import yaml

    scored = metrics.get("test") or metrics.get("validation") or {}
    meta: dict[str, Any] = {"library_name": "transformers", "base_model": base}
    if pipeline_tag:
        meta["pipeline_tag"] = pipeline_tag
    meta["tags"] = ["lmtune", cfg.task, cfg.method.name]
    if scored:
        # Scores only: not counts (support) nor the training objective (loss).
        meta["metrics"] = [name for name, value in scored.items() if isinstance(value, float) and name != "loss"]
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---"


def _data_lines(cfg: Config) -> list[str]:
    """The data files a run used; splits that were not given are left out."""
    data = cfg.data
    lines = [f"- train: `{data.train}`"]
    if data.validation:
        lines.append(f"- validation: `{data.validation}`")
    elif data.validation_split:
        lines.append(f"- validation: {data.validation_split:.0%} of the training file, held out")
    if data.test:
        lines.append(f"- test: `{data.test}`")
    return lines


def write_model_card(run: RunFolder, cfg: Config, metrics: dict[str, Any], summary: str,
                     auto_class: str, pipeline_tag: str | None = None) -> None:
    """A README for the run as hub model cards are: a YAML metadata header, then the base
    model (by a name a reader can find), data, hyperparameters and results."""
    from .models import ALIASES, base_model_id

    tc = cfg.train
    base = base_model_id(cfg.model.name)
    alias = f" (lmtune alias `{cfg.model.name}`)" if cfg.model.name in ALIASES else ""
    parts = [
        _front_matter(cfg, base, metrics, pipeline_tag),
        "",
        f"# {cfg.train.run_name}",
        "",
        f"Fine-tuned with lmtune for **{cfg.task}** ({cfg.method.name} fine-tuning).",
        "",
        "## Base model",
        f"`{base}`{alias}, max length {cfg.model.max_length} tokens",
        "",
        "## Data",
        *_data_lines(cfg),
        f"- text column `{cfg.data.text_column}`"
        + (f" + `{cfg.data.text_pair_column}`" if cfg.data.text_pair_column else "")
        + f", label column `{cfg.data.label_column}`"
        + (" (multi-label)" if cfg.data.multi_label else ""),
        "",
        "```json",
        json.dumps(metrics.get("data", {}), indent=1),
        "```",
        "",
        "## Hyperparameters",
        f"epochs {tc.epochs}, batch size {tc.batch_size} x accumulation {tc.grad_accum}, "
        f"learning rate {tc.learning_rate} ({tc.scheduler}, warm-up {tc.warmup_ratio}), "
        f"weight decay {tc.weight_decay}, max grad norm {tc.max_grad_norm}, "
        f"precision {metrics.get('training', {}).get('precision', tc.mixed_precision)}, seed {tc.seed}.",
        "",
        "## Results",
    ]
    for split in ("validation", "test"):
        if split in metrics:
            parts += [f"### {split}", "", _table(metrics[split]), ""]
    parts += ["```", summary, "```", "",
              "## Use",
              "```python",
              "import lmtune",
              f"model = lmtune.load({str(run.root)!r})",
              "model.predict([\"some text\"])",
              "# or plain transformers:",
              f"from transformers import {auto_class}",
              f"{auto_class}.from_pretrained({str(run.model)!r})",
              "```", ""]
    run.card.write_text("\n".join(parts))
