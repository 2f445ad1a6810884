"""Tasks, one module each; `get_task` imports only the one asked for."""

from __future__ import annotations

import importlib

from ..config import Config, ConfigError
from .base import Task

TASKS = {
    "classification": "lmtune.tasks.classification:ClassificationTask",
    "ner": "lmtune.tasks.ner:NerTask",
    "qa": "lmtune.tasks.qa:QuestionAnsweringTask",
    "generation": "lmtune.tasks.generation:GenerationTask",
}


def get_task(cfg: Config) -> Task:
    if cfg.task not in TASKS:
        raise ConfigError(f"unknown task {cfg.task!r}; available: {', '.join(TASKS)}")
    module, name = TASKS[cfg.task].split(":")
    return getattr(importlib.import_module(module), name)(cfg)
