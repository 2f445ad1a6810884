"""SQuAD v1.1/v2.0 JSON: one record per question, with its context and gold answers.

JSON has no useful line numbers, so a record's `line` is the question's position in the file
and messages name the question id too.
"""

from __future__ import annotations

import json
from pathlib import Path

from .records import DataIssue, Dataset, Record


def is_squad(path: Path) -> bool:
    """A .json file whose top level is an object with a `data` list of articles."""
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    return head.startswith(b"{") and b'"data"' in head and not head.rstrip().endswith(b"}\n{")


def read_squad(path: str | Path) -> Dataset:
    path = Path(path)
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Dataset(str(path), [], [DataIssue("error", str(path), None, None,
                                                 f"not a readable SQuAD JSON file: {exc}")])
    records, issues, position = [], [], 0
    for article in document.get("data", []):
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                position += 1
                answers = [{"text": a["text"], "answer_start": int(a["answer_start"])}
                           for a in qa.get("answers", [])]
                records.append(Record({"id": str(qa.get("id", position)), "question": qa.get("question", ""),
                                       "context": paragraph.get("context", ""), "answers": answers,
                                       "title": article.get("title", ""),
                                       "is_impossible": bool(qa.get("is_impossible", False))},
                                      str(path), position))
    return Dataset(str(path), records, issues, ["id", "question", "context", "answers", "title"])
