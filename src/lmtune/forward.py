"""Run a model over a task's features in batches: what training-time evaluation and the
Predictor share (both call down to here, neither reaches into the other).

Always in the model's own dtype (float32), never under the training autocast, so evaluation
during training, `lmtune evaluate` and prediction compute the same numbers.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .tasks.base import Encoded, Feature, Task


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, hidden) unit-length float32 mean of the token states over the real tokens: the
    sentence embedding sentence-transformers models such as MiniLM were trained to give."""
    weights = attention_mask[..., None].to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


def forward_logits(model: torch.nn.Module, task: Task, batch: dict[str, torch.Tensor],
                   method: Any = None) -> torch.Tensor:
    """The task's logits for a batch, lined up with its inputs by the method (prompt tuning
    prepends virtual tokens)."""
    logits = task.model_logits(model(**batch))
    return method.align_logits(logits, batch["input_ids"]) if method is not None else logits


def batched_logits(model: torch.nn.Module, features: Sequence[Feature], batch_size: int,
                   pad_id: int, device: torch.device, task: Task,
                   method: Any = None) -> tuple[list[np.ndarray], float | None]:
    """Forward `features` in length-sorted batches; outputs come back in input order. With
    labels present, also returns the mean loss over all examples."""
    outputs, loss_sum, counted = batched_outputs(model, features, batch_size, pad_id, device, task, method)
    return outputs, (loss_sum / counted if counted else None)


def batched_outputs(model: torch.nn.Module, features: Sequence[Feature], batch_size: int,
                    pad_id: int, device: torch.device, task: Task,
                    method: Any = None) -> tuple[list[np.ndarray], float, int]:
    """What the task keeps per feature (`task.feature_outputs`), in input order, and the summed
    loss over the examples that have labels (with their count): sums add up across shards."""
    outputs: list[np.ndarray | None] = [None] * len(features)
    loss_sum, counted = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for index, batch in length_sorted_batches(features, batch_size, pad_id, device, task):
            labels = batch.pop("labels", None)
            logits = forward_logits(model, task, batch, method)
            if labels is not None:
                loss_sum += float(task.loss(logits, labels)) * len(index)
                counted += len(index)
            kept = task.feature_outputs(logits, labels)
            for i, row in zip(index, kept.float().cpu().numpy()):
                # Per-token outputs are cut back to the example's own length (no padding).
                outputs[i] = row[: len(features[i]["input_ids"])] if row.ndim == 2 else row
    model.train(was_training)
    return outputs, loss_sum, counted


def length_sorted_batches(features: Sequence[Feature], batch_size: int, pad_id: int, device: torch.device,
                          task: Task) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(feature indices, collated batch on `device`) in batches of similar length, so little
    of each forward pass is padding."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        yield index, {k: v.to(device) for k, v in task.collate([features[i] for i in index], pad_id).items()}


def evaluate_encoded(model: torch.nn.Module, task: Task, encoded: Encoded, batch_size: int,
                     pad_id: int, device: torch.device, method: Any = None) -> dict[str, Any]:
    """The task's metrics (and mean loss) for labeled, encoded data."""
    return scored_logits(model, task, encoded, batch_size, pad_id, device, method)[0]


def scored_logits(model: torch.nn.Module, task: Task, encoded: Encoded, batch_size: int,
                  pad_id: int, device: torch.device, method: Any = None) -> tuple[dict[str, Any], list[np.ndarray]]:
    """`evaluate_encoded`'s metrics and the logits they were computed from (for per-example
    predictions, without a second forward pass)."""
    logits, loss = batched_logits(model, encoded.features, batch_size, pad_id, device, task, method)
    metrics = task.metrics(logits, encoded)
    if loss is not None:
        metrics["loss"] = loss
    return metrics, logits
