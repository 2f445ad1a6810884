"""Experience replay: a small memory of earlier steps' training examples, mixed into every
training batch of later steps so the model keeps seeing what it learned before.

`ReplayMemory` decides which records to keep (and survives between steps as JSON);
`ReplayBatches` is the loop's batch source that appends memory examples to each step batch.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any, Sequence

import numpy as np

from ...data.records import Record
from ...training.hooks import BatchSource, Feature

SELECTIONS = ("quota", "reservoir")


def fair_shares(capacity: int, available: Sequence[int]) -> list[int]:
    """Split `capacity` equally over steps (the remainder to the earliest), never giving a step
    more than it has; what a step cannot use goes to the others, so the memory stays full."""
    shares = [0] * len(available)
    left = capacity
    open_steps = [i for i, n in enumerate(available) if n > 0]
    while left > 0 and open_steps:
        base, extra = divmod(left, len(open_steps))
        for rank, i in enumerate(open_steps):
            give = min(base + (rank < extra), available[i] - shares[i])
            shares[i] += give
            left -= give
        open_steps = [i for i in open_steps if shares[i] < available[i]]
    return shares


def _record_to_json(step: str, record: Record) -> dict[str, Any]:
    return {"step": step, "fields": record.fields, "source": record.source, "line": record.line,
            "last_line": record.last_line}


def _record_from_json(item: dict[str, Any]) -> tuple[str, Record]:
    return item["step"], Record(item["fields"], item["source"], item["line"], item.get("last_line"))


class ReplayMemory:
    """Training records kept from earlier steps.

    size: a count (>= 1, a whole number) or a fraction (< 1) of all training examples seen so
    far (then at least one per step seen). selection: `quota` keeps an equal share per step,
    trimming earlier shares to a seeded random subset of what they kept (records once dropped
    are gone, so under a fraction an early step's share cannot grow back); `reservoir` is
    classic reservoir sampling over the stream of all records, so a step's share follows its size.
    """

    def __init__(self, size: float, selection: str = "quota", seed: int = 0):
        if not size > 0 or (size >= 1 and float(size) != int(size)):
            raise ValueError(f"continual.memory {size!r}: give a whole count (>= 1) or a fraction "
                             "between 0 and 1 of the examples seen")
        if selection not in SELECTIONS:
            raise ValueError(f"continual.memory_selection {selection!r}: choose one of {', '.join(SELECTIONS)}")
        self.size, self.selection, self.seed = float(size), selection, seed
        self.rng = random.Random(seed)
        self.seen = 0
        self.steps: list[str] = []
        self._items: list[tuple[str, Record]] = []

    @property
    def capacity(self) -> int:
        if self.size >= 1:
            return int(self.size)
        # The epsilon keeps float products such as 0.29 * 100 = 28.999... from losing an example.
        return max(math.floor(self.size * self.seen + 1e-9), len(self.steps))

    def add_step(self, step: str, records: Sequence[Record]) -> None:
        """Take in a finished step's training records (call once per step, in order)."""
        if step in self.steps:
            raise ValueError(f"replay memory: step {step!r} was already added; step names must be unique")
        if not records:
            raise ValueError(f"replay memory: step {step!r} has no training records to remember")
        self.steps.append(step)
        if self.selection == "quota":
            self.seen += len(records)
            self._add_quota(step, records)
        else:
            self._add_reservoir(step, records)

    def _add_quota(self, step: str, records: Sequence[Record]) -> None:
        by_step = {name: [r for s, r in self._items if s == name] for name in self.steps}
        by_step[step] = list(records)
        shares = fair_shares(self.capacity, [len(by_step[name]) for name in self.steps])
        self._items = [(name, record) for name, share in zip(self.steps, shares)
                       for record in self._subset(by_step[name], share)]

    def _subset(self, records: list[Record], keep: int) -> list[Record]:
        """A seeded random `keep` of `records`, in their order (all of them when they fit)."""
        if keep >= len(records):
            return records
        return [records[i] for i in sorted(self.rng.sample(range(len(records)), keep))]

    def _add_reservoir(self, step: str, records: Sequence[Record]) -> None:
        for record in records:
            self.seen += 1
            # The capacity of a fraction grows with the stream; fill new room before replacing.
            if len(self._items) < self.capacity:
                self._items.append((step, record))
                continue
            slot = self.rng.randrange(self.seen)
            if slot < len(self._items):
                self._items[slot] = (step, record)

    def items(self) -> list[tuple[str, Record]]:
        """(step, record) pairs, earlier steps first for quota, in memory slots for reservoir."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def counts(self) -> dict[str, int]:
        """Examples kept per step seen (0 for a step reservoir sampling has dropped)."""
        kept = Counter(step for step, _ in self._items)
        return {step: kept[step] for step in self.steps}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as JSON-serialisable values."""
        version, internal, gauss = self.rng.getstate()
        return {"size": self.size, "selection": self.selection, "seed": self.seed, "seen": self.seen,
                "steps": list(self.steps), "rng": [version, list(internal), gauss],
                "items": [_record_to_json(step, record) for step, record in self._items]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "ReplayMemory":
        memory = cls(state["size"], state["selection"], state["seed"])
        version, internal, gauss = state["rng"]
        memory.rng.setstate((version, tuple(internal), gauss))
        memory.seen, memory.steps = state["seen"], list(state["steps"])
        memory._items = [_record_from_json(item) for item in state["items"]]
        return memory


class ReplayBatches(BatchSource):
    """The base source's step batches, each with memory features appended: k = round(n x ratio /
    (1 - ratio)) for a batch of n, so memory makes up `ratio` of the batch (at least one example
    when there is a memory). Draws depend only on (seed, epoch, batch index), as exact resume and
    DDP require; within a batch without replacement unless the memory is smaller than k.

    A step batch grows by k examples: shrink the base batch if memory per step matters.
    """

    def __init__(self, base: BatchSource, memory_features: Sequence[Feature], ratio: float, seed: int):
        if not 0 <= ratio < 1:
            raise ValueError(f"continual.replay_ratio {ratio!r}: give the share of each batch drawn "
                             "from the memory, at least 0 and below 1")
        self.base, self.memory, self.ratio, self.seed = base, memory_features, ratio, seed

    def replayed(self, n: int) -> int:
        """Memory examples added to a step batch of n base examples."""
        if not self.memory or self.ratio == 0:
            return 0
        return max(1, round(n * self.ratio / (1 - self.ratio)))

    def step_batches(self, epoch: int) -> list[list[Feature]]:
        return [list(batch) + self._draw(len(batch), epoch, index)
                for index, batch in enumerate(self.base.step_batches(epoch))]

    def _draw(self, n: int, epoch: int, index: int) -> list[Feature]:
        k = self.replayed(n)
        if k == 0:
            return []
        rng = np.random.default_rng([self.seed, epoch, index])
        chosen = rng.choice(len(self.memory), size=k, replace=k > len(self.memory))
        return [self.memory[int(i)] for i in chosen]

    def steps_per_epoch(self) -> int:
        return self.base.steps_per_epoch()

    def replayed_per_epoch(self) -> int:
        """Memory examples one epoch mixes in (for reporting)."""
        return sum(self.replayed(len(batch)) for batch in self.base.step_batches(0))
