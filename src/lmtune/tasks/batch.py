"""Padding features into tensors: the inputs every task shares, and labels by their shape.

A task's `collate` builds on these (tasks/base.py); the loop and the Predictor only call it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

IGNORE_INDEX = -100  # label of positions that carry no loss (padding, non-first word pieces)


def pad_inputs(features: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask (and token_type_ids) padded on the right to the longest row
    of the batch (dynamic padding)."""
    longest = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(features), longest), dtype=torch.long)
    for row, feature in enumerate(features):
        n = len(feature["input_ids"])
        ids[row, :n] = torch.tensor(feature["input_ids"], dtype=torch.long)
        mask[row, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in features[0]:
        types = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            types[row, : len(feature["token_type_ids"])] = torch.tensor(feature["token_type_ids"])
        batch["token_type_ids"] = types
    return batch


def pad_token_labels(labels: Sequence[Sequence[int]], longest: int) -> torch.Tensor:
    """Per-token labels padded with IGNORE_INDEX, which the loss skips."""
    padded = torch.full((len(labels), longest), IGNORE_INDEX, dtype=torch.long)
    for row, values in enumerate(labels):
        padded[row, : len(values)] = torch.tensor(values, dtype=torch.long)
    return padded
