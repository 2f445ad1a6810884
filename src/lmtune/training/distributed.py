"""The process group, set up once per process for the loop and the pipeline alike.

On CPU, Accelerate only forms a (gloo) process group when told it runs on the CPU, and its
state is a singleton fixed by the first caller, so every caller goes through here.
"""

from __future__ import annotations

from typing import Any

import torch


def process_state() -> Any:
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def make_accelerator(mixed_precision: str) -> Any:
    from accelerate import Accelerator

    process_state()
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())
