"""The Method contract: which parameters train, and how the trained model is saved."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from ..config import Config


class Method(ABC):
    name: str

    def __init__(self, cfg: Config):
        self.cfg = cfg

    @abstractmethod
    def prepare(self, model: Any) -> Any:
        """Return the model to train (same object, parameters frozen, or a wrapper)."""

    def save(self, model: Any, tokenizer: Any, out_dir: Path) -> None:
        """Save what a user loads later: by default full weights that plain transformers reads."""
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts, printed and recorded by every run."""
    total = trainable = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, total
