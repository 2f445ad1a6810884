"""Data checks that name the file, line and field of every problem (spaCy `debug data` spirit).

Checks are small functions over Records and field names, so each task composes the ones it
needs. Errors block training (or, with on_error=skip, drop the row and are counted); warnings
are reported and the rows kept.
"""

from __future__ import annotations

import difflib
from collections import Counter
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


def check_columns(dataset: Dataset, wanted: Sequence[tuple[str, str | None]]) -> list[DataIssue]:
    """A field that no row has is one error naming the file's columns and the closest one, not
    one error per row. `wanted`: (field, the flag that names it, or None if it cannot be set).
    A field that only some rows lack (JSON lines) is left to the per-row checks."""
    if not dataset.records or not dataset.columns:
        return []
    issues = []
    for name, flag in wanted:
        if name in dataset.columns:
            continue
        close = difflib.get_close_matches(name, dataset.columns, n=1, cutoff=0.75)
        found = f"no column {name!r} (columns: {', '.join(dataset.columns)})"
        if close:
            action = f"Set {flag} {close[0]}" if flag else f"Rename it to {name!r}"
            message = f"{found}; did you mean {close[0]!r}? {action}"
        else:
            action = f"set {flag} to the column that holds it" if flag else f"name the column {name!r}"
            message = f"{found}; {action}"
        issues.append(DataIssue("error", dataset.path, None, None, message))
    return issues


def apply_policy(datasets: list[Dataset], issues: list[DataIssue], on_error: str) -> dict[str, int]:
    """Raise on errors, or drop every record an error line falls in (a CoNLL sentence spans many
    lines: a bad tag anywhere drops the sentence). Returns the skipped count per file: records
    dropped, plus error lines that never became a record (undecodable, wrong field count)."""
    errors = [i for i in issues if i.level == "error"]
    if errors and on_error == "raise":
        raise DataError(errors)
    whole_file = [i for i in errors if i.line is None]
    if whole_file:  # no row to leave out would fix these
        raise DataError(whole_file, advice="")
    skipped: dict[str, int] = {}
    for path in dict.fromkeys(d.path for d in datasets):  # a carved validation shares its file
        bad_lines = {i.line for i in errors if i.source == path}
        covered: set[int] = set()
        dropped = 0
        for dataset in (d for d in datasets if d.path == path):
            kept = []
            for record in dataset.records:
                hit = bad_lines.intersection(record.lines)
                covered |= hit
                dropped += bool(hit)
                if not hit:
                    kept.append(record)
            dataset.records = kept
        skipped[path] = dropped + len(bad_lines - covered)
    return skipped


def check_rows_left(dataset: Dataset, rows_read: int, issues: list[DataIssue], purpose: str) -> None:
    """Say so before training when skipping left a split empty, rather than fail after an epoch.
    `rows_read`: the rows the file had (records, and lines that never became one)."""
    if dataset.records:
        return
    errors = [i for i in issues if i.level == "error" and i.source == dataset.path]
    kinds = Counter(i.message.split(" (")[0].split(":")[0] for i in errors)
    summary = ", ".join(f"{count} '{kind}'" for kind, count in kinds.most_common(3))
    lines = [i.line for i in errors if i.line is not None]
    first = f"; first at {dataset.path}:{min(lines)}" if lines else ""
    raise DataError([DataIssue("error", dataset.path, None, None,
                               f"all {rows_read} rows were skipped (errors: {summary}{first}); nothing is "
                               f"left to {purpose}: fix the rows (`lmtune data check` lists them)")],
                    advice="")
