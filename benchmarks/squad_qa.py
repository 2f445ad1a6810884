"""Extractive QA on ../shared/data/squad/train.json, split by article: the first 40 titles
(in file order) train, the last 8 are the dev set, so no article is on both sides.
Prints dev EM/F1 with the default model (examples/squad.yaml).

    .venv/bin/python benchmarks/squad_qa.py [--train.epochs 2 ...]
"""

import json
import sys
import tempfile
from pathlib import Path

from preset_run import SHARED_DATA, run_preset

TRAIN_ARTICLES = 40


def split_by_article(source: Path, folder: Path) -> dict[str, int]:
    document = json.loads(source.read_text())
    articles = document["data"]
    parts = {"train": articles[:TRAIN_ARTICLES], "dev": articles[TRAIN_ARTICLES:]}
    counts = {}
    for name, part in parts.items():
        (folder / f"{name}.json").write_text(json.dumps({"version": document.get("version", "1.1"), "data": part}))
        counts[name] = sum(len(p["qas"]) for a in part for p in a["paragraphs"])
    assert not {a["title"] for a in parts["train"]} & {a["title"] for a in parts["dev"]}
    return counts


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        counts = split_by_article(SHARED_DATA / "squad" / "train.json", Path(tmp))
        splits = {"train": str(Path(tmp) / "train.json"), "validation": str(Path(tmp) / "dev.json")}
        metrics, seconds = run_preset("squad.yaml", splits, "bench-squad", sys.argv[1:])
    dev = metrics["validation"]
    print(f"\nSQuAD article split ({TRAIN_ARTICLES} articles / {counts['train']} questions train, "
          f"{counts['dev']} questions dev): dev EM {dev['exact_match']:.2f}, F1 {dev['f1']:.2f} "
          f"in {seconds:.0f}s")
