"""SST-2 with every method side by side: dev accuracy, trainable parameters, peak memory,
training speed and saved artifact size, each method in its own process (so peak RSS is its own).

    .venv/bin/python benchmarks/peft_methods.py                      # the core budget: 3 epochs
    .venv/bin/python benchmarks/peft_methods.py --train-rows 16000 --methods full,lora \\
        -- --train.epochs 1                                          # a smaller budget

Arguments after `--` go to every run as config overrides (as in the other benchmarks).
Methods use their own default learning rates (lmtune.methods: full 1e-4 for this width,
LoRA/AdaLoRA 5e-4, IA3 3e-3, prompt tuning 3e-2). Prefix tuning needs a decoder, so it is
not in the encoder table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from preset_run import ROOT, SHARED_DATA

CHILD = """
import json, sys
sys.path.insert(0, {bench!r})
from preset_run import run_preset
metrics, seconds = run_preset("sst2.yaml", {data!r}, {run_name!r}, {argv!r})
print("RESULT " + json.dumps({{"metrics": metrics, "seconds": seconds}}))
"""


def subset(rows: int, folder: Path) -> str:
    """The first `rows` training rows (the file is already shuffled), as a temporary TSV."""
    source = SHARED_DATA / "sst2" / "train.tsv"
    with open(source, newline="") as handle:
        lines = list(csv.reader(handle, delimiter="\t"))
    out = folder / f"train-{rows}.tsv"
    with open(out, "w", newline="") as handle:
        csv.writer(handle, delimiter="\t").writerows(lines[: rows + 1])
    return str(out)


def run_method(method: str, train: str, argv: list[str]) -> dict:
    data = {"train": train, "validation": "sst2/dev.tsv"}
    run_name = f"bench-peft-{method}"
    code = CHILD.format(bench=str(Path(__file__).parent), data=data, run_name=run_name,
                        argv=["--method.name", method, "--train.progress", "false", *argv])
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"{method} failed:\n{output[-3000:]}")
    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
    model_dir = ROOT / "runs" / run_name / "model"
    weights = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    metrics = result["metrics"]
    return {"method": method, "accuracy": metrics["validation"]["accuracy"],
            "trainable": metrics["parameters"]["trainable"], "total": metrics["parameters"]["total"],
            "peak_rss_mb": usage.ru_maxrss / 1024, "samples_per_s": metrics["training"]["samples_per_s"],
            "artifact_mb": weights / 1e6, "seconds": result["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="full,lora,adalora,ia3,prompt")
    parser.add_argument("--train-rows", type=int, default=0, help="first N training rows (0: all)")
    args, rest = parser.parse_known_args()
    overrides = [a for a in rest if a != "--"]
    with tempfile.TemporaryDirectory() as tmp:
        train = subset(args.train_rows, Path(tmp)) if args.train_rows else "sst2/train.tsv"
        rows = []
        for method in args.methods.split(","):
            start = time.time()
            rows.append(run_method(method, train, overrides))
            print(f"{method}: done in {time.time() - start:.0f}s", flush=True)
    full = next((r for r in rows if r["method"] == "full"), None)
    print(f"\nSST-2 dev, {args.train_rows or 'all'} training rows, overrides: {' '.join(overrides) or 'none'}")
    print("| method | dev accuracy | vs full | trainable params | peak RSS | samples/s | artifact |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        delta = f"{100 * (r['accuracy'] - full['accuracy']):+.2f} pts" if full else "-"
        size = f"{r['artifact_mb']:.2f} MB" + (f" ({100 * r['artifact_mb'] / full['artifact_mb']:.1f}%)"
                                               if full else "")
        print(f"| {r['method']} | {r['accuracy']:.4f} | {delta} | {r['trainable']:,} "
              f"({100 * r['trainable'] / r['total']:.2f}%) | {r['peak_rss_mb']:.0f} MB | "
              f"{r['samples_per_s']:.1f} | {size} |")


if __name__ == "__main__":
    main()
