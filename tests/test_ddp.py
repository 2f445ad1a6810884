"""The same loop under `accelerate launch --num_processes 2` (DDP, gloo on CPU) matches one
process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lmtune.pipeline import finetune
from conftest import free_port, tiny_config

pytestmark = pytest.mark.slow


METHODS = ["full", "lora"]


def test_two_processes_match_one(no_dropout_model, toy_data, tmp_path):
    """Full fine-tuning and LoRA, each trained under one `accelerate launch` (one launch for
    both: starting the processes costs more than the training)."""
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert launcher, "accelerate's launcher is installed with lmtune"
    common = dict(epochs=2, eval_strategy="epoch")
    for method in METHODS:
        ddp_cfg = tiny_config(no_dropout_model, toy_data, tmp_path / "ddp", batch_size=8, **common)
        ddp_cfg.method.name, ddp_cfg.lora.dropout = method, 0.0  # dropout masks differ by process layout
        ddp_cfg.train.run_name = method
        ddp_cfg.save(tmp_path / f"ddp-{method}.yaml")
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        from lmtune.pipeline import finetune
        from lmtune.training.distributed import end_processes
        for method in {METHODS!r}:
            finetune({str(tmp_path)!r} + f"/ddp-{{method}}.yaml", quiet=True)
        end_processes()
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                             "--main_process_port", str(free_port()),
                             "--mixed_precision", "no", "--dynamo_backend", "no", str(script)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    def losses(path: Path) -> list[float]:
        rows = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["kind"] == "train"]

    for method in METHODS:
        single_cfg = tiny_config(no_dropout_model, toy_data, tmp_path / "one", batch_size=16, **common)
        single_cfg.method.name, single_cfg.lora.dropout, single_cfg.train.run_name = method, 0.0, method
        single = finetune(single_cfg, quiet=True)
        ddp_run = tmp_path / "ddp" / method
        ddp_metrics = json.loads((ddp_run / "metrics.json").read_text())
        assert ddp_metrics["training"]["processes"] == 2, method
        ddp_losses, single_losses = losses(ddp_run), losses(single.root)
        assert len(ddp_losses) == len(single_losses) == 26, method  # 200 examples / global batch 16, 2 epochs
        assert ddp_losses == pytest.approx(single_losses, rel=1e-3, abs=1e-4), method
        single_metrics = json.loads(single.metrics.read_text())
        assert ddp_metrics["validation"]["accuracy"] == pytest.approx(single_metrics["validation"]["accuracy"]), method
