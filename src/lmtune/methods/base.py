"""The Method contract: which parameters train, and how the trained model is saved."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Collection

from ..config import Config


class Method(ABC):
    name: str
    learning_rate: float | None = None  # default peak learning rate; None: by model width

    def __init__(self, cfg: Config):
        self.cfg = cfg

    @abstractmethod
    def prepare(self, model: Any, new_weights: Collection[str] = (), total_steps: int = 0) -> Any:
        """Return the model to train (same object, parameters frozen, or a wrapper).
        new_weights: parameter names the pretrained checkpoint lacked (the task head...)."""

    def after_optimizer_step(self, step: int) -> None:
        """Called after each optimizer step, before gradients are cleared (AdaLoRA budgets ranks)."""

    def training_state(self) -> dict[str, Any]:
        """State beyond the weights that exact resume needs (saved with each checkpoint)."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what `training_state` returned."""

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
