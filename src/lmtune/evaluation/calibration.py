"""Calibration by temperature scaling (Guo et al., 2017): one number T divides the logits so
that the model's probabilities match how often it is right, without changing which class wins.

- Scores come from a task as (scores, gold, kind) (`Task.calibration_scores`): kind "softmax"
  (one distribution per example, or per labelled token for NER; gold: class indices) or
  "sigmoid" (multi-label: one probability per (example, label); gold: 0/1 per label).
- T is fitted by minimising the negative log-likelihood over log T, a one-dimensional search:
  the NLL is convex in 1/T, so golden-section search finds its minimum, deterministically.
- Metrics: expected / maximum calibration error over 15 equal-width confidence bins (softmax:
  the top-class confidence against being right; sigmoid: every probability against the label
  being present), Brier score and NLL.

<run>/calibration.json holds the fit the Predictor applies (`read_temperature`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

BINS = 15
LOW_T, HIGH_T = 0.05, 20.0  # the search's bounds: sharper or flatter than this is a broken model
PLOT = "reliability.png"
KINDS = ("softmax", "sigmoid")


class CalibrationScores(NamedTuple):
    """What calibration reads from a task: raw scores (n, k), gold and how scores become
    probabilities. softmax: gold (n,) class indices; sigmoid: gold (n, k) 0/1."""

    scores: np.ndarray
    gold: np.ndarray
    kind: str


def _checked(data: CalibrationScores) -> CalibrationScores:
    if data.kind not in KINDS:
        raise ValueError(f"calibration kind {data.kind!r}: use one of {', '.join(KINDS)}")
    scores = np.asarray(data.scores, dtype=np.float64)
    if scores.ndim != 2 or not len(scores):
        raise ValueError(f"calibration needs scores of shape (examples, classes) with at least one "
                         f"example; got shape {scores.shape}")
    return CalibrationScores(scores, np.asarray(data.gold), data.kind)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    top = z.max(-1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(-1, keepdims=True))


def probabilities(scores: np.ndarray, kind: str, temperature: float = 1.0) -> np.ndarray:
    """Probabilities of scores divided by `temperature` (softmax rows, or sigmoids)."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    return np.exp(_log_softmax(z))


def nll(data: CalibrationScores, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold labels at `temperature`."""
    scores, gold, kind = _checked(data)
    z = scores / temperature
    if kind == "sigmoid":  # binary cross-entropy per (example, label), computed stably
        return float(np.mean(np.logaddexp(0.0, z) - gold * z))
    return float(-np.mean(_log_softmax(z)[np.arange(len(z)), gold.astype(int)]))


def fit_temperature(data: CalibrationScores, low: float = LOW_T, high: float = HIGH_T,
                    tolerance: float = 1e-5) -> float:
    """The T in [low, high] that minimises the NLL: golden-section search over log T (the NLL is
    unimodal there, being convex in 1/T), so the same scores always give the same T."""
    data = _checked(data)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = math.log(low), math.log(high)
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(data, math.exp(c)), nll(data, math.exp(d))
    while b - a > tolerance:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(data, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(data, math.exp(d))
    return float(math.exp((a + b) / 2))


def reliability_points(data: CalibrationScores, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, outcome) pairs the calibration error compares: softmax, the top class's
    probability and whether it is the gold class; sigmoid, every probability and whether its
    label is present."""
    scores, gold, kind = _checked(data)
    probs = probabilities(scores, kind, temperature)
    if kind == "sigmoid":
        return probs.ravel(), gold.astype(np.float64).ravel()
    return probs.max(-1), (probs.argmax(-1) == gold.astype(int)).astype(np.float64)


def binned(confidence: np.ndarray, outcome: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """Equal-width bins over [0, 1] (bin i holds confidences in (i/bins, (i+1)/bins]; 0 goes to
    the first): per bin its count, mean confidence and mean outcome (empty bins included)."""
    index = np.clip(np.ceil(np.asarray(confidence) * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        inside = index == i
        count = int(inside.sum())
        rows.append({"low": i / bins, "high": (i + 1) / bins, "count": count,
                     "confidence": float(confidence[inside].mean()) if count else 0.0,
                     "accuracy": float(outcome[inside].mean()) if count else 0.0})
    return rows


def calibration_errors(confidence: np.ndarray, outcome: np.ndarray, bins: int = BINS) -> tuple[float, float]:
    """(ECE, MCE): the count-weighted mean and the largest |accuracy - confidence| over the
    non-empty bins."""
    rows = [r for r in binned(np.asarray(confidence, dtype=np.float64), np.asarray(outcome, dtype=np.float64),
                              bins) if r["count"]]
    total = sum(r["count"] for r in rows)
    gaps = [abs(r["accuracy"] - r["confidence"]) for r in rows]
    return (float(sum(g * r["count"] for g, r in zip(gaps, rows)) / total) if total else 0.0,
            float(max(gaps, default=0.0)))


def brier(data: CalibrationScores, temperature: float = 1.0) -> float:
    """Mean squared error of the probabilities against one-hot gold (summed over classes per
    example for softmax; per (example, label) for sigmoid)."""
    scores, gold, kind = _checked(data)
    probs = probabilities(scores, kind, temperature)
    if kind == "sigmoid":
        return float(np.mean((probs - gold) ** 2))
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(probs)), gold.astype(int)] = 1.0
    return float(np.mean(((probs - onehot) ** 2).sum(-1)))


def calibration_metrics(data: CalibrationScores, temperature: float = 1.0, bins: int = BINS) -> dict[str, Any]:
    """ECE, MCE, Brier score and NLL of the scores at `temperature`, with the number of examples."""
    data = _checked(data)
    ece, mce = calibration_errors(*reliability_points(data, temperature), bins=bins)
    return {"ece": ece, "mce": mce, "brier": brier(data, temperature), "nll": nll(data, temperature),
            "examples": int(len(data.scores))}


def fit_report(data: CalibrationScores, fitted_on: dict[str, Any]) -> dict[str, Any]:
    """A fitted temperature with the metrics before (T=1) and after, and what it was fitted on:
    the record calibration.json keeps."""
    data = _checked(data)
    temperature, note = fit_temperature(data), None
    if temperature <= LOW_T * 1.001:
        # Every example right by a wide margin: the NLL keeps falling as T -> 0, and the bound
        # would make every prediction certain on the strength of data that shows no errors.
        temperature, note = 1.0, (f"the NLL kept falling down to T = {LOW_T} (the data held no "
                                  "confident mistakes): no temperature fitted, scores stay raw")
    report = {"temperature": temperature, "kind": data.kind, "fitted_on": fitted_on,
              "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "before": calibration_metrics(data), "after": calibration_metrics(data, temperature)}
    return {**report, "note": note} if note else report


def summary_line(report: dict[str, Any]) -> str:
    """One line: the temperature and ECE (and NLL) before -> after."""
    before, after = report["before"], report["after"]
    line = (f"calibration: temperature {report['temperature']:.3f} fitted on {report['fitted_on'].get('data', '?')}; "
            f"ECE {before['ece']:.4f} -> {after['ece']:.4f}, NLL {before['nll']:.4f} -> {after['nll']:.4f}")
    return f"{line} ({report['note']})" if report.get("note") else line


def evaluation_line(report: dict[str, Any]) -> str:
    """One line for `lmtune evaluate`: ECE and NLL of the raw scores, and of the calibrated ones
    predictions give when the run has a temperature."""
    before, after = report["before"], report.get("after")
    raw = f"ECE {before['ece']:.4f}, NLL {before['nll']:.4f} raw"
    if after is None:
        return f"calibration: {raw} (no temperature: predictions give raw scores)"
    return (f"calibration: {raw}; {after['ece']:.4f}, {after['nll']:.4f} calibrated "
            f"(temperature {report['temperature']:.3f}, what predictions use)")


def format_table(report: dict[str, Any]) -> str:
    """The fit as a small table: each metric before and after, under the temperature."""
    lines = [f"temperature {report['temperature']:.4f} (fitted on {report['fitted_on'].get('data', '?')}, "
             f"{report['before']['examples']} examples)", f"{'':>6}  {'before':>8}  {'after':>8}"]
    lines += [f"{name:>6}  {report['before'][name]:8.4f}  {report['after'][name]:8.4f}"
              for name in ("ece", "mce", "brier", "nll")]
    lines += [report["note"]] if report.get("note") else []
    return "\n".join(lines)


def write_fit(run_root: Path, data: CalibrationScores, fitted_on: dict[str, Any],
              keep_previous: bool = False) -> dict[str, Any]:
    """Fit T, write <run>/calibration.json (with the previous fit's record inside it when asked)
    and <run>/reliability.png; returns the record."""
    from ..run import RunFolder

    report = fit_report(data, fitted_on)
    path = RunFolder(Path(run_root)).calibration
    if keep_previous and path.is_file():
        report["previous"] = json.loads(path.read_text())
    path.write_text(json.dumps(report, indent=1))
    reliability_diagram(data, report["temperature"], Path(run_root) / PLOT)
    return report


def read_temperature(run_root: Path) -> float | None:
    """The temperature in <run>/calibration.json; None when the run has no calibration."""
    from ..run import RunFolder

    path = RunFolder(Path(run_root)).calibration
    if not path.is_file():
        return None
    try:
        value = float(json.loads(path.read_text())["temperature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: unreadable calibration ({exc}); refit it with `lmtune calibrate "
                         f"{Path(run_root)} --data FILE`, or delete the file to use raw scores") from exc
    if not value > 0:
        raise ValueError(f"{path}: temperature {value} must be > 0; refit it with `lmtune calibrate`")
    return value


def not_calibratable(task_name: str) -> ValueError:
    """The error for a task whose scores temperature scaling cannot calibrate."""
    return ValueError(f"{task_name} runs cannot be calibrated: temperature scaling calibrates class "
                      "probabilities (classification, per-token NER tags), and this task's scores "
                      "are not one distribution over a fixed label set")


def reliability_diagram(data: CalibrationScores, temperature: float, path: Path, bins: int = BINS) -> None:
    """Accuracy against confidence per bin, before and after scaling, over the diagonal."""
    from .plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
    for t, name, color in ((1.0, "raw", "tab:red"), (temperature, f"T = {temperature:.2f}", "tab:blue")):
        points = reliability_points(data, t)
        rows = [r for r in binned(*points, bins=bins) if r["count"]]
        ece = calibration_errors(*points, bins=bins)[0]
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o-", color=color,
                label=f"{name} (ECE {ece:.3f})")
    sigmoid = data.kind == "sigmoid"
    ax.set_xlabel("predicted probability" if sigmoid else "confidence (top-class probability)")
    ax.set_ylabel("fraction positive" if sigmoid else "accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(f"Reliability ({bins} bins)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
