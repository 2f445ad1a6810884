"""Robustness to small input edits: every evaluation record perturbed per kind (typos, case,
punctuation, synonyms, swapped words), seeded, then scored as the clean records are.

Edits go through the task (`Task.edit_record`), so labels follow the words (an NER tag stays on
its word) and the same code serves every task. A perturbed set is a function of (seed, kind,
record index) alone: the same command gives the same table on any machine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import ConfigError
from ..data.records import Record

SHOWN_EXAMPLES = 5  # perturbed texts kept per kind in robustness.json, to see what an edit does


# ---- the task's editable words, read and rewritten through edit_record ------------------------
class _Recorder:
    """An Edit that changes nothing and keeps the words (and protection) of each field it sees."""

    def __init__(self) -> None:
        self.fields: list[list[str]] = []
        self.protected: list[list[bool]] = []

    def __call__(self, words: list[str], protected: list[bool]) -> Any:
        from ..data.edits import unchanged

        self.fields.append(list(words))
        self.protected.append(list(protected))
        return unchanged(list(words))


class _Replay:
    """An Edit that puts given words in place of each field's, in the order edit_record asks.
    A shorter list is a deletion: `dropped[k]` is the index of the word field k lost (if any)."""

    def __init__(self, fields: Sequence[list[str]], dropped: Sequence[int | None] = ()) -> None:
        self.fields, self.dropped, self.calls = fields, list(dropped), 0

    def __call__(self, words: list[str], protected: list[bool]) -> Any:
        from ..data.edits import WordEdit

        new = list(self.fields[self.calls])
        gone = self.dropped[self.calls] if self.calls < len(self.dropped) else None
        self.calls += 1
        source: list[int | None] = [i for i in range(len(words)) if i != gone]
        changed = sum(a != b for a, b in zip(words, new)) if gone is None else 1
        return WordEdit(new, source[:len(new)], changed)


def editable_words(task: Any, record: Record) -> tuple[list[list[str]], list[list[bool]]]:
    """The words of each field the task edits (and which of them are protected), in its order."""
    recorder = _Recorder()
    task.edit_record(record, recorder)
    return recorder.fields, recorder.protected


def with_words(task: Any, record: Record, fields: Sequence[list[str]],
               dropped: Sequence[int | None] = ()) -> Record:
    """A copy of `record` whose editable fields hold `fields` (one word list per field)."""
    return task.edit_record(record, _Replay(fields, dropped))[0]


# ---- perturbed copies ---------------------------------------------------------------------------
class _Watched:
    """Wraps an Edit to see the words before and after (for shares of words and examples)."""

    def __init__(self, edit: Any) -> None:
        self.edit, self.before, self.after, self.words = edit, [], [], 0

    def __call__(self, words: list[str], protected: list[bool]) -> Any:
        result = self.edit(words, protected)
        self.words += len(words)
        self.before.append(" ".join(words))
        self.after.append(" ".join(result.words))
        return result


@dataclass
class PerturbedSet:
    """The records of one kind of perturbation, with how much was changed."""

    kind: str
    records: list[Record]
    changed_examples: int = 0
    word_shares: list[float] = field(default_factory=list)  # per record: words changed / words
    examples: list[dict[str, Any]] = field(default_factory=list)  # the first few changed ones

    @property
    def examples_share(self) -> float:
        return self.changed_examples / len(self.records) if self.records else 0.0

    @property
    def words_share(self) -> float:
        return sum(self.word_shares) / len(self.word_shares) if self.word_shares else 0.0


def perturb_records(task: Any, records: Sequence[Record], kind: str, rate: float, seed: int,
                    synonyms: Any = None) -> PerturbedSet:
    """Every record edited by `kind` at `rate`, record i with its own RNG (seed, kind, i)."""
    from ..data.edits import make_edit, record_rng

    out = PerturbedSet(kind, [])
    for i, record in enumerate(records):
        watched = _Watched(make_edit(kind, record_rng(seed, kind, i), rate, synonyms))
        edited, changed = task.edit_record(record, watched)
        out.records.append(edited)
        out.word_shares.append(min(1.0, changed / watched.words) if watched.words else 0.0)
        if changed:
            out.changed_examples += 1
            if len(out.examples) < SHOWN_EXAMPLES:
                out.examples.append({"line": record.line, "original": " | ".join(watched.before),
                                     "perturbed": " | ".join(watched.after)})
    return out


# ---- options ------------------------------------------------------------------------------------
def parse_kinds(perturb: str | Sequence[str]) -> list[str]:
    """--perturb as perturbation names ("all": the standard five); an unknown one lists the valid."""
    from ..data.edits import OPERATIONS, PERTURBATIONS

    names = [n.strip() for n in (perturb.split(",") if isinstance(perturb, str) else perturb) if n.strip()]
    if names == ["all"]:
        return list(PERTURBATIONS)
    unknown = [n for n in names if n not in OPERATIONS]
    if unknown or not names:
        what = f"unknown perturbation {', '.join(map(repr, unknown))}" if unknown else "no perturbation named"
        raise ConfigError(f"--perturb: {what}; choose from {', '.join(OPERATIONS)} (comma-separated), "
                          "or all")
    return list(dict.fromkeys(names))


def check_share(value: float, flag: str) -> float:
    """A share of words (rate, cap) must lie in (0, 1]."""
    if not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{flag} {value!r}: give a share of the words in (0, 1], e.g. 0.1")
    return float(value)


def resolve_synonyms(synonyms: Any, predictor: Any) -> Any:
    """A Synonyms source: given as one (a callable with a name), or loaded by kind (auto, wordnet,
    embeddings) for this model."""
    if not isinstance(synonyms, str):
        return synonyms
    from ..data.synonyms import load_synonyms

    return load_synonyms(synonyms, predictor.model, predictor.tokenizer)


# ---- the table ----------------------------------------------------------------------------------
def robustness_table(predictor: Any, records: Sequence[Record], clean: dict[str, Any], kinds: Sequence[str],
                     rate: float, seed: int, synonyms: Any = None) -> dict[str, Any]:
    """The headline metric clean and under each perturbation (and its change), with the share of
    examples and of words each perturbation changed."""
    task = predictor.task
    metric, greater = task.selection(None)
    rows = [_row("clean", clean.get(metric), clean.get(metric), 0.0, 0.0)]
    shown: dict[str, list[dict[str, Any]]] = {}
    for kind in kinds:
        perturbed = perturb_records(task, records, kind, rate, seed, synonyms)
        scores = predictor.evaluate_records(perturbed.records)
        rows.append(_row(kind, scores.get(metric), clean.get(metric), perturbed.examples_share,
                         perturbed.words_share))
        shown[kind] = perturbed.examples
    return {"metric": metric, "greater_is_better": greater, "rate": rate, "seed": seed,
            "synonyms": getattr(synonyms, "name", None), "examples": len(records), "rows": rows,
            "perturbed_examples": shown}


def _row(kind: str, value: Any, clean: Any, examples: float, words: float) -> dict[str, Any]:
    number = isinstance(value, (int, float)) and math.isfinite(value)
    change = value - clean if number and isinstance(clean, (int, float)) else None
    return {"perturbation": kind, "value": value if number else None, "change": change,
            "examples_changed": round(examples, 4), "words_changed": round(words, 4)}


def _cells(row: dict[str, Any]) -> list[str]:
    value, change = row["value"], row["change"]
    return [row["perturbation"], "n/a" if value is None else f"{value:.4f}",
            "" if row["perturbation"] == "clean" or change is None else f"{change:+.4f}",
            f"{100 * row['examples_changed']:.1f}%", f"{100 * row['words_changed']:.1f}%"]


def _headers(table: dict[str, Any]) -> list[str]:
    return ["perturbation", table["metric"], "change", "examples changed", "words changed"]


def markdown(table: dict[str, Any]) -> str:
    """The table as Markdown (robustness.md), with what produced it."""
    lines = ["| " + " | ".join(_headers(table)) + " |", "|" + "---|" * len(_headers(table))]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in table["rows"]]
    better = "higher" if table["greater_is_better"] else "lower"
    source = f", synonyms from {table['synonyms']}" if table["synonyms"] else ""
    return (f"Robustness of {table['metric']} ({better} is better) on {table['examples']} examples: "
            f"rate {table['rate']}, seed {table['seed']}{source}.\n\n" + "\n".join(lines) + "\n")


def print_table(table: dict[str, Any], title: str) -> None:
    """The table in the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    view = Table(title=title)
    for i, header in enumerate(_headers(table)):
        view.add_column(header, justify="left" if i == 0 else "right")
    for row in table["rows"]:
        view.add_row(*_cells(row))
    Console(highlight=False).print(view)


def save_table(table: dict[str, Any], out: Path) -> None:
    """robustness.json (everything, with a few perturbed texts per kind) and robustness.md."""
    (out / "robustness.json").write_text(json.dumps(table, indent=1))
    (out / "robustness.md").write_text(markdown(table))


@dataclass
class RobustnessRequest:
    """What `lmtune evaluate` is asked beyond the clean metrics (a perturbation table, the
    attack), checked before the model loads."""

    kinds: list[str]
    rate: float
    seed: int
    synonyms: Any  # a kind name or a Synonyms object
    attack: Any  # AttackSettings, or None

    @classmethod
    def checked(cls, perturb: str | Sequence[str] | None, rate: float, seed: int, synonyms: Any,
                attack: bool, cap: float, candidates: int, limit: int | None) -> "RobustnessRequest":
        from ..data.synonyms import KINDS
        from .attack import AttackSettings

        kinds = parse_kinds(perturb) if perturb else []
        if kinds:
            check_share(rate, "--perturb-rate")
        settings = AttackSettings(cap, candidates, limit, seed).check() if attack else None
        if isinstance(synonyms, str) and synonyms not in KINDS:
            raise ConfigError(f"--synonyms {synonyms!r}: choose {', '.join(KINDS)} (or pass a Synonyms object)")
        return cls(kinds, rate, seed, synonyms, settings)

    @property
    def wanted(self) -> bool:
        return bool(self.kinds) or self.attack is not None

    def run(self, predictor: Any, records: Sequence[Record], clean: dict[str, Any], out: Path,
            say: Callable[[str], None], quiet: bool) -> dict[str, Any]:
        """The table and the attack, saved under `out` and said; returned as "robustness" and "attack"."""
        from . import attack as attacks

        results: dict[str, Any] = {}
        needs = self.attack is not None or bool({"synonym", "insert"} & set(self.kinds))
        synonyms = resolve_synonyms(self.synonyms, predictor) if needs else None
        if synonyms is not None:
            say(f"synonyms: {synonyms.name}")
        if self.kinds:
            table = robustness_table(predictor, records, clean, self.kinds, self.rate, self.seed, synonyms)
            save_table(table, out)
            if not quiet:
                print_table(table, f"robustness (rate {self.rate}, seed {self.seed})")
            say(f"robustness table written to {out / 'robustness.md'}")
            results["robustness"] = table
        if self.attack is not None:
            report, rows = attacks.run_attack(predictor, records, synonyms, self.attack, progress=not quiet)
            attacks.save_attack(report, rows, out)
            say(f"{attacks.summary(report)}\nattack written to {out / 'attack.json'} (successful attacks: "
                f"{out / 'attack.jsonl'})")
            results["attack"] = report
        return results
