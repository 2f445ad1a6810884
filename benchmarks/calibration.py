"""Temperature scaling on held-out data (README "Calibration"): fit T on one half of a dev set
(a seeded random half), then score the other half's raw and temperature-scaled probabilities:
ECE / MCE (15 bins), Brier score, NLL. Acceptance: ECE after <= half of ECE before.

    .venv/bin/python benchmarks/calibration.py                          # SST-2 (+ WNUT-17 if a run exists)
    .venv/bin/python benchmarks/calibration.py --run runs/bench-robust-e2-plain --seed 1

SST-2 uses --run (default runs/bench-sst2, trained from examples/sst2.yaml when it has no
model/: ~40 min on CPU); WNUT-17 uses --ner-run, else the first runs/bench-wnut17* with a
model, else it is skipped (it never trains one). Only prediction runs here: ~1-2 min per task.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from preset_run import ROOT, SHARED_DATA, run_preset


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the fitting half and the held-out half (seeded)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def measure(run: Path, data: Path, seed: int) -> dict[str, Any]:
    """Fit T on one half of `data` (rows split at random), score both scales on the other."""
    import lmtune
    from lmtune.data import read_table
    from lmtune.evaluation.calibration import calibration_metrics, fit_temperature

    predictor = lmtune.load(run, calibrated=False)
    task = predictor.task
    records = read_table(data, "auto", task.default_format).records
    fit_rows, held_rows = halves(len(records), seed)
    start = time.time()
    scores = {}
    for name, rows in (("fit", fit_rows), ("held_out", held_rows)):
        logits, encoded = predictor.logits([records[i] for i in rows], with_labels=True, calibrated=False)
        scores[name] = task.calibration_scores(logits, encoded)
    temperature = fit_temperature(scores["fit"])
    return {"run": str(run), "data": str(data), "seed": seed,
            "rows": {"fit": len(fit_rows), "held_out": len(held_rows)}, "temperature": temperature, "seconds": round(time.time() - start, 1),
            "before": calibration_metrics(scores["held_out"]),
            "after": calibration_metrics(scores["held_out"], temperature)}


def show(name: str, result: dict[str, Any]) -> None:
    before, after = result["before"], result["after"]
    print(f"\n{name}: {result['run']}, T = {result['temperature']:.3f} fitted on {result['rows']['fit']} rows, "
          f"scored on the other {result['rows']['held_out']} ({before['examples']} examples; {result['seconds']} s)")
    print("| metric | raw | temperature-scaled |\n|---|---|---|")
    for metric in ("ece", "mce", "brier", "nll"):
        print(f"| {metric.upper() if metric != 'brier' else 'Brier'} | {before[metric]:.4f} | {after[metric]:.4f} |")
    verdict = "PASS" if after["ece"] <= before["ece"] / 2 else "FAIL"
    print(f"acceptance (ECE after <= half of before): {verdict}")


def sst2_run(given: str | None) -> Path:
    run = Path(given) if given else ROOT / "runs" / "bench-sst2"
    if (run / "model").is_dir():
        return run
    if given:
        raise SystemExit(f"{run}: no model/ in this run folder")
    print(f"{run} has no model: training examples/sst2.yaml (about 40 min on CPU)")
    run_preset("sst2.yaml", {"train": "sst2/train.tsv", "validation": "sst2/dev.tsv"}, "bench-sst2", [])
    return run


def wnut_run(given: str | None) -> Path | None:
    if given:
        return Path(given)
    found = sorted(p for p in (ROOT / "runs").glob("bench-wnut17*") if (p / "model").is_dir())
    return found[0] if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="SST-2 classification run (default: runs/bench-sst2)")
    parser.add_argument("--ner-run", help="WNUT-17 NER run (default: the first runs/bench-wnut17* with a model)")
    parser.add_argument("--seed", type=int, default=0, help="which random half fits T (default: 0)")
    parser.add_argument("--skip-ner", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = {"sst2": measure(sst2_run(args.run), SHARED_DATA / "sst2" / "dev.tsv", args.seed)}
    show("SST-2 dev", results["sst2"])
    ner = None if args.skip_ner else wnut_run(args.ner_run)
    if ner is None:
        print("\nWNUT-17: skipped (no runs/bench-wnut17* run with a model; "
              "benchmarks/wnut17_ner.py trains one, then pass --ner-run)")
    else:
        results["wnut17"] = measure(ner, SHARED_DATA / "wnut17" / "dev.conll", args.seed)
        show("WNUT-17 dev (per labelled word)", results["wnut17"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
