"""CoNLL-style column files: one token per line, the token first and the tag last.

Sentences end at blank or whitespace-only lines (WNUT-17's train file uses a lone tab) and at
`-DOCSTART-` lines; 2-column and 4-column (CoNLL-2003) layouts read the same. Each record keeps
the line of its first token and the line of every token, so problems point at exact lines, and
spans the sentence's first to last line, so skipping a bad line drops the whole sentence.
"""

from __future__ import annotations

import re
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
    block: list[int] = []  # every line of the sentence, a bad one too, so skipping drops it whole

    def flush() -> None:
        if tokens:
            records.append(Record({"tokens": list(tokens), "tags": list(tags),
                                   "token_lines": list(token_lines)}, str(path), block[0],
                                  last_line=block[-1]))
        tokens.clear(), tags.clear(), token_lines.clear(), block.clear()

    for number, text in lines:
        stripped = text.strip()
        if not stripped or stripped.startswith("-DOCSTART-"):
            flush()
            continue
        block.append(number)
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
    return Dataset(str(path), records, issues, ["tokens", "tags"], format="conll")


TAG = re.compile(r"^(O|[BIESLU][-_].+)$")


def looks_like_conll(path: str | Path, sample: int = 200) -> bool:
    """Whether a file of unknown extension is token-per-line with a tag last (CoNLL-2003's
    train.txt): most of its first non-blank lines have two or more columns and end in a tag."""
    lines, _ = decode_lines(Path(path))
    rows = [t.split() for _, t in lines if t.strip() and not t.strip().startswith("-DOCSTART-")][:sample]
    tagged = sum(1 for row in rows if len(row) >= 2 and TAG.match(row[-1]))
    return bool(rows) and tagged >= 0.9 * len(rows)
