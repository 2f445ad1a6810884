"""Task routing for adapter-per-task: when an input comes without its step, pick the step whose
adapter should answer it, by the nearest step centroid of the base model's sentence embeddings.

The base model (not an adapted one) embeds, so the centroids of earlier steps stay valid as new
adapters are added.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)  # an all-zero row stays zero instead of NaN


class Embedder:
    """Mean-pooled, L2-normalised sentence embeddings from an encoder's last hidden state,
    with the model loaded once and reused across calls."""

    def __init__(self, model_path: str | Path, batch_size: int = 64, max_length: int = 128,
                 device: str | None = None):
        from transformers import AutoModel

        from ...models import load_tokenizer, quiet_transformers, resolve_model

        quiet_transformers()
        path = resolve_model(str(model_path))
        model = AutoModel.from_pretrained(str(path))
        self._bind(model.to(device) if device else model, load_tokenizer(path), batch_size, max_length)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, batch_size: int = 64, max_length: int = 128) -> "Embedder":
        """An embedder over an already-loaded (model, tokenizer) pair, e.g. the base model a
        continual run holds anyway. The model must return `last_hidden_state` (an AutoModel)."""
        embedder = cls.__new__(cls)
        embedder._bind(model, tokenizer, batch_size, max_length)
        return embedder

    def _bind(self, model: Any, tokenizer: Any, batch_size: int, max_length: int) -> None:
        if batch_size < 1 or max_length < 1:
            raise ValueError(f"Embedder: batch_size ({batch_size}) and max_length ({max_length}) must be >= 1")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.max_length = batch_size, max_length

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [n, hidden], rows in input order. Batches hold texts of similar length (less
        padding); the attention mask keeps padding out of each vector."""
        import torch

        if not texts:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        out = np.zeros((len(ids), self.model.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                index = order[start:start + self.batch_size]
                out[index] = self._embed_batch([ids[i] for i in index])
        return out

    def _embed_batch(self, ids: list[list[int]]) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        longest = max(len(row) for row in ids)
        # Right padding: under a causal mask (decoders) the real tokens then never see a pad.
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([row + [pad] * (longest - len(row)) for row in ids], device=device)
        mask = torch.tensor([[1] * len(row) + [0] * (longest - len(row)) for row in ids], device=device)
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state  # [b, len, hidden]
        from ...forward import mean_pooled

        return mean_pooled(hidden, mask).cpu().numpy()


def embed_texts(model_path: str | Path, texts: Sequence[str], batch_size: int = 64,
                max_length: int = 128) -> np.ndarray:
    """Sentence embeddings of `texts` from the model at `model_path` (loads it for this call;
    keep an `Embedder` to embed more than once)."""
    return Embedder(model_path, batch_size=batch_size, max_length=max_length)(texts)


class CentroidRouter:
    """Routes an embedding to the step whose centroid (mean normalised training embedding) is
    nearest by cosine similarity."""

    def __init__(self, steps: Sequence[str] = (), centroids: np.ndarray | None = None):
        self.steps = list(steps)
        self.centroids = centroids  # [steps, hidden], unit rows

    def fit(self, embeddings_by_step: dict[str, np.ndarray]) -> "CentroidRouter":
        if not embeddings_by_step:
            raise ValueError("CentroidRouter.fit: no steps given; pass {step name: [n, hidden] embeddings}")
        centroids = []
        for step, vectors in embeddings_by_step.items():
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.ndim != 2 or len(vectors) == 0:
                raise ValueError(f"CentroidRouter.fit: step {step!r} has embeddings of shape {vectors.shape}; "
                                 "each step needs at least one [hidden]-sized row")
            centroids.append(_normalise(vectors).mean(0))
        widths = {len(c) for c in centroids}
        if len(widths) > 1:
            raise ValueError(f"CentroidRouter.fit: steps' embeddings differ in width {sorted(widths)}; "
                             "embed every step with the same base model")
        self.steps, self.centroids = list(embeddings_by_step), _normalise(np.stack(centroids))
        return self

    def route(self, embeddings: np.ndarray) -> list[str]:
        """The step name for each row of `embeddings` [n, hidden]."""
        if self.centroids is None:
            raise ValueError("CentroidRouter is not fitted: call fit() or CentroidRouter.load() first")
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"CentroidRouter.route: embeddings of shape {embeddings.shape}, expected "
                             f"[n, {self.centroids.shape[1]}] (the width the router was fitted on)")
        best = (_normalise(embeddings) @ self.centroids.T).argmax(1)
        return [self.steps[i] for i in best]

    def accuracy(self, embeddings_by_step: dict[str, np.ndarray]) -> dict[str, Any]:
        """How often each step's inputs are routed to that step: overall and per step, with
        counts and where the misrouted ones went."""
        per_step, correct, total = {}, 0, 0
        for step, vectors in embeddings_by_step.items():
            if step not in self.steps:
                raise ValueError(f"CentroidRouter.accuracy: step {step!r} is not one the router was fitted "
                                 f"on ({', '.join(self.steps)})")
            routed = self.route(vectors)
            hits = sum(name == step for name in routed)
            per_step[step] = {"accuracy": hits / len(routed) if routed else None, "correct": hits,
                              "total": len(routed),
                              "routed_to": dict(Counter(routed))}
            correct, total = correct + hits, total + len(routed)
        return {"accuracy": correct / total if total else None, "correct": correct, "total": total,
                "per_step": per_step}

    def save(self, path: str | Path) -> Path:
        """An .npz with the centroids and the step names, in order (written to `path` exactly)."""
        if self.centroids is None:
            raise ValueError("CentroidRouter.save: the router is not fitted; call fit() first")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:  # a handle, so numpy does not append .npz to the name
            np.savez(handle, centroids=self.centroids, steps=np.array(self.steps, dtype=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CentroidRouter":
        with np.load(Path(path), allow_pickle=False) as data:
            missing = {"centroids", "steps"} - set(data.files)
            if missing:
                raise ValueError(f"{path}: not a saved CentroidRouter (lacks {', '.join(sorted(missing))})")
            return cls([str(s) for s in data["steps"]], data["centroids"].astype(np.float32))
