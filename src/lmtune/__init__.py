"""lmtune: fine-tune pretrained language models on NLP tasks, from labeled data to a served model.

    run = lmtune.finetune(config)        # train; returns the run folder
    model = lmtune.load(run.root)        # a Predictor
    model.predict(["great film"])        # labels with probabilities
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Config", "finetune", "evaluate", "load", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import lmtune` stays cheap (no torch/transformers until they are needed).
    if name == "Config":
        from .config import Config

        return Config
    if name in ("finetune", "evaluate"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "load":
        from .loading import load

        return load
    raise AttributeError(f"module 'lmtune' has no attribute {name!r}")
