"""The optimizer and its learning-rate schedule."""

from __future__ import annotations

from typing import Any

import torch

from ..config import TrainConfig


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases and LayerNorm weights (1-D) are not decayed."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; the fused kernel does the whole update in one pass (CPU and CUDA) where it can."""
    groups = optimizer_groups(model, tc.weight_decay)
    params = [p for g in groups for p in g["params"]]
    fused = all(p.dtype in (torch.float32, torch.bfloat16, torch.float16) and
                p.device.type in ("cpu", "cuda") for p in params)
    try:
        return torch.optim.AdamW(groups, lr=tc.learning_rate, fused=fused)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=tc.learning_rate)


def make_scheduler(optimizer: torch.optim.Optimizer, tc: TrainConfig, total_steps: int) -> Any:
    """Warm-up over train.warmup_ratio of the steps, then linear, cosine or constant."""
    from transformers import get_scheduler

    name = "constant_with_warmup" if tc.scheduler == "constant" else tc.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=int(tc.warmup_ratio * total_steps),
                         num_training_steps=total_steps)
