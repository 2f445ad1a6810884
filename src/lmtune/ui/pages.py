"""What each dashboard page shows, as plain values for its template: the runs table, a run's
overview and live log, a comparison, the errors of a run. Charts come from charts.py."""

from __future__ import annotations

import re
from html import escape
from typing import Any, Sequence

from ..experiments.runs import (COLUMNS, RunSummary, differing_keys, duration, filter_runs, is_filter_expression,
                                read_log, show, sort_runs)
from . import charts
from .folder import read_text, report, run_id

LOG_ROWS_SHOWN = 100  # the last rows of train_log.jsonl on a run's page; live ones are appended


# ---- runs ------------------------------------------------------------------------------------
def apply_filter(runs: Sequence[RunSummary], text: str) -> list[RunSummary]:
    """The filter box: comma-separated parts, each an `lmtune runs --filter` expression
    (accuracy>0.9, method.name=lora) or else words any of name/task/method/model/status contain."""
    kept = list(runs)
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if is_filter_expression(part):
            kept = filter_runs(kept, [part]) if kept else kept
        else:
            words = part.lower()
            kept = [r for r in kept if any(words in str(v).lower() for v in (r.name, r.task, r.method, r.model, r.status))]
    return kept


def runs_table(runs: Sequence[RunSummary], sort: str | None = None) -> dict[str, Any]:
    """Rows of the runs page: fixed columns, the best metric, then the hyperparameters that differ."""
    if sort:
        runs = sort_runs(runs, sort)
    keys = differing_keys(runs)
    metrics = {r.metric for r in runs if r.metric}
    rows = [{"id": run_id(r.name), "name": r.name, "task": r.task or "-", "method": r.method or "-",
             "model": r.model or "-", "status": r.status, "note": r.note, "metric": r.metric or "",
             "value": r.value, "shown": show(r.value, 4), "seconds": r.seconds, "time": duration(r.seconds),
             "params": [(r.config.get(k), show(r.config.get(k))) for k in keys]} for r in runs]
    return {"rows": rows, "hyper": keys, "metric_header": next(iter(metrics)) if len(metrics) == 1 else "best metric"}


# ---- one run ---------------------------------------------------------------------------------
def log_curves(rows: Sequence[dict[str, Any]], metric: str | None) -> str:
    """A run's learning curves: training and validation loss, then its selection metric."""
    loss = charts.line_chart([charts.log_series(rows, "train", "loss", "train loss"),
                              charts.log_series(rows, "eval", "loss", "validation loss", dashed=True)],
                             "loss", y_label="loss")
    if not metric or metric == "loss":
        return loss
    return loss + charts.line_chart([charts.log_series(rows, "eval", metric, f"validation {metric}")],
                                    metric, y_label=metric)


def log_row(row: dict[str, Any], metric: str | None) -> dict[str, Any]:
    """A train_log.jsonl row as the run page's table shows it (the live script builds the same)."""
    value = row.get(metric) if row.get("kind") == "eval" and metric else None
    return {"kind": row.get("kind", ""), "step": row.get("step", ""), "loss": show(row.get("loss"), 4),
            "metric": show(value, 4) if value is not None else "", "best": bool(row.get("best"))}


def run_page(run: RunSummary) -> dict[str, Any]:
    rows, offset = read_log(run.path / "train_log.jsonl")
    found = report(run)
    rid = run_id(run.name)

    def link(gold: str, predicted: str) -> str:
        shown = "&show=all" if gold == predicted else ""
        return f"/runs/{rid}/errors?gold={_q(gold)}&predicted={_q(predicted)}{shown}"

    return {
        "run": run, "id": rid, "time": duration(run.seconds),
        "metrics": [(k, show(v, 4)) for k, v in run.metrics.items()],
        "per_class": found["per_class"],
        "confusion": charts.confusion_grid(found["confusion"], found["labels"], link) if found["confusion"] else "",
        "curves": log_curves(rows, run.metric), "log": [log_row(r, run.metric) for r in rows[-LOG_ROWS_SHOWN:]],
        "log_rows": len(rows), "offset": offset,
        "config": read_text(run.path / "config.yaml"), "card": markdown_lite(read_text(run.path / "README.md")),
    }


def log_update(run: RunSummary, offset: int) -> dict[str, Any]:
    """What a running run's page polls: the log rows after `offset`, the status, fresh curves."""
    rows, next_offset = read_log(run.path / "train_log.jsonl", offset)
    everything = read_log(run.path / "train_log.jsonl")[0] if rows else None
    return {"rows": [log_row(r, run.metric) for r in rows], "offset": next_offset, "status": run.status,
            "metric": run.metric, "value": show(run.value, 4),
            "curves": log_curves(everything, run.metric) if everything is not None else None}


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


_INLINE_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def markdown_lite(text: str) -> str:
    """A model card as HTML: its YAML header and fenced code as preformatted blocks, headings,
    table rows kept as lines, inline `code` and **bold**; everything escaped first."""
    text, out = text.replace("\r", ""), []
    if text.startswith("---\n") and text.find("\n---", 3) > 0:
        end = text.find("\n---", 3)
        out.append(f'<pre class="meta">{escape(text[4:end])}</pre>')
        text = text[end + 4:]
    fenced, block = False, []
    for line in text.split("\n"):
        if line.startswith("```"):
            if fenced:
                out.append(f"<pre>{escape(chr(10).join(block))}</pre>")
                block = []
            fenced = not fenced
        elif fenced:
            block.append(line)
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("|"):
            out.append(f'<pre class="row">{escape(line)}</pre>')
        elif line.strip():
            inline = _BOLD.sub(r"<b>\1</b>", _INLINE_CODE.sub(r"<code>\1</code>", escape(line)))
            out.append(f"<p>{inline}</p>")
    if block:
        out.append(f"<pre>{escape(chr(10).join(block))}</pre>")
    return "\n".join(out)


# ---- compare ---------------------------------------------------------------------------------
def compare_curves(runs: Sequence[RunSummary]) -> str:
    """The runs' validation curves of their selection metric overlaid, then their training losses."""
    logs = {r.name: read_log(r.path / "train_log.jsonl")[0] for r in runs}
    metrics = list(dict.fromkeys(r.metric for r in runs if r.metric))
    metric = metrics[0] if len(metrics) == 1 else None
    chosen = charts.line_chart([charts.log_series(logs[r.name], "eval", metric or r.metric or "loss", r.name)
                                for r in runs], f"validation {metric or 'metric for best'}", y_label=metric or "")
    loss = charts.line_chart([charts.log_series(logs[r.name], "train", "loss", r.name) for r in runs],
                             "training loss", y_label="loss")
    return chosen + loss


def delta_cells(values: Sequence[Any], deltas: Sequence[Any]) -> list[dict[str, Any]]:
    """Table cells: each value, and from the second run on its difference from the first."""
    cells = []
    for i, (value, delta) in enumerate(zip(values, deltas)):
        sign = "" if i == 0 or delta is None or delta == 0 else ("up" if delta > 0 else "down")
        text = "" if i == 0 or delta is None else (f"{delta:+d}" if isinstance(delta, int) else f"{delta:+.4f}")
        cells.append({"value": show(value, 4), "delta": text, "sign": sign})
    return cells


def column_names() -> list[str]:
    """The filter box's hint: the columns a filter expression may name."""
    return [c for c in COLUMNS if c not in ("value", "seconds")]
