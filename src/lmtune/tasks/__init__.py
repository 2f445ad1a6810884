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
    "mlm": "lmtune.tasks.mlm:MaskedLMTask",
    "clm": "lmtune.tasks.clm:CausalLMTask",
}
# Tasks that use a pretrained model as it is and cannot be trained, so they stay out of the
# every-task-trains contract above; `get_task` finds them all the same.
UNTRAINED_TASKS = {
    "prompted": "lmtune.tasks.prompted:PromptedTask",
}


def task_class(name: str) -> type[Task]:
    """The Task class registered as `name`, for what a task says before it has a config."""
    where = TASKS.get(name) or UNTRAINED_TASKS.get(name)
    if where is None:
        raise ConfigError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
    module, attribute = where.split(":")
    return getattr(importlib.import_module(module), attribute)


def get_task(cfg: Config) -> Task:
    return task_class(cfg.task)(cfg)
