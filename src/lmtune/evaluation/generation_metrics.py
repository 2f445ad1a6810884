"""Scores for generated text against references: EM, token F1, ROUGE-L, and a per-class
report when the references are a small set of labels (a decoder used as a classifier)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from .metrics import single_label_metrics
from .squad_metrics import exact_match, normalize_answer, token_f1

MAX_LABELS = 20  # references with at most this many distinct values are treated as labels


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, with stemming), in percent."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return 100 * float(np.mean(scores)) if scores else 0.0


def as_labels(references: Sequence[str]) -> list[str] | None:
    """The label set when references look like class labels (few values, each used repeatedly)."""
    counts = Counter(normalize_answer(r) for r in references)
    if len(counts) < 2 or len(counts) > MAX_LABELS or len(counts) > len(references) / 2:
        return None
    return sorted(counts)


def generation_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    n = max(len(predictions), 1)
    result: dict[str, Any] = {
        "exact_match": 100 * sum(exact_match(p, r) for p, r in zip(predictions, references)) / n,
        "f1": 100 * sum(token_f1(p, r) for p, r in zip(predictions, references)) / n,
        "rouge_l": rouge_l(predictions, references),
        "support": len(predictions),
    }
    labels = as_labels(references)
    if labels:
        # An output that is none of the labels gets its own id: wrong for accuracy and for
        # recall, and outside the per-class and averaged figures.
        index = {label: i for i, label in enumerate(labels)}
        y_true = np.array([index[normalize_answer(r)] for r in references])
        y_pred = np.array([index.get(normalize_answer(p), len(labels)) for p in predictions])
        result.update({k: v for k, v in single_label_metrics(y_true, y_pred, labels).items() if k != "support"})
        result["unparsed_outputs"] = int((y_pred == len(labels)).sum())
    return result
