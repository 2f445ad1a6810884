"""Read CSV, TSV, JSONL and Parquet into Records, keeping each row's file and line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .records import DataIssue, Dataset, Record

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
           ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".conll": "conll",
           ".conllu": "conll", ".bio": "conll", ".iob": "conll", ".iob2": "conll", ".bioes": "conll"}


def detect_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"{path}: cannot tell the format from the extension {suffix!r}; "
            f"use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


def read_table(path: str | Path) -> Dataset:
    """Read a file of examples (format by extension); undecodable lines are reported as issues,
    never guessed at."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data file not found")
    fmt = detect_format(path)
    if fmt == "conll":
        from .conll import read_conll

        return read_conll(path)
    if fmt == "parquet":
        return _read_parquet(path)
    if path.suffix.lower() == ".json":
        from .squad import read_squad

        squad = read_squad(path)  # None unless the file is one JSON object with a "data" list
        if squad is not None:
            return squad
    lines, issues = decode_lines(path)
    if fmt == "jsonl":
        return _read_jsonl(path, lines, issues)
    return _read_delimited(path, lines, issues, "\t" if fmt == "tsv" else ",")


def decode_lines(path: Path) -> tuple[list[tuple[int, str]], list[DataIssue]]:
    lines: list[tuple[int, str]] = []
    issues: list[DataIssue] = []
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for number, chunk in enumerate(raw.splitlines(keepends=True), start=1):
        try:
            lines.append((number, chunk.decode("utf-8")))
        except UnicodeDecodeError as exc:
            issues.append(DataIssue(
                "error", str(path), number, None,
                f"undecodable bytes at column {exc.start + 1} ({chunk[exc.start:exc.start + 4]!r})",
                "the file is not valid UTF-8; re-save it as UTF-8",
            ))
    return lines, issues


def _read_delimited(path: Path, lines: list[tuple[int, str]], issues: list[DataIssue],
                    delimiter: str) -> Dataset:
    numbers = [n for n, _ in lines]
    reader = csv.reader((text for _, text in lines), delimiter=delimiter,
                        quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
    records: list[Record] = []
    try:
        header = next(reader)
    except StopIteration:
        return Dataset(str(path), [], issues + [DataIssue("error", str(path), None, None, "file is empty")])
    header = [h.strip() for h in header]
    consumed = reader.line_num
    for row in reader:
        start = numbers[consumed] if consumed < len(numbers) else numbers[-1]
        consumed = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line is not an example (a line of empty fields is, and gets checked)
        if len(row) != len(header):
            issues.append(DataIssue(
                "error", str(path), start, None,
                f"expected {len(header)} fields ({', '.join(header)}), found {len(row)}",
                "check quoting and delimiters on this line",
            ))
            continue
        records.append(Record(dict(zip(header, row)), str(path), start))
    return Dataset(str(path), records, issues, header)


def _read_jsonl(path: Path, lines: list[tuple[int, str]], issues: list[DataIssue]) -> Dataset:
    records: list[Record] = []
    columns: dict[str, None] = {}
    for number, text in lines:
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            issues.append(DataIssue("error", str(path), number, None, f"invalid JSON: {exc.msg}",
                                    "each line must be one JSON object"))
            continue
        if not isinstance(value, dict):
            issues.append(DataIssue("error", str(path), number, None,
                                    f"expected a JSON object, got {type(value).__name__}"))
            continue
        columns.update(dict.fromkeys(value))
        records.append(Record(value, str(path), number))
    return Dataset(str(path), records, issues, list(columns))


def _read_parquet(path: Path) -> Dataset:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("reading Parquet needs pyarrow: pip install 'lmtune[parquet]'") from exc
    table = pq.read_table(path)
    rows = table.to_pylist()
    records = [Record(row, str(path), index) for index, row in enumerate(rows, start=1)]
    return Dataset(str(path), records, [], table.column_names)
