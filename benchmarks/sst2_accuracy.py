"""SST-2 accuracy with the default model and default hyperparameters (examples/sst2.yaml).

Trains on ../shared/data/sst2/train.tsv (60,614 rows), selects on dev.tsv (6,735 rows) and
prints dev accuracy next to the published MiniLM-L6xH384 reference (91.5).

    .venv/bin/python benchmarks/sst2_accuracy.py [--train.epochs 3 ...]
"""

import sys

from preset_run import run_preset

if __name__ == "__main__":
    metrics, seconds = run_preset("sst2.yaml", {"train": "sst2/train.tsv", "validation": "sst2/dev.tsv"},
                                  "bench-sst2", sys.argv[1:])
    print(f"\nSST-2 dev accuracy: {metrics['validation']['accuracy']:.4f} "
          f"(reference MiniLM-L6xH384: 0.915) in {seconds:.0f}s; "
          f"training {metrics['training']['samples_per_s']:.0f} samples/s, "
          f"precision {metrics['training']['precision']}")
