"""Classification metrics on top of scikit-learn, in the shape the run folder stores."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def single_label_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, macro/micro/weighted P/R/F1 and a per-class report."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(labels)))
    result: dict = {"accuracy": float(accuracy_score(y_true, y_pred)), "support": int(len(y_true))}
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=average,
                                                     zero_division=0)
        result.update({f"{average}_precision": float(p), f"{average}_recall": float(r),
                       f"{average}_f1": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    result["per_class"] = {
        label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, label in enumerate(labels)
    }
    result["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    return result


def multi_label_metrics(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str],
                        threshold: float) -> dict:
    """Per-label and micro/macro F1 at a decision threshold; exact-match (subset) accuracy too."""
    from sklearn.metrics import precision_recall_fscore_support

    y_pred = (probs >= threshold).astype(int)
    y_true = y_true.astype(int)
    result: dict = {"subset_accuracy": float((y_pred == y_true).all(axis=1).mean()),
                    "threshold": threshold, "support": int(len(y_true))}
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        result.update({f"{average}_precision": float(p), f"{average}_recall": float(r),
                       f"{average}_f1": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    result["per_class"] = {
        label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, label in enumerate(labels)
    }
    result["accuracy"] = result["subset_accuracy"]
    return result


def format_report(metrics: dict, title: str = "") -> str:
    """A plain-text table like scikit-learn's classification_report, from stored metrics."""
    per_class = metrics.get("per_class", {})
    width = max([len(str(k)) for k in per_class] + [12])
    lines = [title] if title else []
    lines.append(f"{'':>{width}}  precision  recall  f1-score  support")
    for label, row in per_class.items():
        lines.append(f"{label:>{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                     f"{row['f1']:8.4f}  {row['support']:7d}")
    lines.append("")
    for average in ("macro", "micro", "weighted"):
        if f"{average}_f1" in metrics:
            lines.append(f"{average + ' avg':>{width}}  {metrics[average + '_precision']:9.4f}  "
                         f"{metrics[average + '_recall']:6.4f}  {metrics[average + '_f1']:8.4f}  "
                         f"{metrics['support']:7d}")
    for key in ("accuracy", "subset_accuracy", "loss"):
        if key in metrics and not (key == "accuracy" and "subset_accuracy" in metrics):
            lines.append(f"{key:>{width}}  {metrics[key]:.4f}")
    return "\n".join(lines)
