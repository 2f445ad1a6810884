"""The Method contract: which parameters train, and how the trained model is saved."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Collection, Iterable

from ..config import Config, ConfigError


class Method(ABC):
    name: str
    learning_rate: float | None = None  # default peak learning rate; None: by model width
    adapter: bool = False  # trains added weights over a frozen base (what a run saves is the adapter)
    plain_auto_class: str | None = None  # the transformers class that loads what `save` writes, if not the task's

    def __init__(self, cfg: Config):
        self.cfg = cfg

    @classmethod
    def check(cls, cfg: Config) -> None:
        """Refuse settings this method cannot use, before anything loads (`config.validate`
        calls it). Options of another method are a mistake worth saying: the freeze options."""
        frozen = [f"method.{key}" for key in ("freeze_embeddings", "freeze_layers") if getattr(cfg.method, key)]
        if frozen:
            raise ConfigError(f"{' and '.join(frozen)} only apply to --method freeze (this run uses "
                              f"--method {cfg.method.name}): add --method freeze, or drop them")

    @abstractmethod
    def prepare(self, model: Any, new_weights: Collection[str] = (), total_steps: int = 0,
                peft_task_type: str | None = None) -> Any:
        """Return the model to train (same object, parameters frozen, or a wrapper).
        new_weights: parameter names the pretrained checkpoint lacked (the task head...);
        peft_task_type: the task's `Task.peft_task_type` (how a peft wrapper routes inputs)."""

    def align_logits(self, logits: Any, input_ids: Any) -> Any:
        """The model's logits lined up with the inputs (a method that adds positions drops them)."""
        return logits

    def after_optimizer_step(self, step: int) -> None:
        """Called after each optimizer step, before gradients are cleared (AdaLoRA budgets ranks)."""

    def training_state(self) -> dict[str, Any]:
        """State beyond the weights that exact resume needs (saved with each checkpoint)."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what `training_state` returned."""

    def refit(self, model: Any, batches: Iterable[dict[str, Any]]) -> str | None:
        """After training, before the run is written: refit in closed form what gradient steps
        fit less well (few-shot's head on the tuned embeddings). `batches`: the training
        examples, collated, with labels. Returns what it did, for the run's metrics (the
        validation split is then scored again), or None where it has nothing to refit."""
        return None

    def save(self, model: Any, tokenizer: Any, out_dir: Path) -> None:
        """Save what a user loads later: by default full weights that plain transformers reads."""
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))

    def load(self, model_dir: Path, auto_class: Any) -> Any:
        """The trained model from what `save` wrote."""
        return auto_class.from_pretrained(str(model_dir))


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts, printed and recorded by every run."""
    total = trainable = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total
