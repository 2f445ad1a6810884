"""The continual-learning report: what an accuracy matrix says about learning and forgetting.

`R[i][j]` is the metric on step j's test set after training step i (i, j = 0..T-1). The lower
triangle and diagonal measure retention; the cell just above the diagonal, `R[j-1][j]`, measures
how much earlier steps helped a step not yet trained on (forward transfer). Cells that were not
computed are None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

Matrix = Sequence[Sequence[float | None]]

# (key in transfer_metrics / a comparison row, label a reader sees)
SUMMARY = (("average_accuracy", "average accuracy"), ("backward_transfer", "BWT"),
           ("forgetting", "forgetting"), ("forward_transfer", "FWT"))


def _mean(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _check_matrix(R: Matrix) -> int:
    """T, after checking that R is square with its diagonal and last row present: every metric
    needs them, and a hole there means a step's evaluation was skipped."""
    T = len(R)
    if T == 0:
        raise ValueError("accuracy matrix is empty: it needs one row per trained step")
    for i, row in enumerate(R):
        if len(row) != T:
            raise ValueError(f"accuracy matrix row {i} has {len(row)} entries, expected {T} "
                             f"(one per step): the matrix must be T x T")
    for j in range(T):
        if R[j][j] is None:
            raise ValueError(f"accuracy matrix entry R[{j}][{j}] (step {j} on its own test set, "
                             "right after training it) is missing: evaluate each step after it trains")
        if R[T - 1][j] is None:
            raise ValueError(f"accuracy matrix entry R[{T - 1}][{j}] (step {j} after the last step) "
                             "is missing: evaluate every step's test set after the last step")
    return T


def _forward_transfer(R: Matrix, baseline: Sequence[float | None] | None) -> float | None:
    """GEM's FWT: how much better than the baseline (e.g. an untrained model) a step scores
    before it is trained, thanks to the earlier steps."""
    if baseline is None:
        return None
    if len(baseline) != len(R):
        raise ValueError(f"baseline has {len(baseline)} entries, expected {len(R)} (one per step)")
    gains = [R[j - 1][j] - baseline[j] for j in range(1, len(R))
             if R[j - 1][j] is not None and baseline[j] is not None]
    return _mean(gains)


def transfer_metrics(R: Matrix, baseline: Sequence[float | None] | None = None) -> dict[str, Any]:
    """Average accuracy, BWT (Lopez-Paz & Ranzato 2017; negative = forgetting), forgetting
    (Chaudhry et al. 2018) and FWT (GEM; needs `baseline[j]`, the score on step j without
    training on any step) from the accuracy matrix."""
    T = _check_matrix(R)
    last = R[T - 1]
    earlier = range(T - 1)
    return {
        "average_accuracy": _mean(last),
        "average_accuracy_per_step": [_mean(R[i][: i + 1]) for i in range(T)],
        "learning_accuracy": _mean([R[j][j] for j in range(T)]),
        "backward_transfer": _mean([last[j] - R[j][j] for j in earlier]),
        "forgetting": _mean([max(R[i][j] for i in range(j, T - 1) if R[i][j] is not None) - last[j]
                             for j in earlier]),
        "forward_transfer": _forward_transfer(R, baseline),
    }


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")  # free text must not split a Markdown cell


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def format_matrix(R: Matrix, names: Sequence[str], title: str = "",
                  baseline: Sequence[float | None] | None = None) -> str:
    """The matrix as a table (plain text that is also Markdown) and the summary metrics below it."""
    T = _check_matrix(R)
    if len(names) != T:
        raise ValueError(f"{len(names)} step names for a {T} x {T} accuracy matrix: give one name per step")
    rows = [[f"after {names[i]}", *("" if v is None else f"{v:.4f}" for v in R[i])] for i in range(T)]
    lines = [f"## {title}", ""] if title else []
    lines += _markdown(["trained \\ tested", *names], rows)
    metrics = transfer_metrics(R, baseline)
    lines += [""] + [f"- {label}: {_number(metrics[key])}" for key, label in SUMMARY]
    return "\n".join(lines) + "\n"


def comparison_table(rows: dict[str, dict[str, Any]]) -> str:
    """Strategies side by side (Markdown): what each kept of earlier steps, and at what cost in
    time, memory and storage. A value a strategy lacks prints as n/a."""
    columns = [*SUMMARY, ("seconds", "training seconds"), ("peak_rss_mb", "peak memory MB"),
               ("stored", "stored")]
    digits = {"seconds": 1, "peak_rss_mb": 1}
    body = [[name, *(_number(values.get(key), digits.get(key, 4)) for key, _ in columns)]
            for name, values in rows.items()]
    return "\n".join(_markdown(["strategy", *(label for _, label in columns)], body)) + "\n"


def heatmap(R: Matrix, names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """The matrix as an annotated heatmap PNG; cells not computed are grey and blank."""
    import numpy as np

    from ...evaluation.plots import _pyplot

    T = _check_matrix(R)
    if len(names) != T:
        raise ValueError(f"{len(names)} step names for a {T} x {T} accuracy matrix: give one name per step")
    plt = _pyplot()
    values = np.ma.masked_invalid(np.array([[np.nan if v is None else v for v in row] for row in R], float))
    low, high = min(0.0, float(values.min())), max(1.0, float(values.max()))
    cmap = plt.get_cmap("Blues").with_extremes(bad="lightgrey")
    size = max(4.0, 0.8 * T + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(values, cmap=cmap, vmin=low, vmax=high)
    ax.set_xticks(range(T), labels=list(names), rotation=45, ha="right")
    ax.set_yticks(range(T), labels=[f"after {name}" for name in names])
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained through")
    middle = (low + high) / 2
    for i, row in enumerate(R):
        for j, value in enumerate(row):
            if value is not None:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center",
                        color="white" if value > middle else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(title or "Accuracy after each step")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
