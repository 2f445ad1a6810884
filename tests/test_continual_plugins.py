"""Continual learning's loop plug-ins: the replay memory and batches, and EWC."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lmtune.data.records import Dataset, Record
from lmtune.experiments.continual.ewc import EWC, fisher_information, load_ewc, merge_fisher, save_ewc
from lmtune.experiments.continual.replay import ReplayBatches, ReplayMemory
from lmtune.training.batching import LengthGroupedBatches
from lmtune.training.hooks import BatchSource, MicroBatch
from conftest import make_task, tiny_config, toy_rows

STEP_SIZES = [30, 5, 60, 12, 1, 40, 25, 8]


def step_records(step: int, n: int) -> list[Record]:
    return [Record({"text": f"step {step} row {i}", "label": "pos" if i % 2 else "neg"}, f"step{step}.csv", i + 2)
            for i in range(n)]


def fill(memory: ReplayMemory, sizes=STEP_SIZES) -> list[dict[str, list[int]]]:
    """Add a step per size; returns the kept line numbers per step after each addition."""
    history = []
    for step, n in enumerate(sizes):
        memory.add_step(f"s{step}", step_records(step, n))
        kept: dict[str, list[int]] = {}
        for name, record in memory.items():
            kept.setdefault(name, []).append(record.line)
        history.append(kept)
    return history


def as_rows(memory: ReplayMemory) -> list[tuple]:
    return [(step, r.fields, r.source, r.line) for step, r in memory.items()]


# ---- the replay memory ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [10, 4, 0.05, 0.3])
def test_quota_memory_keeps_every_step_within_capacity_and_only_trims(size):
    memory = ReplayMemory(size, "quota", seed=1)
    seen, previous = 0, {}
    for step, n in enumerate(STEP_SIZES):
        memory.add_step(f"s{step}", step_records(step, n))
        seen += n
        expected_capacity = int(size) if size >= 1 else max(math.floor(size * seen + 1e-9), step + 1)
        assert memory.capacity == expected_capacity
        assert len(memory) <= memory.capacity and sum(memory.counts().values()) == len(memory)
        counts = memory.counts()
        if memory.capacity >= step + 1:
            assert all(counts[f"s{s}"] >= 1 for s in range(step + 1)), counts
        kept = {}
        for name, record in memory.items():
            kept.setdefault(name, set()).add(record.line)
        for name, lines in kept.items():  # an earlier step's examples only ever shrink
            assert name not in previous or lines <= previous[name]
        previous = kept
    if size >= 1:
        assert len(memory) == min(int(size), seen)


def test_quota_shares_are_equal_with_the_remainder_to_the_earliest_steps():
    memory = ReplayMemory(10, "quota", seed=0)
    for step in range(4):
        memory.add_step(f"s{step}", step_records(step, 50))
    assert memory.counts() == {"s0": 3, "s1": 3, "s2": 2, "s3": 2}
    # A step too small for its share leaves the rest to the others, so the memory stays full.
    memory.add_step("tiny", step_records(9, 1))
    assert memory.counts() == {"s0": 3, "s1": 2, "s2": 2, "s3": 2, "tiny": 1}


def test_a_fraction_capacity_grows_with_the_examples_seen():
    memory = ReplayMemory(0.1, "quota", seed=0)
    memory.add_step("a", step_records(0, 100))
    assert memory.capacity == 10 and memory.counts() == {"a": 10}
    memory.add_step("b", step_records(1, 100))
    assert memory.capacity == 20 and memory.counts() == {"a": 10, "b": 10}
    memory.add_step("c", step_records(2, 3))
    # 20 over three is 7, 7, 6; c has only 3, so a and b share its unused 3 (earliest first).
    assert memory.capacity == 20 and memory.counts() == {"a": 9, "b": 8, "c": 3}


@pytest.mark.parametrize("size", [10, 0.1])
def test_reservoir_memory_stays_within_capacity(size):
    memory = ReplayMemory(size, "reservoir", seed=2)
    seen = 0
    for step, n in enumerate(STEP_SIZES):
        memory.add_step(f"s{step}", step_records(step, n))
        seen += n
        assert len(memory) == min(memory.capacity, seen)
    assert sum(memory.counts().values()) == len(memory) and list(memory.counts()) == [f"s{i}" for i in range(8)]
    lines = [(s, r.line) for s, r in memory.items()]
    assert len(set(lines)) == len(lines)  # no record kept twice


def test_reservoir_sampling_is_roughly_uniform_over_the_stream():
    kept_first = 0
    for seed in range(200):
        memory = ReplayMemory(5, "reservoir", seed=seed)
        memory.add_step("a", step_records(0, 10))
        memory.add_step("b", step_records(1, 10))
        kept_first += memory.counts()["a"]
    assert kept_first / 200 == pytest.approx(2.5, abs=0.3)  # half of 5 slots on average


@pytest.mark.parametrize("selection", ["quota", "reservoir"])
def test_memory_is_deterministic_for_a_seed_and_round_trips_through_json(selection):
    first, second, other = (ReplayMemory(7, selection, seed=s) for s in (3, 3, 4))
    for memory in (first, second, other):
        fill(memory, STEP_SIZES[:5])
    assert as_rows(first) == as_rows(second) and as_rows(first) != as_rows(other)
    restored = ReplayMemory.from_state(json.loads(json.dumps(first.state_dict())))
    assert as_rows(restored) == as_rows(first) and restored.counts() == first.counts()
    assert restored.capacity == first.capacity
    # It continues exactly as the original would (the RNG state came along).
    for memory in (first, restored):
        memory.add_step("next", step_records(99, 30))
    assert as_rows(restored) == as_rows(first)


def test_memory_rejects_bad_settings_and_repeated_steps():
    with pytest.raises(ValueError, match="whole count"):
        ReplayMemory(2.5)
    with pytest.raises(ValueError, match="whole count"):
        ReplayMemory(0)
    with pytest.raises(ValueError, match="quota, reservoir"):
        ReplayMemory(10, "random")
    memory = ReplayMemory(10)
    memory.add_step("a", step_records(0, 3))
    with pytest.raises(ValueError, match="'a' was already added"):
        memory.add_step("a", step_records(0, 3))
    with pytest.raises(ValueError, match="'b' has no training records"):
        memory.add_step("b", [])


# ---- replay batches ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoded(tiny_model):
    """A fitted classification task, the tiny tokenizer and two steps' training features."""
    from lmtune.models import load_tokenizer

    task = make_task("classification")
    steps = []
    for seed, n in ((1, 42), (2, 24)):
        records = [Record({"text": text, "label": label}, f"step{seed}.csv", i + 2)
                   for i, (text, label) in enumerate(toy_rows(n, seed))]
        steps.append(records)
    task.fit(Dataset("step1.csv", steps[0]))
    tokenizer = load_tokenizer(tiny_model)
    return task, tokenizer, [task.encode(records, tokenizer, 32).features for records in steps]


def test_replay_appends_memory_examples_to_every_step_batch(encoded):
    _, _, (current, earlier) = encoded
    base = LengthGroupedBatches(current, step_batch=8, seed=0)
    memory = earlier[:10]
    source = ReplayBatches(base, memory, ratio=0.25, seed=5)
    assert source.steps_per_epoch() == base.steps_per_epoch() == 6
    for plain, mixed in zip(base.step_batches(0), source.step_batches(0)):
        k = 3 if len(plain) == 8 else 1  # round(8 x 0.25 / 0.75) = 3; the last batch of 2 gets 1
        assert len(mixed) == len(plain) + k
        assert all(a is b for a, b in zip(mixed, plain))  # the base batch, unchanged, first
        extra = mixed[len(plain):]
        assert all(any(f is m for m in memory) for f in extra)  # the memory's own dicts, not copies
        assert len({id(f) for f in extra}) == k  # without replacement
    assert source.replayed_per_epoch() == 5 * 3 + 1


class FixedBatches(BatchSource):
    """The same step batches every epoch, so any difference between epochs is the replay's."""

    def __init__(self, features):
        self.features = features

    def step_batches(self, epoch):
        return [self.features[i:i + 8] for i in range(0, len(self.features), 8)]


def test_replay_draws_are_deterministic_per_epoch_and_differ_between_epochs(encoded):
    _, _, (current, earlier) = encoded
    make = lambda seed=5: ReplayBatches(FixedBatches(current), earlier, 0.25, seed)
    extras = lambda batches: [[id(f) for f in batch[8:]] for batch in batches[:5]]
    source = make()
    assert extras(source.step_batches(1)) == extras(make().step_batches(1))
    assert extras(source.step_batches(0)) != extras(source.step_batches(1))
    assert extras(make(seed=6).step_batches(1)) != extras(source.step_batches(1))
    # A memory exactly the size of k is drawn whole: without replacement, each example once.
    whole = ReplayBatches(FixedBatches(current), earlier[:8], ratio=0.5, seed=0).step_batches(0)
    assert all(sorted(ids) == sorted(id(f) for f in earlier[:8]) for ids in extras(whole))


def test_replay_with_a_small_memory_repeats_and_with_none_adds_nothing(encoded):
    _, _, (current, earlier) = encoded
    base = LengthGroupedBatches(current, 8, seed=0)
    small = ReplayBatches(base, earlier[:2], ratio=0.5, seed=0).step_batches(0)[0]
    assert len(small) == 16 and {id(f) for f in small[8:]} <= {id(f) for f in earlier[:2]}
    assert len(ReplayBatches(base, earlier, ratio=0.01, seed=0).step_batches(0)[0]) == 9  # at least one
    for source in (ReplayBatches(base, [], 0.5, 0), ReplayBatches(base, earlier, 0.0, 0)):
        assert [len(b) for b in source.step_batches(0)] == [len(b) for b in base.step_batches(0)]
        assert source.replayed_per_epoch() == 0
    with pytest.raises(ValueError, match="replay_ratio 1.0"):
        ReplayBatches(base, earlier, 1.0, 0)


# ---- Fisher information -----------------------------------------------------------------------
@pytest.fixture
def model(tiny_model, encoded):
    from lmtune.models import load_model

    task = encoded[0]
    torch.manual_seed(0)
    net, _ = load_model(tiny_model, task.auto_model_class, **task.model_config())
    return net


def test_fisher_covers_trainable_parameters_with_non_negative_values(model, encoded):
    task, tokenizer, (current, earlier) = encoded
    for name, p in model.named_parameters():
        if name.startswith("bert.embeddings."):
            p.requires_grad_(False)
    model.train()
    fisher = fisher_information(model, task, current, tokenizer.pad_token_id, max_examples=12)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(fisher) == set(trainable) and not any(n.startswith("bert.embeddings.") for n in fisher)
    assert all(fisher[n].shape == p.shape and fisher[n].dtype == torch.float32 for n, p in trainable.items())
    assert all(bool((v >= 0).all()) for v in fisher.values())
    assert float(fisher["classifier.weight"].sum()) > 0
    assert model.training and all(p.grad is None for p in model.parameters())
    # Eval mode: no dropout, so the estimate repeats exactly; other data gives another one.
    again = fisher_information(model, task, current, tokenizer.pad_token_id, max_examples=12)
    assert all(torch.equal(fisher[n], again[n]) for n in fisher)
    other = fisher_information(model, task, earlier, tokenizer.pad_token_id, max_examples=12)
    assert not torch.allclose(fisher["classifier.weight"], other["classifier.weight"])


def test_fisher_is_the_mean_of_per_example_squared_gradients(model, encoded):
    from lmtune.forward import forward_logits

    task, tokenizer, (current, _) = encoded
    model.eval()
    squares = []
    for feature in current[:3]:
        model.zero_grad()
        batch = task.collate([feature], tokenizer.pad_token_id)
        labels = batch.pop("labels")
        task.loss(forward_logits(model, task, batch), labels).backward()
        squares.append(model.classifier.weight.grad.pow(2))
    fisher = fisher_information(model, task, current[:3], tokenizer.pad_token_id)
    assert torch.allclose(fisher["classifier.weight"], torch.stack(squares).mean(0), rtol=1e-5, atol=1e-12)


def test_fisher_needs_labeled_features(model, encoded):
    task, tokenizer, (current, _) = encoded
    with pytest.raises(ValueError, match="no labels"):
        fisher_information(model, task, [{"input_ids": f["input_ids"]} for f in current], 0)


# ---- the EWC loss term ------------------------------------------------------------------------
class TwoParams(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
        self.b = torch.nn.Parameter(torch.tensor([0.0]))
        self.free = torch.nn.Parameter(torch.tensor([5.0]))  # not in the Fisher: never penalised


FISHER = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0])}
ANCHOR = {"w": torch.tensor([0.5, -1.0]), "b": torch.tensor([2.0])}


def micro(module: torch.nn.Module) -> MicroBatch:
    return MicroBatch(module, {}, torch.zeros(1), torch.zeros(1), 0, lambda x: x, lambda x: x)


def test_ewc_adds_the_weighted_squared_distance_to_the_anchor():
    module, loss = TwoParams(), torch.tensor(1.5)
    # 1 x 0.5^2 + 2 x 2^2 + 3 x (-2)^2 = 20.25, times strength / 2 = 1
    total = EWC(FISHER, ANCHOR, strength=2.0)(loss, micro(module))
    assert float(total.detach()) == pytest.approx(1.5 + 20.25) and total.requires_grad
    assert float(EWC(FISHER, ANCHOR, strength=0.5)(loss, micro(module)).detach()) == pytest.approx(1.5 + 20.25 / 4)


def test_ewc_with_zero_strength_returns_the_loss_itself():
    loss = torch.tensor(0.7, requires_grad=True)
    assert EWC(FISHER, ANCHOR, strength=0.0)(loss, micro(TwoParams())) is loss


def test_ewc_gradient_pulls_parameters_towards_the_anchor():
    module = TwoParams()
    term = EWC(FISHER, ANCHOR, strength=2.0)
    term(torch.tensor(0.0), micro(module)).backward()
    # d/dp strength / 2 x F (p - a)^2 = strength x F x (p - a)
    assert torch.allclose(module.w.grad, torch.tensor([1.0, 8.0]))
    assert torch.allclose(module.b.grad, torch.tensor([-12.0]))
    assert module.free.grad is None
    with torch.no_grad():
        before = (module.w - ANCHOR["w"]).abs()
        module.w -= 0.05 * module.w.grad
    assert bool(((module.w - ANCHOR["w"]).abs() < before).all())


def test_ewc_names_a_parameter_the_model_lacks():
    fisher = {**FISHER, "head.weight": torch.ones(2)}
    term = EWC(fisher, {**ANCHOR, "head.weight": torch.zeros(2)}, strength=1.0)
    with pytest.raises(ValueError, match="'head.weight'"):
        term(torch.tensor(0.0), micro(TwoParams()))
    with pytest.raises(ValueError, match="no anchor weights for head.weight"):
        EWC(fisher, ANCHOR, strength=1.0)


def test_merge_fisher_sums_steps_and_save_load_round_trips(tmp_path):
    merged = merge_fisher(None, FISHER)
    assert merged is not FISHER and torch.equal(merged["w"], FISHER["w"])
    merged = merge_fisher(merged, {"w": torch.tensor([1.0, 1.0]), "extra": torch.ones(1)})
    assert torch.equal(merged["w"], torch.tensor([2.0, 3.0])) and torch.equal(merged["b"], FISHER["b"])
    assert torch.equal(merged["extra"], torch.ones(1)) and torch.equal(FISHER["w"], torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="'b' has shape"):
        merge_fisher(FISHER, {"b": torch.ones(2)})
    save_ewc(tmp_path / "ewc.safetensors", merged, ANCHOR)
    fisher, anchor = load_ewc(tmp_path / "ewc.safetensors")
    assert set(fisher) == set(merged) and all(torch.equal(fisher[k], merged[k]) for k in merged)
    assert set(anchor) == set(ANCHOR) and all(torch.equal(anchor[k], ANCHOR[k]) for k in ANCHOR)


# ---- in the loop ------------------------------------------------------------------------------
def test_the_plug_ins_train_in_the_loop_and_zero_strength_ewc_is_plain_training(
        tiny_model, toy_data, tmp_path, model, encoded):
    import lmtune

    task, tokenizer, (_, earlier) = encoded
    fisher = fisher_information(model, task, earlier, tokenizer.pad_token_id, max_examples=4)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters() if n in fisher}

    def grad_norms(out, **plugins):
        cfg = tiny_config(tiny_model, toy_data, out, max_steps=2, eval_strategy="no", max_grad_norm=0.0)
        run = lmtune.finetune(cfg, quiet=True, **plugins)
        return [r["grad_norm"] for r in run.log_rows() if r["kind"] == "train"]

    plain = grad_norms(tmp_path / "plain")
    assert grad_norms(tmp_path / "zero", loss_terms=[EWC(fisher, anchor, 0.0)]) == plain
    mixed = grad_norms(tmp_path / "both", loss_terms=[EWC(fisher, anchor, 1e6)],
                       batch_source=lambda base: ReplayBatches(base, earlier, 0.25, seed=0))
    assert len(mixed) == 2 and mixed != plain
