"""Charts as inline SVG built here, so the dashboard draws offline with no chart library.
Each returns HTML text (escaped inside) for a template to insert as it is."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any, Sequence

# Colour-blind-safe palette (Okabe-Ito); series take colours in order.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442", "#000000")
WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 560, 260, 56, 12, 14, 34


@dataclass
class Series:
    """One line: (x, y) points in x order; `dashed` for a second kind of the same run."""

    name: str
    points: list[tuple[float, float]] = field(default_factory=list)
    dashed: bool = False


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values spanning [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:.4g}"


def line_chart(series: Sequence[Series], title: str = "", x_label: str = "step", y_label: str = "") -> str:
    """An SVG line chart; each series is a <path class="series" data-name=...>."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return ('<p class="empty">no points yet</p>')
    xs = [x for s in drawn for x, _ in s.points]
    ys = [y for s in drawn for _, y in s.points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    inner_w, inner_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def at(x: float, y: float) -> str:
        return f"{PAD_LEFT + (x - x0) / (x1 - x0) * inner_w:.1f},{PAD_TOP + (y1 - y) / (y1 - y0) * inner_h:.1f}"

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">']
    for tick in _ticks(y0, y1):
        y = PAD_TOP + (y1 - tick) / (y1 - y0) * inner_h
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="tick" x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>')
    for tick in _ticks(x0, x1):
        x = PAD_LEFT + (tick - x0) / (x1 - x0) * inner_w
        parts.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM + 14}" '
                     f'text-anchor="middle">{_label(tick)}</text>')
    parts.append(f'<text class="axis" x="{PAD_LEFT + inner_w / 2}" y="{HEIGHT - 4}" text-anchor="middle">'
                 f'{escape(x_label)}</text><text class="axis" x="12" y="{PAD_TOP + inner_h / 2}" '
                 f'transform="rotate(-90 12 {PAD_TOP + inner_h / 2})" text-anchor="middle">{escape(y_label)}</text>')
    for i, s in enumerate(drawn):
        colour = PALETTE[i % len(PALETTE)]
        path = " L".join(at(x, y) for x, y in s.points)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(f'<path class="series" data-name="{escape(s.name)}" d="M{path}" stroke="{colour}"{dash}>'
                     f'<title>{escape(s.name)}</title></path>')
        for point in s.points if len(s.points) < 40 else ():  # dots while a curve is short
            cx, cy = at(*point).split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
    parts.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(s.name)}</span>'
                     for i, s in enumerate(drawn))
    heading = f"<h3>{escape(title)}</h3>" if title else ""
    return (f'<figure class="chart-box">{heading}{"".join(parts)}<figcaption>{legend}</figcaption></figure>')


def log_series(rows: Sequence[dict[str, Any]], kind: str, key: str, name: str, dashed: bool = False) -> Series:
    """The `key` values of train_log.jsonl rows of one kind ("train" or "eval") by step."""
    points = [(float(r["step"]), float(r[key])) for r in rows
              if r.get("kind") == kind and isinstance(r.get(key), (int, float)) and isinstance(r.get("step"), (int, float))]
    return Series(name, points, dashed)


def confusion_grid(matrix: Sequence[Sequence[int]], labels: Sequence[str], link: Any) -> str:
    """The confusion matrix as an HTML table (rows gold, columns predicted) whose cells are
    links, `link(gold, predicted)` giving each cell's address; shaded by the share of its row."""
    head = "".join(f'<th scope="col">{escape(label)}</th>' for label in labels)
    rows = []
    for gold, counts in zip(labels, matrix):
        total = sum(counts) or 1
        cells = []
        for predicted, count in zip(labels, counts):
            share = count / total
            kind = "hit" if gold == predicted else "miss"
            cells.append(f'<td class="cell {kind}" style="--share:{share:.3f}">'
                         f'<a href="{escape(link(gold, predicted))}" data-gold="{escape(gold)}" '
                         f'data-predicted="{escape(predicted)}" title="gold {escape(gold)}, predicted '
                         f'{escape(predicted)}: {count}">{count}</a></td>')
        rows.append(f'<tr><th scope="row">{escape(gold)}</th>{"".join(cells)}</tr>')
    return (f'<table class="confusion"><thead><tr><th class="corner">gold \\ predicted</th>{head}</tr>'
                  f'</thead><tbody>{"".join(rows)}</tbody></table>')
