"""Hyperparameter search on SST-2 (issue 14, acceptance 1): does a 16-trial search beat the
default config, and how much study time does pruning save?

Trains on the first 4,000 rows of ../shared/data/sst2/train.tsv and selects on the first 500
rows of dev.tsv (both copied to a temporary folder outside the repository). Three things run on
the same data, one after the other in this process:

1. the default config (examples/sst2.yaml: 3 epochs, batch 32, lr 1e-4, 6% warm-up);
2. a search with median pruning over learning rate, epochs, warm-up, weight decay, batch size and
   method (full fine-tuning or LoRA with its rank);
3. the same search (same seed, same TPE sampler) without pruning.

It prints the dev accuracy of the default and of each study's best trial, and each study's total
time, as a table.

    .venv/bin/python benchmarks/search_sst2.py                          # the acceptance run
    .venv/bin/python benchmarks/search_sst2.py --trials 2 --train-rows 64 --dev-rows 32   # a quick check
    .venv/bin/python benchmarks/search_sst2.py -- --train.num-threads 2 # config overrides after --

Run folders go to runs/bench-search-sst2/ (default/, pruned/trial-NNN, unpruned/trial-NNN, each
study with its summary.json and plots); each invocation starts the studies it runs afresh, and
`--only` compares with a study it does not run as an earlier invocation left it.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from preset_run import ROOT, SHARED_DATA

SPACE = """\
train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}
train.epochs: {low: 1, high: 4}
train.warmup_ratio: {low: 0.0, high: 0.2}
train.weight_decay: {low: 0.0, high: 0.1}
train.batch_size: [16, 32, 64]
method.name: [full, lora]
lora.r: [4, 8, 16]
"""


def head(source: Path, rows: int, out: Path) -> str:
    """The first `rows` data rows of a TSV (with its header line), copied as they are."""
    with open(source, encoding="utf-8") as handle:
        lines = [line for _, line in zip(range(rows + 1), handle)]
    if len(lines) < rows + 1:
        sys.exit(f"{source} has only {len(lines) - 1} rows; asked for {rows}")
    out.write_text("".join(lines), encoding="utf-8")
    return str(out)


def base_config(data: Path, args: argparse.Namespace, output: Path):
    from lmtune.cli import _overrides
    from lmtune.config import Config

    cfg = Config.from_yaml(ROOT / "examples" / "sst2.yaml")
    cfg.data.train = head(SHARED_DATA / "sst2" / "train.tsv", args.train_rows, data / "train.tsv")
    cfg.data.validation = head(SHARED_DATA / "sst2" / "dev.tsv", args.dev_rows, data / "dev.tsv")
    cfg.train.output_dir, cfg.train.run_name, cfg.train.overwrite = str(output), None, True
    cfg.train.seed = args.seed
    for key, value in _overrides(args.overrides):
        cfg.override(key, value)
    return cfg


def run_study(cfg, space: Path, args: argparse.Namespace, name: str, pruner: str) -> tuple[dict, float]:
    """One study from scratch; (its summary, wall seconds)."""
    from lmtune.experiments.search import search

    shutil.rmtree(Path(cfg.train.output_dir) / name, ignore_errors=True)
    cfg = copy.deepcopy(cfg)
    s = cfg.search
    s.trials, s.sampler, s.pruner, s.startup_trials = args.trials, "tpe", pruner, args.startup_trials
    s.seed, s.study_name, s.workers = args.seed, name, args.workers
    start = time.perf_counter()
    result = search(cfg, space)
    return result.summary, time.perf_counter() - start


def stored(folder: Path) -> tuple[dict, float]:
    """A study an earlier invocation ran (its summary and seconds, first trial start to last
    end), so `--only pruned` compares with the unpruned study already there; none: NaN."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return {"counts": {}}, float("nan")
    print(f"{folder.name}: the stored study in {folder} ({summary['seconds']:.0f} s)")
    return summary, float(summary["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--dev-rows", type=int, default=500)
    parser.add_argument("--pruner", default="median", choices=["median", "hyperband"],
                        help="the pruner of the pruned study (the other has none)")
    parser.add_argument("--startup-trials", type=int, default=4, help="median pruner: trials before any is pruned")
    parser.add_argument("--seed", type=int, default=42, help="the sampler's and the runs' seed")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--only", choices=["default", "pruned", "unpruned"], action="append",
                        help="run only these parts (repeatable); the others are read from an earlier "
                             "invocation's folders, if any")
    parser.add_argument("overrides", nargs="*", help="after --: config overrides (--group.field VALUE)")
    args = parser.parse_args()
    output = ROOT / "runs" / "bench-search-sst2"
    with tempfile.TemporaryDirectory(prefix="lmtune-search-sst2-") as temp:
        data = Path(temp)
        space = data / "space.yaml"
        space.write_text(SPACE)
        cfg = base_config(data, args, output)

        from lmtune.pipeline import finetune

        parts = set(args.only or ("default", "pruned", "unpruned"))
        default_accuracy, default_seconds = float("nan"), float("nan")
        if "default" in parts:
            default = copy.deepcopy(cfg)
            default.train.run_name = "default"
            start = time.perf_counter()
            run = finetune(default)
            default_seconds = time.perf_counter() - start
            default_accuracy = json.loads(run.metrics.read_text())["validation"]["accuracy"]
        pruned, pruned_seconds = (run_study(cfg, space, args, "pruned", args.pruner) if "pruned" in parts
                                  else stored(output / "pruned"))
        unpruned, unpruned_seconds = (run_study(cfg, space, args, "unpruned", "none") if "unpruned" in parts
                                      else stored(output / "unpruned"))

    print(f"\nSST-2: {args.train_rows:,} training rows, {args.dev_rows} dev rows; {args.trials} trials per study "
          f"(TPE, seed {args.seed}) over:\n{SPACE}")
    print("| | dev accuracy | time (s) | trials complete / pruned |")
    print("|---|---|---|---|")
    print(f"| default config (3 epochs, lr 1e-4, batch 32) | {default_accuracy:.4f} | {default_seconds:.0f} | |")
    for label, summary, seconds in ((f"search, {args.pruner} pruning", pruned, pruned_seconds),
                                    ("search, no pruning", unpruned, unpruned_seconds)):
        best = summary.get("best") or {}
        counts = summary["counts"]
        params = ", ".join(f"{k.removeprefix('train.')}={v:.3g}" if isinstance(v, float)
                           else f"{k.removeprefix('train.')}={v}" for k, v in best.get("params", {}).items())
        print(f"| {label}: best trial {best.get('number')} ({params}) | {best.get('value', float('nan')):.4f} "
              f"| {seconds:.0f} | {counts.get('COMPLETE', 0)} / {counts.get('PRUNED', 0)} |")
    best_pruned = (pruned.get("best") or {}).get("value", float("nan"))
    best_unpruned = (unpruned.get("best") or {}).get("value", float("nan"))
    saved = 1 - pruned_seconds / unpruned_seconds
    print(f"\npruning saved {100 * saved:.0f}% of the study's time; best trial with pruning "
          f"{best_pruned - best_unpruned:+.4f} vs without")
    print(f"acceptance: best trial (pruned study) >= default: {best_pruned >= default_accuracy}; "
          f"pruning >= 30% faster: {saved >= 0.30}; at an equal or better best: {best_pruned >= best_unpruned}")
    print(f"run folders: {output}")


if __name__ == "__main__":
    main()
