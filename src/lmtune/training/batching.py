"""Batches: length-grouped global batches, sliced per process (padding is the task's `collate`).

Every process builds the same list of step batches (one per optimizer step) from (seed, epoch),
splits each into accumulation micro-batches and takes its own slice of each, so N processes
with batch size B and accumulation A see exactly the examples of one process with batch N*B*A.
That also makes the data position of a checkpoint just (epoch, steps done in it).
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from .hooks import BatchSource, Feature


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


class LengthGroupedBatches(BatchSource):
    """The default batch source: the training features shuffled per epoch, in batches of
    similar lengths (train.group_by_length), deterministic in (seed, epoch)."""

    def __init__(self, features: Sequence[Feature], step_batch: int, seed: int, group_by_length: bool = True):
        self.features, self.step_batch = features, step_batch
        self.seed, self.group_by_length = seed, group_by_length
        self.lengths = [len(f["input_ids"]) for f in features]

    def step_batches(self, epoch: int) -> list[list[Feature]]:
        batches = epoch_batches(self.lengths, self.step_batch, self.seed, epoch, self.group_by_length)
        return [[self.features[i] for i in batch] for batch in batches]

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.features) / self.step_batch)
