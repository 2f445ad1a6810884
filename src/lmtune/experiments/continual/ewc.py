"""Elastic weight consolidation (Kirkpatrick et al. 2017): after a step, estimate how much each
weight mattered to it (the diagonal Fisher information); while training later steps, a loss term
pulls the weights that mattered back towards their values after the earlier steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ...forward import forward_logits
from ...tasks.base import Feature, Task
from ...training.hooks import LossTerm, MicroBatch


def _sample(features: Sequence[Feature], max_examples: int, seed: int) -> list[Feature]:
    """Up to max_examples features: a seeded subset, in their original order."""
    if len(features) <= max_examples:
        return list(features)
    chosen = np.random.default_rng(seed).choice(len(features), size=max_examples, replace=False)
    return [features[int(i)] for i in sorted(chosen)]


def fisher_information(model: torch.nn.Module, task: Task, features: Sequence[Feature], pad_token_id: int,
                       max_examples: int = 256, batch_size: int = 1, seed: int = 0,
                       method: Any = None) -> dict[str, torch.Tensor]:
    """The diagonal empirical Fisher of the task's loss: per trainable parameter, the mean over
    (a seeded subset of up to max_examples) labeled features of the squared gradient, in fp32.

    batch_size 1 squares per-example gradients, the correct diagonal; larger batches square the
    batch-mean gradient (weighted by batch size): faster, but it underestimates. The model runs
    in eval mode (no dropout); its gradients are cleared and its training mode restored after.
    `method` lines logits up as the loop does (prompt tuning).
    """
    if not features:
        raise ValueError("fisher information: no training features to estimate it from")
    if "labels" not in features[0]:
        raise ValueError("fisher information: the features have no labels; encode the step's "
                         "training records with labels")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    chosen = _sample(features, max_examples, seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for start in range(0, len(chosen), batch_size):
                part = chosen[start:start + batch_size]
                model.zero_grad(set_to_none=True)
                batch = {k: v.to(device) for k, v in task.collate(part, pad_token_id).items()}
                labels = batch.pop("labels")
                task.loss(forward_logits(model, task, batch, method), labels).backward()
                for name, p in params.items():
                    if p.grad is not None:
                        fisher[name] += p.grad.detach().float().pow(2) * len(part)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {name: value / len(chosen) for name, value in fisher.items()}


class EWC(LossTerm):
    """Adds strength / 2 x sum F x (p - anchor)^2 over the parameters named in `fisher`.

    With strength 0 the loss comes back untouched (the same tensor), so training is exactly
    plain training.
    """

    def __init__(self, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], strength: float):
        if strength < 0:
            raise ValueError(f"continual.ewc_lambda {strength!r}: the strength cannot be negative")
        missing = sorted(set(fisher) - set(anchor))
        if missing:
            raise ValueError(f"EWC: no anchor weights for {', '.join(missing[:5])}; save the anchor "
                             "for every parameter the Fisher information covers")
        self.fisher, self.anchor, self.strength = fisher, anchor, strength
        self._model: torch.nn.Module | None = None
        self._terms: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]] = []

    def _bind(self, model: torch.nn.Module) -> None:
        """Pair each named parameter with its Fisher and anchor, moved to its device once."""
        params = dict(model.named_parameters())
        missing = [name for name in self.fisher if name not in params]
        if missing:
            raise ValueError(f"EWC: the model has no parameter {missing[0]!r} (and {len(missing) - 1} "
                             "more) that the Fisher information names; was it computed on another "
                             "model or method?")
        self._terms = []
        for name, weight in self.fisher.items():
            p = params[name]
            if weight.shape != p.shape or self.anchor[name].shape != p.shape:
                raise ValueError(f"EWC: parameter {name!r} has shape {tuple(p.shape)} but its Fisher "
                                 f"information / anchor has {tuple(weight.shape)} / "
                                 f"{tuple(self.anchor[name].shape)}")
            self._terms.append((p, weight.to(p.device, torch.float32), self.anchor[name].to(p.device, torch.float32)))
        self._model = model

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        """sum F x (p - anchor)^2, in fp32 (without strength / 2)."""
        if self._model is not model:
            self._bind(model)
        total = torch.zeros((), device=self._terms[0][0].device if self._terms else None)
        for p, weight, anchor in self._terms:
            total = total + (weight * (p.float() - anchor).pow(2)).sum()
        return total

    def __call__(self, loss: torch.Tensor, batch: MicroBatch) -> torch.Tensor:
        if self.strength == 0:
            return loss
        return loss + self.strength / 2 * self.penalty(batch.model)


def merge_fisher(old: dict[str, torch.Tensor] | None, new: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One consolidated Fisher over all earlier steps: the sum of each step's. Used with the
    latest weights as the only anchor, as online EWC does (Schwarz et al. 2018), instead of
    one penalty per step with its own anchor."""
    if old is None:
        return {name: value.clone() for name, value in new.items()}
    merged = {name: value.clone() for name, value in old.items()}
    for name, value in new.items():
        if name not in merged:
            merged[name] = value.clone()
        elif merged[name].shape != value.shape:
            raise ValueError(f"merge_fisher: parameter {name!r} has shape {tuple(value.shape)} now "
                             f"but {tuple(merged[name].shape)} in the earlier Fisher information")
        else:
            merged[name] = merged[name] + value.to(merged[name].device)
    return merged


def save_ewc(path: str | Path, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> None:
    """Fisher and anchor in one safetensors file, for the next step to load."""
    from safetensors.torch import save_file

    tensors = {f"fisher/{k}": v.detach().cpu().contiguous() for k, v in fisher.items()}
    tensors.update({f"anchor/{k}": v.detach().cpu().contiguous() for k, v in anchor.items()})
    save_file(tensors, str(path))


def load_ewc(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(fisher, anchor) as `save_ewc` wrote them."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    parts: dict[str, dict[str, torch.Tensor]] = {"fisher": {}, "anchor": {}}
    for key, value in tensors.items():
        kind, _, name = key.partition("/")
        if kind not in parts:
            raise ValueError(f"{path}: unexpected tensor {key!r}; not a file save_ewc wrote")
        parts[kind][name] = value
    return parts["fisher"], parts["anchor"]
