"""Atomic checkpoints: a crash at any point leaves the previous checkpoint usable.

A checkpoint is a folder written under a temporary name, fsynced, renamed into place, and only
then named by a pointer file (`latest.txt`, `best.txt`) that is itself replaced atomically.
Weights are safetensors; optimizer/scheduler/RNG state load with torch.load(weights_only=True),
so nothing needs unpickling of arbitrary objects. Checkpoints hold only the weights that
training changes (a LoRA checkpoint is its adapter and head, not the base model): frozen
weights are the base model's, which resume loads again.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_pointer(root: Path, pointer: str, target: str) -> None:
    tmp = root / f".{pointer}.tmp"
    with open(tmp, "w") as handle:
        handle.write(target)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / pointer)
    _fsync_dir(root)


def read_pointer(root: Path, pointer: str) -> Path | None:
    path = Path(root) / pointer
    if not path.is_file():
        return None
    target = Path(root) / path.read_text().strip()
    return target if target.is_dir() else None


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """The model's state without frozen parameters; tied tensors are stored once."""
    frozen = {name for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        if name in frozen or key in seen:
            continue
        seen.add(key)
        tensors[name] = tensor.detach().contiguous()
    save_file(tensors, str(path))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load what save_weights stored; every stored tensor must find its place in the model."""
    result = model.load_state_dict(load_file(str(path)), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{path}: weights the model does not have: {result.unexpected_keys[:5]}")


def _commit(root: Path, name: str, pointer: str, write: Any, keep: int | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    for file in tmp.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(tmp)
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_dir(root)
    _write_pointer(root, pointer, name)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int | None) -> None:
    """Keep the `keep` newest resume checkpoints (None: all of them) and the best one; remove
    the rest (older checkpoints, leftovers of a crash)."""
    named = {p.name for p in (read_pointer(root, "latest.txt"), read_pointer(root, "best.txt")) if p}
    steps = sorted(child.name for child in root.iterdir() if child.name.startswith("step-"))
    named.update(steps if keep is None else steps[-max(keep, 1):])
    for child in root.iterdir():
        if child.is_dir() and child.name not in named:
            shutil.rmtree(child, ignore_errors=True)


def save_checkpoint(root: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                    state: dict[str, Any], extra: dict[str, Any] | None = None, keep: int = 1) -> Path:
    """Everything needed to continue exactly: weights, optimizer, scheduler, RNG, data position,
    and the method's own training state (`extra`: AdaLoRA's importance statistics)."""
    def write(folder: Path) -> None:
        if extra:
            torch.save(extra, folder / "method.pt")
        save_weights(model, folder / "model.safetensors")
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(scheduler.state_dict(), folder / "scheduler.pt")
        torch.save(rng_state(), folder / "rng.pt")
        (folder / "state.json").write_text(json.dumps(state, indent=1))

    return _commit(Path(root), f"step-{state['step']:07d}", "latest.txt", write, keep)


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    load_weights(model, folder / "model.safetensors")
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    set_rng_state(torch.load(folder / "rng.pt", weights_only=True))
    return json.loads((folder / "state.json").read_text())


def load_extra(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "method.pt"
    return torch.load(path, weights_only=True) if path.is_file() else {}


def save_best(root: Path, model: torch.nn.Module, step: int, metrics: dict[str, Any]) -> Path:
    def write(folder: Path) -> None:
        save_weights(model, folder / "model.safetensors")
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))

    return _commit(Path(root), f"best-{step:07d}", "best.txt", write, keep=None)


def load_best(root: Path, model: torch.nn.Module) -> bool:
    folder = read_pointer(Path(root), "best.txt")
    if folder is None:
        return False
    load_weights(model, folder / "model.safetensors")
    return True
