"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from typing import Any, Collection

from .base import Method


class FullMethod(Method):
    name = "full"

    def prepare(self, model: Any, new_weights: Collection[str] = (), total_steps: int = 0,
                peft_task_type: str | None = None) -> Any:
        for param in model.parameters():
            param.requires_grad_(True)
        return model
