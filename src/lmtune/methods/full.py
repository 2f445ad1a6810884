"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from typing import Any

from .base import Method


class FullMethod(Method):
    name = "full"

    def prepare(self, model: Any) -> Any:
        for param in model.parameters():
            param.requires_grad_(True)
        return model
