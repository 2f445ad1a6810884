"""Decide the training precision once, from what the hardware really does, and say why.

`auto` means:
- `LMTUNE_AUTO_PRECISION` set (no | bf16 | fp16): that, whatever the machine (the test suite
  uses it to run bf16 on machines without it, and fp32 on machines with it);
- CUDA: bf16 where the GPU computes it natively, else fp16;
- CPU: fp32 unless torch reports native bf16 instructions. AMX is clearly faster; AVX512-BF16
  alone, ARM bf16 and CPUs torch cannot describe are measured once (a short bf16-vs-fp32
  matmul timing, cached per CPU and torch version) and get bf16 only where it is faster.
  Emulated bf16 runs several times slower than fp32 (measured here: 55 vs 235 GFLOP/s).

Only training uses the choice: evaluation and prediction always run in float32, so the
figures a run records are the figures `lmtune evaluate` reproduces on any machine.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

ENV_AUTO = "LMTUNE_AUTO_PRECISION"
MODES = ("no", "bf16", "fp16")
EVAL_PRECISION = "fp32"  # evaluation and prediction, whatever the training precision
_ALIASES = {"fp32": "no", "float32": "no", "none": "no", "bfloat16": "bf16", "float16": "fp16"}
SPEEDUP_NEEDED = 1.15  # bf16 must beat fp32 by this factor to be chosen on a measured CPU


@dataclass(frozen=True)
class Precision:
    mode: str  # no | bf16 | fp16 (Accelerate's names)
    reason: str


def resolve_precision(setting: str) -> Precision:
    """The precision a run trains in: `setting` itself, or what `auto` resolves to here."""
    if setting != "auto":
        return Precision(setting, "set in the config (train.mixed_precision)")
    forced = os.environ.get(ENV_AUTO, "").strip().lower()
    if forced:
        mode = _ALIASES.get(forced, forced)
        if mode not in MODES:
            from ..config import ConfigError

            raise ConfigError(f"{ENV_AUTO}={forced!r}: use one of no, bf16, fp16 (or unset it)")
        return Precision(mode, f"auto forced by {ENV_AUTO}={forced}")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return Precision("bf16", f"auto: {name} computes bf16 natively")
        return Precision("fp16", f"auto: {name} has no native bf16")
    return cpu_precision()


def cpu_precision(measure: Callable[[], tuple[float, float]] | None = None) -> Precision:
    """auto on a CPU: torch's capability check, then a cached measurement where it is unclear."""
    capability = _cpu_bf16_capability()
    if capability == "amx":
        return Precision("bf16", "auto: the CPU has AMX bf16 tiles (torch.cpu)")
    if capability == "none":
        return Precision("no", "auto: torch reports no native bf16 on this CPU (no AVX512-BF16/AMX)")
    bf16, fp32 = _cached_measurement(measure or measure_matmul)
    faster = bf16 >= SPEEDUP_NEEDED * fp32
    verdict = "faster" if faster else "not faster"
    return Precision("bf16" if faster else "no",
                     f"auto: {capability}; measured bf16 {bf16:.0f} vs fp32 {fp32:.0f} GFLOP/s ({verdict})")


def _cpu_bf16_capability() -> str:
    """'amx' | 'avx512_bf16' | 'arm bf16?' | 'unknown CPU' | 'none', from torch's own checks."""
    check = lambda name: bool(getattr(torch.cpu, name, lambda: False)())  # noqa: E731
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i686"):
        if not hasattr(torch.cpu, "_is_amx_tile_supported"):
            return "unknown CPU (torch has no capability check)"
        if check("_is_amx_tile_supported"):
            return "amx"
        return "avx512_bf16" if check("_is_avx512_bf16_supported") else "none"
    if machine in ("arm64", "aarch64"):
        return "ARM CPU (bf16 support varies)"
    return f"unknown CPU ({machine or 'no machine name'})"


def measure_matmul(size: int = 512, repeats: int = 6) -> tuple[float, float]:
    """GFLOP/s of a size x size matmul in bf16 and in fp32 (best of `repeats`)."""
    results = []
    for dtype in (torch.bfloat16, torch.float32):
        a = torch.randn(size, size, dtype=dtype)
        b = torch.randn(size, size, dtype=dtype)
        torch.mm(a, b)  # warm-up (kernel selection)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        results.append(2 * size**3 / best / 1e9)
    return results[0], results[1]


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "lmtune" / "precision.json"


def _cpu_key() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle
                          if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _cached_measurement(measure: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    """One measurement per CPU, torch version and thread count; a cache that cannot be read or
    written only costs a new measurement."""
    path, key = _cache_file(), _cpu_key()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache.get(key), list) and len(cache[key]) == 2:
        return float(cache[key][0]), float(cache[key][1])
    bf16, fp32 = measure()
    cache[key] = [bf16, fp32]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=1))
    except OSError:
        pass
    return bf16, fp32
