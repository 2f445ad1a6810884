"""Methods, one module each; `get_method` imports only the one asked for."""

from __future__ import annotations

import importlib

from ..config import Config, ConfigError
from .base import Method, count_parameters

METHODS = {
    "full": "lmtune.methods.full:FullMethod",
    "freeze": "lmtune.methods.freeze:FreezeMethod",
    "lora": "lmtune.methods.adapters:LoraMethod",
    "adalora": "lmtune.methods.adapters:AdaLoraMethod",
    "ia3": "lmtune.methods.adapters:Ia3Method",
    "prefix": "lmtune.methods.adapters:PrefixMethod",
    "prompt": "lmtune.methods.adapters:PromptMethod",
    "few-shot": "lmtune.methods.few_shot:FewShotMethod",
}

__all__ = ["Method", "count_parameters", "get_method", "method_class", "METHODS"]


def method_class(name: str) -> type[Method]:
    """The Method class registered as `name`, for what a method says before it has a config."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    module, attribute = METHODS[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def get_method(cfg: Config) -> Method:
    return method_class(cfg.method.name)(cfg)
