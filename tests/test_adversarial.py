"""Adversarial training on the embeddings (--robust.adversarial fgm | pgd | freelb): the
perturbations' geometry on a fixed batch, then whole runs: train, record, reload, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lmtune
from lmtune.cli import main
from lmtune.config import Config, RobustConfig
from lmtune.training.adversarial import EmbeddingAdversary, perturbed_loss, token_mask
from lmtune.training.callbacks import Callback
from lmtune.training.checkpoint import load_extra, read_pointer
from lmtune.training.hooks import MicroBatch
from conftest import tiny_config

TEXTS = ["good film", "the plot was really quite boring and dull", "awful"]  # padded to the longest


def micro_batch(folder: Path, step: int = 0, training: bool = False) -> MicroBatch:
    """A micro-batch of three padded sentences on the tiny BERT with a 2-class head."""
    import torch.nn.functional as F
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(str(folder), num_labels=2).train(training)
    inputs = dict(AutoTokenizer.from_pretrained(str(folder))(TEXTS, padding=True, return_tensors="pt"))
    labels = torch.tensor([1, 0, 0])
    forward = lambda batch: model(**batch).logits  # noqa: E731
    loss = lambda logits: F.cross_entropy(logits, labels)  # noqa: E731
    return MicroBatch(model, inputs, labels, forward(inputs), step, forward, loss)


def loss_with(batch: MicroBatch, delta: torch.Tensor) -> float:
    return float(perturbed_loss(batch, lambda out: delta, token_mask(batch.inputs))[0])


def norms(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1)


def padding(batch: MicroBatch) -> torch.Tensor:
    return batch.inputs["attention_mask"] == 0


# ---- the perturbations ----------------------------------------------------------------------
def test_fgm_delta_has_norm_epsilon_per_example_and_is_zero_at_padding(tiny_model):
    batch = micro_batch(tiny_model)
    assert padding(batch).any(), "the batch must have padding for this test to mean anything"
    delta = EmbeddingAdversary("fgm", epsilon=0.7).fgm_delta(batch)
    assert delta.shape == (3, batch.inputs["input_ids"].shape[1], 32)
    assert norms(delta).tolist() == pytest.approx([0.7] * 3, rel=1e-5)
    assert delta[padding(batch)].abs().max() == 0
    linf = EmbeddingAdversary("fgm", epsilon=0.05, norm="linf").fgm_delta(batch)
    assert linf[~padding(batch)].abs().max() == pytest.approx(0.05) and linf[padding(batch)].abs().max() == 0
    # The mask, not a zero gradient, keeps padding untouched: [CLS] (which the head reads) marked as padding.
    batch.inputs["attention_mask"][:, 0] = 0
    masked = EmbeddingAdversary("fgm", epsilon=0.7).fgm_delta(batch)
    assert delta[:, 0].abs().min() > 0 and masked[:, 0].abs().max() == 0
    assert norms(masked).tolist() == pytest.approx([0.7] * 3, rel=1e-5)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_stays_inside_the_ball(tiny_model, norm):
    # alpha much larger than epsilon: every step leaves the ball, so the projection is what holds it.
    eps = 0.5 if norm == "l2" else 0.02
    batch = micro_batch(tiny_model)
    torch.manual_seed(1)
    delta = EmbeddingAdversary("pgd", epsilon=eps, alpha=10 * eps, steps=3, norm=norm).pgd_delta(batch)
    if norm == "l2":
        assert norms(delta).tolist() == pytest.approx([eps] * 3, rel=1e-5)  # on the sphere, not beyond
    else:
        assert delta.abs().max() == pytest.approx(eps)
        assert (delta[~padding(batch)].abs() == eps).float().mean() > 0.9  # a sign step lands on the corner
    assert delta[padding(batch)].abs().max() == 0


def test_pgd_with_small_steps_stays_inside_the_ball_from_its_random_start(tiny_model):
    torch.manual_seed(1)
    delta = EmbeddingAdversary("pgd", epsilon=1.0, alpha=0.01, steps=2).pgd_delta(micro_batch(tiny_model))
    assert (norms(delta) <= 1.0 + 1e-5).all() and (norms(delta) < 0.999).any()  # inside, not on the sphere


def test_freelb_returns_a_finite_loss_that_trains_the_weights(tiny_model):
    batch = micro_batch(tiny_model, training=True)
    clean = batch.task_loss(batch.logits)
    adversary = EmbeddingAdversary("freelb", epsilon=0.5, alpha=0.2, steps=3)
    loss = adversary(clean, batch)
    assert torch.isfinite(loss) and float(loss.detach()) > float(clean.detach())
    loss.backward()
    assert batch.model.get_input_embeddings().weight.grad.abs().sum() > 0
    assert adversary.adversarial_batches == 1
    assert not batch.model.get_input_embeddings()._forward_hooks  # removed after every pass


@pytest.mark.parametrize("method, passes", [("fgm", 2), ("pgd", 4), ("freelb", 3)])
def test_forward_passes_per_micro_batch(tiny_model, method, passes):
    """What the README's cost says: FGM a clean pass for the direction and an adversarial one;
    PGD `steps` ascent passes and the final one; FreeLB `steps` passes, each trained on."""
    batch = micro_batch(tiny_model, training=True)
    calls, forward = [], batch.forward
    batch.forward = lambda inputs: calls.append(1) or forward(inputs)
    EmbeddingAdversary(method, steps=3)(batch.task_loss(batch.logits), batch)
    assert len(calls) == passes


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_the_adversarial_loss_is_above_the_clean_loss(tiny_model, method):
    batch = micro_batch(tiny_model)  # eval mode: dropout off, so only delta differs between passes
    clean = float(batch.task_loss(batch.forward(batch.inputs)))
    torch.manual_seed(2)
    adversary = EmbeddingAdversary(method, epsilon=0.5, alpha=0.2, steps=3)
    delta = adversary.fgm_delta(batch) if method == "fgm" else adversary.pgd_delta(batch)
    assert loss_with(batch, delta) > clean
    assert loss_with(batch, torch.zeros_like(delta)) == pytest.approx(clean, rel=1e-6)


def test_fgm_points_up_the_gradient(tiny_model):
    """A small step along FGM's delta raises the loss; the same step the other way lowers it."""
    batch = micro_batch(tiny_model)
    clean = float(batch.task_loss(batch.forward(batch.inputs)))
    delta = EmbeddingAdversary("fgm", epsilon=0.01).fgm_delta(batch)
    assert loss_with(batch, -delta) < clean < loss_with(batch, delta)


def test_from_config_and_warmup(tiny_model):
    assert EmbeddingAdversary.from_config(RobustConfig()) is None
    adversary = EmbeddingAdversary.from_config(RobustConfig(adversarial="pgd", epsilon=0.2, warmup_steps=3))
    assert (adversary.method, adversary.epsilon, adversary.warmup_steps) == ("pgd", 0.2, 3)
    early = micro_batch(tiny_model, step=2)
    clean = early.task_loss(early.logits)
    assert adversary(clean, early) is clean and adversary.adversarial_batches == 0
    late = micro_batch(tiny_model, step=3)
    assert adversary(late.task_loss(late.logits), late) is not clean and adversary.adversarial_batches == 1
    restored = EmbeddingAdversary("pgd")
    restored.load_state_dict(adversary.state_dict())
    assert restored.adversarial_batches == 1


def test_a_non_finite_adversarial_loss_says_what_to_change(tiny_model):
    batch = micro_batch(tiny_model, step=7)
    clean = batch.task_loss(batch.logits)
    scored = batch.task_loss
    batch.task_loss = lambda logits: scored(logits) * float("nan")
    with pytest.raises(ValueError, match=r"fgm\) at step 7: the adversarial loss is nan; raise "
                                         r"--robust.warmup-steps .* lower --robust.epsilon"):
        EmbeddingAdversary("fgm")(clean, batch)


def test_the_hook_is_removed_when_the_forward_pass_fails(tiny_model):
    batch = micro_batch(tiny_model)

    def broken(inputs):
        batch.model(**inputs)
        raise RuntimeError("out of memory")

    batch.forward = broken
    with pytest.raises(RuntimeError, match="out of memory"):
        EmbeddingAdversary("pgd").pgd_delta(batch)
    assert not batch.model.get_input_embeddings()._forward_hooks


# ---- whole runs -----------------------------------------------------------------------------
def adversarial_batches(run) -> int:
    """The adversary's count of micro-batches, from the run's last checkpoint (kept)."""
    (state,) = load_extra(read_pointer(run.checkpoints, "latest.txt"))["loss_terms"]
    return state["adversarial_batches"]


def train_loss(run) -> list[float]:
    return [r["loss"] for r in run.log_rows() if r["kind"] == "train"]


@pytest.mark.parametrize("adversarial, method", [("fgm", "full"), ("pgd", "lora"), ("freelb", "prompt")])
def test_a_run_trains_records_and_reloads(adversarial, method, tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path, max_steps=4, eval_strategy="steps", eval_steps=4,
                      keep_checkpoints=True)
    cfg.method.name, cfg.robust.adversarial, cfg.robust.warmup_steps = method, adversarial, 2
    run = lmtune.finetune(cfg, quiet=True)
    metrics = json.loads(run.metrics.read_text())
    assert metrics["training"]["adversarial"] == adversarial and metrics["training"]["steps"] == 4
    assert adversarial_batches(run) == 2  # steps 3 and 4: one micro-batch each, after the warm-up
    clean, perturbed = train_loss(run)[:2], train_loss(run)[2:]
    assert max(clean) < 0.8 < 1.2 < min(perturbed)  # ln 2 alone, then ln 2 + an adversarial loss >= it
    predictions = lmtune.load(run.root).predict(["the film was good", "awful"])
    assert [set(p["probabilities"]) for p in predictions] == [{"neg", "pos"}] * 2


def test_pgd_resume_equals_an_uninterrupted_run(tiny_model, toy_data, tmp_path):
    """PGD draws its random starts from torch's RNG: a run that crashed after its step-2
    checkpoint and resumed ends with the weights of one that never stopped."""
    def config(out):
        cfg = tiny_config(tiny_model, toy_data, out, max_steps=4, eval_strategy="no", save_steps=2,
                          keep_checkpoints=True)
        cfg.robust.adversarial = "pgd"
        return cfg

    class Crash(Callback):
        def on_step(self, row, control):
            if row["step"] == 3:
                raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        lmtune.finetune(config(tmp_path / "crashed"), callbacks=[Crash()], quiet=True)
    resumed = lmtune.finetune(None, resume=tmp_path / "crashed" / "run", quiet=True)
    straight = lmtune.finetune(config(tmp_path / "straight"), quiet=True)
    a = load_file(str(resumed.model / "model.safetensors"))
    b = load_file(str(straight.model / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    assert adversarial_batches(resumed) == adversarial_batches(straight) == 4
    assert train_loss(resumed) == train_loss(straight)


# ---- the config ---------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, value, message", [
    ("--robust.epsilon", "-1", "--robust.epsilon must be > 0, got -1.0"),
    ("--robust.adversarial", "fgsm", "--robust.adversarial 'fgsm': choose one of none, fgm, pgd, freelb"),
    ("--robust.norm", "l1", "--robust.norm 'l1': choose one of l2, linf"),
    ("--robust.steps", "0", "--robust.steps must be >= 1, got 0"),
])
def test_train_refuses_bad_robust_settings(flag, value, message, tiny_model, toy_data, tmp_path, capsys):
    code = main(["train", "--model", str(tiny_model), "--train", str(toy_data["train"]),
                 "--output-dir", str(tmp_path), flag, value])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any run folder was made


def test_the_robust_group_is_documented_in_the_schema():
    cfg = Config.from_dict({"robust": {"adversarial": "freelb", "warmup_steps": 300}})
    assert (cfg.robust.adversarial, cfg.robust.warmup_steps) == ("freelb", 300)
    from lmtune.config import describe

    (robust,) = [infos for name, _, infos in describe() if name == "robust"]
    assert [i.key for i in robust] == ["robust.adversarial", "robust.epsilon", "robust.alpha", "robust.steps",
                                       "robust.norm", "robust.adversarial_weight", "robust.warmup_steps"]
    assert "NaN" in robust[-1].help
