"""Records keep where they came from, so every problem can name its file, line and field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Record:
    fields: dict[str, Any]
    source: str
    line: int  # 1-based line in the file (row number for Parquet)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

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


class DataError(ValueError):
    """Raised when the data has errors; carries every issue, not just the first."""

    def __init__(self, issues: list[DataIssue], limit: int = 20):
        self.issues = issues
        shown = "\n".join(f"  {issue}" for issue in issues[:limit])
        more = f"\n  ... and {len(issues) - limit} more" if len(issues) > limit else ""
        super().__init__(
            f"{len(issues)} data problem(s):\n{shown}{more}\n"
            "Fix them, or pass --data.on-error skip to leave those rows out (they are counted)."
        )


@dataclass
class Dataset:
    """Records read from one file, with whatever the reader had to report about them."""

    path: str
    records: list[Record]
    issues: list[DataIssue] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
