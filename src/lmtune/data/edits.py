"""Word-level edits of a text: the small rewrites that augmentation, perturbation evaluation and
the attack apply to a record's words.

An edit takes the words and which of them are protected (inside an NER entity) and returns the
new words with, for each, the index of the old word it came from, so a task can carry its
labels along. A protected word is never changed, moved or deleted, and nothing is inserted
right before one, so an entity's words stay one unbroken run. Every edit draws only from the
`random.Random` it was made with: the same seed gives the same edit on every machine.
"""

from __future__ import annotations

import random
import string
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .synonyms import STOPWORDS

if TYPE_CHECKING:
    from .synonyms import Synonyms


@dataclass
class WordEdit:
    words: list[str]
    source: list[int | None]  # per new word: the index of the old word it came from, None if inserted
    changed: int  # words replaced, inserted, deleted, moved or misspelled


Edit = Callable[[list[str], list[bool]], WordEdit]

PERTURBATIONS = ("typo", "case", "punct", "synonym", "swap")
EDA = ("synonym", "insert", "swap", "delete")  # Wei & Zou's easy data augmentation
OPERATIONS = ("typo", "case", "punct", "synonym", "swap", "insert", "delete")
TOP_SYNONYMS = 3  # a replacement is drawn from a word's best few synonyms, not its far ones
PUNCTUATION = (",", ".", "!", "?", ";")

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
# Keys next to each letter on a QWERTY keyboard (same row and the rows above and below).
KEYBOARD = {
    key: "".join(other for r, row in enumerate(_ROWS) for c, other in enumerate(row)
                 if other != key and abs(r - rr) <= 1 and abs(c - cc) <= 1)
    for rr, row_ in enumerate(_ROWS) for cc, key in enumerate(row_)
}


def unchanged(words: list[str]) -> WordEdit:
    """The words as they are: what an edit returns when nothing in them can change."""
    return WordEdit(list(words), list(range(len(words))), 0)


def record_rng(seed: int, *keys: object) -> random.Random:
    """A generator for one record (and epoch, copy, kind...): seeded by a string, which Python
    hashes the same way in every process, unlike hash() of a tuple."""
    return random.Random(f"{seed}:" + ":".join(map(str, keys)))


def how_many(rate: float, eligible: int) -> int:
    """How many of `eligible` items an edit changes: a share `rate`, at least one (none of none)."""
    return min(eligible, max(1, round(rate * eligible))) if eligible else 0


def _pick(rng: random.Random, rate: float, eligible: list[int]) -> list[int]:
    return sorted(rng.sample(eligible, how_many(rate, len(eligible))))


def _check_rate(rate: float) -> float:
    if not 0 <= rate <= 1:
        raise ValueError(f"edit rate {rate!r} is not a share of the words; give a number in [0, 1] "
                         "(e.g. 0.1 changes one word in ten)")
    return rate


def _replacing(rng: random.Random, rate: float, eligible: Callable[[str], bool],
               change: Callable[[str, random.Random], str]) -> Edit:
    """An edit that rewrites ~rate of the eligible unprotected words in place, one by one."""
    _check_rate(rate)

    def edit(words: list[str], protected: list[bool]) -> WordEdit:
        chosen = _pick(rng, rate, [i for i, w in enumerate(words) if not protected[i] and eligible(w)])
        new = list(words)
        for i in chosen:
            new[i] = change(words[i], rng)
        return WordEdit(new, list(range(len(words))), sum(new[i] != words[i] for i in chosen))

    return edit


# ---- typos -----------------------------------------------------------------------------
def _misspellings(word: str, rng: random.Random) -> list[str]:
    """One candidate of each kind of typo (some may equal the word: swapped equal letters)."""
    i = rng.randrange(1, len(word) - 2) if len(word) >= 4 else None  # an inner pair (i, i+1)
    j = rng.randrange(len(word))
    swapped = word[:i] + word[i + 1] + word[i] + word[i + 2:] if i is not None else word
    near = KEYBOARD.get(word[j].lower(), "")
    key = rng.choice(near) if near else word[j]
    key = key.upper() if word[j].isupper() else key
    return [swapped, word[:j] + word[j + 1:], word[:j] + word[j] + word[j:], word[:j] + key + word[j + 1:]]


def _misspell(word: str, rng: random.Random) -> str:
    candidates = [c for c in _misspellings(word, rng) if c != word]
    return rng.choice(candidates)  # dropping or repeating a letter always differs


def typo(rng: random.Random, rate: float) -> Edit:
    """Misspell words of three letters or more: swap two inner letters, drop or repeat a letter,
    or hit a neighbouring key."""
    return _replacing(rng, rate, lambda w: w.isalpha() and len(w) >= 3, _misspell)


# ---- case and punctuation ---------------------------------------------------------------
def _flip_case(word: str, rng: random.Random) -> str:
    if not word.islower():
        return word.lower()
    if rng.random() < 0.5:
        return word.upper()
    first = next(i for i, c in enumerate(word) if c.isalpha())
    return word[:first] + word[first].upper() + word[first + 1:]


def case(rng: random.Random, rate: float) -> Edit:
    """Flip the case of words: lower -> Capitalised or UPPER, Capitalised or UPPER -> lower."""
    return _replacing(rng, rate, lambda w: w.lower() != w.upper(), _flip_case)


def _is_punct(char: str) -> bool:
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def _strip_end(word: str) -> str:
    end = len(word)
    while end and _is_punct(word[end - 1]):
        end -= 1
    return word[:end]


def punct(rng: random.Random, rate: float) -> Edit:
    """Punctuation noise: delete a punctuation word, strip a word's trailing punctuation, or
    append a mark to a word. The words never all go."""
    _check_rate(rate)

    def edit(words: list[str], protected: list[bool]) -> WordEdit:
        chosen = set(_pick(rng, rate, [i for i in range(len(words)) if not protected[i]]))
        new, source, deleted = [], [], 0
        for i, word in enumerate(words):
            if i in chosen and all(map(_is_punct, word)) and deleted < len(words) - 1:
                deleted += 1
                continue
            if i in chosen and not all(map(_is_punct, word)):
                word = _strip_end(word) if _is_punct(word[-1]) else word + rng.choice(PUNCTUATION)
            new.append(word)
            source.append(i)
        return WordEdit(new, source, deleted + sum(w != words[s] for w, s in zip(new, source)))

    return edit


# ---- order, synonyms, insertions, deletions -----------------------------------------------
def swap(rng: random.Random, rate: float) -> Edit:
    """Swap words with their right neighbour (both unprotected); rate counts the swaps."""
    _check_rate(rate)

    def edit(words: list[str], protected: list[bool]) -> WordEdit:
        pairs = [i for i in range(len(words) - 1)
                 if not protected[i] and not protected[i + 1] and words[i] != words[i + 1]]
        source: list[int | None] = list(range(len(words)))
        for i in _pick(rng, rate, pairs):  # in order: a word may travel on with a later swap
            source[i], source[i + 1] = source[i + 1], source[i]
        return WordEdit([words[s] for s in source], source, sum(s != j for j, s in enumerate(source)))

    return edit


def _candidates(synonyms: Synonyms) -> Callable[[str], list[str]]:
    """A word's best few one-word synonyms; none for stopwords (replacing 'the' adds no signal)."""
    cache: dict[str, list[str]] = {}  # an edit asks about a word more than once

    def best(word: str) -> list[str]:
        if word not in cache:
            found = [] if word.lower() in STOPWORDS else synonyms(word)
            cache[word] = [s for s in found if s and s != word and not any(c.isspace() for c in s)]
        return cache[word][:TOP_SYNONYMS]

    return best


def synonym(rng: random.Random, rate: float, synonyms: Synonyms) -> Edit:
    """Replace words (not stopwords) by one of their closest synonyms."""
    best = _candidates(synonyms)
    return _replacing(rng, rate, lambda w: bool(best(w)), lambda w, r: r.choice(best(w)))


def insert(rng: random.Random, rate: float, synonyms: Synonyms) -> Edit:
    """Insert synonyms of random words at random places (never right before a protected word)."""
    _check_rate(rate)
    best = _candidates(synonyms)

    def edit(words: list[str], protected: list[bool]) -> WordEdit:
        eligible = [i for i, w in enumerate(words) if not protected[i] and best(w)]
        new, guard = list(words), list(protected)
        source: list[int | None] = list(range(len(words)))
        for _ in range(how_many(rate, len(eligible))):
            word = rng.choice(best(words[rng.choice(eligible)]))
            at = rng.choice([p for p in range(len(new) + 1) if p == len(new) or not guard[p]])
            new.insert(at, word)
            source.insert(at, None)
            guard.insert(at, False)
        return WordEdit(new, source, len(new) - len(words))

    return edit


def delete(rng: random.Random, rate: float) -> Edit:
    """Delete random unprotected words, never all of them."""
    _check_rate(rate)

    def edit(words: list[str], protected: list[bool]) -> WordEdit:
        eligible = [i for i in range(len(words)) if not protected[i]]
        gone = set(rng.sample(eligible, max(0, min(how_many(rate, len(eligible)), len(words) - 1))))
        source: list[int | None] = [i for i in range(len(words)) if i not in gone]
        return WordEdit([words[i] for i in source], source, len(gone))

    return edit


def make_edit(name: str, rng: random.Random, rate: float, synonyms: Synonyms | None = None) -> Edit:
    """The edit called `name` (one of OPERATIONS); synonym and insert need `synonyms`."""
    if name in ("synonym", "insert"):
        if synonyms is None:
            raise ValueError(f"the {name!r} edit needs synonyms (lmtune.data.synonyms.load_synonyms)")
        return (synonym if name == "synonym" else insert)(rng, rate, synonyms)
    plain = {"typo": typo, "case": case, "punct": punct, "swap": swap, "delete": delete}
    if name not in plain:
        raise ValueError(f"unknown edit {name!r}; choose among: {', '.join(OPERATIONS)}")
    return plain[name](rng, rate)
