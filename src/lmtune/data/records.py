"""Records keep where they came from, so every problem can name its file, line and field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Record:
    fields: dict[str, Any]
    source: str
    line: int  # 1-based line in the file (row number for Parquet)
    last_line: int | None = None  # last line the record spans (a CoNLL sentence); None: `line`

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def lines(self) -> range:
        """Every line the record was read from, so a problem on any of them drops all of it."""
        return range(self.line, (self.last_line or self.line) + 1)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


@dataclass
class DataIssue:
    """One problem found in the data; `level` is error (blocks training) or warning."""

    level: str
    source: str
    line: int | None
    field: str | None
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        if self.field:
            where += f": field {self.field!r}"
        text = f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


SKIP_ADVICE = "Fix them, or pass --data.on-error skip to leave those rows out (they are counted)."


class DataError(ValueError):
    """Raised when the data has errors; carries every issue, not just the first.

    `advice` ends the message; skipping rows is no help for a problem with the whole file (no
    rows, no such column), so those pass their own advice, or "" for none."""

    def __init__(self, issues: list[DataIssue], limit: int = 20, advice: str = SKIP_ADVICE):
        self.issues = issues
        if len(issues) == 1 and issues[0].line is None:  # one whole-file problem: one line
            super().__init__(f"{issues[0]}" + (f"\n{advice}" if advice else ""))
            return
        shown = "\n".join(f"  {issue}" for issue in issues[:limit])
        more = f"\n  ... and {len(issues) - limit} more" if len(issues) > limit else ""
        super().__init__(f"{len(issues)} data problem(s):\n{shown}{more}" + (f"\n{advice}" if advice else ""))


@dataclass
class Dataset:
    """Records read from one file, with whatever the reader had to report about them."""

    path: str
    records: list[Record]
    issues: list[DataIssue] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    format: str = ""  # the layout it was read as: csv, tsv, jsonl, parquet, conll, squad
    notes: list[str] = field(default_factory=list)  # what the reader assumed, to be said once
