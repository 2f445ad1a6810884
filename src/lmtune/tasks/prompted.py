"""Prompt-based classification with a pretrained model, no training: zero-shot, or few-shot with
k labeled examples in context.

A task like the others, so `Predictor.predict` and `Predictor.evaluate_records` serve it (the
CLI's --zero-shot, the Python API): records in, the predictions and the classification report of
a fine-tuned classifier out, so what fine-tuning buys is visible. What differs per model is how
labels are scored: a scorer from lmtune.prompting (a decoder's label likelihood, an encoder's
similarity to label descriptions) turns texts into one score per label; this task does the rest.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..config import ConfigError
from ..data.records import DataError, DataIssue, Dataset, Record
from ..evaluation import metrics as M
from .base import Encoded, Task

NOT_TRAINABLE = ("the prompted task classifies by prompting a pretrained model and cannot be trained; "
                 "fine-tune with --task classification, or use it with lmtune predict/evaluate --zero-shot")


class PromptedTask(Task):
    name = "prompted"
    pipeline_tag = "zero-shot-classification"
    default_metric = "accuracy"
    onnx_outputs = ()  # the scorer runs the model its own way (several passes, pooling)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.scorer: Any = None

    def use(self, scorer: Any) -> None:
        """Classify with `scorer` (lmtune.prompting), which holds the label set and the shots."""
        self.scorer = scorer

    @property
    def labels(self) -> list[str]:
        """The label values as they appear in the data."""
        return list(self.scorer.labels.values) if self.scorer is not None else []

    # ---- nothing to train ---------------------------------------------------------------
    @property
    def auto_model_class(self) -> Any:
        raise ConfigError(NOT_TRAINABLE)

    def fit(self, train: Dataset) -> None:
        raise ConfigError(NOT_TRAINABLE)

    def encode(self, records: Sequence[Record], tokenizer: Any, max_length: int, **options: Any) -> Encoded:
        raise ConfigError(NOT_TRAINABLE)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise ConfigError(NOT_TRAINABLE)

    def model_config(self) -> dict[str, Any]:
        return {}

    def restore(self, hf_config: Any) -> None:
        return None  # the labels come with the scorer, not from a saved head

    # ---- labels, scores, predictions, metrics ---------------------------------------------
    def required_columns(self, columns: Sequence[str], labeled: bool = True) -> list[tuple[str, str | None]]:
        data = self.cfg.data
        return [(data.text_column, "--text-column")] + ([(data.label_column, "--label-column")] if labeled else [])

    def gold(self, record: Record) -> str:
        """A record's label as the label values spell it (a number read as 1.0 is "1")."""
        value = record.fields.get(self.cfg.data.label_column)
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)

    def check(self, datasets: dict[str, Dataset]) -> list[DataIssue]:
        """Gold labels that are none of the labels given (each would count as a wrong answer)."""
        column, known = self.cfg.data.label_column, set(self.labels)
        return [DataIssue("error", r.source, r.line, column,
                          f"label {r.fields.get(column)!r} is not in --labels ({', '.join(self.labels)})")
                for ds in datasets.values() for r in ds.records if self.gold(r) not in known]

    def label_scores(self, records: Sequence[Record]) -> list[np.ndarray]:
        """One score per label for each record's text (higher: more likely)."""
        if self.scorer is None:
            raise ValueError("no labels to classify into: load with lmtune.inference.predictor.load_prompted")
        texts = [str(r.fields.get(self.cfg.data.text_column, "")) for r in records]
        return list(self.scorer.label_scores(texts)) if texts else []

    def predict_records(self, predictor: Any, records: Sequence[Record], **options: Any) -> list[Any]:
        return self.decode(self.label_scores(records), Encoded([], records), **options)

    def evaluate_records(self, predictor: Any, records: Sequence[Record],
                         rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The classification report; no per-example rows (`rows` stays as given)."""
        issues = self.check({"test": Dataset("<records>", list(records))})
        if issues:
            raise DataError(issues, advice="")
        return self.metrics(self.label_scores(records), Encoded([], records))

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[dict[str, Any]]:
        """Label, score and probabilities (softmax over the label scores), as a classifier gives."""
        if not len(logits):
            return []
        scores = np.stack(logits)
        probs = np.exp(scores - scores.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        values = self.labels
        return [{"label": values[int(p.argmax())], "score": float(p.max()),
                 "probabilities": {v: float(x) for v, x in zip(values, p)}} for p in probs]

    def metrics(self, logits: Sequence[np.ndarray], encoded: Encoded) -> dict[str, Any]:
        """The classification report (accuracy, per-class P/R/F1) against the records' labels."""
        values = self.labels
        index = {v: i for i, v in enumerate(values)}
        gold = [index[self.gold(r)] for r in encoded.records]
        predicted = [int(np.argmax(row)) for row in logits]
        return M.single_label_metrics(np.array(gold), np.array(predicted), values)

    def same_prediction(self, a: Any, b: Any) -> bool:
        return a["label"] == b["label"]

    def summary(self, metrics: dict[str, Any]) -> str:
        return M.format_report(metrics)
