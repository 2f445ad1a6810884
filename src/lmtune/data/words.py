"""The word rule for raw text in token tasks: words keep inner hyphens and apostrophes, every
other non-space character is a word of its own. Offsets always slice the original text."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+(?:['’\-]\w+)*|[^\w\s]", re.UNICODE)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) for each word of `text`; text[start:end] == word."""
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Pre-tokenized input as one text (single spaces) with each word's character span."""
    spans, position = [], 0
    for word in words:
        spans.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), spans
