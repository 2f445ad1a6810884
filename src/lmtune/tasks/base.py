"""The Task contract: everything that makes a task a task, in one place.

A task turns records into model inputs and labels, names the AutoModelFor... head it needs,
turns logits into predictions and says which metrics judge it. It knows nothing of the method
(full, freeze, PEFT) or of the training loop.
"""

from __future__ import annotations

import dataclasses
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from ..config import Config
from ..data.records import DataIssue, Dataset, Record
from ..data.sampling import no_classes
from .batch import pad_inputs

if TYPE_CHECKING:
    from ..data.edits import Edit
    from ..evaluation.calibration import CalibrationScores

Feature = dict[str, Any]  # input_ids (+ token_type_ids) as int lists, and "labels"
# An augmentation that needs the task's labels: (record, rng, rate) -> (new record, words changed)
RecordOp = Callable[[Record, random.Random, float], tuple[Record, int]]


@dataclass
class Encoded:
    """Features for a list of records, with what encoding had to cut or split.

    A task may put its own keys in each feature (e.g. which record and words it covers);
    `collate` only reads input_ids, token_type_ids and labels (unless a task says otherwise).
    """

    features: list[Feature]
    records: Sequence[Record] = ()
    truncated: int = 0  # inputs cut at max_length
    windowed: int = 0  # inputs split into several overlapping windows
    lengths: list[int] = field(default_factory=list)  # untruncated token counts


@dataclass
class ExplainTarget:
    """One scalar of the model's output that an explanation attributes to the input tokens:
    `score` maps the task's logits for a batch of copies of one feature (`model_logits`, e.g.
    (batch, labels) or (batch, tokens, labels)) to one value per row."""

    name: str  # what the scalar is, for people: "positive", "person 'alice'", "answer start"
    feature: int  # which of the encoded features (windows) it is computed on
    score: Callable[[torch.Tensor], torch.Tensor]
    kind: str = "logit"  # "logit" or "probability": what `score` returns


@dataclass
class TokenWords:
    """The words a feature's tokens belong to: `segments` are the texts (field name, text) the
    words lie in; `spans[i]` is (segment, start, end) of token i's word, None for a special
    token (or a token of no word)."""

    segments: list[tuple[str, str]]
    spans: list[tuple[int, int, int] | None]


def encoding_words(encoding: Any, index: int) -> list[tuple[int, int, int] | None]:
    """Word spans per token of row `index` of a fast tokenizer's encoding (made with
    return_offsets_mapping): a word's span runs from its first piece's start to its last's end."""
    words, sequences = encoding.word_ids(index), encoding.sequence_ids(index)
    offsets = encoding["offset_mapping"][index]
    extent: dict[tuple[int, int], list[int]] = {}
    for word, sequence, (start, end) in zip(words, sequences, offsets):
        if word is not None and sequence is not None:
            span = extent.setdefault((sequence, word), [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    return [None if w is None or s is None else (s, *extent[(s, w)]) for w, s in zip(words, sequences)]


def not_explainable(task: str) -> ValueError:
    """Why a task's predictions have no explanation (Task.explainable is False)."""
    return ValueError(f"a {task} model cannot be explained: integrated gradients needs a score per "
                      "input that its token embeddings compute (a class probability, a tag or an "
                      "answer logit); explanations cover classification, NER and QA runs")


def require_text(text: str, index: int, what: str = "text") -> str:
    """Prediction inputs get the check training data gets: an empty text has nothing to predict from."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"input {index}: empty {what}; there is nothing to predict from "
                         "(training rejects empty texts too)")
    return text


def edit_fields(record: Record, names: Sequence[str | None], edit: Edit) -> tuple[Record, int]:
    """A copy of `record` with each named free-text field (in order; None and absent ones
    skipped) rewritten word by word by `edit`; a field the edit leaves alone keeps its exact
    text (its spacing too). Returns the copy and the words changed."""
    fields, changed = dict(record.fields), 0
    for name in names:
        if name is None or not isinstance(fields.get(name), str):
            continue
        words = fields[name].split()
        result = edit(words, [False] * len(words))
        if result.changed:
            fields[name], changed = " ".join(result.words), changed + result.changed
    return dataclasses.replace(record, fields=fields), changed


class Task(ABC):
    name: ClassVar[str]
    pipeline_tag: ClassVar[str]  # the Hugging Face hub pipeline it serves (model card metadata)
    default_metric: ClassVar[str] = "accuracy"
    # Scalar metrics a run can keep its best checkpoint by: name -> greater is better.
    # Every task also has the evaluation "loss" (lower is better).
    selection_metrics: ClassVar[dict[str, bool]] = {"accuracy": True}
    # The one layout this task's data usually comes in (conll, squad), or None if it has several:
    # a file whose extension says nothing is read as this when its content looks like it.
    default_format: ClassVar[str | None] = None
    # What the layers around the model ask of a task (cli, serving, export, methods), so none
    # of them switches on its name:
    # the shapes one prediction input may take: "text", "words" (a word list), "question_context"
    input_kinds: ClassVar[tuple[str, ...]] = ("text",)
    # the model outputs an ONNX export keeps, by name; () when the task does not export to ONNX
    onnx_outputs: ClassVar[tuple[str, ...]] = ("logits",)
    generates: ClassVar[bool] = False  # predictions are generated text (`lmtune generate`)
    windows_long_inputs: ClassVar[bool] = False  # long inputs become overlapping windows, not cut
    peft_task_type: ClassVar[str | None] = None  # peft's TaskType for this head (how peft routes inputs)
    # whether a pretrained model serves the task as it is, from the config alone (no new head)
    usable_untrained: ClassVar[bool] = False
    # whether `lmtune continual` can learn it step after step: one head over fixed labels
    # (data.labels), several steps' label groups in it (data.label_groups), scored by accuracy
    learns_in_sequence: ClassVar[bool] = False
    # whether a word-substitution attack can judge it: one label per input, scored per class
    attackable: ClassVar[bool] = False
    # whether each record belongs to classes (`record_classes`), so a K-shot sample
    # (--train.examples-per-class) can draw K rows of each
    has_classes: ClassVar[bool] = False
    # whether temperature scaling can calibrate its scores (`calibration_scores`): one
    # probability distribution per example or token over a fixed label set
    calibratable: ClassVar[bool] = False
    # whether its predictions can be explained by integrated gradients (`explain_targets`):
    # a score per input that is a differentiable function of the input token embeddings
    explainable: ClassVar[bool] = False
    # whether `lmtune active` can pick rows to label by how unsure the model is: one softmax
    # over the labels per input, and one label per row to ask for
    learns_actively: ClassVar[bool] = False

    def __init__(self, cfg: Config):
        self.cfg = cfg

    @classmethod
    def selection(cls, metric: str | None, greater_is_better: bool | None = None) -> tuple[str, bool]:
        """The metric that picks the best checkpoint and its direction: `metric` (default: the
        task's headline metric), lower-is-better for losses and perplexity unless
        `greater_is_better` says otherwise. An unknown name is a config error listing the names."""
        from ..config import ConfigError

        known = {**cls.selection_metrics, "loss": False}
        name = metric or cls.default_metric
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"--train.metric-for-best {name!r} is not a {cls.name} metric (choose "
                              f"one of: {', '.join(known)}){hint}")
        return name, known[name] if greater_is_better is None else greater_is_better

    @property
    @abstractmethod
    def auto_model_class(self) -> Any:
        """The transformers AutoModelFor... class whose head this task trains."""

    @abstractmethod
    def fit(self, train: Dataset) -> None:
        """Learn what the task needs from training data (e.g. the label set)."""

    @abstractmethod
    def model_config(self) -> dict[str, Any]:
        """Config kwargs for the head (num_labels, id2label, ...), saved with the model."""

    @abstractmethod
    def restore(self, hf_config: Any) -> None:
        """Rebuild the task's state from a saved model config (for predict/evaluate)."""

    def required_columns(self, columns: Sequence[str], labeled: bool = True) -> list[tuple[str, str | None]]:
        """The fields every row of a file with these `columns` needs, each with the flag that
        names it (None: a fixed name). Checked once per file, so a wrong column name is one
        error that lists the file's columns, not one error per row."""
        return []

    @abstractmethod
    def check(self, datasets: dict[str, Dataset]) -> list[DataIssue]:
        """Problems in the data by split name (train, validation, test), with file:line:field."""

    @abstractmethod
    def encode(self, records: Sequence[Record], tokenizer: Any, max_length: int) -> Encoded:
        """Records with labels -> features for training and evaluation."""

    def edit_record(self, record: Record, edit: Edit) -> tuple[Record, int]:
        """A copy of the record with its free text rewritten by `edit` (called once per editable
        field, in a fixed order) and its labels following the words; with the words changed.
        Augmentation, perturbation evaluation and attacks edit records through this."""
        raise ValueError(f"{self.name} cannot edit its inputs: word-level augmentation, "
                         "perturbations and attacks are not available for this task")

    def record_classes(self, record: Record) -> list[str]:
        """The classes a labeled record belongs to, for sampling K rows per class."""
        raise no_classes(self.name)

    def record_ops(self, train: Sequence[Record]) -> dict[str, RecordOp]:
        """Augmentations that need the task's labels (learned from `train`), by name."""
        return {}

    def model_logits(self, outputs: Any) -> torch.Tensor:
        """The tensor the loss, metrics and predictions read from the model's outputs."""
        return outputs.logits

    def feature_outputs(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """What evaluation keeps per feature for `metrics`: the logits by default (a language
        model keeps per-example loss sums instead of vocabulary-sized logits)."""
        return logits

    def predict_records(self, predictor: Any, records: Sequence[Record], **options: Any) -> list[Any]:
        """Predictions for records: one forward pass, then `decode`."""
        logits, encoded = predictor.logits(records)
        return self.decode(logits, encoded, **options)

    def evaluate_records(self, predictor: Any, records: Sequence[Record],
                         rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Metrics for labeled records with a trained model (`lmtune evaluate`), from the raw
        logits (what training recorded); a calibratable task adds "calibration": ECE, Brier, NLL
        of the raw scores and of those the predictions give (temperature-scaled). Given `rows`,
        also appends the per-example predictions (`example_rows`) from the same forward pass."""
        logits, encoded = predictor.logits(records, with_labels=True, calibrated=False)
        metrics = self.metrics(logits, encoded)
        if self.calibratable:
            metrics["calibration"] = predictor.calibration_report(logits, encoded)
        if rows is not None:
            rows.extend(self.example_rows(logits, encoded))
        return metrics

    def example_rows(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[dict[str, Any]]:
        """One row per labeled record for error analysis (evaluation/examples.py: text, gold,
        predicted, correct, loss, ...), from the logits `metrics` reads; none by default (a task
        that cannot say what it got wrong per example writes no predictions file)."""
        return []

    def calibration_scores(self, logits: Sequence[np.ndarray], encoded: Encoded) -> CalibrationScores:
        """Labeled examples as temperature scaling reads them: raw scores (examples x classes),
        gold, and "softmax" or "sigmoid" (evaluation/calibration.py)."""
        from ..evaluation.calibration import not_calibratable

        raise not_calibratable(self.name)

    def collate(self, features: Sequence[Feature], pad_token_id: int) -> dict[str, torch.Tensor]:
        """A batch of model inputs (padded to its longest row), with `labels` if the features
        have them."""
        batch = pad_inputs(features, pad_token_id)
        if "labels" in features[0]:
            batch["labels"] = self.collate_labels([f["labels"] for f in features], batch["input_ids"].shape[1])
        return batch

    def collate_labels(self, labels: Sequence[Any], longest: int) -> torch.Tensor:
        """Labels as a tensor: by default integers per example (a class id, a start/end pair)."""
        return torch.tensor(labels, dtype=torch.long)

    @abstractmethod
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training loss for a batch."""

    @abstractmethod
    def metrics(self, logits: Sequence[np.ndarray], encoded: Encoded) -> dict[str, Any]:
        """Scores for a whole evaluation set (logits: one array per feature)."""

    @abstractmethod
    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[Any]:
        """Logits -> user-facing predictions, one per record (options are task-specific)."""

    def make_record(self, item: Any, pair: Any = None, index: int = 0) -> Record:
        """A prediction input (raw text, or whatever the task accepts) as a Record."""
        if not isinstance(item, str):
            raise TypeError(f"input {index}: expected a string, got {type(item).__name__}")
        require_text(item, index)
        data = self.cfg.data
        if pair is not None and not data.text_pair_column:
            raise ValueError("this model was trained on single texts; do not pass text pairs")
        if pair is None and data.text_pair_column:
            raise ValueError(f"this model reads text pairs ({data.text_column}, "
                             f"{data.text_pair_column}); pass pairs=[...]")
        fields = {data.text_column: item}
        if pair is not None:
            fields[data.text_pair_column] = require_text(pair, index, "text pair")
        return Record(fields, "<input>", index + 1)

    def input_fields(self) -> tuple[str, str | None]:
        """The fields of an input file (`lmtune predict --input`) that hold one input and its
        pair: the training data's text fields by default."""
        return self.cfg.data.text_column, self.cfg.data.text_pair_column

    def format_prediction(self, prediction: Any, text: str) -> str:
        """One prediction as terminal line(s), newline-terminated: label (and score) and the text."""
        label, score = prediction.get("label", prediction.get("labels")), prediction.get("score")
        return f"{label}\t{score:.4f}\t{text}\n" if score is not None else f"{label}\t{text}\n"

    def same_prediction(self, a: Any, b: Any) -> bool:
        """Whether two predictions of one input agree (ONNX parity): the same decision, whatever
        small differences their scores have."""
        return a == b

    def explain_targets(self, logits: Sequence[np.ndarray], encoded: Encoded,
                        label: str | None = None) -> list[list[ExplainTarget]]:
        """Per record, the scalars an explanation attributes (lmtune.inference.explain): what
        the prediction rests on, or the scores of `label` where the task lets one choose."""
        raise not_explainable(self.name)

    def explain_words(self, encoded: Encoded, feature: int, tokenizer: Any) -> TokenWords:
        """The words (with character offsets) that feature `feature`'s tokens belong to."""
        raise not_explainable(self.name)

    def plots(self, metrics: dict[str, Any], out_dir: Path, prefix: str = "") -> list[Path]:
        """Task-specific plots for an evaluation; none by default."""
        return []

    def summary(self, metrics: dict[str, Any]) -> str:
        """A readable report of `metrics` for the terminal and the model card."""
        return "\n".join(f"{k}: {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


class VocabularyOutputs:
    """For tasks whose output space is the tokenizer's vocabulary (language modelling): no label
    set to learn from data, save with the model or restore from it."""

    def fit(self, train: Dataset) -> None:
        pass

    def model_config(self) -> dict[str, Any]:
        return {}

    def restore(self, hf_config: Any) -> None:
        pass
