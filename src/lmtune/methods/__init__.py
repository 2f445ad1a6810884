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
}

__all__ = ["Method", "count_parameters", "get_method", "METHODS"]


def get_method(cfg: Config) -> Method:
    if cfg.method.name not in METHODS:
        raise ConfigError(f"unknown method {cfg.method.name!r}; available: {', '.join(METHODS)}")
    module, name = METHODS[cfg.method.name].split(":")
    return getattr(importlib.import_module(module), name)(cfg)
