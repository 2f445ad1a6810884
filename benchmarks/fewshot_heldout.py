"""Few-shot recipe choices on held-out *training* rows (issue 17), never on the evaluation file.

500 rows of the data set's training file are set aside (seeded); K-shot samples are drawn from
the rest (seeded per seed, K per class); `lmtune.finetune` trains `--method few-shot` as
benchmarks/fewshot.py does (20 epochs, batch 16), and the tuned encoder is then scored on the
500 rows with three heads over the same embeddings:
- own: the cosine head trained with the encoder (the run uses --few-shot.head prototypes, so this
  is what `lmtune.load(...).predict` gives; the default, logistic, refits the next column);
- centroid: cosine to the mean tuned embedding of each class's K examples;
- logreg: scikit-learn's LogisticRegression (its defaults, SetFit's head) fitted on the K-shot
  embeddings.

    .venv/bin/python benchmarks/fewshot_heldout.py --dataset trec --k 16 --seeds 10,11,12,13,14

One JSON line per seed (accuracies and training seconds), then the means.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fewshot import DATASETS, SETTINGS
from preset_run import SHARED_DATA
from setfit_baseline import read_tsv

HELD_OUT = 500


def split(rows: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(pool, held out): a seeded HELD_OUT rows aside, the pool in file order."""
    order = list(range(len(rows)))
    random.Random(123).shuffle(order)
    held = set(order[:HELD_OUT])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in order[:HELD_OUT]]


def k_shot(pool: list[tuple[str, str]], k: int, seed: int) -> list[tuple[str, str]]:
    by_label: dict[str, list[tuple[str, str]]] = {}
    for row in pool:
        by_label.setdefault(row[1], []).append(row)
    rng = random.Random(f"{seed}:probe")
    return [row for label in sorted(by_label) for row in rng.sample(by_label[label], k)]


def embed(classifier, tokenizer, texts: list[str]):
    import torch

    with torch.no_grad():
        parts = [classifier.embed(**tokenizer(texts[i:i + 64], padding=True, truncation=True, return_tensors="pt"))
                 for i in range(0, len(texts), 64)]
    return torch.cat(parts).numpy()


def score_heads(model_dir: Path, support: list[tuple[str, str]], held: list[tuple[str, str]]) -> dict[str, float]:
    """Accuracy on the held-out rows of the run's own head, class centroids and a logistic regression."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoTokenizer

    from lmtune.methods.few_shot import FewShotMethod

    classifier = FewShotMethod.__new__(FewShotMethod).load(model_dir, None)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    labels = [classifier.config.id2label[i] for i in range(len(classifier.config.id2label))]
    train_x, held_x = embed(classifier, tokenizer, [t for t, _ in support]), embed(classifier, tokenizer, [t for t, _ in held])
    train_y, held_y = np.array([y for _, y in support]), np.array([y for _, y in held])
    centroids = np.stack([train_x[train_y == label].mean(0) for label in labels])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    with torch.no_grad():
        own = classifier.score(torch.from_numpy(held_x)).numpy()
    names = np.array(labels)
    return {"own": float((names[own.argmax(1)] == held_y).mean()),
            "centroid": float((names[(held_x @ centroids.T).argmax(1)] == held_y).mean()),
            "logreg": float((LogisticRegression(max_iter=1000).fit(train_x, train_y).predict(held_x) == held_y).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="trec", choices=sorted(DATASETS))
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--seeds", default="10,11,12,13,14")
    args = parser.parse_args()
    import lmtune
    from lmtune.cli import _overrides

    data = DATASETS[args.dataset]
    path = SHARED_DATA / data.train
    if not path.is_file():
        sys.exit(f"{path} not found: the benchmark reads ../shared/data")
    pool, held = split(list(zip(*read_tsv(str(path), data.text_column, data.label_column))))
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in (int(s) for s in args.seeds.split(",")):
            support = k_shot(pool, args.k, seed)
            train = Path(folder) / f"k{args.k}-s{seed}.tsv"
            train.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in support), encoding="utf-8")
            cfg = lmtune.Config.from_dict({
                "model": {"name": "minilm"}, "method": {"name": "few-shot"},
                "data": {"train": str(train), "text_column": "text", "label_column": "label"},
                "few_shot": {"labels": data.labels, "description": data.description, "head": "prototypes"},
                "train": {"seed": seed, "output_dir": folder, "run_name": f"s{seed}", "overwrite": True,
                          "progress": False}})
            for key, value in _overrides(shlex.split(SETTINGS["few-shot"])):  # the benchmark's recipe
                cfg.override(key, value)
            start = time.perf_counter()
            run = lmtune.finetune(cfg, quiet=True)
            row = {"seed": seed, "train_seconds": round(time.perf_counter() - start, 1),
                   **score_heads(run.model, support, held)}
            results.append(row)
            print(json.dumps(row), flush=True)
    means = {head: round(statistics.fmean(r[head] for r in results), 4) for head in ("own", "centroid", "logreg")}
    print(f"{args.dataset}, K = {args.k}, {len(results)} seeds, {HELD_OUT} held-out training rows: {json.dumps(means)}")


if __name__ == "__main__":
    main()
