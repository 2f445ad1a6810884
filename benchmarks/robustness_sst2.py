"""Adversarial training against a word-substitution attack on SST-2 (the robustness issue's
acceptance 1): the default model trained plainly and with FGM, PGD and FreeLB on the same
training rows, each kept at its best dev epoch, then attacked on the same seeded sample of dev
rows and scored under the five perturbations.

    .venv/bin/python benchmarks/robustness_sst2.py                       # the README's table (~45 min)
    .venv/bin/python benchmarks/robustness_sst2.py --only plain,fgm03 --phase attack   # runs kept
    .venv/bin/python benchmarks/robustness_sst2.py --only freelb

Runs go to runs/bench-robust-<setting>; `--phase train` only trains, `--phase attack` only
attacks runs already there. Training settings are LABEL=OVERRIDES (`--setting`, repeatable),
on top of examples/sst2.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import tempfile
import time
from pathlib import Path

from peft_methods import subset
from preset_run import ROOT, SHARED_DATA, run_preset_in_child

PREFIX = "bench-robust-"  # run folders: runs/<prefix><setting>; --tag adds to it
SETTINGS = {
    "plain": "",
    "fgm02": "--robust.adversarial fgm --robust.epsilon 0.2",  # the default since these figures
    "fgm03": "--robust.adversarial fgm --robust.epsilon 0.3",
    "pgd03": "--robust.adversarial pgd --robust.epsilon 0.3 --robust.alpha 0.1",
    "fgm": "--robust.adversarial fgm --robust.epsilon 1.0",  # the default before them
    "freelb": "--robust.adversarial freelb --robust.epsilon 0.3 --robust.alpha 0.1 --robust.warmup_steps 100",
}
DEFAULT = "plain,fgm03,pgd03,fgm"  # the README table's 1-epoch rows


def train(label: str, overrides: str, train_file: str, epochs: float, threads: int) -> dict | None:
    argv = ["--train.epochs", str(epochs), "--train.progress", "false", *shlex.split(overrides)]
    data = {"train": train_file, "validation": "sst2/dev.tsv"}
    result, output, peak = run_preset_in_child("sst2.yaml", data, f"{PREFIX}{label}", argv,
                                               env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if result is None:
        print(f"{label} failed:\n{output[-3000:]}", flush=True)
        return None
    training = result["metrics"]["training"]
    row = {"setting": label, "dev_accuracy": result["metrics"]["validation"]["accuracy"],
           "samples_per_s": training["samples_per_s"], "seconds": round(result["seconds"]),
           "best_step": training["best_step"], "peak_rss_mb": peak}
    print(json.dumps(row), flush=True)
    return row


def attack(label: str, rows: int, cap: float, perturb_rate: float) -> dict:
    """Attack and perturb the run on a seeded sample of dev rows; the figures its reports hold."""
    import lmtune

    run = ROOT / "runs" / f"{PREFIX}{label}"
    dev = SHARED_DATA / "sst2" / "dev.tsv"
    start = time.time()
    lmtune.evaluate(run, dev, quiet=True, attack=True, attack_cap=cap, limit=rows)
    lmtune.evaluate(run, dev, quiet=True, perturb=["typo", "case", "punct", "synonym", "swap"],
                    perturb_rate=perturb_rate)  # every dev row
    out = run / "eval" / dev.stem
    report = json.loads((out / "attack.json").read_text())
    robustness = json.loads((out / "robustness.json").read_text())
    row = {"setting": label, "attack": report, "perturbations": robustness, "seconds": round(time.time() - start)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=DEFAULT, help=f"settings to run, by label: {', '.join(SETTINGS)}")
    parser.add_argument("--setting", action="append", default=[], help="LABEL=OVERRIDES (adds or replaces)")
    parser.add_argument("--phase", choices=["all", "train", "attack"], default="all")
    parser.add_argument("--train-rows", type=int, default=20000, help="first N SST-2 training rows")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--attack-rows", type=int, default=1000, help="seeded sample of dev rows attacked")
    parser.add_argument("--cap", type=float, default=0.2, help="largest share of a text's words changed")
    parser.add_argument("--perturb-rate", type=float, default=0.1)
    parser.add_argument("--tag", default="", help="run folders runs/bench-robust-<tag>-<setting> (keeps others)")
    args = parser.parse_args()
    global PREFIX
    PREFIX += f"{args.tag}-" if args.tag else ""
    settings = dict(SETTINGS)
    settings.update(dict(s.split("=", 1) for s in args.setting))
    labels = args.only.split(",")
    trained = {}
    if args.phase in ("all", "train"):
        with tempfile.TemporaryDirectory() as tmp:
            train_file = subset(args.train_rows, Path(tmp))
            for label in labels:
                trained[label] = train(label, settings[label], train_file, args.epochs, args.threads)
    attacked = {}
    if args.phase in ("all", "attack"):
        for label in labels:
            attacked[label] = attack(label, args.attack_rows, args.cap, args.perturb_rate)
    table(labels, attacked, args)


def table(labels: list[str], attacked: dict, args: argparse.Namespace) -> None:
    """The README table: clean dev accuracy (all dev rows) and the attack on the sample."""
    print(f"\nSST-2, first {args.train_rows} training rows, {args.epochs} epochs; attack on "
          f"{args.attack_rows} dev rows, cap {args.cap}")
    print("| setting | dev accuracy (all) | clean (sample) | under attack | success rate | words changed |"
          " samples/s | mean perturbed |")
    print("|---|---|---|---|---|---|---|---|")
    for label in labels:
        metrics = json.loads((ROOT / "runs" / f"{PREFIX}{label}" / "metrics.json").read_text())
        attack_report = attacked.get(label, {}).get("attack", {})
        print(f"| {label} | {metrics['validation']['accuracy']:.4f} | "
              f"{attack_report.get('clean_accuracy', float('nan')):.4f} | "
              f"{attack_report.get('attack_accuracy', float('nan')):.4f} | "
              f"{attack_report.get('success_rate', float('nan')):.4f} | "
              f"{attack_report.get('words_changed', float('nan')):.3f} | "
              f"{metrics['training']['samples_per_s']:.1f} | {perturbed(attacked.get(label)):.4f} |")


def perturbed(row: dict | None) -> float:
    """Mean dev accuracy over the five perturbations."""
    if not row:
        return float("nan")
    values = [r["value"] for r in row["perturbations"]["rows"] if r["perturbation"] != "clean"]
    return sum(values) / len(values)


if __name__ == "__main__":
    main()
