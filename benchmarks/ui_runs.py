"""How fast the dashboard's runs page renders for 300 runs (`lmtune ui`; goal: under 1 s).

Writes 300 synthetic finished run folders (config, status, metrics, a 40-step log, a model
card, no model) in a temporary folder, then times GET / through the app: the first request
(every run folder read) and the next ones (summaries cached while a run's files are unchanged).

    .venv/bin/python benchmarks/ui_runs.py [--runs 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ui_fixtures import write_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from lmtune.ui import create_ui_app

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i in range(args.runs):
            write_run(root, f"run-{i:03d}", lr=[1e-4, 3e-4, 1e-3][i % 3], accuracy=0.5 + (i % 50) / 100, seed=i)
        client = TestClient(create_ui_app(root))
        start = time.perf_counter()
        first = client.get("/")
        cold = time.perf_counter() - start
        assert first.status_code == 200 and first.text.count("<tr data-id=") == args.runs
        warm = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            client.get("/")
            warm.append(time.perf_counter() - start)
    print(f"runs page, {args.runs} runs: first request {cold:.3f} s; then median {statistics.median(warm):.3f} s "
          f"(of {args.repeats}; {len(first.content) / 1024:.0f} KiB of HTML)")


if __name__ == "__main__":
    main()
