"""Plots for the run folder: learning curve and confusion matrix (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(log_rows: list[dict], path: str | Path, metric: str) -> None:
    """Training loss by step, with the evaluation loss and the selection metric alongside."""
    plt = _pyplot()
    train = [(r["step"], r["loss"]) for r in log_rows if r.get("kind") == "train"]
    evals = [r for r in log_rows if r.get("kind") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue", alpha=0.8)
    if evals and all("loss" in r for r in evals):
        ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="eval loss",
                color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if evals and all(metric in r for r in evals):
        twin = ax.twinx()
        twin.plot([r["step"] for r in evals], [r[metric] for r in evals], "s--", color="tab:green",
                  label=f"eval {metric}")
        twin.set_ylabel(metric)
        twin.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.set_title("Learning curve")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path,
                     title: str = "Confusion matrix") -> None:
    plt = _pyplot()
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > peak / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
