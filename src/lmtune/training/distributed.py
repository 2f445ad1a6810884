"""The process group and the Accelerator, set up here for the loop and the pipeline alike.

On CPU, Accelerate only forms a (gloo) process group when told it runs on the CPU, and its
state is a process-wide singleton fixed by the first caller, so every caller goes through here.
Also here: `from_main` (what only the main process can read, shared with the others: nodes need
not share a filesystem) and `evaluate_sharded` (evaluation split across processes, gathered).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch

from .batching import shard
from .hooks import Feature
from .precision import Precision, resolve_precision


def process_state() -> Any:
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def end_processes() -> None:
    """Close the process group once every process is done with it (the end of a command). Left
    to the interpreter's teardown, its threads can abort a process that finished its work
    ("terminate called without an active exception", exit code -6)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


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


# ---- what only the main process can do, and evaluation split across processes ----------------
T = TypeVar("T")
EvalOutputs = tuple[list[np.ndarray], float, int]  # per-feature outputs, summed loss, examples counted


def rank_and_world() -> tuple[int, int]:
    """This process's global rank and the process count; (0, 1) without a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def from_main(compute: Callable[[], T]) -> T:
    """`compute()` run on the main process only, its result on every process. For what only the
    main process can see (the run folder: nodes need not share a filesystem). If it raises, every
    process raises (the main process its own error), so none waits for the others forever."""
    rank, world = rank_and_world()
    if world == 1:
        return compute()
    import torch.distributed as dist

    outcome: list[Any] = [None]
    failure: Exception | None = None
    if rank == 0:
        try:
            outcome = [(compute(), None)]
        except Exception as error:  # noqa: BLE001 - raised below, on every process
            failure = error
            outcome = [(None, error if _pickles(error) else RuntimeError(f"main process: {error!r}"))]
    dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    result, error = outcome[0]
    if error is not None:
        raise error
    return result


def _pickles(value: Any) -> bool:
    import pickle

    try:
        pickle.loads(pickle.dumps(value))  # an exception with its own __init__ may not load
        return True
    except Exception:  # noqa: BLE001 - any failure means: send it as text
        return False


def evaluation_shard(lengths: Sequence[int], batch_size: int, rank: int, world: int) -> list[int]:
    """Indices (into the evaluation features) that process `rank` evaluates: a contiguous run of
    the batches one process would form (features stably sorted by length, `batch_size` at a
    time), split as training/batching.shard splits. Each example is then computed in the same
    batch, with the same padding, as on one process: the outputs are the same to the bit."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    starts = shard(list(range(0, len(order), max(batch_size, 1))), rank, world)
    return [i for start in starts for i in order[start:start + batch_size]]


def reassemble(count: int, parts: Sequence[tuple[list[int], list[np.ndarray], float, int]]) -> EvalOutputs:
    """Put each process's (indices, outputs, loss_sum, counted) back in the original order."""
    outputs: list[Any] = [None] * count
    for indices, part, _, _ in parts:
        if len(indices) != len(part):
            raise ValueError(f"{len(part)} outputs for {len(indices)} features")
        for index, output in zip(indices, part):
            outputs[index] = output
    missing = [i for i, output in enumerate(outputs) if output is None]
    if missing:
        raise ValueError(f"no process evaluated features {missing[:5]}")
    return outputs, sum(p[2] for p in parts), sum(p[3] for p in parts)


def evaluate_sharded(features: Sequence[Feature], compute: Callable[[list[Feature]], EvalOutputs],
                     batch_size: int) -> EvalOutputs:
    """Evaluation split across processes: each process runs `compute` on its share only
    (evaluation_shard), and every process gets all outputs back in the order of `features`, with
    the loss summed: the metrics are those of one process. Collective: call it on every process.

    `compute(features) -> (outputs, loss_sum, counted)` must batch as forward.batched_outputs
    does (stable sort by len(input_ids), then `batch_size` at a time)."""
    rank, world = rank_and_world()
    if world == 1:
        return compute(list(features))
    import torch.distributed as dist

    mine = evaluation_shard([len(f["input_ids"]) for f in features], batch_size, rank, world)
    outputs, loss_sum, counted = compute([features[i] for i in mine]) if mine else ([], 0.0, 0)
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, (mine, outputs, loss_sum, counted))
    return reassemble(len(features), parts)
