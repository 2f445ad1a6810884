"""Pack tokenized documents into fixed-size blocks for language-model pretraining.

Documents are joined into one token stream (a separator token after each), and the stream is
cut into blocks of `size` tokens: a long document spans several blocks, short ones share one,
and nothing is padded except the last block, which is kept short rather than dropped. Every
token of every document therefore lands in exactly one block, once.

This differs from generation's `pack` (tasks/generation.py), which bins whole prompt/response
examples and isolates them with a block-diagonal mask: here documents are plain text and a
block is just a window of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class Blocks:
    """Token blocks with what packing did, for the data report."""

    ids: list[list[int]] = field(default_factory=list)
    word_starts: list[list[bool]] = field(default_factory=list)  # whether each token begins a word
    first_document: list[int] = field(default_factory=list)  # the document each block starts in
    documents: int = 0
    tokens: int = 0  # document tokens packed (separators not counted)
    lengths: list[int] = field(default_factory=list)  # tokens per document


def pack_blocks(documents: Sequence[Sequence[int]], size: int, separator: int | None,
                word_starts: Sequence[Sequence[bool]] | None = None) -> Blocks:
    """Cut the stream of `documents` (token ids), each followed by `separator` (None: nothing
    between them), into blocks of at most `size` tokens. `word_starts` marks, per document
    token, whether it begins a word (a separator is a word of its own)."""
    if size < 1:
        raise ValueError(f"block size {size}: must be at least 1 token")
    blocks = Blocks(documents=len(documents))
    stream: list[int] = []
    starts: list[bool] = []
    owner: list[int] = []
    for index, doc in enumerate(documents):
        marks = list(word_starts[index]) if word_starts is not None else [True] * len(doc)
        tail = [separator] if separator is not None else []
        stream += list(doc) + tail
        starts += marks + [True] * len(tail)
        owner += [index] * (len(doc) + len(tail))
        blocks.tokens += len(doc)
        blocks.lengths.append(len(doc))
    if separator is not None and stream:
        stream, starts, owner = stream[:-1], starts[:-1], owner[:-1]  # nothing follows the last one
    for begin in range(0, len(stream), size):
        blocks.ids.append(stream[begin:begin + size])
        blocks.word_starts.append(starts[begin:begin + size])
        blocks.first_document.append(owner[begin])
    return blocks
