"""Adversarial training on the input embeddings, as a loss term (`--robust.adversarial`).

The perturbation `delta` ([batch, seq, hidden], zero at padding) is added to the OUTPUT of the
model's input embedding module by a forward hook, so it works on any model whose
`get_input_embeddings()` is called on the input ids, wrapped by an adapter library or not.
The loss to backpropagate is the clean loss plus `adversarial_weight` x the adversarial one:

- FGM (Miyato et al. 2017): one step of size epsilon along the clean loss's gradient.
- PGD (Madry et al. 2018): a random start in the epsilon ball, `steps` ascent steps of size
  alpha projected back into it, then the loss at the last point.
- FreeLB (Zhu et al. 2020): the mean of the losses along the ascent trajectory from a random
  start; every point of it trains the weights.

Ascent steps take the gradient with respect to delta only (`torch.autograd.grad`): the weights'
gradients come from the one backward pass the loop runs on the returned loss.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .hooks import LossTerm, MicroBatch

# Makes the perturbation to add from the embedding output it is added to.
DeltaMaker = Callable[[torch.Tensor], torch.Tensor]


class _AddToEmbeddings:
    """A forward hook that adds a perturbation to the input embedding module's output."""

    def __init__(self, make: DeltaMaker, mask: torch.Tensor):
        self.make, self.mask, self.delta = make, mask, None

    def __call__(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        if output.shape[:2] != self.mask.shape[:2]:
            raise ValueError(f"adversarial training: the input embeddings gave shape {tuple(output.shape)} for "
                             f"inputs of shape {tuple(self.mask.shape[:2])}; it needs one embedding vector per "
                             "input token (set --robust.adversarial none for this model)")
        if self.delta is None:
            self.delta = self.make(output)
        return output + self.delta.to(output.dtype)


def token_mask(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """[batch, seq, 1]: 1 at real tokens, 0 at padding. A mask that is not [batch, seq] (a 4-D
    attention mask over several examples in a row) marks nothing as padding."""
    ids, mask = inputs["input_ids"], inputs.get("attention_mask")
    if mask is None or mask.shape != ids.shape:
        mask = torch.ones_like(ids)
    return mask.to(torch.float32).unsqueeze(-1)


def perturbed_loss(batch: MicroBatch, make: DeltaMaker, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's loss with `make(embedding output)` added to the input embeddings, and that
    perturbation. The hook is always removed, whatever the forward pass raises."""
    hook = _AddToEmbeddings(make, mask)
    handle = batch.model.get_input_embeddings().register_forward_hook(hook)
    try:
        loss = batch.task_loss(batch.forward(batch.inputs))
    finally:
        handle.remove()
    if hook.delta is None:
        raise ValueError("adversarial training: the model's input embeddings were not called in the forward "
                         "pass, so there is nothing to perturb (set --robust.adversarial none)")
    return loss, hook.delta


def _given(delta: torch.Tensor) -> DeltaMaker:
    return lambda out: delta


def _norms(x: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm of [batch, seq, hidden], as [batch, 1, 1]."""
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)


class EmbeddingAdversary(LossTerm):
    """Adds an adversarial loss on perturbed input embeddings to each micro-batch's loss."""

    def __init__(self, method: str, epsilon: float = 1.0, alpha: float = 0.3, steps: int = 3, norm: str = "l2",
                 adversarial_weight: float = 1.0, warmup_steps: int = 0):
        attacks = {"fgm": self.fgm_loss, "pgd": self.pgd_loss, "freelb": self.freelb_loss}
        if method not in attacks or norm not in ("l2", "linf") or steps < 1 or epsilon <= 0 or alpha <= 0:
            raise ValueError(f"adversarial training: method {method!r}, norm {norm!r}, steps {steps}, epsilon "
                             f"{epsilon}, alpha {alpha}: choose fgm, pgd or freelb, l2 or linf, steps >= 1, "
                             "epsilon > 0 and alpha > 0")
        self.method, self.attack = method, attacks[method]
        self.epsilon, self.alpha, self.steps, self.norm = epsilon, alpha, steps, norm
        self.weight, self.warmup_steps = adversarial_weight, warmup_steps
        self.adversarial_batches = 0  # micro-batches trained with the adversarial loss

    @classmethod
    def from_config(cls, robust: Any) -> "EmbeddingAdversary | None":
        """The adversary a RobustConfig asks for; None for `adversarial: none`."""
        if robust.adversarial == "none":
            return None
        return cls(robust.adversarial, robust.epsilon, robust.alpha, robust.steps, robust.norm,
                   robust.adversarial_weight, robust.warmup_steps)

    def __call__(self, loss: torch.Tensor, batch: MicroBatch) -> torch.Tensor:
        if batch.step < self.warmup_steps:
            return loss
        adversarial = self.attack(batch)
        if not bool(torch.isfinite(adversarial.detach())):
            raise ValueError(f"adversarial training ({self.method}) at step {batch.step}: the adversarial loss is "
                             f"{float(adversarial)}; raise --robust.warmup-steps (train clean first) or lower "
                             "--robust.epsilon / --robust.alpha")
        self.adversarial_batches += 1
        return loss + self.weight * adversarial

    def state_dict(self) -> dict[str, Any]:
        return {"adversarial_batches": self.adversarial_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adversarial_batches = int(state.get("adversarial_batches", 0))

    # ---- the attacks --------------------------------------------------------------------------
    def fgm_loss(self, batch: MicroBatch) -> torch.Tensor:
        return self._loss_at(batch, self.fgm_delta(batch))

    def pgd_loss(self, batch: MicroBatch) -> torch.Tensor:
        return self._loss_at(batch, self.pgd_delta(batch))

    def freelb_loss(self, batch: MicroBatch) -> torch.Tensor:
        """The mean of the losses along the ascent trajectory; each point's delta is a detached
        leaf, so the weights learn from every point and nothing flows back along the path."""
        losses, _ = self._trajectory(batch, token_mask(batch.inputs), keep_losses=True)
        return torch.stack(losses).mean()

    def fgm_delta(self, batch: MicroBatch) -> torch.Tensor:
        """epsilon along the clean loss's gradient w.r.t. the embeddings (its sign, for linf)."""
        mask = token_mask(batch.inputs)
        loss, zero = perturbed_loss(batch, lambda out: torch.zeros_like(out, dtype=torch.float32)
                                    .requires_grad_(), mask)
        (grad,) = torch.autograd.grad(loss, zero)
        return self.epsilon * self._direction(grad, mask)

    def pgd_delta(self, batch: MicroBatch) -> torch.Tensor:
        """The point `steps` projected ascent steps reach from a random start in the ball."""
        return self._trajectory(batch, token_mask(batch.inputs), keep_losses=False)[1]

    def _trajectory(self, batch: MicroBatch, mask: torch.Tensor, keep_losses: bool
                    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Projected gradient ascent from a random start: the losses at its `steps` points (with
        their graphs, if `keep_losses`, else only the ascent) and where the last step leads
        (not taken when the losses are kept: nothing uses it)."""
        losses: list[torch.Tensor] = []
        make: DeltaMaker = lambda out: self._random_start(out, mask).requires_grad_()  # noqa: E731
        for step in range(self.steps):
            loss, delta = perturbed_loss(batch, make, mask)
            if keep_losses:
                losses.append(loss)
                if step == self.steps - 1:
                    break
            (grad,) = torch.autograd.grad(loss, delta, retain_graph=keep_losses)
            moved = self._ascend(delta.detach(), grad, mask)
            make = _given(moved.requires_grad_())
        return losses, delta.detach() if keep_losses else moved.detach()

    def _loss_at(self, batch: MicroBatch, delta: torch.Tensor) -> torch.Tensor:
        return perturbed_loss(batch, _given(delta.detach()), token_mask(batch.inputs))[0]

    # ---- geometry -----------------------------------------------------------------------------
    def _direction(self, grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The steepest ascent direction of unit size in the chosen norm, zero at padding."""
        grad = grad.float() * mask
        return grad / _norms(grad) if self.norm == "l2" else grad.sign()

    def _project(self, delta: torch.Tensor) -> torch.Tensor:
        """Back into the epsilon ball."""
        if self.norm == "l2":
            return delta * (self.epsilon / _norms(delta)).clamp(max=1.0)
        return delta.clamp(-self.epsilon, self.epsilon)

    def _ascend(self, delta: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._project(delta + self.alpha * self._direction(grad, mask))

    def _random_start(self, like: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A random point inside the ball, zero at padding, drawn from torch's global RNG (which
        checkpoints save, so a resumed run draws the same points)."""
        if self.norm == "linf":
            return (torch.rand_like(like, dtype=torch.float32) * 2 - 1) * self.epsilon * mask
        noise = torch.randn_like(like, dtype=torch.float32) * mask
        radius = torch.rand(len(like), 1, 1, device=like.device) * self.epsilon
        return noise / _norms(noise) * radius
