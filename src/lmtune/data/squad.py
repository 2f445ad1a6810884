"""SQuAD v1.1/v2.0 JSON: one record per question, with its context and gold answers.

JSON has no useful line numbers, so a record's `line` is the question's position in the file
and messages name the question id too.
"""

from __future__ import annotations

import json
from pathlib import Path

from .records import Dataset, Record


def read_squad(path: str | Path) -> Dataset | None:
    """The questions of a SQuAD file; None when the file is not SQuAD (e.g. JSON lines)."""
    path = Path(path)
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # not one JSON document: the JSONL reader reports line by line
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        return None
    records, position = [], 0
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
    return Dataset(str(path), records, [], ["id", "question", "context", "answers", "title"], format="squad")
