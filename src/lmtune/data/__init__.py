"""Reading and checking data: readers keep file and line, checks name file, line and field."""

from __future__ import annotations

import random

from ..config import Config
from .readers import read_table
from .records import DataError, DataIssue, Dataset, Record

__all__ = ["DataError", "DataIssue", "Dataset", "Record", "load_splits", "read_table"]


def load_splits(cfg: Config) -> dict[str, Dataset]:
    """Read train/validation/test as configured; carve validation from train if asked."""
    splits = {"train": read_table(cfg.data.train)}
    if cfg.data.validation:
        splits["validation"] = read_table(cfg.data.validation)
    elif cfg.data.validation_split > 0:
        train = splits["train"]
        records = list(train.records)
        random.Random(cfg.train.seed).shuffle(records)
        n = max(1, int(len(records) * cfg.data.validation_split))
        held = sorted(records[:n], key=lambda r: r.line)
        train.records = sorted(records[n:], key=lambda r: r.line)
        # Same file, so checks still name the right lines; the split name tells them apart.
        splits["validation"] = Dataset(train.path, held, [], train.columns)
    if cfg.data.test:
        splits["test"] = read_table(cfg.data.test)
    return splits
