"""Contract: every task x every method trains, saves, and reloads to the same predictions."""

from __future__ import annotations

import json

import pytest

import lmtune
from lmtune.config import ConfigError
from lmtune.methods import METHODS
from lmtune.pipeline import finetune
from lmtune.tasks import TASKS
from conftest import QA_CONTEXT, tiny_config

pytestmark = pytest.mark.precision


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_train_save_reload_gives_the_training_time_scores(task, method, tiny_model, tiny_llama, toy_data,
                                                           ner_data, qa_data, gen_data, tmp_path):
    data = {"ner": ner_data, "qa": qa_data, "generation": gen_data}.get(task, toy_data)
    model = tiny_llama if task == "generation" else tiny_model
    cfg = tiny_config(model, data, tmp_path, max_steps=4, eval_strategy="steps", eval_steps=4)
    cfg.task, cfg.method.name = task, method
    if method == "freeze":
        cfg.method.freeze_layers = 1
    if method == "prefix" and task != "generation":  # transformers 5 encoders take no past key values
        with pytest.raises(ConfigError, match="prefix tuning needs a model that takes past key values"):
            finetune(cfg, quiet=True)
        return
    run = finetune(cfg, quiet=True)
    recorded = json.loads(run.metrics.read_text())["validation"]
    reloaded = lmtune.evaluate(run.root, data["validation"], quiet=True)
    # Whatever precision `auto` trained in, evaluation runs in float32 on both sides.
    assert set(recorded) - {"loss"} <= set(reloaded)
    for key, value in recorded.items():
        if key != "loss":  # the training-time loss has no counterpart in `evaluate`
            assert reloaded[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
    texts = ["alice visited paris", "where did bob go ?"]
    pairs = [QA_CONTEXT, QA_CONTEXT] if task == "qa" else None
    predictions = lmtune.load(run.root).predict(texts, pairs)
    assert len(predictions) == 2
