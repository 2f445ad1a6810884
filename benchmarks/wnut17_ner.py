"""WNUT-17 NER with the default model (examples/wnut17.yaml): train on train, select on dev,
report entity-level micro F1 on test (seqeval, strict IOB2), next to the DistilBERT reference.

    .venv/bin/python benchmarks/wnut17_ner.py [--train.epochs 10 ...]
"""

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wnut17"


def main(argv: list[str]) -> None:
    from lmtune.cli import _overrides
    from lmtune.config import Config
    from lmtune.pipeline import finetune

    if not DATA.is_dir():
        sys.exit(f"WNUT-17 not found at {DATA}")
    cfg = Config.from_yaml(ROOT / "examples" / "wnut17.yaml")
    cfg.data.train, cfg.data.validation, cfg.data.test = (str(DATA / f"{s}.conll") for s in ("train", "dev", "test"))
    cfg.train.output_dir, cfg.train.run_name, cfg.train.overwrite = str(ROOT / "runs"), "bench-wnut17", True
    for key, value in _overrides(argv):
        cfg.override(key, value)
    start = time.time()
    run = finetune(cfg)
    metrics = json.loads((run.root / "metrics.json").read_text())
    windowed = metrics["data"]["test"].get("windowed", 0)
    print(f"\nWNUT-17 entity micro F1: test {metrics['test']['f1']:.4f} "
          f"(P {metrics['test']['precision']:.4f} R {metrics['test']['recall']:.4f}), "
          f"dev {metrics['validation']['f1']:.4f} at step {metrics['training']['best_step']}; "
          f"reference DistilBERT-uncased 0.36-0.43; {time.time() - start:.0f}s; "
          f"{windowed} test inputs windowed")


if __name__ == "__main__":
    main(sys.argv[1:])
