"""Per-example predictions of a run (predictions/<split>.jsonl, eval/<name>/predictions.jsonl)
for the Errors page: which files there are, the rows a filter keeps (worst loss first), and
their spans as highlighted HTML. Rendered from the files' keys alone, whatever the task."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Sequence

from .charts import PALETTE

SHOWN_AT_MOST = 200  # rows on one page; the rest are counted


def prediction_files(run: Path) -> dict[str, Path]:
    """{source: file}: "validation" and "test" from training, "eval/<name>" from `lmtune evaluate`."""
    found = {p.stem: p for p in sorted((run / "predictions").glob("*.jsonl"))}
    found.update({f"eval/{p.parent.name}": p for p in sorted((run / "eval").glob("*/predictions.jsonl"))})
    return found


@dataclass
class Selection:
    rows: list[dict[str, Any]]  # the kept rows, worst loss first, at most SHOWN_AT_MOST
    matched: int  # how many rows the filter kept in all
    total: int
    gold_classes: list[str]  # every class seen, for the filter's choices
    predicted_classes: list[str]


def select(rows: Sequence[dict[str, Any]], gold: str | None = None, predicted: str | None = None,
           everything: bool = False) -> Selection:
    """Wrong rows (all rows with `everything`) whose gold and predicted classes include the given
    ones, worst (highest loss) first; rows without a loss go last."""
    kept = [r for r in rows if (everything or not r.get("correct"))
            and (not gold or gold in (r.get("gold_classes") or []))
            and (not predicted or predicted in (r.get("predicted_classes") or []))]
    kept.sort(key=lambda r: -r["loss"] if isinstance(r.get("loss"), (int, float)) else float("inf"))
    golds = sorted({c for r in rows for c in r.get("gold_classes") or []})
    predicteds = sorted({c for r in rows for c in r.get("predicted_classes") or []})
    return Selection(kept[:SHOWN_AT_MOST], len(kept), len(rows), golds, predicteds)


def label_colour(label: str) -> str:
    """The same colour for a label on every page (a stable hash into the palette)."""
    return PALETTE[zlib.crc32(label.encode()) % (len(PALETTE) - 2)]  # not yellow or black: text stays legible


def highlight(text: str, spans: Sequence[dict[str, Any]] | None) -> str:
    """`text` as HTML with each span in a <mark data-label=...>; overlapping or out-of-range
    spans are dropped (the first one by start wins)."""
    out, at = [], 0
    for span in sorted(spans or [], key=lambda s: (s.get("start", 0), s.get("end", 0))):
        start, end, label = span.get("start"), span.get("end"), str(span.get("label", ""))
        if not isinstance(start, int) or not isinstance(end, int) or start < at or end > len(text) or end <= start:
            continue
        out.append(escape(text[at:start]))
        out.append(f'<mark data-label="{escape(label)}" style="--label:{label_colour(label)}" title="{escape(label)}">'
                   f'{escape(text[start:end])}<sup>{escape(label)}</sup></mark>')
        at = end
    out.append(escape(text[at:]))
    return "".join(out)


def probability_bars(probabilities: dict[str, float] | None, top: int = 5) -> list[tuple[str, float]]:
    """The `top` likeliest labels with their probabilities, likeliest first."""
    if not probabilities:
        return []
    numbers = [(str(k), float(v)) for k, v in probabilities.items() if isinstance(v, (int, float))]
    return sorted(numbers, key=lambda kv: -kv[1])[:top]
