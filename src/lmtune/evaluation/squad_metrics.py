"""Exact match and token F1 with the standard SQuAD answer normalization."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles (a, an, the), collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)  # both empty (no answer) counts as a match
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(metric, prediction: str, golds: Sequence[str]) -> float:
    """SQuAD scores a prediction against its closest gold answer; no gold means 'no answer'."""
    return max((metric(prediction, gold) for gold in golds), default=metric(prediction, ""))


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """EM and F1 in percent, as SQuAD reports them."""
    n = max(len(predictions), 1)
    em = sum(best_over_golds(exact_match, p, g) for p, g in zip(predictions, golds))
    f1 = sum(best_over_golds(token_f1, p, g) for p, g in zip(predictions, golds))
    return {"exact_match": 100 * em / n, "f1": 100 * f1 / n, "support": len(predictions)}
