"""Load a run folder and predict in batches; the one inference path (CLI, Python, server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..config import Config
from ..data.records import Record
from ..methods import get_method
from ..models import load_tokenizer, quiet_transformers
from ..run import RunFolder
from ..tasks import get_task
from ..tasks.base import Encoded, Task


class Predictor:
    """A trained model with its task and tokenizer; `predict` takes raw texts."""

    def __init__(self, model: Any, tokenizer: Any, task: Task, cfg: Config, method: Any = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task = task
        self.cfg = cfg
        self.method = method  # lines the model's logits up with its inputs (prompt tuning)
        self.device = next(model.parameters()).device
        # logits are divided by it before the task turns them into probabilities (None: raw
        # scores); `load` reads it from <run>/calibration.json
        self.temperature: float | None = None

    @property
    def labels(self) -> list[str]:
        return list(getattr(self.task, "labels", []))

    def _records(self, texts: Sequence[str], pairs: Sequence[str] | None) -> list[Record]:
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"got {len(texts)} inputs but {len(pairs)} pairs")
        return [self.task.make_record(text, None if pairs is None else pairs[i], i)
                for i, text in enumerate(texts)]

    def logits(self, records: Sequence[Record], with_labels: bool = False,
               calibrated: bool = True) -> tuple[list[np.ndarray], Encoded]:
        """Encode records and run the model; one logits array per feature, divided by the
        temperature unless `calibrated` is false (the argmax is the same either way)."""
        from ..forward import batched_logits

        encoded = self.task.encode(records, self.tokenizer, self.cfg.model.max_length,
                                   with_labels=with_labels)
        logits, _ = batched_logits(self.model, encoded.features, self.cfg.eval.batch_size,
                                   self.tokenizer.pad_token_id or 0, self.device, self.task, self.method)
        if calibrated and self.temperature is not None:
            logits = [row / np.float32(self.temperature) for row in logits]
        return logits, encoded

    def calibration_report(self, logits: Sequence[np.ndarray], encoded: Encoded) -> dict[str, Any]:
        """Calibration metrics of raw `logits` ("before") and, with a temperature, of the scaled
        scores predictions give ("after")."""
        from ..evaluation.calibration import calibration_metrics

        data = self.task.calibration_scores(logits, encoded)
        report: dict[str, Any] = {"temperature": self.temperature, "before": calibration_metrics(data)}
        if self.temperature is not None:
            report["after"] = calibration_metrics(data, self.temperature)
        return report

    def predict(self, texts: Sequence[Any] | str, pairs: Sequence[str] | str | None = None,
                **options: Any) -> list[Any]:
        """Predictions, one per input, in order: texts (+ text pairs) for classification, texts
        or word lists for NER, questions + contexts for QA (options: top_k, ...)."""
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(pairs, str):
            pairs = [pairs]
        if not texts:
            return []
        return self.task.predict_records(self, self._records(texts, pairs), **options)

    def evaluate_records(self, records: Sequence[Record], rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The task's metrics on labeled records; given `rows`, each example's prediction row is
        appended to it (from the same forward pass)."""
        return self.task.evaluate_records(self, records, rows)


def load(run_dir: str | Path, device: str | None = None, backend: str = "pytorch",
         quantized: bool = False, calibrated: bool = True) -> Predictor:
    """Load a run folder written by `finetune` (the model in <run>/model). Adapter runs load
    their base model once per process, shared by every adapter run over it. backend="onnx"
    uses <run>/onnx/ from `lmtune export --format onnx` (quantized: its int8 model).
    Probabilities use the run's temperature (<run>/calibration.json) if it has one;
    calibrated=False gives the raw scores."""
    predictor = _load(run_dir, device, backend, quantized)
    if calibrated and predictor.task.calibratable:
        from ..evaluation.calibration import read_temperature

        predictor.temperature = read_temperature(Path(run_dir))
    return predictor


def _load(run_dir: str | Path, device: str | None, backend: str, quantized: bool) -> Predictor:
    quiet_transformers()
    run = RunFolder(Path(run_dir))
    cfg = run.load_config()
    if not run.model.is_dir():
        raise FileNotFoundError(f"{run.root}: the run has no saved model yet (model/ is missing); "
                                "finish or resume training first")
    task = get_task(cfg)
    if backend == "onnx":
        from transformers import AutoConfig

        from .onnx_backend import OnnxModel

        path = run.root / "onnx" / ("model.int8.onnx" if quantized else "model.onnx")
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `lmtune export {run.root} --format onnx"
                                    f"{' --quantize int8' if quantized else ''}` first")
        model = OnnxModel(path, AutoConfig.from_pretrained(str(path.parent)))
        task.restore(model.config)
        return Predictor(model, load_tokenizer(path.parent), task, cfg)
    if backend != "pytorch":
        raise ValueError(f"backend {backend!r}: use pytorch or onnx")
    method = get_method(cfg)
    model = method.load(run.model, task.auto_model_class)
    task.restore(model.config)
    return Predictor(model.to(_device(device)), load_tokenizer(run.model), task, cfg, method)


def load_base(cfg: Config, device: str | None = None) -> Predictor:
    """A pretrained model used as it is, for the task in `cfg` (generation: the zero-shot
    baseline that a tuned run is compared with)."""
    from ..models import resolve_model

    quiet_transformers()
    path = resolve_model(cfg.model.name)
    task = get_task(cfg)
    model = task.auto_model_class.from_pretrained(str(path))
    return Predictor(model.to(_device(device)), load_tokenizer(path), task, cfg)


def load_prompted(model_ref: str, labels: Any, shots: Sequence[tuple[str, str]] = (), device: str | None = None,
                  text_column: str = "text", label_column: str = "label", **options: Any) -> Predictor:
    """A pretrained model as a prompt-based classifier, no training: zero-shot, or few-shot with
    `shots` ((text, label value) pairs). `labels`: a LabelSet or "a,b" / "0=negative,1=positive".
    `predict` and `evaluate_records` then work as for a fine-tuned classifier (records read
    `text_column`, and `label_column` when scored); options go to the scorer (description,
    instruction, batch_size)."""
    from ..prompting import LabelSet, load_scorer

    quiet_transformers()
    labels = LabelSet.parse(labels) if isinstance(labels, str) else labels
    scorer = load_scorer(model_ref, labels, shots, device=_device(device), **options)
    predictor = prompted_predictor(scorer, model_ref)
    predictor.cfg.data.text_column, predictor.cfg.data.label_column = text_column, label_column
    return predictor


def prompted_predictor(scorer: Any, model_ref: str = "") -> Predictor:
    """A Predictor around a prompting scorer (lmtune.prompting) already built."""
    from ..tasks.prompted import PromptedTask

    cfg = Config()
    cfg.task, cfg.model.name = PromptedTask.name, model_ref or cfg.model.name
    task = get_task(cfg)
    task.use(scorer)
    return Predictor(scorer.model, scorer.tokenizer, task, cfg)


def _device(requested: str | None) -> str:
    return requested or ("cuda" if torch.cuda.is_available() else "cpu")
