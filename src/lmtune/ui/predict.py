"""The Try it page's model: a run's predictor, loaded on first use (lmtune.load) and kept for
the next request, and its prediction with attributions where `lmtune explain` can give them."""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path
from typing import Any

# Loaded models are large: keep the last few only.
KEPT_MODELS = 2
_lock = threading.Lock()  # one prediction at a time: an explanation hooks the model while it runs


@functools.lru_cache(maxsize=KEPT_MODELS)
def _predictor(folder: str, stamp: int) -> Any:
    """The predictor of a run folder; `stamp` (the model's mtime) reloads a retrained run."""
    from ..inference.predictor import load

    return load(folder)


def predictor(run: Path) -> Any:
    try:
        stamp = (run / "model").stat().st_mtime_ns
    except OSError:
        raise FileNotFoundError(f"{run}: no model/ folder (the run has not finished, or its model was "
                                "removed): nothing to predict with") from None
    return _predictor(str(run), stamp)


def try_it(run: Path, text: str, pair: str | None, explain: bool) -> dict[str, Any]:
    """{"prediction": JSON text, "explanation": HTML page or None, "explain_note": why not}."""
    model = predictor(run)
    with _lock:
        prediction = model.predict([text], [pair] if pair else None)[0]
    result: dict[str, Any] = {"prediction": json.dumps(prediction, indent=1, default=_plain),
                              "explanation": None, "explain_note": ""}
    if explain:
        try:
            from ..inference.explain import explain as attribute, to_html

            with _lock:
                result["explanation"] = to_html(attribute(model, [text], [pair] if pair else None))
        except (ImportError, ValueError, RuntimeError) as exc:  # no captum, or a task it cannot explain
            result["explain_note"] = f"no attributions: {exc}"
    return result


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)
