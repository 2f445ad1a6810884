"""SST-2 with every method side by side: dev accuracy, trainable parameters, peak memory,
training speed and saved artifact size, each method in its own process (so peak RSS is its own).

    .venv/bin/python benchmarks/peft_methods.py                      # the core budget: 3 epochs
    .venv/bin/python benchmarks/peft_methods.py --train-rows 16000 --methods full,lora \\
        -- --train.epochs 1                                          # a smaller budget
    .venv/bin/python benchmarks/peft_methods.py --methods full,lora \\
        --variant "lora-r4=lora --lora.r 4 --lora.alpha 8"          # extra rows: one setting each

Arguments after `--` go to every run as config overrides (as in the other benchmarks).
Methods use their own default learning rates (lmtune.methods: full 1e-4 for this width,
LoRA/AdaLoRA 1e-3, IA3 3e-3, prompt tuning 3e-2). Prefix tuning needs a decoder, so it is
not in the encoder table.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from preset_run import ROOT, SHARED_DATA, run_preset_in_child


def subset(rows: int, folder: Path) -> str:
    """The first `rows` training rows (the file is already shuffled), as a temporary TSV."""
    source = SHARED_DATA / "sst2" / "train.tsv"
    with open(source, newline="") as handle:
        lines = list(csv.reader(handle, delimiter="\t"))
    out = folder / f"train-{rows}.tsv"
    with open(out, "w", newline="") as handle:
        csv.writer(handle, delimiter="\t").writerows(lines[: rows + 1])
    return str(out)


def run_method(label: str, method: str, train: str, argv: list[str]) -> dict | None:
    data = {"train": train, "validation": "sst2/dev.tsv"}
    run_name = f"bench-peft-{label}"
    result, output, peak_rss_mb = run_preset_in_child(
        "sst2.yaml", data, run_name, ["--method.name", method, "--train.progress", "false", *argv])
    if result is None:
        print(f"{label} failed:\n{output[-3000:]}", flush=True)
        return None
    model_dir = ROOT / "runs" / run_name / "model"
    weights = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    metrics = result["metrics"]
    return {"method": label, "accuracy": metrics["validation"]["accuracy"],
            "trainable": metrics["parameters"]["trainable"], "total": metrics["parameters"]["total"],
            "peak_rss_mb": peak_rss_mb, "samples_per_s": metrics["training"]["samples_per_s"],
            "artifact_mb": weights / 1e6, "seconds": result["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="full,lora,adalora,ia3,prompt")
    parser.add_argument("--variant", action="append", default=[],
                        help='an extra row: "LABEL=METHOD --key value ..." (repeatable)')
    parser.add_argument("--workers", type=int, default=1,
                        help="runs at a time (over 1, samples/s and RSS are measured on a shared machine)")
    parser.add_argument("--train-rows", type=int, default=0, help="first N training rows (0: all)")
    args, rest = parser.parse_known_args()
    overrides = [a for a in rest if a != "--"]
    runs = [(method, method, []) for method in args.methods.split(",") if method]
    for spec in args.variant:
        label, _, setting = spec.partition("=")
        method, *extra = shlex.split(setting)
        runs.append((label, method, extra))
    with tempfile.TemporaryDirectory() as tmp:
        train = subset(args.train_rows, Path(tmp)) if args.train_rows else "sst2/train.tsv"

        def run(job: tuple[str, str, list[str]]) -> dict | None:
            start = time.time()
            row = run_method(job[0], job[1], train, [*overrides, *job[2]])
            if row:
                print(f"{job[0]}: done in {time.time() - start:.0f}s {json.dumps(row)}", flush=True)
            return row

        with ThreadPoolExecutor(args.workers) as pool:
            rows = [row for row in pool.map(run, runs) if row]
    full = next((r for r in rows if r["method"] == "full"), None)
    print(f"\nSST-2 dev, {args.train_rows or 'all'} training rows, overrides: {' '.join(overrides) or 'none'}")
    for spec in args.variant:
        print(f"  {spec}")
    if args.workers > 1:
        print(f"  {args.workers} runs at a time: samples/s are shares of one machine, not speeds")
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
