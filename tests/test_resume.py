"""Exact resume: a run killed with SIGKILL and resumed ends with the same weights as a run
that was never interrupted (CPU, same seed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmtune.pipeline import finetune
from lmtune.training.callbacks import Callback
from lmtune.training.checkpoint import read_pointer
from conftest import tiny_config

pytestmark = pytest.mark.precision

SETTINGS = dict(epochs=3, eval_strategy="steps", eval_steps=10, save_steps=2)


def _cfg(tiny_model, toy_data, out):
    return tiny_config(tiny_model, toy_data, out, **SETTINGS)


def test_sigkill_then_resume_equals_uninterrupted(tiny_model, toy_data, tmp_path):
    killed_dir = tmp_path / "killed"
    cfg = _cfg(tiny_model, toy_data, killed_dir)
    cfg_path = tmp_path / "cfg.yaml"
    cfg.save(cfg_path)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from lmtune.pipeline import finetune
        from lmtune.training.callbacks import Callback

        class SlowDown(Callback):  # gives the test time to kill mid-run
            def on_step(self, row, loop_state):
                time.sleep(0.15)

        finetune({str(cfg_path)!r}, callbacks=[SlowDown()], quiet=True)
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    run_dir = killed_dir / "run"
    deadline = time.time() + 120
    latest = None
    while time.time() < deadline:
        latest = read_pointer(run_dir / "checkpoints", "latest.txt")
        if latest is not None and int(latest.name.split("-")[1]) >= 12:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "model").exists()
    killed_at = int(read_pointer(run_dir / "checkpoints", "latest.txt").name.split("-")[1])
    assert 12 <= killed_at < 39

    resumed = finetune(None, resume=run_dir, quiet=True)
    straight = finetune(_cfg(tiny_model, toy_data, tmp_path / "straight"), quiet=True)

    a = load_file(str(resumed.model / "model.safetensors"))
    b = load_file(str(straight.model / "model.safetensors"))
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from uninterrupted"
    ma, mb = json.loads(resumed.metrics.read_text()), json.loads(straight.metrics.read_text())
    assert ma["training"]["steps"] == mb["training"]["steps"] == 39
    assert ma["validation"] == mb["validation"]
    steps = [r["step"] for r in resumed.log_rows() if r["kind"] == "train"]
    assert steps == sorted(set(steps)) == list(range(1, 40))  # log trimmed and continued, no gaps


def test_interrupted_checkpoint_write_leaves_previous_usable(tiny_model, toy_data, tmp_path):
    """A crash mid-write leaves a .tmp folder that no pointer names; resume ignores it, continues
    from the last complete checkpoint and ends with the weights of an uninterrupted run."""
    settings = dict(max_steps=4, eval_strategy="no", save_steps=2)

    class Crash(Callback):
        def on_step(self, row, loop_state):
            if row["step"] == 3:  # after the step-2 checkpoint
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(tiny_config(tiny_model, toy_data, tmp_path / "crashed", **settings), callbacks=[Crash()],
                 quiet=True)
    run_dir = tmp_path / "crashed" / "run"
    root = run_dir / "checkpoints"
    latest = read_pointer(root, "latest.txt")
    assert latest.name == "step-0000002"
    partial = root / ".tmp-step-0000004"  # the step-4 checkpoint, cut short while being written
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00garbage")
    assert read_pointer(root, "latest.txt") == latest

    class Start(Callback):
        def on_train_begin(self, info):
            self.step = info["step"]

    start = Start()
    resumed = finetune(None, resume=run_dir, callbacks=[start], quiet=True)
    assert start.step == 2  # continued from the complete checkpoint, not from scratch
    straight = finetune(tiny_config(tiny_model, toy_data, tmp_path / "straight", **settings), quiet=True)
    a = load_file(str(resumed.model / "model.safetensors"))
    b = load_file(str(straight.model / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    assert json.loads(resumed.metrics.read_text())["training"]["steps"] == 4
    assert [r["step"] for r in resumed.log_rows() if r["kind"] == "train"] == [1, 2, 3, 4]
