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


DECODER_TASKS = {"generation", "clm"}  # trained on the tiny Llama; prefix tuning needs its past key values
# The pretraining tasks share every method's code path with the others: full fine-tuning, an adapter
# and the two refusals cover what is theirs, and keep the suite's time in bounds.
PRETRAINING_METHODS = {"full", "lora", "prefix", "few-shot"}
PAIRS = [(task, method) for task in sorted(TASKS) for method in sorted(METHODS)
         if task not in ("mlm", "clm") or method in PRETRAINING_METHODS]


@pytest.mark.parametrize("task, method", PAIRS)
def test_train_save_reload_gives_the_training_time_scores(task, method, tiny_model, tiny_llama, toy_data,
                                                           ner_data, qa_data, gen_data, tmp_path):
    data = {"ner": ner_data, "qa": qa_data, "generation": gen_data}.get(task, toy_data)
    model = tiny_llama if task in DECODER_TASKS else tiny_model
    cfg = tiny_config(model, data, tmp_path, max_steps=4, eval_strategy="steps", eval_steps=4)
    cfg.task, cfg.method.name = task, method
    if method == "freeze":
        cfg.method.freeze_layers = 1
    if method == "prefix" and task not in DECODER_TASKS:  # transformers 5 encoders take no past key values
        with pytest.raises(ConfigError, match="prefix tuning needs a model that takes past key values"):
            finetune(cfg, quiet=True)
        return
    if method == "few-shot" and task != "classification":  # a sentence classifier: classes to score
        with pytest.raises(ConfigError, match=f"--task {task} has no classes to score"):
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


ADVERSARIAL_PAIRS = [(task, method) for task, method in PAIRS
                     if not (method == "prefix" and task not in DECODER_TASKS)  # refused above, before training
                     and not (method == "few-shot" and task != "classification")]


@pytest.mark.parametrize("task, method", ADVERSARIAL_PAIRS)
def test_adversarial_training_trains_saves_and_reloads(task, method, tiny_model, tiny_llama, toy_data, ner_data,
                                                       qa_data, gen_data, tmp_path):
    """--robust.adversarial fgm perturbs the input embeddings of every task x method (adapters
    and virtual tokens included): the adversary runs every step and the run reloads."""
    from lmtune.training.checkpoint import load_extra, read_pointer

    data = {"ner": ner_data, "qa": qa_data, "generation": gen_data}.get(task, toy_data)
    cfg = tiny_config(tiny_llama if task in DECODER_TASKS else tiny_model, data, tmp_path, max_steps=2,
                      eval_strategy="steps", eval_steps=2, keep_checkpoints=True)
    cfg.task, cfg.method.name, cfg.robust.adversarial = task, method, "fgm"
    cfg.method.freeze_layers = 1 if method == "freeze" else 0
    run = finetune(cfg, quiet=True)
    training = json.loads(run.metrics.read_text())["training"]
    assert training["adversarial"] == "fgm" and training["steps"] == 2
    (adversary,) = load_extra(read_pointer(run.checkpoints, "latest.txt"))["loss_terms"]
    assert adversary == {"adversarial_batches": 2}
    pairs = [QA_CONTEXT, QA_CONTEXT] if task == "qa" else None
    assert len(lmtune.load(run.root).predict(["alice visited paris", "where did bob go ?"], pairs)) == 2
