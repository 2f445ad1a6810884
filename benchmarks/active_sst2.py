"""Active learning on SST-2 (issue 18): how many labels does breaking-ties need to reach 95% of
the accuracy of training on the whole pool, against random picks?

The pool is a seeded sample of --pool-rows rows of ../shared/data/sst2/train.tsv (gold labels
kept: the simulation labels each batch from them); accuracy is on the first --dev-rows rows of
dev.tsv. For each seed and strategy, `lmtune active --simulate` runs --rounds rounds of --batch
rows from a cold start (k-means over the base model's embeddings, the same first batch for both
strategies of one seed). The full-pool run trains once on the whole pool (or pass
--full-accuracy). It prints the learning curve table (mean over seeds) and, per strategy, the
labels each seed needed to reach 95% of the full-pool accuracy.

    .venv/bin/python benchmarks/active_sst2.py                 # the acceptance run (GPU advised)
    .venv/bin/python benchmarks/active_sst2.py --pool-rows 500 --batch 20 --rounds 2 --seeds 1 \\
        --dev-rows 200 -- --train.epochs 1                     # a quick check
    (config overrides of every run after --, e.g. -- --train.num-threads 2)

Everything goes to runs/bench-active-sst2/ (data/, <strategy>-seed<N>/ simulations with their
rounds, full/ the full-pool run, learning_curve.png and curve.md in each simulation folder);
each invocation starts afresh.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
import sys
from pathlib import Path

from preset_run import ROOT, SHARED_DATA

OUTPUT = ROOT / "runs" / "bench-active-sst2"


def sample_rows(source: Path, rows: int, out: Path, seed: int = 0, first: bool = False) -> Path:
    """`rows` data rows of a TSV (a seeded sample, or the first ones), with its header line."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    if len(body) < rows:
        sys.exit(f"{source} has only {len(body)} rows; asked for {rows}")
    chosen = body[:rows] if first else random.Random(seed).sample(body, rows)
    out.write_text(header + "".join(chosen), encoding="utf-8")
    return out


def base_config(overrides: list[str]):
    from lmtune.cli import _overrides
    from lmtune.config import Config

    cfg = Config.from_yaml(ROOT / "examples" / "sst2.yaml")
    cfg.data.validation = None  # a round's run trains on what it has; the curve scores on dev
    for key, value in _overrides(overrides):
        cfg.override(key, value)
    return cfg


def full_accuracy(cfg, pool: Path, dev: Path) -> float:
    """Dev accuracy of one run on the whole pool: what active learning tries to reach early."""
    from lmtune.pipeline import finetune

    cfg = copy.deepcopy(cfg)
    cfg.data.train, cfg.data.test = str(pool), str(dev)
    cfg.train.output_dir, cfg.train.run_name, cfg.train.overwrite = str(OUTPUT), "full", True
    run = finetune(cfg)
    return json.loads(run.metrics.read_text())["test"]["accuracy"]


def labels_needed(folder: Path, target: float) -> int | None:
    """The fewest labels at which a simulation's run reached `target` (None: never)."""
    state = json.loads((folder / "active.json").read_text())
    reached = [r["labels_used"] for r in state["rounds"] if r["accuracy"] is not None and r["accuracy"] >= target]
    return min(reached) if reached else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool-rows", type=int, default=20000)
    parser.add_argument("--dev-rows", type=int, default=872, help="first N rows of dev.tsv (872: all)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10, help="runs trained per simulation")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", default="breaking-ties,random")
    parser.add_argument("--full-accuracy", type=float, help="skip the full-pool run: its dev accuracy")
    parser.add_argument("overrides", nargs="*", help="after --: config overrides (--group.field VALUE)")
    args = parser.parse_args()
    from lmtune.experiments.active import active, write_curve

    shutil.rmtree(OUTPUT, ignore_errors=True)
    (OUTPUT / "data").mkdir(parents=True)
    pool = sample_rows(SHARED_DATA / "sst2" / "train.tsv", args.pool_rows, OUTPUT / "data" / "pool.tsv")
    dev = sample_rows(SHARED_DATA / "sst2" / "dev.tsv", args.dev_rows, OUTPUT / "data" / "dev.tsv", first=True)
    cfg = base_config(args.overrides)
    strategies = args.strategies.split(",")
    for seed in range(args.seeds):
        for strategy in strategies:
            run_cfg = copy.deepcopy(cfg)
            run_cfg.train.seed = seed
            active(run_cfg, pool, OUTPUT / f"{strategy}-seed{seed}", strategy=strategy, batch=args.batch,
                   simulate=True, rounds=args.rounds, eval_file=dev, quiet=True)
    full = args.full_accuracy if args.full_accuracy is not None else full_accuracy(cfg, pool, dev)
    target = 0.95 * full
    print(f"\nSST-2 active learning: pool {args.pool_rows:,} rows, batches of {args.batch}, {args.rounds} "
          f"rounds, {args.seeds} seed(s), dev {args.dev_rows} rows; full pool: accuracy {full:.4f}, "
          f"95% of it: {target:.4f}\n")
    curve = write_curve(OUTPUT / f"{strategies[0]}-seed0")  # every sibling's points, now all ran
    print(curve.split("\nlearning curve:")[0])
    print("\n| strategy | labels to reach 95% of full-pool accuracy, per seed | mean |\n|---|---|---:|")
    for strategy in strategies:
        needed = [labels_needed(OUTPUT / f"{strategy}-seed{s}", target) for s in range(args.seeds)]
        reached = [n for n in needed if n is not None]
        mean = f"{sum(reached) / len(reached):.0f}" if len(reached) == len(needed) else "not reached by every seed"
        print(f"| {strategy} | {', '.join('-' if n is None else str(n) for n in needed)} | {mean} |")
    print(f"\nlearning curve (mean over seeds): {OUTPUT / (strategies[0] + '-seed0') / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
