"""Shared by the accuracy benchmarks: run an examples/ preset on ../shared/data, return metrics."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


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
