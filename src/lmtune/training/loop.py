"""The one training loop, shared by every task and method.

It sees a Task (collate, loss, metrics), a Method (which parameters train, how logits line up,
per-step bookkeeping) and the extension points of training/hooks.py; on Accelerate it handles
the optimizer groups, schedule, accumulation, clipping, mixed precision, evaluation cadence,
atomic checkpoints with exact resume, and multi-process (DDP) training. Anything else plugs in
as a callback, a loss term or a batch source; nothing here knows a task or method by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import Config
from ..forward import batched_outputs, forward_logits
from ..methods.base import Method
from ..tasks.base import Encoded, Task
from . import checkpoint as ckpt
from .batching import shard, shard_micro
from .distributed import decide_precision, evaluate_sharded, make_accelerator, prepare
from .hooks import BatchSource, Callback, Control, LossTerm, MicroBatch, planned_steps
from .optim import make_optimizer, make_scheduler


@dataclass
class TrainResult:
    step: int
    epoch: float
    best_step: int | None
    best_metrics: dict[str, Any]
    stopped_early: bool
    train_seconds: float
    samples_per_s: float
    tokens_per_s: float
    final_loss: float
    precision: str
    precision_reason: str
    # The validation outputs of the evaluation that picked the best weights (what the run's
    # predictions and calibration need), or None where that evaluation ran in an earlier process.
    best_outputs: list[Any] | None = None


@dataclass
class LoopState:
    """Where training stands; saved with every checkpoint (state.json) for exact resume."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_done: int = 0  # step batches done in this epoch
    best_metric: float | None = None
    best_loss: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    samples: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LoopState":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class Window:
    """Sums over the steps since the last logged row."""

    loss: float = 0.0
    examples: int = 0  # examples this process's loss covers
    samples: int = 0  # examples over all processes
    tokens: int = 0
    grad_norm: float = float("nan")
    start: float = field(default_factory=time.perf_counter)
    paused: float = 0.0  # seconds spent evaluating and checkpointing: not training speed


class Loop:
    """One run's training: build with the model and data, then `run()`."""

    def __init__(self, model: torch.nn.Module, task: Task, source: BatchSource, eval_data: Encoded | None,
                 cfg: Config, run_dir: Path, pad_id: int, method: Method,
                 callbacks: Sequence[Callback] = (), loss_terms: Sequence[LossTerm] = ()):
        self.tc, self.task, self.source, self.eval_data = cfg.train, task, source, eval_data
        self.cfg, self.pad_id, self.method = cfg, pad_id, method
        self.callbacks, self.loss_terms = list(callbacks), list(loss_terms)
        self.precision = decide_precision(self.tc.mixed_precision)
        self.accelerator = make_accelerator(self.precision.mode)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.device, self.main = self.accelerator.device, self.accelerator.is_main_process
        self.ckpt_root = Path(run_dir) / "checkpoints"
        self.steps_per_epoch = source.steps_per_epoch()  # once: a source may derive it from a whole epoch
        self.total_steps = planned_steps(source, self.tc.epochs, self.tc.max_steps)
        self.evaluating = eval_data is not None and self.tc.eval_strategy != "no"
        self.state, self.control, self.window = LoopState(), Control(), Window()
        self.last_loss = float("nan")
        self.best_outputs: list[Any] | None = None
        self.model = model.to(self.device)
        self.optimizer = make_optimizer(self.model, self.tc)
        self.scheduler = make_scheduler(self.optimizer, self.tc, self.total_steps)

    # ---- the run ------------------------------------------------------------------------------
    def restore(self) -> None:
        """Continue from the latest checkpoint: weights, optimizer, schedule, RNG, data position,
        and the method's and loss terms' own state."""
        latest = ckpt.read_pointer(self.ckpt_root, "latest.txt")
        if latest is None and self.main:
            raise FileNotFoundError(f"{self.ckpt_root}: no checkpoint to resume from")
        self.state = LoopState.from_dict(ckpt.load_checkpoint(latest, self.model, self.optimizer, self.scheduler))
        extra = ckpt.load_extra(latest)
        self.method.load_training_state(extra.get("method", {}))
        for term, term_state in zip(self.loss_terms, extra.get("loss_terms", [])):
            term.load_state_dict(term_state)

    def run(self) -> TrainResult:
        self.model, self.optimizer = prepare(self.accelerator, self.model, self.optimizer)
        self.model.train()
        for cb in self.callbacks:
            cb.on_train_begin({"total_steps": self.total_steps, "step": self.state.step, "world": self.world})
        self.window = Window()
        while self.state.step < self.total_steps and not self.control.stop:
            self._epoch()
        if self.evaluating and not self._evaluated_last_step():
            self.evaluate()  # the last step was not evaluated (max_steps mid-epoch, odd step counts)
        elif not self.evaluating:
            self.save()
        best = self._load_best()
        for cb in self.callbacks:
            cb.on_train_end({"step": self.state.step, "stopped_early": self.control.stop})
        return self._result(best)

    def _epoch(self) -> None:
        batches = self.source.step_batches(self.state.epoch)
        while (self.state.batches_done < len(batches) and self.state.step < self.total_steps
               and not self.control.stop):
            self._optimizer_step(batches[self.state.batches_done])
            self._after_step()
        if self.state.batches_done >= len(batches):
            self.state.epoch += 1
            self.state.batches_done = 0
            if self.evaluating and self.tc.eval_strategy == "epoch" and not self.control.stop:
                with self._paused():
                    self.evaluate()

    # ---- one optimizer step -------------------------------------------------------------------
    def _optimizer_step(self, step_batch: Sequence[dict[str, Any]]) -> None:
        """One optimizer step over a step batch: accumulation micro-batches, each process its
        own slice; the gradient equals that of one big batch."""
        group = shard_micro(list(step_batch), min(self.tc.grad_accum, max(1, len(step_batch) // self.world)))
        for micro, examples in enumerate(group):
            self._micro_step(examples, len(step_batch), sync=micro == len(group) - 1)
        limit = self.tc.max_grad_norm if self.tc.max_grad_norm > 0 else float("inf")  # inf: measure only
        norm = self.accelerator.clip_grad_norm_(self.model.parameters(), limit)
        self.window.grad_norm = float("nan") if norm is None else float(norm)  # None under DeepSpeed
        self.optimizer.step()
        self.method.after_optimizer_step(self.state.step + 1)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.batches_done += 1

    def _micro_step(self, examples: list[dict[str, Any]], step_examples: int, sync: bool) -> None:
        local = shard(examples, self.rank, self.world)
        # Per-example mean over the whole step batch, so the gradient matches one big batch (DDP
        # averages over processes on top). A process left without examples (a last batch smaller
        # than the process count) joins with a zero-weight one.
        scale = len(local) * self.world / step_examples
        if not local:
            local, scale = examples[:1], 0.0
        inputs = {k: v.to(self.device) for k, v in self.task.collate(local, self.pad_id).items()}
        labels = inputs.pop("labels")
        quiet_sync = not sync and self.world > 1
        with self.accelerator.no_sync(self.model) if quiet_sync else contextlib.nullcontext():
            logits = self._forward(inputs)
            loss = self._loss(inputs, labels, logits) * scale
            self.accelerator.backward(loss)
        self.window.loss += float(loss.detach()) * step_examples / self.world  # = mean x len(local)
        self.window.examples += len(local) if scale else 0
        self.window.samples += len(examples)
        self.window.tokens += sum(len(f["input_ids"]) for f in local) * self.world

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with self.accelerator.autocast():
            return forward_logits(self.model, self.task, inputs, self.method)

    def _loss(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The task's loss, then each loss term in turn."""
        loss = self.task.loss(logits, labels)
        if self.loss_terms:
            batch = MicroBatch(self.accelerator.unwrap_model(self.model), inputs, labels, logits,
                               self.state.step, self._forward, lambda out: self.task.loss(out, labels))
            for term in self.loss_terms:
                loss = term(loss, batch)
        return loss

    def _after_step(self) -> None:
        step = self.state.step
        if step % self.tc.logging_steps == 0 or step == self.total_steps:
            self._log()
        with self._paused():
            if self.evaluating and self._eval_due():
                self.evaluate()
            elif self.tc.save_steps and step % self.tc.save_steps == 0:
                self.save()

    @contextlib.contextmanager
    def _paused(self):
        """Evaluation and checkpoints inside training: their time is not training speed."""
        started = time.perf_counter()
        yield
        self.window.paused += time.perf_counter() - started

    def _log(self) -> None:
        """A train row with the loss and speed since the last one, for every callback."""
        window = self.window
        elapsed = max(time.perf_counter() - window.start - window.paused, 1e-9)
        totals = torch.tensor([window.loss, float(window.examples)], device=self.device)
        if self.world > 1:
            totals = self.accelerator.reduce(totals, reduction="sum")
        self.last_loss = float(totals[0] / totals[1].clamp(min=1))
        self.state.seconds += elapsed
        self.state.samples += window.samples
        self.state.tokens += window.tokens
        row = {"kind": "train", "step": self.state.step, "epoch": self._epoch_fraction(),
               "loss": self.last_loss, "lr": self.scheduler.get_last_lr()[0], "grad_norm": window.grad_norm,
               "samples_per_s": window.samples / elapsed, "tokens_per_s": window.tokens / elapsed}
        self._notify("on_step", row)
        self.window = Window()

    # ---- evaluation and checkpoints -----------------------------------------------------------
    def evaluate(self) -> None:
        """Score the validation data, keep the best weights, tell the callbacks, checkpoint."""
        metrics, outputs = self._metrics()
        key, greater = self.task.selection(self.tc.metric_for_best, self.tc.greater_is_better)
        state = self.state
        improved = _is_better(metrics[key], metrics.get("loss"), state.best_metric, state.best_loss, greater)
        if improved:
            state.best_metric, state.best_loss, state.best_step = metrics[key], metrics.get("loss"), state.step
            state.evals_since_best = 0
            self.best_outputs = outputs
            if self.main:
                ckpt.save_best(self.ckpt_root, self.accelerator.unwrap_model(self.model), state.step, metrics)
        else:
            state.evals_since_best += 1
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        row = {"kind": "eval", "step": state.step, "epoch": self._epoch_fraction(), **scalars,
               "best": improved, "evals_since_best": state.evals_since_best}
        self._notify("on_evaluate", row)
        self.save()

    def _metrics(self) -> tuple[dict[str, Any], list[Any]]:
        """The task's metrics on the validation data, and the outputs they come from; each
        process evaluates its share and all get the whole set's outputs back, so the metrics are
        those of one process."""
        size, model = self.cfg.eval.batch_size, self.accelerator.unwrap_model(self.model)
        outputs, loss_sum, counted = evaluate_sharded(
            self.eval_data.features,
            lambda part: batched_outputs(model, part, size, self.pad_id, self.device, self.task, self.method), size)
        metrics = self.task.metrics(outputs, self.eval_data)
        if counted:
            metrics["loss"] = loss_sum / counted
        return metrics, outputs

    def save(self) -> None:
        """A resume checkpoint (main process writes it; every process waits for it)."""
        rng = ckpt.gather_rng_states()  # collective: dropout masks differ by process
        if self.main:
            extra = {"method": self.method.training_state(),
                     "loss_terms": [term.state_dict() for term in self.loss_terms]}
            folder = ckpt.save_checkpoint(self.ckpt_root, self.accelerator.unwrap_model(self.model),
                                          self.optimizer, self.scheduler, dataclasses.asdict(self.state),
                                          extra, keep=self.tc.save_total_limit, rng_states=rng)
            for cb in self.callbacks:
                cb.on_save(folder, self.control)
        self.accelerator.wait_for_everyone()

    def _notify(self, event: str, row: dict[str, Any]) -> None:
        """Call every callback's `event`; with several processes, one that stops stops all."""
        for cb in self.callbacks:
            getattr(cb, event)(row, self.control)
        if self.world > 1:
            stop = torch.tensor([float(self.control.stop)], device=self.device)
            self.control.stop = bool(self.accelerator.reduce(stop, reduction="sum").item() > 0)

    def _load_best(self) -> dict[str, Any]:
        """Put the best evaluated weights back in the model (main process, which writes the run)."""
        self.accelerator.wait_for_everyone()
        unwrapped = self.accelerator.unwrap_model(self.model)
        if not (self.evaluating and self.main and ckpt.load_best(self.ckpt_root, unwrapped)):
            return {}
        return json.loads((ckpt.read_pointer(self.ckpt_root, "best.txt") / "metrics.json").read_text())

    def _eval_due(self) -> bool:
        """Whether the step just taken is an evaluation point inside an epoch: every eval_steps
        steps, or each 1/evals_per_epoch of an epoch (the epoch's end is evaluated by _epoch)."""
        if self.tc.eval_strategy == "steps":
            return self.state.step % self.tc.eval_steps == 0
        per, total, done = self.tc.evals_per_epoch, max(self.steps_per_epoch, 1), self.state.batches_done
        return self.tc.eval_strategy == "epoch" and done < total and done * per // total > (done - 1) * per // total

    def _evaluated_last_step(self) -> bool:
        """Whether the final step already had its evaluation under the chosen cadence."""
        if self.tc.eval_strategy == "steps":
            return self._eval_due()
        return self.state.batches_done == 0 or self._eval_due()  # an epoch just ended, or a mark inside it

    def _epoch_fraction(self) -> float:
        return self.state.step / max(self.steps_per_epoch, 1)

    def _result(self, best: dict[str, Any]) -> TrainResult:
        state, seconds = self.state, max(self.state.seconds, 1e-9)
        return TrainResult(
            step=state.step, epoch=self._epoch_fraction(), best_step=state.best_step, best_metrics=best,
            stopped_early=self.control.stop, train_seconds=state.seconds,
            samples_per_s=state.samples / seconds, tokens_per_s=state.tokens / seconds,
            final_loss=self.last_loss, precision=self.precision.mode, precision_reason=self.precision.reason,
            best_outputs=self.best_outputs if best else None)


def _is_better(value: float, loss: float | None, best: float | None, best_loss: float | None,
               greater: bool) -> bool:
    """Better on the chosen metric; on a tie (accuracy often ties on small sets), lower loss wins."""
    if best is None:
        return True
    if value != best:
        return value > best if greater else value < best
    return loss is not None and best_loss is not None and loss < best_loss


def train(model: torch.nn.Module, task: Task, source: BatchSource, eval_data: Encoded | None, cfg: Config,
          run_dir: Path, pad_id: int, *, method: Method, resume: bool = False,
          callbacks: Sequence[Callback] = (), loss_terms: Sequence[LossTerm] = ()) -> TrainResult:
    """Train `model` on the batches of `source`; keep the best weights (by train.metric_for_best)."""
    loop = Loop(model, task, source, eval_data, cfg, run_dir, pad_id, method, callbacks, loss_terms)
    if resume:
        loop.restore()
    return loop.run()
