"""Batches: length-grouped global batches, sliced per process, and dynamic padding.

Every process builds the same list of step batches (one per optimizer step) from (seed, epoch),
splits each into accumulation micro-batches and takes its own slice of each, so N processes
with batch size B and accumulation A see exactly the examples of one process with batch N*B*A.
That also makes the data position of a checkpoint just (epoch, steps done in it).
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import torch

IGNORE_INDEX = -100  # label of positions that carry no loss (padding, non-first word pieces)


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                  group_by_length: bool, shuffle: bool = True) -> list[list[int]]:
    """Global batches (lists of example indices) for one epoch, deterministic in (seed, epoch)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    if group_by_length:
        # Sort within mega-batches (as the Trainer does) so each batch holds similar lengths
        # while the epoch stays shuffled; padding shrinks to a few tokens per row.
        mega = batch_size * 50
        order = [i for start in range(0, len(order), mega)
                 for i in sorted(order[start:start + mega], key=lambda i: -lengths[i])]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle and group_by_length:
        rng.shuffle(batches)
    return batches


def shard(batch: list[int], rank: int, world: int) -> list[int]:
    """This process's contiguous slice of a global batch (sizes differ by at most one)."""
    size, extra = divmod(len(batch), world)
    start = rank * size + min(rank, extra)
    return batch[start:start + size + (1 if rank < extra else 0)]


def shard_micro(batch: list[int], parts: int) -> list[list[int]]:
    """Split a step batch into `parts` accumulation micro-batches (empty ones dropped)."""
    return [micro for micro in (shard(batch, rank, parts) for rank in range(parts)) if micro]


def collate(features: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch (dynamic padding), right side."""
    longest = max(len(f["input_ids"]) for f in features)
    batch: dict[str, torch.Tensor] = {}
    ids = torch.full((len(features), longest), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(features), longest), dtype=torch.long)
    for row, feature in enumerate(features):
        n = len(feature["input_ids"])
        ids[row, :n] = torch.tensor(feature["input_ids"], dtype=torch.long)
        mask[row, :n] = 1
    batch["input_ids"], batch["attention_mask"] = ids, mask
    if "segments" in features[0]:  # packed examples: each attends only to itself
        batch["position_ids"], batch["attention_mask"] = packed_positions_and_mask(features, longest)
    if "token_type_ids" in features[0]:
        types = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            types[row, : len(feature["token_type_ids"])] = torch.tensor(feature["token_type_ids"])
        batch["token_type_ids"] = types
    if "labels" in features[0]:
        labels = [f["labels"] for f in features]
        first = labels[0]
        if isinstance(first, list) and first and isinstance(first[0], int):
            # Token labels: pad with -100, which the loss ignores.
            padded = torch.full((len(labels), longest), IGNORE_INDEX, dtype=torch.long)
            for row, values in enumerate(labels):
                padded[row, : len(values)] = torch.tensor(values, dtype=torch.long)
            batch["labels"] = padded
        else:  # one class id per example, or a multi-hot float vector
            batch["labels"] = torch.tensor(labels, dtype=torch.float32 if isinstance(first, list) else torch.long)
    return batch


def packed_positions_and_mask(features: Sequence[dict[str, Any]], longest: int
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids restarting at each packed example, and a 4-D additive causal mask that is
    block-diagonal over examples (0 where attention is allowed, the dtype minimum elsewhere)."""
    segments = torch.zeros((len(features), longest), dtype=torch.long)  # 0: padding
    for row, feature in enumerate(features):
        segments[row, : len(feature["segments"])] = torch.tensor(feature["segments"])
    positions = torch.zeros_like(segments)
    for row, feature in enumerate(features):
        start = 0
        for length in feature["segment_lengths"]:
            positions[row, start:start + length] = torch.arange(length)
            start += length
    same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, :, None] > 0)
    causal = torch.ones(longest, longest, dtype=torch.bool).tril()
    allowed = same & causal
    allowed |= torch.eye(longest, dtype=torch.bool)  # padding rows attend to themselves (no NaN)
    mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return positions, mask[:, None]
