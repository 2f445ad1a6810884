"""Shared by the accuracy benchmarks: run an examples/ preset on ../shared/data, return metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

CHILD = """
import json, sys
sys.path.insert(0, {bench!r})
from preset_run import run_preset
metrics, seconds = run_preset({preset!r}, {data!r}, {run_name!r}, {argv!r})
print("RESULT " + json.dumps({{"metrics": metrics, "seconds": seconds}}))
"""


def run_preset(preset: str, data: dict[str, str], run_name: str, argv: list[str]) -> tuple[dict, float]:
    """Train the preset with `data` (split -> path under ../shared/data) and CLI-style overrides."""
    from lmtune.cli import _overrides
    from lmtune.config import Config
    from lmtune.pipeline import finetune

    cfg = Config.from_yaml(ROOT / "examples" / preset)
    for split, relative in data.items():
        path = SHARED_DATA / relative  # an absolute path stays as it is
        if not path.is_file():
            sys.exit(f"{path} not found: the benchmark reads ../shared/data")
        setattr(cfg.data, split, str(path))
    cfg.train.output_dir, cfg.train.run_name, cfg.train.overwrite = str(ROOT / "runs"), run_name, True
    for key, value in _overrides(argv):
        cfg.override(key, value)
    start = time.time()
    run = finetune(cfg)
    return json.loads((run.root / "metrics.json").read_text()), time.time() - start


def run_preset_in_child(preset: str, data: dict[str, str], run_name: str, argv: list[str],
                        env: dict[str, str] | None = None,
                        timeout: float | None = None) -> tuple[dict | None, str, float]:
    """`run_preset` in a process of its own, so that its peak RSS and threads are its own:
    (metrics and seconds, or None if it failed or ran past `timeout`; its output; peak RSS MB)."""
    code = CHILD.format(bench=str(Path(__file__).parent), preset=preset, data=data, run_name=run_name,
                        argv=argv)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT, env=env)
    timer = threading.Timer(timeout, proc.kill) if timeout is not None else None
    if timer:
        timer.start()
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # wait4, not wait(): the child's own resource usage
    if timer:
        timer.cancel()
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1][7:]) if status == 0 and lines else None
    return result, output, usage.ru_maxrss / 1024
