"""Atomic checkpoints: a crash at any point leaves the previous checkpoint usable.

A checkpoint is a folder written under a temporary name, fsynced, renamed into place, and only
then named by a pointer file (`latest.txt`, `best.txt`) that is itself replaced atomically.
Weights are safetensors; optimizer/scheduler/RNG state load with torch.load(weights_only=True),
so nothing needs unpickling of arbitrary objects. Checkpoints hold only the weights that
training changes (an adapter checkpoint holds the adapter and head, not the base model): frozen
weights are the base model's, which resume loads again.

With several processes only the main process writes checkpoints, and nodes need not share a
filesystem: the load functions are collective (every process calls them), the main process
reads the folder and broadcasts its bytes, and each process restores its own RNG state.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

from .distributed import from_main, rank_and_world

CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json")


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
    _load_tensors(model, load_file(str(path)), path)


def _load_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path | str) -> None:
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{source}: weights the model does not have: {result.unexpected_keys[:5]}")


def gather_rng_states() -> list[dict[str, Any]] | None:
    """Every process's RNG state, in rank order, on the main process (None on the others).
    Collective: call it on every process just before the main process saves, and pass the
    result to save_checkpoint; dropout masks differ by rank, so each rank's state is kept."""
    rank, world = rank_and_world()
    if world == 1:
        return [rng_state()]
    import torch.distributed as dist

    states: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(rng_state(), states, dst=0)
    return states


def _own_rng_state(saved: dict[str, Any]) -> dict[str, Any]:
    """This process's state from rng.pt. A checkpoint of one process (or of another process
    count, which cannot continue exactly anyway) gives every process the main process's state."""
    states = saved.get("ranks", [saved])
    rank, world = rank_and_world()
    return states[rank] if len(states) == world else states[0]


def _read_files(folder: Path | None, required: Sequence[str],
                optional: Sequence[str] = ()) -> dict[str, bytes]:
    if folder is None or not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: no such checkpoint folder")
    missing = [name for name in required if not (Path(folder) / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: incomplete checkpoint, missing {', '.join(missing)}")
    return {name: (Path(folder) / name).read_bytes() for name in (*required, *optional)
            if (Path(folder) / name).is_file()}


def _torch_bytes(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), weights_only=True)


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
                    state: dict[str, Any], extra: dict[str, Any] | None = None, keep: int = 1,
                    rng_states: list[dict[str, Any]] | None = None) -> Path:
    """Everything needed to continue exactly: weights, optimizer, scheduler, RNG, data position,
    and the method's and loss terms' own state (`extra`).
    `rng_states`: every process's RNG state (gather_rng_states); without it, this process's."""
    def write(folder: Path) -> None:
        if extra:
            torch.save(extra, folder / "method.pt")
        save_weights(model, folder / "model.safetensors")
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(scheduler.state_dict(), folder / "scheduler.pt")
        torch.save({"ranks": rng_states or [rng_state()]}, folder / "rng.pt")
        (folder / "state.json").write_text(json.dumps(state, indent=1))

    return _commit(Path(root), f"step-{state['step']:07d}", "latest.txt", write, keep)


def load_checkpoint(folder: Path | None, model: torch.nn.Module, optimizer: Any,
                    scheduler: Any) -> dict[str, Any]:
    """Restore what save_checkpoint wrote; returns the loop state. Collective with several
    processes: the main process reads `folder` and broadcasts it, so another process's `folder`
    may be None or absent from its node (nodes that share no filesystem)."""
    files = from_main(lambda: _read_files(folder, CHECKPOINT_FILES))
    _load_tensors(model, load_bytes(files["model.safetensors"]), folder or "checkpoint")
    optimizer.load_state_dict(_torch_bytes(files["optimizer.pt"]))
    scheduler.load_state_dict(_torch_bytes(files["scheduler.pt"]))
    set_rng_state(_own_rng_state(_torch_bytes(files["rng.pt"])))
    return json.loads(files["state.json"])


def load_extra(folder: Path | None) -> dict[str, Any]:
    """The method's own training state, {} if none was saved; collective like load_checkpoint."""
    files = from_main(lambda: _read_files(folder, (), ("method.pt",)))
    return _torch_bytes(files["method.pt"]) if "method.pt" in files else {}


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
