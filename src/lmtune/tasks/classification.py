"""Text and text-pair classification, single-label (softmax) and multi-label (sigmoid).

A run may fix its label set (data.labels: the head covers labels its training file lacks) and
split it into groups (data.label_groups: one head serving several tasks, where an example's
loss and metrics choose only among its own label's group).
"""

from __future__ import annotations

import ast
import dataclasses
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError
from ..data import checks
from ..data.records import DataIssue, Dataset, Record
from ..evaluation import metrics as M
from .base import Encoded, ExplainTarget, Task, TokenWords, edit_fields, encoding_words

if TYPE_CHECKING:
    from ..data.edits import Edit
    from ..evaluation.calibration import CalibrationScores


def _label_sort_key(label: str) -> tuple:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _label_name(value: Any) -> str:
    """A configured label as the data's labels read (`label_values`): 1.0 and 1 are "1"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _as_list(value: Any, key: str, separator: str) -> list[Any]:
    """A config list: a Python/YAML list, its text (a YAML list read back through a str-typed
    config field is its repr) or a `separator`-joined string."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ConfigError(f"{key}: cannot read {value!r} as a list; write 'a,b,c' or a YAML list") from None
    if isinstance(value, str):
        return value.split(separator)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list or a comma list, got {value!r}")
    return list(value)


def parse_labels(value: Any, key: str = "data.labels") -> list[str] | None:
    """data.labels as label names in order; None when unset."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    names = [_label_name(v) for v in _as_list(value, key, ",") if _label_name(v)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{key}: {', '.join(map(repr, repeated))} listed more than once; list each label once")
    return names


def parse_label_groups(value: Any, key: str = "data.label_groups") -> list[list[str]] | None:
    """data.label_groups as lists of label names: 'a,b|c,d', or a list of lists (or of comma lists)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    groups = [_as_list(g, key, ",") for g in _as_list(value, key, "|")]
    groups = [[_label_name(v) for v in g if _label_name(v)] for g in groups]
    if not all(groups):
        raise ConfigError(f"{key}: group {groups.index([]) + 1} is empty; write groups as 'a,b|c,d'")
    return groups


class ClassificationTask(Task):
    name = "classification"
    pipeline_tag = "text-classification"
    default_metric = "accuracy"
    selection_metrics = {"accuracy": True, "subset_accuracy": True,
                         **{f"{a}_{m}": True for a in ("macro", "micro", "weighted")
                            for m in ("f1", "precision", "recall")}}
    peft_task_type = "SEQ_CLS"
    learns_in_sequence = True
    has_classes = True
    explainable = True
    calibratable = True

    @property
    def attackable(self) -> bool:  # type: ignore[override]
        """Single-label only: an attack flips the one predicted label; a label set has no one label."""
        return not self.multi_label

    @property
    def learns_actively(self) -> bool:  # type: ignore[override]
        """Single-label only: uncertainty is read from one softmax over the labels."""
        return not self.multi_label

    def edit_record(self, record: Record, edit: Edit) -> tuple[Record, int]:
        """The text, then the pair text, rewritten; the label stays."""
        return edit_fields(record, self._text_fields(), edit)

    def same_prediction(self, a: Any, b: Any) -> bool:
        """The same label (multi-label: the same label set); probabilities may differ slightly."""
        return a.get("label", a.get("labels")) == b.get("label", b.get("labels"))

    def __init__(self, cfg):
        super().__init__(cfg)
        self.multi_label = cfg.data.multi_label
        self.class_weights: torch.Tensor | None = None
        self.fixed_labels = parse_labels(cfg.data.labels)
        if self.fixed_labels is not None and len(self.fixed_labels) < 2 and not self.multi_label:
            raise ConfigError(f"data.labels has {len(self.fixed_labels)} label(s); single-label "
                              "classification needs at least 2")
        self.labels: list[str] = list(self.fixed_labels or [])
        self.label_groups: list[list[str]] | None = None
        self._group_of: np.ndarray | None = None  # (num_labels,) group index of each label
        self._use_groups(parse_label_groups(cfg.data.label_groups))
        _check_template(cfg.data.template, cfg.data.text_pair_column)

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

    def record_classes(self, record: Record) -> list[str]:
        """Its label (multi-label: its labels), for sampling K rows per class."""
        values = self.label_values(record)
        return values if self.multi_label else values[:1]

    def _use_groups(self, groups: list[list[str]] | None) -> None:
        """Take label groups that split self.labels: every label in exactly one group."""
        self.label_groups, self._group_of = None, None
        if groups is None:
            return
        if self.multi_label:
            raise ConfigError("data.label_groups applies to single-label classification; "
                              "remove it or data.multi_label")
        if not self.labels:
            raise ConfigError("data.label_groups needs data.labels, the fixed label set the groups split")
        group_of: dict[str, int] = {}
        for number, group in enumerate(groups, 1):
            for label in group:
                if label in group_of:
                    raise ConfigError(f"data.label_groups: label {label!r} is in group {group_of[label]} "
                                      f"and group {number}; put every label in exactly one group")
                if label not in self.labels:
                    raise ConfigError(f"data.label_groups: label {label!r} (group {number}) is not in "
                                      f"data.labels ({', '.join(self.labels)})")
                group_of[label] = number
        missing = [label for label in self.labels if label not in group_of]
        if missing:
            raise ConfigError(f"data.label_groups: {', '.join(map(repr, missing))} in no group; "
                              "put every label of data.labels in exactly one group")
        self.label_groups = [list(g) for g in groups]
        self._group_of = np.array([group_of[label] for label in self.labels])

    def fit(self, train: Dataset) -> None:
        """The label set (data.labels, else the training file's labels) and class weights."""
        counts = Counter(v for r in train.records for v in self.label_values(r))
        if self.fixed_labels is not None:  # labels outside it are check()'s errors, not counted
            counts = Counter({label: counts[label] for label in self.fixed_labels})
            self.labels = list(self.fixed_labels)
        else:
            self.labels = sorted(counts, key=_label_sort_key)
        if len(self.labels) < 2 and not self.multi_label:
            raise ValueError(f"{train.path}: found {len(self.labels)} distinct label(s) in column "
                             f"{self.cfg.data.label_column!r}; classification needs at least 2")
        self.label_counts = counts
        if self.cfg.train.class_weights == "balanced":
            self.class_weights = torch.tensor(self._balanced_weights(counts, len(train.records)),
                                              dtype=torch.float32)

    def _balanced_weights(self, counts: Counter, rows: int) -> list[float]:
        """Inverse class frequency (multi-label: negatives / positives per label). A class absent
        from train gets weight 1, what a class of average frequency gets: its validation
        examples still count, and a batch of only them cannot divide the loss by zero."""
        if self.multi_label:
            return [(rows - counts[label]) / max(counts[label], 1) for label in self.labels]
        n, present = sum(counts.values()), sum(1 for label in self.labels if counts[label])
        return [n / (present * counts[label]) if counts[label] else 1.0 for label in self.labels]

    def model_config(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {label: i for i, label in enumerate(self.labels)},
            "problem_type": "multi_label_classification" if self.multi_label
            else "single_label_classification",
            "label_groups": self.label_groups,  # saved in config.json, read back by restore
        }

    def restore(self, hf_config: Any) -> None:
        self.labels = [hf_config.id2label[i] for i in range(len(hf_config.id2label))]
        self.multi_label = hf_config.problem_type == "multi_label_classification"
        self._use_groups(getattr(hf_config, "label_groups", None))

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
            issues += self._unknown_labels(split, dataset, datasets)
            if split != "train" and "train" in datasets:
                issues += checks.check_overlap(datasets["train"].records, dataset.records, self._key,
                                               self.cfg.data.text_column, split)
        return issues

    def _unknown_labels(self, split: str, dataset: Dataset, datasets: dict[str, Dataset]) -> list[DataIssue]:
        """Labels the head cannot predict: outside data.labels (every split), else evaluation
        labels that train lacks."""
        field = self.cfg.data.label_column
        if self.fixed_labels is not None:
            found = checks.check_known_values(dataset.records, field, self.label_values,
                                              set(self.fixed_labels), "data.labels (the fixed label set)")
            return [dataclasses.replace(i, hint="add the label to data.labels, or fix or remove the row")
                    for i in found]
        if split == "train":
            return []
        known_from = datasets["train"].path if "train" in datasets else "the model's labels"
        return checks.check_known_values(dataset.records, field, self.label_values, set(self.labels), known_from)

    # ---- encoding -----------------------------------------------------------------------
    def encode(self, records: Sequence[Record], tokenizer: Any, max_length: int,
               with_labels: bool = True) -> Encoded:
        if not records:
            return Encoded([], records)
        texts, pairs, special = self._inputs(records, tokenizer)
        full = tokenizer(texts, pairs, truncation=False, return_attention_mask=False, add_special_tokens=special)
        lengths = [len(ids) for ids in full["input_ids"]]
        long_rows = [i for i, n in enumerate(lengths) if n > max_length]
        columns = {k: list(v) for k, v in full.items()}
        if long_rows:
            cut = tokenizer([texts[i] for i in long_rows], [pairs[i] for i in long_rows] if pairs else None,
                            truncation=True, max_length=max_length, return_attention_mask=False,
                            add_special_tokens=special)
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

    def _inputs(self, records: Sequence[Record], tokenizer: Any) -> tuple[list[str], list[str] | None, bool]:
        """The texts (and pairs) to tokenize, and whether the tokenizer adds its special tokens.
        With data.template each record becomes one prompt; a tokenizer with a chat template
        (a chat decoder) wraps it as the user turn, so the answer is the model's next token."""
        data = self.cfg.data
        texts = [str(r.fields[data.text_column]) for r in records]
        pairs = [str(r.fields[data.text_pair_column]) for r in records] if data.text_pair_column else None
        if not data.template:
            return texts, pairs, True
        prompts = [data.template.format(text=t, pair=p) for t, p in zip(texts, pairs or [""] * len(texts))]
        if not getattr(tokenizer, "chat_template", None):
            return prompts, None, True
        return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                              add_generation_prompt=True) for p in prompts], None, False

    def collate_labels(self, labels: Sequence[Any], longest: int) -> torch.Tensor:
        """Class ids, or multi-hot float vectors for multi-label."""
        return torch.tensor(labels, dtype=torch.float32 if self.multi_label else torch.long)

    # ---- loss, metrics, predictions -----------------------------------------------------
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weights = None if self.class_weights is None else self.class_weights.to(logits.device)
        logits = logits.float()
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights)
        if self._group_of is not None:
            return self._grouped_loss(logits, labels, weights)
        return F.cross_entropy(logits, labels, weight=weights,
                               label_smoothing=self.cfg.train.label_smoothing)

    def _grouped_loss(self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy whose softmax spans each example's gold-label group only: per group,
        what F.cross_entropy gives on that group's logits (label smoothing spread over the
        group, class weights and their weighted mean as PyTorch takes them)."""
        group_of = torch.as_tensor(self._group_of, device=logits.device)
        member = group_of[labels][:, None] == group_of[None, :]  # (batch, num_labels)
        log_p = logits.masked_fill(~member, float("-inf")).log_softmax(-1)
        log_p = log_p.masked_fill(~member, 0.0)  # no -inf left for the smoothing sum to meet
        w = weights if weights is not None else torch.ones(logits.shape[-1], device=logits.device)
        nll = -log_p.gather(1, labels[:, None]).squeeze(1) * w[labels]  # (batch,)
        smooth = -(log_p * w).sum(-1) / member.sum(-1)  # (batch,) mean over the group
        eps = self.cfg.train.label_smoothing
        return ((1 - eps) * nll + eps * smooth).sum() / w[labels].sum()

    def metrics(self, logits: Sequence[np.ndarray], encoded: Encoded) -> dict[str, Any]:
        logits = np.stack(logits)
        labels = np.array([f["labels"] for f in encoded.features])
        if self.multi_label:
            probs = 1.0 / (1.0 + np.exp(-logits))
            return M.multi_label_metrics(labels, probs, self.labels, self.cfg.eval.threshold)
        if self._group_of is None:
            return M.single_label_metrics(labels, logits.argmax(-1), self.labels)
        # The task (the gold label's group) is known when scoring: predictions, and the per-class
        # report and averages, cover only the groups the data holds.
        member = self._group_of[labels][:, None] == self._group_of[None, :]
        predicted = np.where(member, logits, -np.inf).argmax(-1)
        kept = [i for i in range(len(self.labels)) if self._group_of[i] in set(self._group_of[labels].tolist())]
        index = np.full(len(self.labels), -1)
        index[kept] = np.arange(len(kept))
        return M.single_label_metrics(index[labels], index[predicted], [self.labels[i] for i in kept])

    def calibration_scores(self, logits: Sequence[np.ndarray], encoded: Encoded) -> CalibrationScores:
        """One softmax per example over its label's group (all labels without groups), or one
        sigmoid per (example, label) for multi-label."""
        from ..evaluation.calibration import CalibrationScores

        scores = np.stack(logits)  # (examples, labels)
        gold = np.array([f["labels"] for f in encoded.features])
        if self.multi_label:
            return CalibrationScores(scores, gold, "sigmoid")
        if self._group_of is not None:  # other groups' labels are not candidates: probability 0
            scores = np.where(self._group_of[gold][:, None] == self._group_of[None, :], scores, -np.inf)
        return CalibrationScores(scores, gold, "softmax")

    def example_rows(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[dict[str, Any]]:
        """Per record: its label (set) against the predicted one, the cross-entropy of the gold
        (multi-label: the mean binary cross-entropy over the labels) and the raw model
        probabilities (before any temperature; with label groups, over the gold's group)."""
        from ..evaluation.calibration import probabilities
        from ..evaluation.examples import example_row, sigmoid_losses, softmax_losses

        if not len(logits):
            return []
        scores, gold, kind = self.calibration_scores(logits, encoded)
        probs = probabilities(scores, kind)
        if self.multi_label:
            losses = sigmoid_losses(scores, gold)
            golds = [[label for label, g in zip(self.labels, row) if g] for row in gold]
            chosen = [[label for label, p in zip(self.labels, row) if p >= self.cfg.eval.threshold] for row in probs]
        else:
            losses = softmax_losses(scores, gold)
            golds = [[self.labels[g]] for g in gold]
            chosen = [[self.labels[int(row.argmax())]] for row in probs]
        data, rows = self.cfg.data, []
        for i, record in enumerate(encoded.records):
            pair = record.fields.get(data.text_pair_column) if data.text_pair_column else None
            shown = {label: float(p) for label, p, z in zip(self.labels, probs[i], scores[i]) if np.isfinite(z)}
            rows.append(example_row(i, record, str(record.fields[data.text_column]), ", ".join(golds[i]),
                                    ", ".join(chosen[i]), correct=golds[i] == chosen[i], loss=losses[i],
                                    pair=None if pair is None else str(pair), gold_classes=golds[i],
                                    predicted_classes=chosen[i], probabilities=shown))
        return rows

    def _columns(self, labels: Sequence[str] | str | None) -> tuple[list[str], list[int]]:
        """The labels a prediction chooses among (default: all) and their logit columns."""
        if labels is None:
            return self.labels, list(range(len(self.labels)))
        names = parse_labels(labels, "labels") or []
        unknown = [n for n in names if n not in self.labels]
        if unknown or not names:
            what = f"unknown label(s) {', '.join(map(repr, unknown))}" if unknown else "no labels given"
            raise ValueError(f"labels={labels!r}: {what}; choose among this model's labels: "
                             f"{', '.join(self.labels)}")
        return names, [self.labels.index(n) for n in names]

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded, labels: Sequence[str] | str | None = None,
               **options: Any) -> list[dict[str, Any]]:
        """Predictions over all labels, or over `labels` only (e.g. one task's group): the
        softmax, label, score and probabilities then cover just those."""
        names, columns = self._columns(labels)
        if not len(logits):
            return []
        logits = np.stack(logits)[:, columns]
        # Each prediction says whether its input was cut to fit the model (tokens beyond
        # model.max_length were not read).
        limit = self.cfg.model.max_length
        cut = [{"truncated": n > limit, "tokens": n} for n in encoded.lengths] or [{}] * len(logits)
        if self.multi_label:
            probs = 1.0 / (1.0 + np.exp(-logits))
            return [{"labels": [l for l, p in zip(names, row) if p >= self.cfg.eval.threshold],
                     "scores": {l: float(p) for l, p in zip(names, row)}, **c}
                    for row, c in zip(probs, cut)]
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        probs = shifted / shifted.sum(-1, keepdims=True)
        return [{"label": names[int(row.argmax())], "score": float(row.max()),
                 "probabilities": {l: float(p) for l, p in zip(names, row)}, **c}
                for row, c in zip(probs, cut)]

    def explain_targets(self, logits: Sequence[np.ndarray], encoded: Encoded,
                        label: str | None = None) -> list[list[ExplainTarget]]:
        """The probability of the predicted class (multi-label: of each predicted label, else
        the likeliest), or of each label in `label` ("a" or "a,b")."""
        chosen = None if label is None else self._columns(label)[1]
        targets = []
        for feature, row in enumerate(logits):
            if chosen is not None:
                columns = chosen
            elif self.multi_label:
                columns = [c for c, z in enumerate(row) if 1 / (1 + np.exp(-z)) >= self.cfg.eval.threshold]
                columns = columns or [int(np.argmax(row))]
            else:
                columns = [int(np.argmax(row))]
            targets.append([ExplainTarget(self.labels[c], feature, self._probability(c), "probability")
                            for c in columns])
        return targets

    def _probability(self, column: int) -> Any:
        """logits (batch, labels) -> the probability of one label (batch,)."""
        if self.multi_label:
            return lambda z: torch.sigmoid(z.float()[:, column])
        return lambda z: z.float().softmax(-1)[:, column]

    def explain_words(self, encoded: Encoded, feature: int, tokenizer: Any) -> TokenWords:
        """The text's (and pair's) words, as the tokenizer splits them (the prompt's, with a
        template)."""
        texts, pairs, special = self._inputs([encoded.records[feature]], tokenizer)
        data = self.cfg.data
        segments = [("prompt" if data.template else data.text_column, texts[0])]
        if pairs:
            segments.append((data.text_pair_column, pairs[0]))
        encoding = tokenizer(texts, pairs, truncation=True, max_length=self.cfg.model.max_length,
                             return_offsets_mapping=True, add_special_tokens=special)
        return TokenWords(segments, encoding_words(encoding, 0))

    def plots(self, metrics: dict[str, Any], out_dir: Path, prefix: str = "") -> list[Path]:
        if "confusion_matrix" not in metrics:
            return []
        from ..evaluation.plots import confusion_matrix

        path = Path(out_dir) / f"{prefix}confusion_matrix.png"
        confusion_matrix(metrics["confusion_matrix"], list(metrics.get("per_class") or self.labels), path)
        return [path]

    def summary(self, metrics: dict[str, Any]) -> str:
        return M.format_report(metrics)


def _check_template(template: str | None, pair_column: str | None) -> None:
    """A template formats {text} (and {pair} with a pair column), nothing else."""
    if template is None:
        return
    try:
        template.format(text="", pair="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"--data.template {template!r}: only {{text}} and {{pair}} can be filled in ({exc})") from exc
    if "{text}" not in template:
        raise ConfigError(f"--data.template {template!r} must contain {{text}}, e.g. 'Review: {{text}}'")
    if ("{pair}" in template) != bool(pair_column):
        raise ConfigError(f"--data.template {template!r}: use {{pair}} exactly when --data.text-pair-column is set")
