"""Read CSV, TSV, JSONL, Parquet and plain text into Records, keeping each row's file and line."""

from __future__ import annotations

import csv
import difflib
import json
from pathlib import Path

from .records import DataError, DataIssue, Dataset, Record

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
           ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".conll": "conll",
           ".conllu": "conll", ".bio": "conll", ".iob": "conll", ".iob2": "conll", ".bioes": "conll"}


CHOICES = ("auto", "csv", "tsv", "jsonl", "parquet", "conll", "squad", "text")  # data.format
# a task's usual layout; plain text (read_text) is the pretraining tasks' (a .txt corpus)
LAYOUTS = {"conll": "CoNLL columns (token ... tag)", "squad": "SQuAD JSON", "text": "plain text"}


def detect_format(path: str | Path, usual: str | None = None) -> str:
    """The format by extension; an unknown extension is an error that says how to choose."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        content = f" and the content does not look like {LAYOUTS[usual]}" if usual in LAYOUTS else ""
        raise ValueError(
            f"{path}: cannot tell the format from the extension {suffix!r}{content}; set "
            f"--data.format ({', '.join(CHOICES[1:])}), or use an extension: {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


def read_table(path: str | Path, fmt: str = "auto", usual: str | None = None) -> Dataset:
    """Read a file of examples; undecodable lines are reported as issues, never guessed at.

    The format is `fmt` (data.format), else the extension's. A file with an unknown extension is
    read as `usual`, the one layout its task's data usually has (CoNLL-2003 ships as .txt), when
    its content looks like it; the dataset's notes say what was assumed."""
    path = existing_file(path)
    if fmt not in CHOICES:
        raise ValueError(f"data.format={fmt!r}: choose one of {', '.join(CHOICES)}")
    dataset, suffix = None, path.suffix.lower()
    if fmt == "auto" and suffix not in FORMATS and usual in LAYOUTS:
        dataset = _sniff(path, usual)
        if dataset is not None:
            dataset.notes.append(f"{path}: read as {LAYOUTS[usual]}, from its content; "
                                 "--data.format overrides")
    elif fmt == "auto" and suffix == ".json":
        dataset = _sniff(path, "squad")  # one JSON object with a "data" list; else JSON lines
    if dataset is None:
        dataset = _read(path, detect_format(path, usual) if fmt == "auto" else fmt)
    if not dataset.records and not any(i.level == "error" for i in dataset.issues):
        raise _no_rows(path, dataset)  # said now, not as "0 labels" or a failure after an epoch
    return dataset


def _no_rows(path: Path, dataset: Dataset) -> DataError:
    if dataset.format in ("csv", "tsv") and dataset.columns:
        what = f"it has only a header: {', '.join(dataset.columns)}"
    else:
        what = "it is empty" if not path.read_bytes().strip() else "no examples in it"
    return DataError([DataIssue("error", str(path), None, None, "file has no rows",
                                f"{what}; add examples, or leave the file out")], advice="")


def existing_file(path: str | Path) -> Path:
    """The path, if it is a file; else say what it is (a folder, or a near miss of a real name)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.is_file())
        shown = f": {', '.join(inside[:6])}{', ...' if len(inside) > 6 else ''}" if inside else ""
        raise DataError([DataIssue("error", str(path), None, None, "is a directory, not a data file",
                                   f"give the path of one file in it{shown}")], advice="")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: data file not found (there is no folder {folder})")
    close = difflib.get_close_matches(path.name, [p.name for p in folder.iterdir() if p.is_file()], n=1)
    suggestion = f"; did you mean {folder / close[0]}?" if close else ""
    raise FileNotFoundError(f"{path}: data file not found{suggestion}")


def _sniff(path: Path, layout: str) -> Dataset | None:
    """The file read as `layout` (conll or squad) if its content is that layout, else None."""
    if layout == "text":
        return read_text(path)  # any text is text (a binary file is an error)
    if layout == "squad":
        from .squad import read_squad

        return read_squad(path)  # None unless one JSON object with a "data" list
    from .conll import looks_like_conll, read_conll

    return read_conll(path) if looks_like_conll(path) else None


def _read(path: Path, fmt: str) -> Dataset:
    """The file read in the format given."""
    if fmt == "conll":
        from .conll import read_conll

        return read_conll(path)
    if fmt == "squad":
        squad = _sniff(path, "squad")
        if squad is None:
            raise ValueError(f"{path}: not SQuAD JSON (one JSON object with a \"data\" list of articles); "
                             "check --data.format")
        return squad
    if fmt == "parquet":
        dataset = _read_parquet(path)
    elif fmt == "text":
        dataset = read_text(path)
    else:
        lines, issues = decode_lines(path)
        dataset = (_read_jsonl(path, lines, issues) if fmt == "jsonl"
                   else _read_delimited(path, lines, issues, "\t" if fmt == "tsv" else ","))
    dataset.format = fmt
    return dataset


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
        return Dataset(str(path), [], issues)  # read_table says "file has no rows"
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


TEXT_FIELD = "text"  # the field a plain-text document is read into


def read_text(path: Path) -> Dataset:
    """Plain text as documents in a `text` field. The rule: a file with any blank line holds
    paragraphs separated by blank lines (a paragraph's lines are joined with newlines);
    a file without one holds one document per line. A binary file is one clear error."""
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        offset = raw.index(b"\x00")
        raise DataError([DataIssue("error", str(path), None, None,
                                   f"looks like a binary file (a NUL byte at offset {offset})",
                                   "give a UTF-8 text file: one document per line, or paragraphs "
                                   "separated by blank lines")], advice="")
    lines, issues = decode_lines(path)
    paragraphs = any(not text.strip() for _, text in lines) and any(text.strip() for _, text in lines)
    records: list[Record] = []
    for number, text in lines:
        if not text.strip():
            continue
        last = records[-1] if records else None
        if paragraphs and last is not None and (last.last_line or last.line) == number - 1:
            last.fields[TEXT_FIELD] += "\n" + text.strip()
            last.last_line = number
        else:
            records.append(Record({TEXT_FIELD: text.strip()}, str(path), number, number))
    note = "paragraphs separated by blank lines" if paragraphs else "one document per line"
    return Dataset(str(path), records, issues, [TEXT_FIELD], format="text", notes=[f"{path}: {note}"])
