"""Precision: `auto` follows what the hardware does, runs of any precision share a process, and
the figures a run records are the figures a reload reproduces."""

from __future__ import annotations

import json

import pytest
import torch

import lmtune
from lmtune.config import ConfigError
from lmtune.pipeline import finetune
from lmtune.training import precision as P
from conftest import tiny_config

pytestmark = pytest.mark.precision


@pytest.fixture
def cpu_only(monkeypatch, tmp_path):
    """A CPU machine with nothing forced and an empty measurement cache."""
    monkeypatch.delenv(P.ENV_AUTO, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _cpu(monkeypatch, machine: str, amx: bool = False, avx512_bf16: bool = False) -> None:
    monkeypatch.setattr(P.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)


def test_explicit_setting_is_kept():
    assert P.resolve_precision("fp16").mode == "fp16"
    assert "train.mixed_precision" in P.resolve_precision("no").reason


@pytest.mark.parametrize("forced, mode", [("bf16", "bf16"), ("no", "no"), ("fp32", "no"), ("FP16", "fp16")])
def test_environment_forces_auto(monkeypatch, forced, mode):
    monkeypatch.setenv(P.ENV_AUTO, forced)
    choice = P.resolve_precision("auto")
    assert choice.mode == mode and P.ENV_AUTO in choice.reason


def test_a_wrong_forced_value_is_a_config_error(monkeypatch):
    monkeypatch.setenv(P.ENV_AUTO, "bf61")
    with pytest.raises(ConfigError, match="LMTUNE_AUTO_PRECISION='bf61': use one of no, bf16, fp16"):
        P.resolve_precision("auto")


def test_cpu_without_native_bf16_trains_in_fp32(cpu_only, monkeypatch):
    _cpu(monkeypatch, "x86_64")
    monkeypatch.setattr(P, "measure_matmul", lambda: pytest.fail("no measurement needed"))
    choice = P.resolve_precision("auto")
    assert choice.mode == "no" and "no native bf16" in choice.reason


def test_cpu_with_amx_trains_in_bf16(cpu_only, monkeypatch):
    _cpu(monkeypatch, "x86_64", amx=True, avx512_bf16=True)
    choice = P.resolve_precision("auto")
    assert choice.mode == "bf16" and "AMX" in choice.reason


@pytest.mark.parametrize("bf16, fp32, mode", [(400.0, 200.0, "bf16"), (210.0, 200.0, "no"), (50.0, 230.0, "no")])
def test_unclear_cpu_is_measured_once_and_cached(cpu_only, monkeypatch, bf16, fp32, mode):
    _cpu(monkeypatch, "x86_64", avx512_bf16=True)  # e.g. Zen 4: AVX512-BF16 without AMX
    calls = []
    measure = lambda: calls.append(1) or (bf16, fp32)  # noqa: E731
    monkeypatch.setattr(P, "measure_matmul", measure)
    first, second = P.resolve_precision("auto"), P.resolve_precision("auto")
    assert first == second and first.mode == mode and len(calls) == 1
    assert f"bf16 {bf16:.0f} vs fp32 {fp32:.0f} GFLOP/s" in first.reason


def test_machine_without_proc_cpuinfo_decides_the_same_way(cpu_only, monkeypatch):
    """macOS / ARM: no /proc/cpuinfo and no x86 flags; the measurement decides."""
    import builtins

    real_open = builtins.open

    def no_cpuinfo(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    _cpu(monkeypatch, "arm64")
    monkeypatch.setattr(P, "measure_matmul", lambda: (90.0, 100.0))
    choice = P.resolve_precision("auto")
    assert choice.mode == "no" and "ARM" in choice.reason and "not faster" in choice.reason


@pytest.mark.parametrize("native, mode", [(True, "bf16"), (False, "fp16")])
def test_gpu_uses_bf16_only_where_native(monkeypatch, native, mode):
    monkeypatch.delenv(P.ENV_AUTO, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    asked = {}

    def supported(including_emulation=True):
        asked["including_emulation"] = including_emulation
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert P.resolve_precision("auto").mode == mode and asked == {"including_emulation": False}


def test_the_real_measurement_gives_two_speeds():
    bf16, fp32 = P.measure_matmul(size=64, repeats=2)
    assert bf16 > 0 and fp32 > 0


def test_runs_of_different_precisions_share_a_process(tiny_model, toy_data, tmp_path):
    """Accelerate fixes its precision at the first Accelerator; each run must still get its own."""
    for i, mode in enumerate(["no", "bf16", "no"]):
        cfg = tiny_config(tiny_model, toy_data, tmp_path, max_steps=3, eval_strategy="steps", eval_steps=3,
                          mixed_precision=mode, run_name=f"run{i}")
        run = finetune(cfg, quiet=True)
        metrics = json.loads(run.metrics.read_text())
        assert metrics["training"]["precision"] == mode
        assert metrics["training"]["evaluation_precision"] == "fp32"
        assert metrics["training"]["precision_reason"] == "set in the config (train.mixed_precision)"
        reloaded = lmtune.evaluate(run.root, toy_data["validation"], quiet=True)
        assert reloaded["accuracy"] == pytest.approx(metrics["validation"]["accuracy"], rel=1e-6)


def test_auto_choice_and_reason_are_recorded(tiny_model, toy_data, tmp_path, monkeypatch):
    monkeypatch.setenv(P.ENV_AUTO, "bf16")
    cfg = tiny_config(tiny_model, toy_data, tmp_path, max_steps=2, eval_strategy="no")
    training = json.loads(finetune(cfg, quiet=True).metrics.read_text())["training"]
    assert training["precision"] == "bf16"
    assert training["precision_reason"] == "auto forced by LMTUNE_AUTO_PRECISION=bf16"
