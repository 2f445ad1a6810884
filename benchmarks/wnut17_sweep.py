"""Choose the WNUT-17 recipe on dev: each setting is trained with several seeds (each run keeps
its best epoch on dev), settings are ranked by mean dev F1, and test F1 is printed beside it
only to be reported, never to choose.

    .venv/bin/python benchmarks/wnut17_sweep.py --seeds 42,43,44       # the preset, 3 seeds
    .venv/bin/python benchmarks/wnut17_sweep.py --seeds 42,43,44 --workers 2 \\
        --setting "preset=" --setting "lr2e-4=--train.learning_rate 2e-4"

Each setting is LABEL=OVERRIDES (overrides as on the lmtune command line, on top of
examples/wnut17.yaml). Runs go one per process, `--workers` at a time, `--threads` CPU threads
each; `--deadline` seconds stops the sweep (finished runs are kept and ranked).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from preset_run import run_preset_in_child
from wnut17_ner import SPLITS


def run_one(label: str, overrides: list[str], seed: int, threads: int, deadline: float) -> dict | None:
    budget = deadline - time.time()
    if budget <= 0:
        return None
    argv = [*overrides, "--train.seed", str(seed), "--train.progress", "false"]
    result, output, _ = run_preset_in_child("wnut17.yaml", SPLITS, f"sweep-wnut17-{label}-{seed}", argv,
                                            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                                            timeout=None if budget == float("inf") else budget)
    if result is None:
        print(f"{label} seed {seed} failed or ran out of time:\n{output[-2000:]}", flush=True)
        return None
    metrics = result["metrics"]
    row = {"setting": label, "seed": seed, "dev": metrics["validation"]["f1"], "test": metrics["test"]["f1"],
           "best_step": metrics["training"]["best_step"], "seconds": result["seconds"]}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--setting", action="append", default=[], help="LABEL=OVERRIDES (repeatable)")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=0, help="seconds until the sweep stops (0: none)")
    args = parser.parse_args()
    settings = [(label, shlex.split(rest)) for label, _, rest in (s.partition("=") for s in args.setting)]
    settings = settings or [("preset", [])]
    seeds = [int(s) for s in args.seeds.split(",")]
    deadline = time.time() + args.deadline if args.deadline else float("inf")
    jobs = [(label, overrides, seed) for seed in seeds for label, overrides in settings]  # seed-major
    with ThreadPoolExecutor(args.workers) as pool:
        results = [r for r in pool.map(lambda job: run_one(*job, args.threads, deadline), jobs) if r]
    print("\n| setting | seeds | dev F1 mean | test F1 mean | dev per seed | test per seed |")
    print("|---|---|---|---|---|---|")
    finished = []  # (label, overrides, dev per seed, test per seed), settings with a finished run
    for label, overrides in settings:
        mine = [r for r in results if r["setting"] == label]
        if mine:
            finished.append((label, overrides, [r["dev"] for r in mine], [r["test"] for r in mine]))
    for label, overrides, dev, test in sorted(finished, key=lambda row: -statistics.mean(row[2])):
        print(f"| {label} `{' '.join(overrides)}` | {len(dev)} | {statistics.mean(dev):.4f} "
              f"| {statistics.mean(test):.4f} | {', '.join(f'{v:.4f}' for v in dev)} "
              f"| {', '.join(f'{v:.4f}' for v in test)} |")


if __name__ == "__main__":
    main()
