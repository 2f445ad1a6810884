"""Continual learning on ../shared/data/continual (issue 15): every strategy over a sequence,
with the accuracy matrix's figures side by side.

    .venv/bin/python benchmarks/continual.py --suite tasks      # trec -> subj -> sms_spam -> cr
    .venv/bin/python benchmarks/continual.py --suite domains    # 5 Amazon review domains
    .venv/bin/python benchmarks/continual.py --suite tasks --train-rows 200 --test-rows 100 \\
        --strategies sequential,replay -- --train.epochs 1      # a quick check

Each step's training rows are a seeded random sample of its train.tsv (--train-rows; 0: all),
its test (and dev) rows a seeded random sample of --test-rows. The tasks have no dev split, so 10% of each
step's sampled training rows are held out as validation (seed 0); the domains use their dev.tsv.
EWC's strength is chosen per suite from --ewc-lambdas by the average validation accuracy after
the last step (never by test). Every strategy runs in a child process (`lmtune continual`), so
its training seconds and peak memory (report.json) are its own. Run folders: runs/bench-continual-<suite>/<strategy>.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from preset_run import ROOT, SHARED_DATA

SUITES = {"tasks": ["trec", "subj", "sms_spam", "cr"],
          "domains": ["Books", "Electronics", "Home_and_Kitchen", "Movies_and_TV", "Toys_and_Games"]}


def sample(source: Path, out: Path, rows: int, seed: int) -> Path:
    """`rows` data rows of a TSV (0: all), a seeded random sample in file order (never the first
    rows: the domains' test and dev files are sorted by label)."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    if rows and rows < len(body):
        keep = set(random.Random(seed).sample(range(len(body)), rows))
        body = [line for i, line in enumerate(body) if i in keep]
    out.write_text(header + "".join(body), encoding="utf-8")
    return out


def write_sequence(folder: Path, args: argparse.Namespace) -> Path:
    steps = []
    for name in SUITES[args.suite]:
        source = SHARED_DATA / "continual" / args.suite / name
        if not (source / "train.tsv").is_file():
            sys.exit(f"{source}/train.tsv not found: the benchmark reads ../shared/data/continual")
        step = {"name": name.lower(),
                "train": str(sample(source / "train.tsv", folder / f"{name}-train.tsv", args.train_rows, 0)),
                "test": str(sample(source / "test.tsv", folder / f"{name}-test.tsv", args.test_rows, 0))}
        if (source / "dev.tsv").is_file():
            step["validation"] = str(sample(source / "dev.tsv", folder / f"{name}-dev.tsv", args.test_rows, 0))
        steps.append(step)
    config = {"train": {"epochs": args.epochs, "output_dir": str(ROOT / "runs" / f"bench-continual-{args.suite}"),
                        "overwrite": True, "progress": False}}
    if args.suite == "tasks":
        config["data"] = {"validation_split": 0.1}
    path = folder / "sequence.yaml"
    path.write_text(yaml.safe_dump({"name": args.suite, "steps": steps, "config": config}))
    return path


def output_dir(sequence: Path) -> Path:
    return Path(yaml.safe_load(sequence.read_text())["config"]["train"]["output_dir"])


def run_strategy(sequence: Path, name: str, flags: list[str], report_only: bool = False) -> dict | None:
    """One `lmtune continual` in a child process (its time and memory are its own), or with
    report_only the report an earlier run left; None if it failed."""
    path = output_dir(sequence) / name / "report.json"
    if not report_only:
        code = "import sys; from lmtune.cli import main; sys.exit(main(sys.argv[1:]))"
        command = [sys.executable, "-c", code, "continual", "--sequence", str(sequence), "--quiet",
                   "--train.run-name", name, *flags]
        start = time.time()
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stdout[-3000:]}", file=sys.stderr)
            return None
        print(f"{name}: {time.time() - start:.0f} s", flush=True)
    if not path.is_file():
        print(f"{name}: no report at {path}", file=sys.stderr)
        return None
    report = json.loads(path.read_text())
    print(f"{name}: test average accuracy {report['test']['average_accuracy']:.4f}", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=list(SUITES), default="tasks")
    parser.add_argument("--train-rows", type=int, default=2000, help="training rows per step (0: all)")
    parser.add_argument("--test-rows", type=int, default=500, help="test (and dev) rows per step (0: all)")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--strategies", default="sequential,replay,ewc,adapter-per-task,multitask")
    parser.add_argument("--ewc-lambdas", default="1e3,1e5,1e7", help="EWC strengths tried; chosen on validation")
    parser.add_argument("--report-only", action="store_true", help="summarise the run folders an earlier "
                        "invocation left (same arguments), training nothing")
    parser.add_argument("overrides", nargs="*", help="after --: config overrides for every run")
    args = parser.parse_args()
    reports: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="lmtune-continual-") as temp:
        folder = Path(temp) / args.suite
        folder.mkdir()
        sequence = write_sequence(folder, args)
        for strategy in args.strategies.split(","):
            if strategy != "ewc":
                report = run_strategy(sequence, strategy, ["--strategy", strategy, *args.overrides], args.report_only)
                if report:
                    reports[strategy] = report
                continue
            tried = {}
            for value in args.ewc_lambdas.split(","):
                report = run_strategy(sequence, f"ewc-{value}", ["--strategy", "ewc", "--continual.ewc-lambda",
                                                                  value, *args.overrides], args.report_only)
                if report:
                    tried[value] = report
            if tried:
                best = max(tried, key=lambda v: tried[v]["validation"]["average_accuracy"])
                print("ewc: validation average accuracy by lambda: " + ", ".join(
                    f"{v}: {r['validation']['average_accuracy']:.4f}" for v, r in tried.items()) + f"; chose {best}")
                reports[f"ewc (lambda {best})"] = tried[best]
    summarise(args, reports)


def summarise(args: argparse.Namespace, reports: dict[str, dict]) -> None:
    from lmtune.experiments.continual.report import comparison_table

    rows = {}
    for name, report in reports.items():
        test = dict(report["test"])
        test.update(seconds=report["seconds"], peak_rss_mb=report["peak_rss_mb"], stored=report["stored"])
        if report.get("routing"):
            routing = report["routing"]
            test["stored"] += (f"; routing accuracy {routing['accuracy']:.3f}, accuracy when routed "
                               f"{routing['routed_accuracy']:.4f}")
        rows[name] = test
    steps = " -> ".join(SUITES[args.suite])
    print(f"\n{args.suite}: {steps}; {args.train_rows or 'all'} training rows per step, {args.epochs:g} epoch(s), "
          f"test {args.test_rows or 'all'} rows per step; overrides: {' '.join(args.overrides) or 'none'}\n")
    print(comparison_table(rows))
    seq = reports.get("sequential", {}).get("test", {})
    forgetting = -(seq.get("backward_transfer") or 0.0)
    for name, report in reports.items():
        bwt = report["test"].get("backward_transfer")
        if name != "sequential" and bwt is not None and forgetting > 0:
            print(f"{name}: removes {100 * (1 - max(0.0, -bwt) / forgetting):.0f}% of sequential's forgetting "
                  f"(BWT {bwt:+.4f} vs {-forgetting:+.4f})")
    upper = reports.get("multitask", {}).get("test", {}).get("average_accuracy")
    others = {n: r["test"]["average_accuracy"] for n, r in reports.items() if n != "multitask"}
    if upper is not None and others:
        best = max(others, key=others.get)
        gap = 100 * (upper - others[best])
        print(f"best strategy: {best} {others[best]:.4f}, {abs(gap):.1f} points {'below' if gap >= 0 else 'above'} "
              f"multitask ({upper:.4f})")


if __name__ == "__main__":
    main()
