"""The loop's extension points: what changes around or inside a training step plugs in here.

- `Callback`: observes events (train begin/end, logged steps, evaluations, checkpoints) and may
  stop training (`control.stop = True`). Progress, the JSONL log and early stopping are
  callbacks (training/callbacks.py); so are trackers and search pruning.
- `LossTerm`: given a micro-batch's loss, returns the loss to backpropagate: a penalty added
  (EWC), the loss replaced or extended by extra forward passes (adversarial training).
- `BatchSource`: decides the step batches of each epoch (default: shuffled, length-grouped
  batches of the training features); replay mixing and on-the-fly augmentation replace it.

Pass them to `lmtune.finetune(cfg, callbacks=[...], loss_terms=[...], batch_source=...)`.
The loop calls them in the order given; it never branches on what they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

Feature = dict[str, Any]


@dataclass
class Control:
    """What callbacks may ask of the loop."""

    stop: bool = False  # end training after the current step (or evaluation)


class Callback:
    """Watches the loop; never changes how a step is computed.

    Rows are the JSON objects of the run's train_log.jsonl: a logged step has kind "train",
    step, epoch, loss, lr, grad_norm, samples_per_s, tokens_per_s; an evaluation has kind
    "eval", step, epoch, the task's metrics, loss, `best` (whether it is the best so far) and
    `evals_since_best`.
    """

    def on_train_begin(self, info: dict[str, Any]) -> None:
        """info: total_steps, step (non-zero when resuming), world (processes)."""

    def on_step(self, row: dict[str, Any], control: Control) -> None:
        """Every train.logging_steps optimizer steps, and at the last one."""

    def on_evaluate(self, row: dict[str, Any], control: Control) -> None:
        """After each evaluation of the validation data."""

    def on_save(self, checkpoint: Path, control: Control) -> None:
        """After a resume checkpoint is written (main process only)."""

    def on_train_end(self, info: dict[str, Any]) -> None:
        """info: step, stopped_early."""


@dataclass
class MicroBatch:
    """One micro-batch as a loss term sees it. `forward(inputs)` runs the model (under the
    run's autocast) and returns the task's logits; `task_loss(logits)` scores them."""

    model: torch.nn.Module  # unwrapped (no DDP wrapper): parameter names as in the model
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    logits: torch.Tensor
    step: int  # optimizer steps done before this one
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    task_loss: Callable[[torch.Tensor], torch.Tensor]


class LossTerm:
    """Returns the loss to backpropagate for a micro-batch (the mean over its examples; the loop
    weights it for accumulation and processes afterwards)."""

    def __call__(self, loss: torch.Tensor, batch: MicroBatch) -> torch.Tensor:
        return loss

    def state_dict(self) -> dict[str, Any]:
        """What exact resume needs beyond the weights (saved with each checkpoint)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


class BatchSource:
    """The step batches of each epoch: one list of features per optimizer step, each of
    batch_size x processes x accumulation examples at most (the loop shards it).

    It must be deterministic in `epoch` and identical on every process: exact resume (a
    checkpoint records only the epoch and the steps done in it) and DDP rely on it.
    """

    def step_batches(self, epoch: int) -> Sequence[Sequence[Feature]]:
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        """Optimizer steps in an epoch; plans the schedule before training."""
        return len(self.step_batches(0))


# Builds a run's batch source around its default one (shuffled, length-grouped over the run's
# own encoded training data), e.g. to mix replayed examples into every step batch.
SourceWrapper = Callable[[BatchSource], BatchSource]


def planned_steps(source: BatchSource, epochs: float, max_steps: int = 0) -> int:
    """Optimizer steps a run will take: max_steps, else epochs x steps per epoch."""
    return max_steps or math.ceil(epochs * source.steps_per_epoch())
