"""Experiment tracking (--train.report-to): what a run logs is read back through the trackers'
own readers, MLflow's client (from a real `mlflow server`) and TensorBoard's event reader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port, tiny_config

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _rows(run, kind: str) -> list[dict]:
    return [row for row in run.log_rows() if row["kind"] == kind]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real tracking server (SQLite backend, artifacts proxied to a local folder) on a free
    port of 127.0.0.1; yields its URL, stops it (its whole process group) afterwards."""
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "w")
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                              start_new_session=True, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited ({server.returncode}):\n{(tmp_path / 'mlflow-server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer in 120 s:\n{(tmp_path / 'mlflow-server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.mark.slow  # a server subprocess (about 30 s to start on 2 cores)
def test_mlflow_server_gets_params_metrics_and_artifacts(mlflow_server, tiny_model, toy_data, tmp_path):
    import lmtune
    from lmtune.config import describe
    from mlflow import MlflowClient

    cfg = tiny_config(tiny_model, toy_data, tmp_path / "runs", epochs=2, report_to="mlflow",
                      tracking_uri=mlflow_server)
    run = lmtune.finetune(cfg, quiet=True)

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("runs")  # the output folder's name
    (found,) = client.search_runs([experiment.experiment_id])
    run_id = found.info.run_id
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    assert found.data.tags["lmtune.run_dir"] == str(run.root.resolve())
    # The resolved config, flat: every field, as the YAML keys.
    params = found.data.params
    assert len(params) == sum(len(infos) for _, _, infos in describe())
    assert params["train.learning_rate"] == "0.003" and params["model.max_length"] == "32"
    assert params["task"] == "classification" and params["train.report_to"] == "mlflow"
    # Every logged step and every evaluation, at its step.
    history = client.get_metric_history(run_id, "train/loss")
    train_rows = _rows(run, "train")
    assert [m.step for m in history] == [row["step"] for row in train_rows]
    assert [m.value for m in history] == pytest.approx([row["loss"] for row in train_rows])
    for name in ("train/lr", "train/grad_norm", "train/samples_per_s"):
        assert len(client.get_metric_history(run_id, name)) == len(train_rows)
    evals = client.get_metric_history(run_id, "eval/accuracy")
    assert [(m.step, m.value) for m in evals] == [(r["step"], pytest.approx(r["accuracy"])) for r in _rows(run, "eval")]
    # The final metrics: metrics.json's validation scalars.
    metrics = json.loads(run.metrics.read_text())
    assert found.data.metrics["validation/accuracy"] == pytest.approx(metrics["validation"]["accuracy"])
    assert found.data.metrics["training/steps"] == metrics["training"]["steps"]
    # The written run folder's model card, metrics, config and plots.
    assert {a.path for a in client.list_artifacts(run_id)} == {"README.md", "config.yaml", "metrics.json", "plots"}
    assert "plots/learning_curve.png" in {a.path for a in client.list_artifacts(run_id, "plots")}
    copy = client.download_artifacts(run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == metrics


def test_tensorboard_events_hold_scalars_and_hparams(tiny_model, toy_data, tmp_path):
    import lmtune
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    cfg = tiny_config(tiny_model, toy_data, tmp_path / "runs", epochs=2, report_to="tensorboard")
    run = lmtune.finetune(cfg, quiet=True)

    events = EventAccumulator(str(run.root / "tensorboard"))
    events.Reload()
    losses = events.Scalars("train/loss")
    train_rows = _rows(run, "train")
    assert [e.step for e in losses] == [row["step"] for row in train_rows]
    assert [e.value for e in losses] == pytest.approx([row["loss"] for row in train_rows], rel=1e-5)
    assert len(events.Scalars("train/lr")) == len(train_rows)
    evals = _rows(run, "eval")
    assert [(e.step, e.value) for e in events.Scalars("eval/accuracy")] == \
        [(r["step"], pytest.approx(r["accuracy"], rel=1e-5)) for r in evals]
    metrics = json.loads(run.metrics.read_text())
    (final,) = events.Scalars("validation/accuracy")
    assert final.step == metrics["training"]["steps"]
    assert final.value == pytest.approx(metrics["validation"]["accuracy"], rel=1e-5)
    # The HParams plugin's session: the run's hyperparameters, then its end (success).
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.group_name == "run"
    assert start.hparams["train.learning_rate"].number_value == pytest.approx(3e-3)
    assert start.hparams["task"].string_value == "classification"
    assert start.hparams["train.group_by_length"].bool_value is True
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS


def test_default_uri_beside_the_runs_a_failed_run_then_resumed(tiny_model, toy_data, tmp_path,
                                                                        monkeypatch):
    """Both trackers at once; training dies after its first checkpoint (so the run folder stays)."""
    import lmtune
    from lmtune.training.hooks import Callback
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    class Crash(Callback):
        def on_step(self, row, control):
            if row["step"] == 15:  # an epoch is 13 steps: one checkpoint written
                raise RuntimeError("boom")

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    cfg = tiny_config(tiny_model, toy_data, out, epochs=2, report_to="mlflow, tensorboard")
    with pytest.raises(RuntimeError, match="boom"):
        lmtune.finetune(cfg, callbacks=[Crash()], quiet=True)

    assert (out / "mlflow.db").is_file() and not (tmp_path / "mlruns").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("runs")
    assert experiment.artifact_location == (out / ".mlartifacts").resolve().as_uri()
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FAILED" and found.info.run_name == "run"
    assert max(m.step for m in client.get_metric_history(found.info.run_id, "train/loss")) == 15
    events = EventAccumulator(str(out / "run" / "tensorboard"))
    events.Reload()
    assert max(e.step for e in events.Scalars("train/loss")) == 15
    # No end status in TensorBoard (it keeps a run's first, and this run may be resumed).
    assert set(events.PluginTagToContent("hparams")) == {"_hparams_/session_start_info"}

    # Resumed, the run continues its MLflow run; TensorBoard drops the steps after the checkpoint.
    run = lmtune.finetune(None, resume=out / "run", quiet=True)
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == found.info.run_id and again.info.status == "FINISHED"
    assert again.info.artifact_uri.startswith((out / ".mlartifacts").resolve().as_uri())
    assert [p.name for p in (out / ".mlartifacts").rglob("metrics.json")] == ["metrics.json"]
    events = EventAccumulator(str(run.root / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [row["step"] for row in _rows(run, "train")]
    end = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_end_info"]).session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS


def test_tracking_uri_flag_then_environment_then_sqlite(tmp_path, monkeypatch):
    from lmtune.config import Config
    from lmtune.experiments.tracking import tracking_uri

    cfg = Config()
    cfg.train.output_dir = str(tmp_path / "runs")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(cfg) == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_uri(cfg) == "http://tracking.example:5000"
    cfg.train.tracking_uri = "postgresql://db/mlflow"
    assert tracking_uri(cfg) == "postgresql://db/mlflow"


def test_report_to_names_are_checked_before_the_model_loads(toy_data, tmp_path, capsys, monkeypatch):
    import importlib.util

    from lmtune.cli import main
    from lmtune.config import TRACKERS, Config, ConfigError, tracker_names, validate
    from lmtune.experiments import tracking

    assert set(TRACKERS) == set(tracking.TRACKERS)
    assert tracker_names("none") == [] and tracker_names("TensorBoard, mlflow") == ["tensorboard", "mlflow"]
    assert tracker_names(str(["mlflow", "tensorboard"])) == ["mlflow", "tensorboard"]  # a YAML list
    # The model named does not exist: the tracker name is what is said.
    code = main(["train", "--train", str(toy_data["train"]), "--model", str(tmp_path / "no-model"),
                 "--train.report-to", "tensorboard,wandb"])
    err = capsys.readouterr().err
    assert code == 2 and "--train.report-to 'wandb': unknown tracker; choose from tensorboard, mlflow" in err

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real_find_spec(name, *a))
    cfg = Config.from_dict({"data": {"train": str(toy_data["train"])}, "train": {"report_to": "mlflow"}})
    with pytest.raises(ConfigError, match=r"mlflow package is not installed; pip install 'lmtune\[tracking\]'"):
        validate(cfg)
