"""SST-2 accuracy with the default model and default hyperparameters (examples/sst2.yaml).

Trains on ../shared/data/sst2/train.tsv (60,614 rows), selects on dev.tsv (6,735 rows) and
prints dev accuracy next to the published MiniLM-L6xH384 reference (91.5).

    .venv/bin/python benchmarks/sst2_accuracy.py [--train.epochs 3 ...]
"""

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"


def main(argv: list[str]) -> None:
    from lmtune.cli import _overrides
    from lmtune.config import Config
    from lmtune.pipeline import finetune

    if not DATA.is_dir():
        sys.exit(f"SST-2 not found at {DATA}")
    cfg = Config.from_yaml(ROOT / "examples" / "sst2.yaml")
    cfg.data.train, cfg.data.validation = str(DATA / "train.tsv"), str(DATA / "dev.tsv")
    cfg.train.output_dir = str(ROOT / "runs")
    cfg.train.run_name = "bench-sst2"
    cfg.train.overwrite = True
    for key, value in _overrides(argv):
        cfg.override(key, value)
    start = time.time()
    run = finetune(cfg)
    metrics = json.loads((run.root / "metrics.json").read_text())
    print(f"\nSST-2 dev accuracy: {metrics['validation']['accuracy']:.4f} "
          f"(reference MiniLM-L6xH384: 0.915) in {time.time() - start:.0f}s; "
          f"training {metrics['training']['samples_per_s']:.0f} samples/s, "
          f"precision {metrics['training']['precision']}")


if __name__ == "__main__":
    main(sys.argv[1:])
