"""The loop's extension points through the public API: callbacks, loss terms, batch sources."""

from __future__ import annotations

import json

import pytest

import lmtune
from lmtune.training.batching import LengthGroupedBatches
from lmtune.training.hooks import BatchSource, Callback, LossTerm
from conftest import tiny_config


class Recorder(Callback):
    """Keeps every event it sees; stops training at `stop_at`."""

    def __init__(self, stop_at: int | None = None):
        self.events: list[tuple[str, int]] = []
        self.stop_at = stop_at

    def on_train_begin(self, info):
        self.events.append(("begin", info["step"]))

    def on_step(self, row, control):
        self.events.append(("step", row["step"]))
        if row["step"] == self.stop_at:
            control.stop = True

    def on_evaluate(self, row, control):
        self.events.append(("evaluate", row["step"]))

    def on_save(self, checkpoint, control):
        self.events.append(("save", json.loads((checkpoint / "state.json").read_text())["step"]))

    def on_train_end(self, info):
        self.events.append(("end", info["step"]))


class Scale(LossTerm):
    def __init__(self, factor: float):
        self.factor, self.calls = factor, 0

    def __call__(self, loss, batch):
        self.calls += 1
        return loss * self.factor


def _config(tiny_model, toy_data, out, **train):
    return tiny_config(tiny_model, toy_data, out, max_grad_norm=0.0, **train)


def _grad_norms(run) -> list[float]:
    return [r["grad_norm"] for r in run.log_rows() if r["kind"] == "train"]


def test_a_callback_sees_every_event_and_can_stop_training(tiny_model, toy_data, tmp_path):
    recorder = Recorder(stop_at=5)
    cfg = _config(tiny_model, toy_data, tmp_path, max_steps=20, eval_strategy="steps", eval_steps=2)
    run = lmtune.finetune(cfg, quiet=True, callbacks=[recorder])
    assert recorder.events[0] == ("begin", 0) and recorder.events[-1] == ("end", 5)
    assert [e for e in recorder.events if e[0] == "step"] == [("step", s) for s in range(1, 6)]
    assert ("evaluate", 2) in recorder.events and ("save", 2) in recorder.events and ("save", 4) in recorder.events
    metrics = json.loads(run.metrics.read_text())["training"]
    assert metrics["steps"] == 5 and metrics["stopped_early"]


def test_a_loss_term_that_doubles_the_loss_doubles_the_first_gradient(tiny_model, toy_data, tmp_path):
    plain = lmtune.finetune(_config(tiny_model, toy_data, tmp_path / "a", max_steps=2, eval_strategy="no"),
                            quiet=True)
    doubled_term = Scale(2.0)
    doubled = lmtune.finetune(_config(tiny_model, toy_data, tmp_path / "b", max_steps=2, eval_strategy="no"),
                              quiet=True, loss_terms=[doubled_term])
    assert doubled_term.calls == 2  # once per micro-batch
    assert _grad_norms(doubled)[0] == pytest.approx(2 * _grad_norms(plain)[0], rel=1e-5)
    assert [r["loss"] for r in doubled.log_rows() if r["step"] == 1][0] == pytest.approx(
        2 * [r["loss"] for r in plain.log_rows() if r["step"] == 1][0], rel=1e-5)


class FirstHalfOnly(BatchSource):
    """A batch source of its own: every epoch, only the first 100 training examples."""

    def __init__(self, features, step_batch):
        self.inner = LengthGroupedBatches(features[:100], step_batch, seed=0)
        self.seen: set[int] = set()

    def step_batches(self, epoch):
        batches = self.inner.step_batches(epoch)
        self.seen.update(id(f) for batch in batches for f in batch)
        return batches

    def steps_per_epoch(self):
        return self.inner.steps_per_epoch()


def test_a_batch_source_decides_what_the_loop_trains_on(tiny_model, toy_data, tmp_path):
    from lmtune.data import read_table
    from lmtune.models import load_tokenizer
    from lmtune.tasks import get_task

    class Capture(Callback):
        def on_train_begin(self, info):
            self.total_steps = info["total_steps"]

    # The features a source batches are the task's encoded training examples.
    cfg = _config(tiny_model, toy_data, tmp_path, epochs=2, eval_strategy="no")
    task = get_task(cfg)
    train = read_table(cfg.data.train)
    task.fit(train)
    features = task.encode(train.records, load_tokenizer(tiny_model), cfg.model.max_length).features
    source, capture = FirstHalfOnly(features, 16), Capture()
    run = lmtune.finetune(cfg, quiet=True, callbacks=[capture], batch_source=source)
    assert capture.total_steps == 2 * 7  # 100 examples / 16 per step, 2 epochs
    assert json.loads(run.metrics.read_text())["training"]["steps"] == 14
    assert source.seen == {id(f) for f in features[:100]}


class L2ToStart(LossTerm):
    """The README's example: a penalty on moving away from the starting weights (EWC's shape)."""

    def __init__(self, weight: float):
        self.weight, self.start = weight, None

    def __call__(self, loss, batch):
        params = dict(batch.model.named_parameters())
        if self.start is None:
            self.start = {n: p.detach().clone() for n, p in params.items() if p.requires_grad}
        return loss + self.weight * sum(((params[n] - p) ** 2).sum() for n, p in self.start.items())


def test_a_penalty_term_keeps_the_weights_near_their_start(tiny_model, toy_data, tmp_path):
    from safetensors.torch import load_file

    base = load_file(str(tiny_model / "model.safetensors"))

    def drift(run) -> float:
        tuned = load_file(str(run.model / "model.safetensors"))
        return sum(float((tuned["bert." + k] - v).abs().sum()) for k, v in base.items() if "bert." + k in tuned)

    free = lmtune.finetune(_config(tiny_model, toy_data, tmp_path / "a", max_steps=10, eval_strategy="no"), quiet=True)
    held = lmtune.finetune(_config(tiny_model, toy_data, tmp_path / "b", max_steps=10, eval_strategy="no"),
                           quiet=True, loss_terms=[L2ToStart(100.0)])
    assert drift(held) < 0.5 * drift(free)
