"""Data augmentation on SST-2 at several training sizes (the robustness issue's acceptance 2):
for each size and seed, the default model trained without and with augmentation, its dev
accuracy (all dev rows, best epoch) and its mean accuracy under the five perturbations (all
dev rows).

    .venv/bin/python benchmarks/augmentation_sst2.py                          # 500, 2000, 20000 x 3 seeds
    .venv/bin/python benchmarks/augmentation_sst2.py --sizes 2000 --settings none,eda,eda-emb

Training rows are a seeded random sample of the training file (a different one per seed).
Settings are LABEL=OVERRIDES on top of examples/sst2.yaml (`--setting`, repeatable); the copies
of each example per epoch follow the EDA paper's advice (more for less data) unless set.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shlex
import statistics
import tempfile
from pathlib import Path

from preset_run import ROOT, SHARED_DATA, run_preset_in_child

SETTINGS = {
    "none": "",
    "eda": "--augment.ops eda --augment.rate 0.1",
    "eda-emb": "--augment.ops eda --augment.rate 0.1 --augment.synonyms embeddings",
}
COPIES = {500: 8, 2000: 4}  # per example per epoch; 1 above
EPOCHS = {20000: 1}  # the default 3 below (cost)
KINDS = ["typo", "case", "punct", "synonym", "swap"]


def sample(rows: int, seed: int, folder: Path) -> str:
    """A seeded random sample of training rows, as a temporary TSV."""
    with open(SHARED_DATA / "sst2" / "train.tsv", newline="") as handle:
        header, *lines = list(csv.reader(handle, delimiter="\t"))
    chosen = random.Random(seed).sample(lines, rows)
    out = folder / f"train-{rows}-{seed}.tsv"
    with open(out, "w", newline="") as handle:
        csv.writer(handle, delimiter="\t").writerows([header, *chosen])
    return str(out)


def one(size: int, seed: int, label: str, overrides: str, train_file: str, args: argparse.Namespace) -> dict | None:
    import lmtune

    argv = ["--train.seed", str(seed), "--train.progress", "false",
            "--train.epochs", str(EPOCHS.get(size, 3)), *shlex.split(overrides)]
    if overrides and "--augment.copies" not in overrides:
        argv += ["--augment.copies", str(COPIES.get(size, 1))]
    name = f"bench-augment-{size}-{label}-{seed}"
    result, output, _ = run_preset_in_child("sst2.yaml", {"train": train_file, "validation": "sst2/dev.tsv"},
                                            name, argv, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    if result is None:
        print(f"{name} failed:\n{output[-3000:]}", flush=True)
        return None
    run = ROOT / "runs" / name
    dev = SHARED_DATA / "sst2" / "dev.tsv"
    lmtune.evaluate(run, dev, quiet=True, perturb=KINDS, perturb_rate=args.perturb_rate)  # every dev row
    robustness = json.loads((run / "eval" / dev.stem / "robustness.json").read_text())
    metrics = result["metrics"]
    row = {"size": size, "seed": seed, "setting": label, "dev": metrics["validation"]["accuracy"],
           "augmented": metrics["training"].get("augmented_examples", 0),
           "perturbed": perturbed_mean(robustness), "seconds": round(result["seconds"])}
    print(json.dumps(row), flush=True)
    return row


def perturbed_mean(robustness: dict) -> float:
    """Mean accuracy over the perturbations (the clean row left out)."""
    rows = [r for r in robustness["rows"] if r["perturbation"] != "clean"]
    return statistics.fmean(r["value"] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="500,2000,20000")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--settings", default="none,eda")
    parser.add_argument("--setting", action="append", default=[], help="LABEL=OVERRIDES (adds or replaces)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--perturb-rate", type=float, default=0.1)
    args = parser.parse_args()
    settings = dict(SETTINGS)
    settings.update(dict(s.split("=", 1) for s in args.setting))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in map(int, args.sizes.split(",")):
            for seed in map(int, args.seeds.split(",")):
                train_file = sample(size, seed, Path(tmp))
                for label in args.settings.split(","):
                    row = one(size, seed, label, settings[label], train_file, args)
                    rows.append(row) if row else None
    summary(rows)


def summary(rows: list[dict]) -> None:
    print("\n| training rows | setting | dev accuracy (mean ± sd) | perturbed accuracy | augmented examples |")
    print("|---|---|---|---|---|")
    for size in sorted({r["size"] for r in rows}):
        for label in dict.fromkeys(r["setting"] for r in rows):
            group = [r for r in rows if r["size"] == size and r["setting"] == label]
            if not group:
                continue
            dev = [r["dev"] for r in group]
            sd = statistics.stdev(dev) if len(dev) > 1 else 0.0
            print(f"| {size} | {label} | {statistics.fmean(dev):.4f} ± {sd:.4f} | "
                  f"{statistics.fmean(r['perturbed'] for r in group):.4f} | "
                  f"{statistics.fmean(r['augmented'] for r in group):,.0f} |")


if __name__ == "__main__":
    main()
