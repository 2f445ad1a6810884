"""CoNLL-style column files: one token per line, the token first and the tag last.

Sentences end at blank or whitespace-only lines (WNUT-17's train file uses a lone tab) and at
`-DOCSTART-` lines; 2-column and 4-column (CoNLL-2003) layouts read the same. Each record keeps
the line of its first token and the line of every token, so problems point at exact lines.
"""

from __future__ import annotations

from pathlib import Path

from .readers import decode_lines
from .records import DataIssue, Dataset, Record


def read_conll(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data file not found")
    lines, issues = decode_lines(path)
    records: list[Record] = []
    tokens: list[str] = []
    tags: list[str] = []
    token_lines: list[int] = []

    def flush() -> None:
        if tokens:
            records.append(Record({"tokens": list(tokens), "tags": list(tags),
                                   "token_lines": list(token_lines)}, str(path), token_lines[0]))
        tokens.clear(), tags.clear(), token_lines.clear()

    for number, text in lines:
        stripped = text.strip()
        if not stripped or stripped.startswith("-DOCSTART-"):
            flush()
            continue
        columns = stripped.split("\t") if "\t" in stripped else stripped.split()
        if len(columns) < 2:
            issues.append(DataIssue("error", str(path), number, "tag",
                                    f"token {columns[0]!r} has no tag",
                                    "each line needs the token first and the tag last"))
            continue
        tokens.append(columns[0].strip())
        tags.append(columns[-1].strip())
        token_lines.append(number)
    flush()
    return Dataset(str(path), records, issues, ["tokens", "tags"])
