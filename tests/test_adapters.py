"""PEFT methods: adapter-only run folders, merged export, a base shared between adapter runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

import lmtune
from lmtune.pipeline import finetune
from lmtune.training.callbacks import Callback
from conftest import tiny_config

TEXTS = ["the film was good", "really dull plot", "a superb story and very lovely acting", "bad"]
REPO = Path(__file__).parents[1]


def train_adapter(method: str, tiny_model, data, out, task: str = "classification", **train):
    cfg = tiny_config(tiny_model, data, out, **{"epochs": 4, **train})
    cfg.task, cfg.method.name, cfg.train.run_name = task, method, f"{task}-{method}"
    cfg.train.learning_rate = 1e-2
    return finetune(cfg, quiet=True)


@pytest.fixture(scope="module")
def lora_run(tiny_model, toy_data, tmp_path_factory):
    return train_adapter("lora", tiny_model, toy_data, tmp_path_factory.mktemp("runs"), epochs=12)


def probabilities(predictions) -> np.ndarray:
    return np.array([[p["probabilities"][label] for label in ("neg", "pos")] for p in predictions])


def test_run_folder_keeps_the_adapter_and_head_only(lora_run):
    files = {p.name for p in lora_run.model.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "task_config.json"} <= files
    assert "model.safetensors" not in files
    with safe_open(str(lora_run.model / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and all("lora_" in k or ".classifier." in k or ".pooler." in k for k in keys), keys
    recorded = json.loads(lora_run.metrics.read_text())["parameters"]
    assert 0 < recorded["trainable"] < recorded["total"] / 2
    # A random tiny base gives adapters little to work with; full fine-tuning gets 1.0 here.
    assert json.loads(lora_run.metrics.read_text())["validation"]["accuracy"] >= 0.85


def test_adapter_checkpoints_hold_what_trains_not_the_base(tiny_model, toy_data, tmp_path):
    """A LoRA checkpoint is its adapter and head (resume reloads the frozen base)."""
    run = train_adapter("lora", tiny_model, toy_data, tmp_path, epochs=1, keep_checkpoints=True)
    latest = run.checkpoints / (run.checkpoints / "latest.txt").read_text()
    with safe_open(str(latest / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and all("lora_" in k or "classifier" in k or "pooler" in k for k in keys), keys
    assert not any("word_embeddings" in k or "attention.self.query.base_layer" in k for k in keys)


def test_a_lora_targeted_pooler_is_adapted_not_trained_whole(tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path, epochs=1)
    cfg.method.name, cfg.lora.target_modules = "lora", "query,value,pooler.dense"
    run = finetune(cfg, quiet=True)
    with safe_open(str(run.model / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    pooler = [k for k in keys if ".pooler." in k]
    assert pooler and all("lora_" in k for k in pooler), pooler
    assert any(".classifier." in k and "lora_" not in k for k in keys)  # the head still trains whole


def test_adapter_changes_the_model_and_reload_is_exact(lora_run, toy_data):
    model = lmtune.load(lora_run.root)
    tuned = probabilities(model.predict(TEXTS))
    with model.model.disable_adapter():
        base = probabilities(model.predict(TEXTS))
    assert np.abs(tuned - base).max() > 1e-3  # the adapter (not just the head) matters


@pytest.mark.parametrize("method", ["lora", "ia3", "adalora"])
def test_merged_export_predicts_like_the_adapter(method, tiny_model, toy_data, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmtune.cli import main

    run = train_adapter(method, tiny_model, toy_data, tmp_path)
    assert main(["export", str(run.root), "--merge"]) == 0
    merged = AutoModelForSequenceClassification.from_pretrained(str(run.root / "merged")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run.root / "merged"))
    assert merged.config.id2label == {0: "neg", 1: "pos"}
    assert not any("lora" in name or "ia3" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        plain = merged(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.softmax(-1).numpy()
    # the raw scores: plain transformers knows nothing of the run's temperature (calibration.json)
    np.testing.assert_allclose(plain, probabilities(lmtune.load(run.root, calibrated=False).predict(TEXTS)), atol=1e-4)


def test_prompt_methods_cannot_be_merged(tiny_model, toy_data, tmp_path):
    from lmtune.config import ConfigError
    from lmtune.export import export_merged

    run = train_adapter("prompt", tiny_model, toy_data, tmp_path, epochs=1)
    with pytest.raises(ConfigError, match="cannot be merged"):
        export_merged(run.root)


def test_two_adapter_runs_share_one_base(lora_run, tiny_model, toy_data, ner_data, tmp_path):
    alone = probabilities(lmtune.load(lora_run.root).predict(TEXTS))
    ner_run = train_adapter("ia3", tiny_model, ner_data, tmp_path, task="ner", epochs=1)
    first, second = lmtune.load(lora_run.root), lmtune.load(ner_run.root)

    def embedding(predictor):
        return predictor.model.get_base_model().get_input_embeddings().weight

    assert embedding(first).data_ptr() == embedding(second).data_ptr()  # one copy in memory
    assert second.predict(["alice visited paris"])[0]["tags"]
    np.testing.assert_allclose(probabilities(first.predict(TEXTS)), alone, atol=1e-6)


class Crash(Callback):
    """Interrupts training once step `at` has been logged (the checkpoint before it survives)."""

    def __init__(self, at: int):
        self.at = at

    def on_step(self, row, loop_state):
        if row["step"] == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_adapter_run_resumes_exactly(method, tiny_model, toy_data, tmp_path):
    """Interrupted after step 15 (checkpoint at 14) and resumed: the weights of an uninterrupted run."""
    whole = train_adapter(method, tiny_model, toy_data, tmp_path / "a")
    cfg = tiny_config(tiny_model, toy_data, tmp_path / "b", epochs=4)
    cfg.method.name, cfg.train.learning_rate, cfg.train.run_name = method, 1e-2, "interrupted"
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, quiet=True, callbacks=[Crash(15)])
    resumed = finetune(None, resume=tmp_path / "b" / "interrupted", quiet=True)
    with safe_open(str(whole.model / "adapter_model.safetensors"), "pt") as a, \
            safe_open(str(resumed.model / "adapter_model.safetensors"), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        for key in a.keys():
            torch.testing.assert_close(a.get_tensor(key), b.get_tensor(key), rtol=0, atol=1e-6)


@pytest.mark.integration
def test_packaged_minilm_adapter_reloads_offline_from_the_package(tmp_path):
    """An adapter run reloads from the installed base package alone: no network, and not the
    folder recorded at training time."""
    from lmtune.config import Config

    cfg = Config.from_yaml(REPO / "examples" / "demo.yaml")
    cfg.method.name = "lora"
    cfg.train.max_steps, cfg.train.eval_strategy = 3, "no"
    cfg.train.output_dir, cfg.train.progress = str(tmp_path), False
    cfg.data.train, cfg.data.validation = str(REPO / cfg.data.train), None
    run = finetune(cfg, quiet=True)
    texts = ["a joy to watch", "a chore to sit through"]
    expected = [p["probabilities"]["positive"] for p in lmtune.load(run.root).predict(texts)]
    adapter_config = run.model / "adapter_config.json"
    settings = json.loads(adapter_config.read_text())
    settings["base_model_name_or_path"] = "/nowhere/minilm"
    adapter_config.write_text(json.dumps(settings))
    script = (f"import lmtune, json; p = lmtune.load({str(run.root)!r}).predict({texts!r}); "
              "print(json.dumps([x['probabilities']['positive'] for x in p]))")
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == pytest.approx(expected, abs=1e-6)
    size = (run.model / "adapter_model.safetensors").stat().st_size
    assert size < 0.05 * 90e6  # the full MiniLM weights are ~90 MB
