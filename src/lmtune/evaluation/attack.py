"""A word-substitution attack on a classifier, in the spirit of TextFooler (Jin et al. 2020).

For each correctly predicted example: rank its content words by how much deleting each one
lowers the true label's probability, then replace them in that order by the synonym that lowers
it most, until the prediction flips (success) or the next change would exceed the cap on
changed words (failure). The label is never touched: the attack asks whether the same
meaning, said with other words, still gets the same answer.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..config import ConfigError
from ..data.records import Record
from .robustness import check_share, editable_words, with_words


@dataclass
class AttackSettings:
    cap: float = 0.2  # most words changed: max(1, floor(cap x words))
    candidates: int = 20  # synonyms tried per word
    limit: int | None = None  # a seeded random sample of this many rows, else all
    seed: int = 0

    def check(self) -> AttackSettings:
        check_share(self.cap, "--attack-cap")
        if not isinstance(self.candidates, int) or self.candidates < 1:
            raise ConfigError(f"--attack-candidates {self.candidates!r}: give a whole number of at least 1")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ConfigError(f"--limit {self.limit!r}: give a whole number of rows, at least 1")
        return self


@dataclass
class _Target:
    """One example under attack: its record, gold label id and editable words."""

    record: Record
    label: int
    probs: np.ndarray  # (labels,) before the attack
    fields: list[list[str]]
    protected: list[list[bool]]

    @property
    def words(self) -> int:
        return sum(len(f) for f in self.fields)

    def flat(self, k: int, j: int) -> int:
        """Word j of field k as an index into all the fields' words, counted on."""
        return sum(len(f) for f in self.fields[:k]) + j


@dataclass
class _Outcome:
    success: bool
    queries: int
    record: Record
    probs: np.ndarray
    changed: dict[int, tuple[str, str]] = field(default_factory=dict)  # flat index -> (old, new)


def check_attackable(task: Any) -> None:
    """The attack scores a label's probability: single-label classification only."""
    if not getattr(task, "attackable", False):
        raise ConfigError(f"--attack works on single-label classification runs; this {task.name} run "
                          "cannot be attacked word by word. Use --perturb typo,case,punct,synonym,swap "
                          "to measure its robustness instead")


def probabilities(predictor: Any, records: Sequence[Record]) -> np.ndarray:
    """(records, labels) softmax probabilities, batched by the predictor (one feature per record)."""
    logits, _ = predictor.logits(records)
    return _softmax(np.stack(logits))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _candidates(word: str, synonyms: Callable[[str], list[str]], limit: int) -> list[str]:
    """Single-word substitutes (a multi-word one would shift every later word's index)."""
    found = [s for s in synonyms(word) if s and s != word and len(s.split()) == 1]
    return list(dict.fromkeys(found))[:limit]


def _spots(target: _Target, synonyms: Any, limit: int) -> list[tuple[int, int, list[str]]]:
    """(field, word, candidates) for every word worth attacking: not protected, not a stop word,
    not punctuation, and with a synonym to put in its place."""
    from ..data.synonyms import STOPWORDS

    spots = []
    for k, words in enumerate(target.fields):
        for j, word in enumerate(words):
            if target.protected[k][j] or word.lower() in STOPWORDS or not any(c.isalnum() for c in word):
                continue
            candidates = _candidates(word, synonyms, limit)
            if candidates:
                spots.append((k, j, candidates))
    return spots


def _replaced(fields: list[list[str]], k: int, j: int, word: str) -> list[list[str]]:
    out = [list(f) for f in fields]
    out[k][j] = word
    return out


def _ranked(predictor: Any, target: _Target, spots: list[tuple[int, int, list[str]]]) -> list[int]:
    """Spots by importance, highest first: the true label's probability with the word deleted
    (lower: more important), all deletions scored in one batch."""
    task = predictor.task
    deleted = []
    for k, j, _ in spots:
        fields = [f if m != k else f[:j] + f[j + 1:] for m, f in enumerate(target.fields)]
        deleted.append(with_words(task, target.record, fields, [j if m == k else None for m in range(len(fields))]))
    left = probabilities(predictor, deleted)[:, target.label]
    return sorted(range(len(spots)), key=lambda i: left[i])


def attack_one(predictor: Any, target: _Target, synonyms: Any, settings: AttackSettings) -> _Outcome:
    """Greedy substitution in importance order, within the cap (see the module docstring)."""
    spots = _spots(target, synonyms, settings.candidates)
    outcome = _Outcome(False, 1 + len(spots), target.record, target.probs)
    if not spots:
        return outcome
    budget = max(1, math.floor(settings.cap * target.words))
    fields, y = target.fields, target.label
    for i in _ranked(predictor, target, spots):
        if len(outcome.changed) + 1 > budget:
            break
        k, j, candidates = spots[i]
        trials = [_replaced(fields, k, j, c) for c in candidates]
        records = [with_words(predictor.task, target.record, t) for t in trials]
        probs = probabilities(predictor, records)
        outcome.queries += len(records)
        flips = np.flatnonzero(probs.argmax(-1) != y)
        pick = int(flips[probs[flips, y].argmin()]) if len(flips) else int(probs[:, y].argmin())
        if not len(flips) and probs[pick, y] >= outcome.probs[y]:
            continue  # no candidate helps; the word stays
        fields = trials[pick]
        outcome.changed[target.flat(k, j)] = (target.fields[k][j], candidates[pick])
        outcome.record, outcome.probs = records[pick], probs[pick]
        if len(flips):
            outcome.success = True
            break
    return outcome


def sample_rows(total: int, limit: int | None, seed: int) -> list[int]:
    """All row indices, or a seeded random sample of `limit` of them, in file order."""
    if limit is None or limit >= total:
        return list(range(total))
    return sorted(random.Random(f"{seed}:attack").sample(range(total), limit))


def run_attack(predictor: Any, records: Sequence[Record], synonyms: Any, settings: AttackSettings,
               progress: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Attack every correctly predicted record (of the sample); returns the report and one row
    per successful attack."""
    check_attackable(predictor.task)
    started = time.perf_counter()
    rows = [records[i] for i in sample_rows(len(records), settings.limit, settings.seed)]
    logits, encoded = predictor.logits(rows, with_labels=True)
    probs, gold = _softmax(np.stack(logits)), [int(f["labels"]) for f in encoded.features]
    correct = [i for i in range(len(rows)) if int(probs[i].argmax()) == gold[i]]
    outcomes: list[tuple[_Target, _Outcome]] = []
    for i in _track(correct, progress):
        fields, protected = editable_words(predictor.task, rows[i])
        target = _Target(rows[i], gold[i], probs[i], fields, protected)
        outcomes.append((target, attack_one(predictor, target, synonyms, settings)))
    successes = [(t, o) for t, o in outcomes if o.success]
    report = _report(len(records), len(rows), outcomes, settings, getattr(synonyms, "name", None))
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report, [_success_row(predictor, t, o) for t, o in successes]


def _track(items: list[int], progress: bool) -> Any:
    if not progress or not items:
        return items
    from rich.console import Console
    from rich.progress import track

    return track(items, description="attacking", console=Console(stderr=True), transient=True)


def _report(total: int, rows: int, outcomes: list[tuple[_Target, _Outcome]], settings: AttackSettings,
            source: str | None) -> dict[str, Any]:
    attacked = len(outcomes)
    won = [(t, o) for t, o in outcomes if o.success]
    return {
        "rows": rows, "rows_in_file": total, "sampled": rows < total, "attacked": attacked,
        "succeeded": len(won),
        "clean_accuracy": attacked / rows if rows else 0.0,
        "attack_accuracy": (attacked - len(won)) / rows if rows else 0.0,
        "success_rate": len(won) / attacked if attacked else 0.0,
        "words_changed": (sum(len(o.changed) / t.words for t, o in won) / len(won)) if won else 0.0,
        "queries_per_example": (sum(o.queries for _, o in outcomes) / attacked) if attacked else 0.0,
        "cap": settings.cap, "candidates": settings.candidates, "limit": settings.limit,
        "seed": settings.seed, "synonyms": source,
    }


def _prediction(labels: list[str], probs: np.ndarray) -> dict[str, Any]:
    return {"label": labels[int(probs.argmax())],
            "probabilities": {label: round(float(p), 6) for label, p in zip(labels, probs)}}


def _success_row(predictor: Any, target: _Target, outcome: _Outcome) -> dict[str, Any]:
    """One line of attack.jsonl: what changed and how the prediction moved."""
    labels = predictor.labels
    row: dict[str, Any] = {"line": target.record.line}
    for column, key in ((predictor.cfg.data.text_column, "text"), (predictor.cfg.data.text_pair_column, "text_pair")):
        if column:
            row[key] = target.record.fields.get(column)
            row[f"adversarial_{key}"] = outcome.record.fields.get(column)
    row.update(label=labels[target.label], original=_prediction(labels, target.probs),
               adversarial=_prediction(labels, outcome.probs),
               changed=[[i, old, new] for i, (old, new) in sorted(outcome.changed.items())],
               share_changed=round(len(outcome.changed) / target.words, 4))
    return row


def summary(report: dict[str, Any]) -> str:
    """The attack's figures, one per line, for the terminal."""
    sample = f" (a random sample of {report['rows']} of {report['rows_in_file']} rows)" if report["sampled"] else ""
    return "\n".join([
        f"attack on {report['rows']} rows{sample}, cap {report['cap']:g} of the words, "
        f"{report['candidates']} candidates per word, synonyms from {report['synonyms']}",
        f"  clean accuracy        {report['clean_accuracy']:.4f}",
        f"  accuracy under attack {report['attack_accuracy']:.4f}",
        f"  attack success rate   {report['success_rate']:.4f} ({report['succeeded']} of {report['attacked']} "
        "correctly predicted rows)",
        f"  words changed         {100 * report['words_changed']:.1f}% (mean, successful attacks)",
        f"  queries per example   {report['queries_per_example']:.1f}",
        f"  seconds               {report['seconds']:.1f}"])


def save_attack(report: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> None:
    """attack.json (the report) and attack.jsonl (one object per successful attack)."""
    (out / "attack.json").write_text(json.dumps(report, indent=1))
    (out / "attack.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
