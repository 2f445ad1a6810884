"""Data checks that name the file, line and field of every problem (spaCy `debug data` spirit).

Checks are small functions over Records and field names, so each task composes the ones it
needs. Errors block training (or, with on_error=skip, drop the row and are counted); warnings
are reported and the rows kept.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from .records import DataError, DataIssue, Dataset, Record


def is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def check_required(records: Iterable[Record], field: str, what: str, hint: str) -> list[DataIssue]:
    """Every record must have a non-empty value in `field`."""
    issues = []
    for record in records:
        if field not in record.fields:
            issues.append(DataIssue("error", record.source, record.line, field,
                                    f"missing {what} (no such field)", hint))
        elif is_blank(record.fields[field]):
            issues.append(DataIssue("error", record.source, record.line, field, f"empty {what}", hint))
    return issues


def check_known_values(records: Iterable[Record], field: str, values: Callable[[Record], list[str]],
                       known: set[str], known_from: str) -> list[DataIssue]:
    """Labels in evaluation data that training never saw cannot be predicted."""
    issues = []
    for record in records:
        unseen = [v for v in values(record) if v not in known]
        if unseen:
            issues.append(DataIssue(
                "error", record.source, record.line, field,
                f"label {', '.join(map(repr, unseen))} does not occur in {known_from}",
                "add training examples with this label, or remove or fix the row",
            ))
    return issues


def check_duplicates(records: Sequence[Record], key: Callable[[Record], tuple],
                     label: Callable[[Record], object], field: str) -> list[DataIssue]:
    """Repeated examples inflate their weight; the same text with two labels is worse."""
    seen: dict[tuple, Record] = {}
    issues = []
    for record in records:
        k = key(record)
        first = seen.setdefault(k, record)
        if first is record:
            continue
        if label(first) == label(record):
            issues.append(DataIssue("warning", record.source, record.line, field,
                                    f"duplicate of line {first.line}", "kept; remove it if unintended"))
        else:
            issues.append(DataIssue("warning", record.source, record.line, field,
                                    f"same text as line {first.line} with a different label "
                                    f"({label(first)!r} vs {label(record)!r})",
                                    "kept; conflicting labels cap the reachable accuracy"))
    return issues


def check_overlap(train: Sequence[Record], other: Sequence[Record], key: Callable[[Record], tuple],
                  field: str, split: str) -> list[DataIssue]:
    """Examples present in both train and an evaluation split make the scores look better than they are."""
    train_lines: dict[tuple, int] = {}
    for record in train:
        train_lines.setdefault(key(record), record.line)
    issues = []
    for record in other:
        line = train_lines.get(key(record))
        if line is not None:
            issues.append(DataIssue("warning", record.source, record.line, field,
                                    f"also in the training data ({train[0].source}:{line})",
                                    f"kept; {split} scores will be optimistic"))
    return issues


def apply_policy(datasets: list[Dataset], issues: list[DataIssue], on_error: str) -> dict[str, int]:
    """Raise on errors, or drop every row an error names; returns the skipped-row count per file."""
    errors = [i for i in issues if i.level == "error"]
    if errors and on_error == "raise":
        raise DataError(errors)
    skipped: dict[str, int] = {}
    for dataset in datasets:
        bad_lines = {i.line for i in errors if i.source == dataset.path}
        dataset.records = [r for r in dataset.records if r.line not in bad_lines]
        skipped[dataset.path] = len(bad_lines)  # unreadable lines never became records, but count
    return skipped
