"""`lmtune.load`: a run folder becomes a Predictor; a continual run folder, a predictor over
every step it has learned."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load(run_dir: str | Path, device: str | None = None, **options: Any) -> Any:
    """A Predictor for a run folder (options: backend, quantized), or a ContinualPredictor
    for a continual run folder (`predict(texts, task=...)`)."""
    from .experiments.continual.runner import is_continual_run

    if is_continual_run(run_dir):
        from .experiments.continual.predictor import load_continual

        return load_continual(run_dir, device)
    from .inference.predictor import load as load_run

    return load_run(run_dir, device, **options)
