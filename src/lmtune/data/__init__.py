"""Reading and checking data: readers keep file and line, checks name file, line and field."""

from __future__ import annotations

import random

from ..config import Config
from .readers import read_table
from .records import DataError, DataIssue, Dataset, Record

__all__ = ["DataError", "DataIssue", "Dataset", "Record", "load_splits", "read_table"]


def load_splits(cfg: Config, usual_format: str | None = None) -> dict[str, Dataset]:
    """Read train/validation/test as configured (data.format, else by extension, else as the
    task's `usual_format` when the content is that); carve validation from train if asked."""
    def read(path: str) -> Dataset:
        return read_table(path, cfg.data.format, usual_format)

    splits = {"train": read(cfg.data.train)}
    if cfg.data.validation:
        splits["validation"] = read(cfg.data.validation)
    elif cfg.data.validation_split > 0:
        train = splits["train"]
        records = list(train.records)
        if len(records) < 2:
            raise DataError([DataIssue("error", train.path, None, None,
                                       f"{len(records)} row(s) are too few to hold out "
                                       f"--data.validation-split {cfg.data.validation_split}",
                                       "add rows, or give --validation FILE")], advice="")
        random.Random(cfg.train.seed).shuffle(records)
        n = min(len(records) - 1, max(1, int(len(records) * cfg.data.validation_split)))
        held = sorted(records[:n], key=lambda r: r.line)
        train.records = sorted(records[n:], key=lambda r: r.line)
        # Same file, so checks still name the right lines; the split name tells them apart.
        splits["validation"] = Dataset(train.path, held, [], train.columns, format=train.format)
    if cfg.data.test:
        splits["test"] = read(cfg.data.test)
    return splits
