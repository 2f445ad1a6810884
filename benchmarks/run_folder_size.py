"""Disk size of finished run folders against their saved model (the target: at most 1.1x).

Trains the SST-2 preset (examples/sst2.yaml) once with full fine-tuning and once with LoRA and
prints, for each, the run folder's size, the saved model's size and their ratio. The layout of
a finished folder does not depend on how long it trained, so a short budget gives the same
figures as the full one:

    .venv/bin/python benchmarks/run_folder_size.py                       # 40 steps each
    .venv/bin/python benchmarks/run_folder_size.py --train.max-steps 0   # the full 3 epochs
"""

import sys
from pathlib import Path

from preset_run import ROOT, run_preset


def size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


if __name__ == "__main__":
    argv = ["--train.max-steps", "40", "--train.eval-steps", "20", "--train.eval-strategy", "steps",
            *sys.argv[1:]]
    data = {"train": "sst2/train.tsv", "validation": "sst2/dev.tsv"}
    rows = []
    for method in ("full", "lora"):
        run_preset("sst2.yaml", data, f"size-{method}", [*argv, "--method.name", method])
        run = ROOT / "runs" / f"size-{method}"
        folder, model = size_mb(run), size_mb(run / "model")
        rows.append((method, folder, model, (run / "checkpoints").exists()))
    print("\n| method | run folder MB | model/ MB | ratio | checkpoints left |")
    print("|---|---|---|---|---|")
    for method, folder, model, left in rows:
        print(f"| {method} | {folder:.2f} | {model:.2f} | {folder / model:.3f}x | {'yes' if left else 'no'} |")
