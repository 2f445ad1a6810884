"""Text and text-pair classification, single-label (softmax) and multi-label (sigmoid)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import checks
from ..data.records import DataIssue, Dataset, Record
from ..evaluation import metrics as M
from .base import Encoded, Task


def _label_sort_key(label: str) -> tuple:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


class ClassificationTask(Task):
    name = "classification"
    pipeline_tag = "text-classification"
    default_metric = "accuracy"
    selection_metrics = {"accuracy": True, "subset_accuracy": True,
                         **{f"{a}_{m}": True for a in ("macro", "micro", "weighted")
                            for m in ("f1", "precision", "recall")}}
    peft_task_type = "SEQ_CLS"

    def same_prediction(self, a: Any, b: Any) -> bool:
        """The same label (multi-label: the same label set); probabilities may differ slightly."""
        return a.get("label", a.get("labels")) == b.get("label", b.get("labels"))

    def __init__(self, cfg):
        super().__init__(cfg)
        self.labels: list[str] = []
        self.multi_label = cfg.data.multi_label
        self.class_weights: torch.Tensor | None = None

    @property
    def auto_model_class(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    # ---- labels -------------------------------------------------------------------------
    def label_values(self, record: Record) -> list[str]:
        """The label(s) of a record as strings; multi-label accepts a list or a joined field."""
        value = record.fields.get(self.cfg.data.label_column)
        if checks.is_blank(value):
            return []
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
        text = str(value).strip()
        if isinstance(value, float) and value.is_integer():
            text = str(int(value))
        if self.multi_label and self.cfg.data.label_separator:
            return [part.strip() for part in text.split(self.cfg.data.label_separator) if part.strip()]
        return [text]

    def fit(self, train: Dataset) -> None:
        counts = Counter(v for r in train.records for v in self.label_values(r))
        self.labels = sorted(counts, key=_label_sort_key)
        if len(self.labels) < 2 and not self.multi_label:
            raise ValueError(f"{train.path}: found {len(self.labels)} distinct label(s) in column "
                             f"{self.cfg.data.label_column!r}; classification needs at least 2")
        self.label_counts = counts
        if self.cfg.train.class_weights == "balanced":
            n = sum(counts.values()) if not self.multi_label else len(train.records)
            if self.multi_label:  # positive weight per label: negatives / positives
                weights = [(n - counts[label]) / max(counts[label], 1) for label in self.labels]
            else:
                weights = [n / (len(self.labels) * counts[label]) for label in self.labels]
            self.class_weights = torch.tensor(weights, dtype=torch.float32)

    def model_config(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {label: i for i, label in enumerate(self.labels)},
            "problem_type": "multi_label_classification" if self.multi_label
            else "single_label_classification",
        }

    def restore(self, hf_config: Any) -> None:
        self.labels = [hf_config.id2label[i] for i in range(len(hf_config.id2label))]
        self.multi_label = hf_config.problem_type == "multi_label_classification"

    # ---- data checks --------------------------------------------------------------------
    def _text_fields(self) -> list[str]:
        return [f for f in (self.cfg.data.text_column, self.cfg.data.text_pair_column) if f]

    def required_columns(self, columns: Sequence[str], labeled: bool = True) -> list[tuple[str, str | None]]:
        data = self.cfg.data
        wanted: list[tuple[str, str | None]] = [(data.text_column, "--text-column")]
        if data.text_pair_column:
            wanted.append((data.text_pair_column, "--text-pair-column"))
        return wanted + ([(data.label_column, "--label-column")] if labeled else [])

    def _key(self, record: Record) -> tuple:
        return tuple(str(record.fields.get(f, "")).strip() for f in self._text_fields())

    def check(self, datasets: dict[str, Dataset]) -> list[DataIssue]:
        label_field = self.cfg.data.label_column
        issues: list[DataIssue] = []
        for split, dataset in datasets.items():
            issues += dataset.issues
            for text_field in self._text_fields():
                issues += checks.check_required(dataset.records, text_field, "text",
                                                "fill in the text or remove the row")
            issues += checks.check_required(dataset.records, label_field, "label",
                                            "every training/evaluation row needs a label")
            issues += checks.check_duplicates(dataset.records, self._key,
                                              lambda r: tuple(self.label_values(r)),
                                              self.cfg.data.text_column)
            if split != "train":
                known_from = datasets["train"].path if "train" in datasets else "the model's labels"
                issues += checks.check_known_values(dataset.records, label_field, self.label_values,
                                                    set(self.labels), known_from)
            if split != "train" and "train" in datasets:
                issues += checks.check_overlap(datasets["train"].records, dataset.records, self._key,
                                               self.cfg.data.text_column, split)
        return issues

    # ---- encoding -----------------------------------------------------------------------
    def encode(self, records: Sequence[Record], tokenizer: Any, max_length: int,
               with_labels: bool = True) -> Encoded:
        if not records:
            return Encoded([], records)
        texts = [str(r.fields[self.cfg.data.text_column]) for r in records]
        pairs = ([str(r.fields[self.cfg.data.text_pair_column]) for r in records]
                 if self.cfg.data.text_pair_column else None)
        full = tokenizer(texts, pairs, truncation=False, return_attention_mask=False)
        lengths = [len(ids) for ids in full["input_ids"]]
        long_rows = [i for i, n in enumerate(lengths) if n > max_length]
        columns = {k: list(v) for k, v in full.items()}
        if long_rows:
            cut = tokenizer([texts[i] for i in long_rows], [pairs[i] for i in long_rows] if pairs else None,
                            truncation=True, max_length=max_length, return_attention_mask=False)
            for j, i in enumerate(long_rows):
                for key in columns:
                    columns[key][i] = cut[key][j]
        features = [{key: columns[key][i] for key in columns} for i in range(len(records))]
        if with_labels:
            index = {label: i for i, label in enumerate(self.labels)}
            for feature, record in zip(features, records):
                values = self.label_values(record)
                if self.multi_label:
                    target = [0.0] * len(self.labels)
                    for v in values:
                        target[index[v]] = 1.0
                    feature["labels"] = target
                else:
                    feature["labels"] = index[values[0]]
        return Encoded(features, records, truncated=len(long_rows), lengths=lengths)

    def collate_labels(self, labels: Sequence[Any], longest: int) -> torch.Tensor:
        """Class ids, or multi-hot float vectors for multi-label."""
        return torch.tensor(labels, dtype=torch.float32 if self.multi_label else torch.long)

    # ---- loss, metrics, predictions -----------------------------------------------------
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weights = None if self.class_weights is None else self.class_weights.to(logits.device)
        logits = logits.float()
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights)
        return F.cross_entropy(logits, labels, weight=weights,
                               label_smoothing=self.cfg.train.label_smoothing)

    def metrics(self, logits: Sequence[np.ndarray], encoded: Encoded) -> dict[str, Any]:
        logits = np.stack(logits)
        labels = np.array([f["labels"] for f in encoded.features])
        if self.multi_label:
            probs = 1.0 / (1.0 + np.exp(-logits))
            return M.multi_label_metrics(labels, probs, self.labels, self.cfg.eval.threshold)
        return M.single_label_metrics(labels, logits.argmax(-1), self.labels)

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[dict[str, Any]]:
        if not len(logits):
            return []
        logits = np.stack(logits)
        # Each prediction says whether its input was cut to fit the model (tokens beyond
        # model.max_length were not read).
        limit = self.cfg.model.max_length
        cut = [{"truncated": n > limit, "tokens": n} for n in encoded.lengths] or [{}] * len(logits)
        if self.multi_label:
            probs = 1.0 / (1.0 + np.exp(-logits))
            return [{"labels": [l for l, p in zip(self.labels, row) if p >= self.cfg.eval.threshold],
                     "scores": {l: float(p) for l, p in zip(self.labels, row)}, **c}
                    for row, c in zip(probs, cut)]
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        probs = shifted / shifted.sum(-1, keepdims=True)
        return [{"label": self.labels[int(row.argmax())], "score": float(row.max()),
                 "probabilities": {l: float(p) for l, p in zip(self.labels, row)}, **c}
                for row, c in zip(probs, cut)]

    def plots(self, metrics: dict[str, Any], out_dir: Path, prefix: str = "") -> list[Path]:
        if "confusion_matrix" not in metrics:
            return []
        from ..evaluation.plots import confusion_matrix

        path = Path(out_dir) / f"{prefix}confusion_matrix.png"
        confusion_matrix(metrics["confusion_matrix"], self.labels, path)
        return [path]

    def summary(self, metrics: dict[str, Any]) -> str:
        return M.format_report(metrics)
