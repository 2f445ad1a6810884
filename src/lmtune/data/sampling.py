"""K-shot sampling: a balanced, seeded sample of a training split, K rows per class.

Few-shot experiments compare methods on the same small sample, so the draw depends only on
the rows, K and the seed (never on the machine or the order classes first appear in), and the
kept rows stay in the file's order so the sample reads like the file it came from.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from ..config import ConfigError
from .records import Record

FLAG = "--train.examples-per-class"


def sample_per_class(records: Sequence[Record], classes_of: Callable[[Record], list[str]], k: int,
                     seed: int, source: str) -> list[Record]:
    """K rows per class from `records`, drawn with a generator seeded by `seed`, in file order.

    A row carrying one class (single-label) makes exactly K per class. A row may carry several
    (multi-label): classes are then filled in a fixed (sorted) order, each drawing rows that
    carry it until it has at least K, rows drawn for earlier classes counting. A class with
    fewer than K rows is a ConfigError naming it, its row count and `source` (the file)."""
    if k < 1:
        raise ValueError(f"k must be >= 1 to sample per class, got {k}")
    rows_of: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        for name in dict.fromkeys(classes_of(record)):  # a class listed twice is one row of it
            rows_of.setdefault(name, []).append(index)
    _require_k(rows_of, k, source)
    rng = random.Random(f"{seed}:kshot")
    chosen: set[int] = set()
    for name in sorted(rows_of):
        rows = rows_of[name]
        have = sum(1 for i in rows if i in chosen)
        if have < k:
            chosen.update(rng.sample([i for i in rows if i not in chosen], k - have))
    return [records[i] for i in sorted(chosen)]


def no_classes(task_name: str) -> ConfigError:
    """The error for asking a task without classes (NER, QA, generation) for K rows per class."""
    return ConfigError(f"{FLAG}: {task_name} has no classes to sample K rows of each from; "
                       f"leave out {FLAG} (or set it to 0) to train on every row")


def _require_k(rows_of: dict[str, list[int]], k: int, source: str) -> None:
    """Every class has K rows to draw from; else one message naming each class short of them."""
    short = [f"class {name!r} has only {len(rows)} row{'' if len(rows) == 1 else 's'}"
             for name, rows in sorted(rows_of.items()) if len(rows) < k]
    if short:
        raise ConfigError(f"{FLAG} {k}: {', '.join(short)} in {source}; lower {FLAG} "
                          "or add rows")
    if not rows_of:
        raise ConfigError(f"{FLAG} {k}: no row of {source} has a class to sample by; "
                          f"add labeled rows or leave out {FLAG}")
