"""`lmtune runs`: run status (status.json) written by finetune, and the listing, sorting,
filtering and comparison of run folders, nested ones (a study's trials) included.

One module-scoped folder holds real tiny runs: finished (two, one nested as a search trial),
failed and interrupted after a checkpoint (their folders stay), plus run folders whose
status.json says running: one of a process killed with kill -9 (a pid that no longer exists),
one of a live process, one of another machine that stopped beating.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config
from lmtune.cli import main
from lmtune.experiments.runs import compare_runs, filter_runs, list_runs, sort_runs
from lmtune.pipeline import finetune
from lmtune.run import STALE_AFTER_S, RunFolder
from lmtune.training.callbacks import Callback, Heartbeat
from lmtune.training.checkpoint import read_pointer


class RaiseOnSave(Callback):
    """Raises after the first checkpoint is written, so the run folder stays."""

    def __init__(self, error: BaseException):
        self.error = error

    def on_save(self, checkpoint, control):
        raise self.error


def _train(tiny_model, toy_data, out: Path, name: str, callbacks=(), **train):
    cfg = tiny_config(tiny_model, toy_data, out, run_name=name, epochs=1, **train)
    return finetune(cfg, callbacks=callbacks, quiet=True)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): what kill -9 leaves behind."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _fake_running(source: Path, folder: Path, learning_rate: float, **status) -> None:
    """A run folder whose status.json says running, with the given process fields, and one
    evaluation in its log (what a run killed mid-training leaves)."""
    folder.mkdir(parents=True)
    config = yaml.safe_load((source / "config.yaml").read_text())
    config["train"].update(run_name=folder.name, learning_rate=learning_rate)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [{"kind": "train", "step": 1, "loss": 0.7},
            {"kind": "eval", "step": 13, "accuracy": 0.625, "loss": 0.69, "best": True, "evals_since_best": 0},
            {"kind": "eval", "step": 26, "accuracy": 0.5, "loss": 0.7, "best": False, "evals_since_best": 1}]
    (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"kind": "tr')
    now = time.time()
    record = {"status": "running", "pid": os.getpid(), "host": socket.gethostname(), "started": now - 90,
              "heartbeat": now - 5, **status}
    (folder / "status.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def runs_dir(tiny_model, toy_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    _train(tiny_model, toy_data, root, "finished", learning_rate=3e-3)
    _train(tiny_model, toy_data, root / "study", "trial-001", learning_rate=1e-3)  # a search's trial
    with pytest.raises(RuntimeError):
        _train(tiny_model, toy_data, root, "failed", [RaiseOnSave(RuntimeError("boom\nsecond line"))],
               learning_rate=2e-3)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_model, toy_data, root, "ctrl-c", [RaiseOnSave(KeyboardInterrupt())], learning_rate=4e-3)
    source = root / "finished"
    _fake_running(source, root / "killed", 5e-3, pid=_dead_pid())
    _fake_running(source, root / "live", 6e-3)  # this test process: alive
    _fake_running(source, root / "lost-node", 7e-3, host="another-machine", pid=1,
                  heartbeat=time.time() - STALE_AFTER_S - 60)
    (root / "notes").mkdir()  # not a run: no config.yaml
    (root / "notes" / "todo.txt").write_text("x")
    return root


def _statuses(runs) -> dict[str, str]:
    return {r.name: r.status for r in runs}


def test_finetune_writes_status_and_listing_reads_every_outcome(runs_dir):
    runs = list_runs(runs_dir)
    assert _statuses(runs) == {"ctrl-c": "interrupted", "failed": "failed", "finished": "finished",
                               "killed": "interrupted", "live": "running", "lost-node": "interrupted",
                               "study/trial-001": "finished"}
    by_name = {r.name: r for r in runs}
    assert (runs_dir / "failed" / "checkpoints").is_dir()  # failed after a checkpoint: kept
    assert by_name["failed"].note == "RuntimeError: boom"
    assert "KeyboardInterrupt" in by_name["ctrl-c"].note
    assert "is gone" in by_name["killed"].note and "no heartbeat" in by_name["lost-node"].note
    record = RunFolder(runs_dir / "finished").read_status()
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert record["started"] <= record["heartbeat"] <= record["ended"]
    finished = by_name["finished"]
    assert (finished.task, finished.method, finished.metric) == ("classification", "full", "accuracy")
    results = json.loads((runs_dir / "finished" / "metrics.json").read_text())
    assert finished.value == results["validation"]["accuracy"]
    assert finished.seconds is not None and finished.model == Path(finished.config["model.name"]).name
    assert by_name["failed"].value is not None  # from its log's evaluation
    assert by_name["killed"].value == 0.625  # the best evaluation so far; the half-written line skipped
    assert 80 < by_name["live"].seconds < 3600  # running: time since it started


def test_resume_sets_running_then_finished(tiny_model, toy_data, tmp_path):
    seen = []

    class Watch(Callback):
        def on_train_begin(self, info):
            seen.append(RunFolder(tmp_path / "run").read_status()["status"])

    with pytest.raises(KeyboardInterrupt):
        _train(tiny_model, toy_data, tmp_path, "run", [RaiseOnSave(KeyboardInterrupt())])
    assert RunFolder(tmp_path / "run").read_status()["status"] == "interrupted"
    finetune(None, resume=tmp_path / "run", callbacks=[Watch()], quiet=True)
    assert seen == ["running"]
    assert RunFolder(tmp_path / "run").read_status()["status"] == "finished"


def test_heartbeat_beats_at_events_and_at_most_every_interval():
    beats = []
    heart = Heartbeat(lambda: beats.append(1), interval_s=3600)
    heart.on_train_begin({})
    heart.on_step({}, None)
    heart.on_step({}, None)
    assert len(beats) == 1
    heart.on_evaluate({}, None)
    heart.on_save(Path("."), None)
    assert len(beats) == 3


def test_sigterm_marks_the_run_interrupted(tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path / "runs", epochs=3, eval_strategy="steps",
                      eval_steps=10, save_steps=2)
    cfg.save(tmp_path / "cfg.yaml")
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from lmtune.pipeline import finetune
        from lmtune.training.callbacks import Callback

        class SlowDown(Callback):
            def on_step(self, row, control):
                time.sleep(0.2)

        finetune({str(tmp_path / "cfg.yaml")!r}, callbacks=[SlowDown()], quiet=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script)])
    run = RunFolder(tmp_path / "runs" / "run")
    deadline = time.time() + 120
    while time.time() < deadline and read_pointer(run.checkpoints, "latest.txt") is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be stopped"
    assert run.current_status()[0] == "running"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert run.current_status() == ("interrupted", "stopped by SIGTERM")


def test_differing_hyperparameters_are_columns(runs_dir, capsys):
    assert main(["runs", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "name" in line and "status" in line)
    assert "train.learning_rate" in header and "accuracy" in header
    assert "train.run_name" not in header and "train.epochs" not in header  # same in every run
    line = next(line for line in out.splitlines() if line.strip().startswith("study/trial-001"))
    assert "finished" in line and "0.001" in line
    assert "failed: failed: RuntimeError: boom" in out
    assert "killed: interrupted: process" in out


def test_sort_filter_and_json(runs_dir, capsys):
    assert main(["runs", str(runs_dir), "--json", "--sort", "-train.learning_rate"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == ["lost-node", "live", "killed", "ctrl-c", "finished", "failed",
                                         "study/trial-001"]
    assert rows[0]["hyperparameters"] == {"train.learning_rate": 7e-3}
    assert rows[0]["status"] == "interrupted" and rows[0]["config"]["train.learning_rate"] == 7e-3

    assert main(["runs", str(runs_dir), "--json", "--filter", "status=finished"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == ["finished", "study/trial-001"]
    assert rows[0]["hyperparameters"] == {"train.learning_rate": 3e-3}  # differs among the listed runs

    runs = list_runs(runs_dir)
    assert [r.name for r in filter_runs(runs, ["method.name=full", "train.learning_rate<0.0035",
                                               "status!=failed"])] == ["finished", "study/trial-001"]
    assert {r.name for r in filter_runs(runs, ["name~trial"])} == {"study/trial-001"}
    assert {r.name for r in filter_runs(runs, ["accuracy>0.6"])} >= {"killed"}
    assert all(r.value is not None and r.value > 0.6 for r in filter_runs(runs, ["accuracy>0.6"]))
    ordered = sort_runs(runs, "status")
    assert [r.status for r in ordered] == sorted(r.status for r in runs)
    assert sort_runs(runs, "-accuracy")[0].value == max(r.value for r in runs if r.value is not None)


def test_compare_shows_config_differences_and_metric_deltas_per_class(runs_dir, capsys):
    result = compare_runs(runs_dir, ["finished", "study/trial-001"])
    assert result["config"] == {"train.learning_rate": [3e-3, 1e-3]}
    accuracy = result["metrics"]["accuracy"]
    assert result["deltas"]["accuracy"] == [0.0, pytest.approx(accuracy[1] - accuracy[0])]
    assert set(result["per_class"]) == {"neg", "pos"}
    assert result["per_class"]["pos"]["f1"]["deltas"][0] == 0.0

    assert main(["runs", str(runs_dir), "--compare", "finished", "study/trial-001", "failed"]) == 0
    out = capsys.readouterr().out
    assert "config (differences only)" in out and "train.learning_rate" in out
    assert "metrics (differences from finished)" in out and "per class" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("accuracy"))
    assert line.count("(+") + line.count("(-") == 2  # two runs compared with the first


@pytest.mark.parametrize("argv, message", [
    (["runs", "{empty}"], "no run folders in it"),
    (["runs", "{missing}"], "no such folder"),
    (["runs", "{runs}", "--sort", "acuracy"], "did you mean 'accuracy'"),
    (["runs", "{runs}", "--filter", "status"], "expected KEY=VALUE"),
    (["runs", "{runs}", "--filter", "train.learning-rate>1"], "did you mean 'train.learning_rate'"),
    (["runs", "{runs}", "--filter", "accuracy>high"], "compares numbers with numbers"),
    (["runs", "{runs}", "--compare", "finished", "finishd"], "did you mean 'finished'"),
    (["runs", "{runs}", "--compare", "finished"], "needs two runs or more"),
    (["runs", "{runs}", "--compare", "finished", "failed", "--sort", "time"], "--compare shows"),
])
def test_bad_input_is_a_message(runs_dir, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    paths = {"empty": tmp_path / "empty", "missing": tmp_path / "missing", "runs": runs_dir}
    assert main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmtune: error:") and message in err and "Traceback" not in err
