"""Per-example predictions of an evaluation, for error analysis (README "The run folder").

One JSON object per example of a split, in order: what a person reads (text, pair), the gold
and predicted answers as text and as classes, whether they agree, the example's loss (higher
is worse) and, where the task has them, probabilities and character spans to highlight.
Tasks build the rows (`Task.example_rows`) with `example_row`; `write_examples` writes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.records import Record

Span = dict[str, Any]  # {"start": int, "end": int, "label": str}: character offsets into "text"


def example_row(index: int, record: Record, text: str, gold: str, predicted: str | None, *,
                correct: bool, loss: float, pair: str | None = None,
                gold_classes: Sequence[str] = (), predicted_classes: Sequence[str] = (),
                probabilities: dict[str, float] | None = None,
                spans: tuple[list[Span], list[Span]] | None = None) -> dict[str, Any]:
    """One row of the predictions file, with every key of the format, in its order; `line` is
    where the example starts in its file, so a person can find it there."""
    return {"index": index, "line": record.line, "text": text, "pair": pair, "gold": gold,
            "predicted": predicted, "gold_classes": list(gold_classes),
            "predicted_classes": list(predicted_classes), "correct": bool(correct),
            "loss": float(loss), "probabilities": probabilities,
            "spans": None if spans is None else {"gold": spans[0], "predicted": spans[1]}}


def softmax_losses(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """(n,) cross-entropy of each row's gold class under the softmax of its scores (n, k); a
    score of -inf (a class the row cannot take) gets probability 0."""
    z = np.asarray(scores, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -log_p[np.arange(len(log_p)), np.asarray(gold, dtype=int)]


def sigmoid_losses(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """(n,) mean binary cross-entropy over each row's labels (scores and 0/1 gold: (n, k))."""
    z = np.asarray(scores, dtype=np.float64)
    return np.mean(np.logaddexp(0.0, z) - np.asarray(gold) * z, axis=-1)


def write_examples(path: Path, rows: Sequence[dict[str, Any]]) -> Path | None:
    """Write `rows` as JSONL at `path`, replacing it in one step (a reader never sees half a
    file); None and nothing written when there are no rows (a task that has none)."""
    if not rows:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(temporary, path)
    return path


def read_examples(path: Path) -> list[dict[str, Any]]:
    """The rows of a predictions file, in order."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
