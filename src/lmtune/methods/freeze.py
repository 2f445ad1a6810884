"""Partial fine-tuning: freeze the embeddings and/or the lower N transformer layers."""

from __future__ import annotations

from typing import Any, Collection

from torch import nn

from ..config import Config
from .base import Method


def transformer_layers(model: Any) -> nn.ModuleList:
    """The stack of transformer blocks, found by shape rather than by architecture name."""
    expected = getattr(model.config, "num_hidden_layers", None)
    for _, module in model.base_model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == expected:
            return module
    raise ValueError(f"cannot find the {expected} transformer layers of {type(model).__name__}")


class FreezeMethod(Method):
    name = "freeze"

    @classmethod
    def check(cls, cfg: Config) -> None:
        """The freeze options are this method's own."""

    def prepare(self, model: Any, new_weights: Collection[str] = (), total_steps: int = 0,
                peft_task_type: str | None = None) -> Any:
        method = self.cfg.method
        if method.freeze_embeddings:
            embeddings = getattr(model.base_model, "embeddings", None) or model.get_input_embeddings()
            embeddings.requires_grad_(False)
        if method.freeze_layers:
            layers = transformer_layers(model)
            if method.freeze_layers > len(layers):
                raise ValueError(f"method.freeze_layers={method.freeze_layers}, but the model has "
                                 f"{len(layers)} layers")
            for layer in layers[: method.freeze_layers]:
                layer.requires_grad_(False)
        return model
