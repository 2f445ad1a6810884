"""The process group and the Accelerator, set up here for the loop and the pipeline alike.

On CPU, Accelerate only forms a (gloo) process group when told it runs on the CPU, and its
state is a process-wide singleton fixed by the first caller, so every caller goes through here.
"""

from __future__ import annotations

from typing import Any

import torch

from .precision import Precision, resolve_precision


def process_state() -> Any:
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def decide_precision(setting: str) -> Precision:
    """One decision for all processes: the main process resolves `auto`, the others follow it
    (a measured choice could differ between processes)."""
    state = process_state()
    choice = resolve_precision(setting) if state.is_main_process else None
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        choice = broadcast_object_list([choice])[0]
    return choice


def make_accelerator(mixed_precision: str) -> Any:
    """An Accelerator for one run. Accelerate fixes the precision of its process-wide state at
    the first Accelerator and refuses another; a later run in the same process with another
    precision gets a fresh AcceleratorState (the process group, in PartialState, is kept)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    process_state()
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())


def prepare(accelerator: Any, model: Any, optimizer: Any) -> tuple[Any, Any]:
    """accelerator.prepare, without the autocast that Accelerate wraps around model.forward for
    mixed precision: the loop applies autocast to the training forward itself, and evaluation
    (in the loop, on the test split, and after reload) must run in float32 on the same object."""
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # restores the plain forward in place
    return model, optimizer
