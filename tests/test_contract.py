"""Contract: every task x every method trains, saves, and reloads to the same predictions."""

from __future__ import annotations

import json

import pytest

import lmtune
from lmtune.methods import METHODS
from lmtune.pipeline import finetune
from lmtune.tasks import TASKS
from conftest import QA_CONTEXT, tiny_config


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_train_save_reload_gives_the_training_time_scores(task, method, tiny_model, toy_data, ner_data,
                                                           qa_data, tmp_path):
    data = {"ner": ner_data, "qa": qa_data}.get(task, toy_data)
    cfg = tiny_config(tiny_model, data, tmp_path, max_steps=4, eval_strategy="steps", eval_steps=4)
    cfg.task, cfg.method.name = task, method
    if method == "freeze":
        cfg.method.freeze_layers = 1
    run = finetune(cfg, quiet=True)
    recorded = json.loads(run.metrics.read_text())["validation"]
    reloaded = lmtune.evaluate(run.root, data["validation"], quiet=True)
    for key, value in recorded.items():
        if key != "loss":
            assert reloaded[key] == pytest.approx(value, abs=1e-9), key
    texts = ["alice visited paris", "the film was good"]
    pairs = [QA_CONTEXT, QA_CONTEXT] if task == "qa" else None
    predictions = lmtune.load(run.root).predict(texts, pairs)
    assert len(predictions) == 2
