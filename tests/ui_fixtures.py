"""Synthetic run folders for the dashboard's tests and benchmark: the files a finished run
writes (config.yaml, status.json, metrics.json, train_log.jsonl, README.md) and the
per-example predictions file (predictions/validation.jsonl), with no training."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import yaml

LABELS = ["neg", "pos"]


def _log(steps: int, evals: int, metric: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for step in range(1, steps + 1):
        rows.append({"kind": "train", "step": step, "loss": round(0.7 * math.exp(-step / steps) + rng.random() * 0.05, 4)})
        if step % (steps // evals) == 0:
            rows.append({"kind": "eval", "step": step, metric: round(0.5 + 0.4 * step / steps + rng.random() * 0.02, 4),
                         "loss": round(0.6 * math.exp(-step / steps), 4), "best": True, "evals_since_best": 0})
    return rows


def write_run(root: Path, name: str, *, task: str = "classification", lr: float = 3e-3, accuracy: float = 0.8,
              metric: str = "accuracy", labels: list[str] | None = None, matrix: list[list[int]] | None = None,
              predictions: list[dict] | None = None, seed: int = 0) -> Path:
    """A finished run folder named `name` under `root` (nested names make nested folders)."""
    labels = labels or LABELS
    folder = root / name
    folder.mkdir(parents=True)
    config = {"task": task, "model": {"name": "/models/tiny-bert", "max_length": 32},
              "method": {"name": "full"}, "data": {"train": "train.csv"},
              "train": {"run_name": name, "learning_rate": lr, "epochs": 3, "metric_for_best": metric}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    now = time.time()
    (folder / "status.json").write_text(json.dumps({"status": "finished", "pid": 1, "host": "elsewhere",
                                                    "started": now - 60, "ended": now}))
    matrix = matrix or [[8, 2], [3, 7]]
    per_class = {label: {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": sum(row)}
                 for label, row in zip(labels, matrix)}
    validation = {metric: accuracy, "loss": 0.4, "support": sum(map(sum, matrix))}
    report = {**validation, "per_class": per_class, "confusion_matrix": matrix}
    if task == "ner":
        report["confusion_labels"] = labels
    (folder / "metrics.json").write_text(json.dumps({"task": task, "validation": validation,
                                                     "validation_report": report, "training": {"seconds": 42.0}}))
    (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _log(40, 4, metric, seed)))
    (folder / "README.md").write_text(f"---\nlibrary_name: transformers\n---\n# {name}\n\nFine-tuned with "
                                      f"lmtune for **{task}**.\n\n## Results\n| metric | value |\n")
    if predictions is not None:
        (folder / "predictions").mkdir()
        (folder / "predictions" / "validation.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    return folder


def classification_predictions(n: int = 20, seed: int = 0) -> list[dict]:
    """Rows of the predictions contract: gold/predicted labels, losses and probabilities."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        gold, predicted = rng.choice(LABELS), rng.choice(LABELS)
        p = round(rng.uniform(0.5, 0.99), 3)
        probabilities = {predicted: p, next(x for x in LABELS if x != predicted): round(1 - p, 3)}
        rows.append({"index": i, "text": f"example text number {i}", "pair": None, "gold": gold,
                     "predicted": predicted, "gold_classes": [gold], "predicted_classes": [predicted],
                     "correct": gold == predicted, "loss": round(rng.uniform(0.01, 3.0), 4),
                     "probabilities": probabilities, "spans": None})
    return rows


def ner_predictions() -> list[dict]:
    """Two NER rows: one with a wrong entity type, one right; spans are character offsets."""
    text = "alice met bob in paris"
    return [
        {"index": 0, "text": text, "pair": None, "gold": "person: alice; person: bob; location: paris",
         "predicted": "person: alice; location: bob", "gold_classes": ["location", "person"],
         "predicted_classes": ["location", "person"], "correct": False, "loss": 1.25, "probabilities": None,
         "spans": {"gold": [{"start": 0, "end": 5, "label": "person"}, {"start": 10, "end": 13, "label": "person"},
                            {"start": 17, "end": 22, "label": "location"}],
                   "predicted": [{"start": 0, "end": 5, "label": "person"},
                                 {"start": 10, "end": 13, "label": "location"}]}},
        {"index": 1, "text": "carol visited rome", "pair": None, "gold": "person: carol", "predicted": "person: carol",
         "gold_classes": ["person"], "predicted_classes": ["person"], "correct": True, "loss": 0.05,
         "probabilities": None, "spans": {"gold": [{"start": 0, "end": 5, "label": "person"}],
                                          "predicted": [{"start": 0, "end": 5, "label": "person"}]}},
    ]


def write_fixture_runs(root: Path) -> Path:
    """Two classification runs with predictions (one nested as a study trial), an NER run,
    a search study summary and a continual report."""
    write_run(root, "clf-a", lr=1e-3, accuracy=0.71, predictions=classification_predictions(20, 0), seed=1)
    write_run(root, "clf-b", lr=3e-3, accuracy=0.86, predictions=classification_predictions(20, 1), seed=2)
    write_run(root, "ner-run", task="ner", metric="f1", accuracy=0.6, labels=["O", "location", "person"],
              matrix=[[20, 1, 0], [0, 3, 1], [1, 2, 6]], predictions=ner_predictions())
    trial = write_run(root, "study/trial-000", lr=2e-3, accuracy=0.8)
    (root / "study" / "summary.json").write_text(json.dumps({
        "study": "study", "metric": "accuracy", "direction": "maximize", "sampler": "tpe", "pruner": "median",
        "best": {"number": 0, "value": 0.8, "params": {"train.learning_rate": 2e-3}, "run_dir": str(trial)},
        "trials": [{"number": 0, "state": "COMPLETE", "value": 0.8, "params": {"train.learning_rate": 2e-3},
                    "run_dir": str(trial)}]}))
    sequence = root / "continual-seq"
    sequence.mkdir()
    (sequence / "continual.json").write_text("{}")
    (sequence / "report.json").write_text(json.dumps({
        "strategy": "replay", "steps": ["a", "b"], "matrix": {"test": [[0.9, None], [0.7, 0.88]]},
        "test": {"average_accuracy": 0.79, "backward_transfer": -0.2, "forgetting": 0.2}}))
    return root
