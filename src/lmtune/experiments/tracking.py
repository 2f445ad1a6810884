"""Experiment trackers: a run mirrored to MLflow and/or TensorBoard (`--train.report-to`).

A tracker is an ordinary loop Callback (training/hooks.py): it logs the resolved config as flat
hyperparameters when created, each logged step's loss / lr / grad_norm / speed and each
evaluation's metrics as they happen. What only exists once the run folder is written (the final
metrics in metrics.json, the plots, the model card) is logged by `finish(run)`, which the
pipeline calls after writing the results; `fail(error)` ends a tracker's run as failed instead.
Both go through `tracking(callbacks)`, so the loop itself knows nothing of trackers.

The libraries do the work (MLflow's client, torch's SummaryWriter with TensorBoard's HParams
plugin); they are imported only when a tracker is asked for (pip install 'lmtune[tracking]').
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..config import Config, describe, tracker_names
from ..run import RunFolder
from ..training.hooks import Callback, Control

# Keys of an evaluation row that describe it rather than score the model.
_EVAL_BOOKKEEPING = {"kind", "step", "epoch", "best", "evals_since_best", "early_stop"}
# What a logged step reports, as tracked metrics (train_log.jsonl key -> metric name).
_STEP_METRICS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
                 "samples_per_s": "train/samples_per_s", "epoch": "train/epoch"}


def flat_config(cfg: Config) -> dict[str, Any]:
    """The resolved config as flat hyperparameters ("train.learning_rate": 3e-5, "task": ...),
    the keys a user types, so a tracker's run table reads like the YAML file."""
    return {info.key: info.value for _, _, infos in describe(cfg) for info in infos}


def _metric_name(name: str) -> str:
    """A metric name both trackers accept (MLflow allows word characters, . - / : and spaces)."""
    return re.sub(r"[^\w.\-/: ]", "_", name)


def _numbers(values: dict[str, Any], prefix: str, skip: set[str] = frozenset()) -> dict[str, float]:
    """The finite numbers of `values` (bools are flags, not metrics) as `prefix/key` metrics."""
    return {_metric_name(f"{prefix}/{key}"): float(value) for key, value in values.items()
            if key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


def step_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A train_log.jsonl training row as metrics: train/loss, train/lr, train/grad_norm, ..."""
    return {name: float(row[key]) for key, name in _STEP_METRICS.items()
            if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])}


def eval_metrics(row: dict[str, Any]) -> dict[str, float]:
    """An evaluation row as metrics: eval/accuracy, eval/loss, ... (the task's scalars)."""
    return _numbers(row, "eval", _EVAL_BOOKKEEPING)


def final_metrics(run: RunFolder) -> tuple[dict[str, float], int]:
    """The run's metrics.json as metrics (validation/..., test/..., training/seconds, ...) and
    the step they belong to (the last one)."""
    metrics = json.loads(run.metrics.read_text()) if run.metrics.is_file() else {}
    found: dict[str, float] = {}
    for split in ("validation", "test", "training"):
        found.update(_numbers(metrics.get(split) or {}, split, {"processes"}))
    return found, int((metrics.get("training") or {}).get("steps", 0))


def run_artifacts(run: RunFolder) -> list[Path]:
    """What a tracker keeps of the run folder: plots, model card, metrics and config."""
    files = sorted(run.root.glob("*.png")) + [run.card, run.metrics, run.config]
    return [path for path in files if path.is_file()]


class Tracker(Callback):
    """A Callback mirroring one run to an experiment tracker. `finish(run)` logs what the
    written run folder holds and ends the tracker's run; `fail(error)` ends it as failed."""

    name = ""

    def on_step(self, row: dict[str, Any], control: Control) -> None:
        self.log_metrics(step_metrics(row), row["step"])

    def on_evaluate(self, row: dict[str, Any], control: Control) -> None:
        self.log_metrics(eval_metrics(row), row["step"])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def finish(self, run: RunFolder) -> None:
        raise NotImplementedError

    def fail(self, error: BaseException) -> None:
        raise NotImplementedError


# ---- MLflow ------------------------------------------------------------------------------------
def tracking_uri(cfg: Config) -> str:
    """--train.tracking-uri, else $MLFLOW_TRACKING_URI, else an SQLite database beside the runs
    (one file, no server: `mlflow ui --backend-store-uri` reads it)."""
    given = cfg.train.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return given or f"sqlite:///{Path(cfg.train.output_dir).expanduser().resolve() / 'mlflow.db'}"


def _local_artifact_root(uri: str) -> str | None:
    """Artifacts of an SQLite-backed store go beside its database (hidden: their copies of
    config.yaml and metrics.json are not run folders to `lmtune runs`), not into ./mlruns of
    whatever directory training started in; a server decides for itself (None)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
    return (database.parent / ".mlartifacts").as_uri()


class MlflowTracker(Tracker):
    """One MLflow run per lmtune run, in the experiment named after the output folder; a
    resumed lmtune run continues its MLflow run (found by the run folder's path tag)."""

    name = "mlflow"

    def __init__(self, cfg: Config, run: RunFolder, resume_step: int | None = None):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # read when mlflow is imported
        from mlflow import MlflowClient
        from mlflow.entities import Param

        uri = tracking_uri(cfg)
        self.client = MlflowClient(tracking_uri=uri)
        experiment_id = self._experiment(Path(cfg.train.output_dir).expanduser().resolve().name or "lmtune", uri)
        run_dir = str(run.root.expanduser().resolve())
        self.run_id = self._existing_run(experiment_id, run_dir) if resume_step is not None else None
        if self.run_id is None:
            tags = {"lmtune.run_dir": run_dir, "lmtune.task": cfg.task, "lmtune.method": cfg.method.name,
                    "lmtune.model": cfg.model.name}
            self.run_id = self.client.create_run(experiment_id, run_name=cfg.train.run_name, tags=tags).info.run_id
            params = [Param(key, str(value)) for key, value in flat_config(cfg).items()]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.run_id, params=params[start:start + 100])
        else:  # its params are logged (and MLflow refuses a changed spelling: 2 vs 2.0)
            self.client.update_run(self.run_id, status="RUNNING")

    def _experiment(self, name: str, uri: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_local_artifact_root(uri))
        except MlflowException:  # another process (a search worker) created it meanwhile
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _existing_run(self, experiment_id: str, run_dir: str) -> str | None:
        if "'" in run_dir:
            return None  # not expressible in MLflow's filter syntax; a new MLflow run is started
        runs = self.client.search_runs([experiment_id], f"tags.`lmtune.run_dir` = '{run_dir}'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def finish(self, run: RunFolder) -> None:
        metrics, step = final_metrics(run)
        self.log_metrics(metrics, step)
        for path in run_artifacts(run):
            self.client.log_artifact(self.run_id, str(path), "plots" if path.suffix == ".png" else None)
        self.client.set_terminated(self.run_id, status="FINISHED")

    def fail(self, error: BaseException) -> None:
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        self.client.set_terminated(self.run_id, status=status)


# ---- TensorBoard -------------------------------------------------------------------------------
def _hparam_value(value: Any) -> bool | int | float | str:
    """The HParams plugin takes bools, numbers and strings; an unset field shows as "none"."""
    if value is None:
        return "none"
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class TensorBoardTracker(Tracker):
    """Event files in <run>/tensorboard/: scalars as the run goes, and one HParams session per
    run (its hyperparameters; its metrics are the run's last scalars, the final metrics
    included), so `tensorboard --logdir runs` compares runs in the HParams tab."""

    name = "tensorboard"

    def __init__(self, cfg: Config, run: RunFolder, resume_step: int | None = None):
        from tensorboard.plugins.hparams import summary_v2
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run rewrites the steps after its checkpoint: purge the first attempt's.
        purge = resume_step + 1 if resume_step is not None else None
        self.writer = SummaryWriter(log_dir=str(run.root / "tensorboard"), purge_step=purge)
        hparams = {key: _hparam_value(value) for key, value in flat_config(cfg).items()}
        self.writer.file_writer.add_summary(summary_v2.hparams_pb(hparams, trial_id=cfg.train.run_name))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def on_evaluate(self, row: dict[str, Any], control: Control) -> None:
        super().on_evaluate(row, control)
        self.writer.flush()  # evaluations are rare: let a watching TensorBoard see them now

    def finish(self, run: RunFolder) -> None:
        metrics, step = final_metrics(run)
        self.log_metrics(metrics, step)
        self._end("STATUS_SUCCESS")

    def fail(self, error: BaseException) -> None:
        # No end status: TensorBoard keeps the first one a run's events hold, so a failed run
        # resumed to the end would still read "failed" (its status.json and MLflow say it).
        self.writer.close()

    def _end(self, status: str) -> None:
        """The HParams session's end: its status, shown beside the run in the HParams tab."""
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(status), end_time_secs=time.time())
        content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=end))
        self.writer.file_writer.add_summary(
            Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=content)]))
        self.writer.close()


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker}


def trackers(cfg: Config, run: RunFolder, resume_step: int | None = None) -> list[Tracker]:
    """The trackers --train.report-to asks for (config.validate has checked the names and that
    their packages are installed). One that cannot start ends those already started."""
    started: list[Tracker] = []
    try:
        for name in tracker_names(cfg.train.report_to):
            started.append(TRACKERS[name](cfg, run, resume_step))
    except BaseException as error:
        Trackers(started).fail(error)
        raise
    return started


class Trackers:
    """The trackers among a run's callbacks, ended together."""

    def __init__(self, members: Sequence[Tracker]):
        self.members = list(members)

    def finish(self, run: RunFolder) -> None:
        """Log the written run folder (final metrics, artifacts) and end every tracker's run."""
        for tracker in self.members:
            tracker.finish(run)
        self.members = []

    def fail(self, error: BaseException) -> None:
        """End every tracker's run as failed; a tracker that cannot say so hides no error."""
        for tracker in self.members:
            try:
                tracker.fail(error)
            except Exception:
                pass
        self.members = []


@contextmanager
def tracking(callbacks: Sequence[Callback]) -> Iterator[Trackers]:
    """Wraps training and writing the results: yields the trackers among `callbacks`, to be
    finished once the run folder is written; an error inside ends their runs as failed."""
    group = Trackers([cb for cb in callbacks if isinstance(cb, Tracker)])
    try:
        yield group
    except BaseException as error:
        group.fail(error)
        raise
