"""Masked-LM: continue an encoder's pretraining on unlabeled domain text (Gururangan et al. 2020).

- Blocks of the documents' token stream ([CLS] block [SEP]; documents separated by [SEP]).
- Masking happens in `collate`: data.mask_probability (15%) of the non-special tokens (of the
  words, with data.whole_word_mask), of which 80% become [MASK], 10% a random token, 10% stay;
  the loss is on those tokens only. Training batches draw fresh masks each time a block is seen
  (dynamic masking), from a generator seeded off the global RNG, which the run seeds and every
  checkpoint saves: runs reproduce and resume exactly. Evaluation batches (no gradients) mask
  each block the same way every time, so evaluations compare and `lmtune evaluate` reproduces
  the recorded metrics.
- A base without an MLM head (the packaged MiniLM) gets a new one whose output layer is tied to
  the input embeddings; the user is told. The base's pooler, which the masked-LM class drops, is
  carried into the saved model, so a classification run from this one starts from the base's pooler.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.records import Record
from .base import Encoded, Feature
from .batch import IGNORE_INDEX, pad_inputs
from .pretraining import PretrainingTask


class MaskedLMTask(PretrainingTask):
    name = "mlm"
    pipeline_tag = "fill-mask"
    default_metric = "perplexity"
    selection_metrics = {"perplexity": False, "masked_loss": False, "masked_accuracy": True}
    peft_task_type = "FEATURE_EXTRACTION"  # peft has no masked-LM type; this one passes inputs through
    metric_prefix = "masked"
    counted = "masked_tokens"

    @property
    def auto_model_class(self) -> Any:
        return MaskedLMKeepingPooler

    def framing(self, tokenizer: Any) -> tuple[list[int], list[int], int | None]:
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token; masked-LM needs an encoder's tokenizer "
                             "(for a decoder use --task clm)")
        self.vocab = (tokenizer.mask_token_id, len(tokenizer))  # what collate replaces tokens with
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        return ([] if cls is None else [cls]), ([] if sep is None else [sep]), sep

    def collate(self, features: Sequence[Feature], pad_token_id: int) -> dict[str, torch.Tensor]:
        """Padded inputs; blocks (training, evaluation) masked, with labels on the masked tokens."""
        batch = pad_inputs(features, pad_token_id)
        if "maskable" not in features[0]:
            return batch  # prediction inputs: the user's own [MASK] tokens
        seed = int(torch.randint(2**31, (1,))) if torch.is_grad_enabled() else self.cfg.train.seed
        batch["input_ids"], batch["labels"] = self.mask(batch["input_ids"], features, seed)
        return batch

    def mask(self, ids: torch.Tensor, features: Sequence[Feature], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input ids, labels): each row masked by a generator seeded by (seed, its block)."""
        if not hasattr(self, "vocab"):
            raise RuntimeError("encode the data before collating it (the mask token comes from the tokenizer)")
        mask_id, vocab_size = self.vocab
        rate, whole = self.cfg.data.mask_probability, self.cfg.data.whole_word_mask
        masked, labels = ids.clone(), torch.full_like(ids, IGNORE_INDEX)
        for row, feature in enumerate(features):
            # Drawn over the row's own tokens, so a block's masks do not depend on its batch.
            n = len(feature["input_ids"])
            g = torch.Generator().manual_seed(seed * 1_000_003 + feature["block"])
            maskable = torch.tensor(feature["maskable"])
            if whole:  # one draw per word, shared by its pieces
                word = (torch.tensor(feature["word_starts"]) | ~maskable).cumsum(0) - 1  # (n,) word index
                chosen = (torch.rand(int(word[-1]) + 1, generator=g) < rate)[word]
            else:
                chosen = torch.rand(n, generator=g) < rate
            chosen &= maskable
            action = torch.rand(n, generator=g)
            noise = torch.randint(vocab_size, (n,), generator=g)
            original = ids[row, :n]
            labels[row, :n] = torch.where(chosen, original, IGNORE_INDEX)
            replaced = torch.where(action < 0.8, mask_id, torch.where(action < 0.9, noise, original))
            masked[row, :n] = torch.where(chosen, replaced, original)
        return masked, labels

    # ---- prediction: fill the [MASK] tokens of a text ----------------------------------------
    def predict_records(self, predictor: Any, records: Sequence[Record], **options: Any) -> list[Any]:
        """Per input: for each [MASK] in it, the top_k (default 5) tokens with probabilities."""
        top_k, tokenizer = int(options.get("top_k", 5)), predictor.tokenizer
        logits, encoded = predictor.logits(records)
        results = []
        for row, feature in zip(logits, encoded.features):
            positions = [i for i, t in enumerate(feature["input_ids"]) if t == tokenizer.mask_token_id]
            fills = []
            for position in positions:
                probs = torch.softmax(torch.from_numpy(np.asarray(row[position])), -1)
                scores, ids = probs.topk(min(top_k, len(probs)))
                fills.append([{"token": tokenizer.convert_ids_to_tokens(int(i)), "score": float(s)}
                              for s, i in zip(scores, ids)])
            results.append({"masks": fills})
        return results

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[Any]:
        raise TypeError("a masked-LM model predicts [MASK] fills: use predict()")

    def format_prediction(self, prediction: Any, text: str) -> str:
        fills = ["/".join(f"{c['token']} {c['score']:.2f}" for c in mask) for mask in prediction["masks"]]
        return f"{' | '.join(fills) or '(no [MASK] in the text)'}\t{text}\n"


class MaskedLMKeepingPooler:
    """AutoModelForMaskedLM that carries the base's pooler weights, which the masked-LM classes
    drop, into what it saves (as <body>.pooler.*), so a classification run from this model
    starts from the base's pooler rather than a random one. They ride along as state-dict
    entries, not as a module: the objective does not use them, and no adapter targets them.
    Plain AutoModelForMaskedLM loads the saved model too (the pooler's are extra keys to it)."""

    @staticmethod
    def from_pretrained(path: str, **kwargs: Any) -> Any:
        from transformers import AutoModelForMaskedLM

        result = AutoModelForMaskedLM.from_pretrained(path, **kwargs)
        model, info = result if isinstance(result, tuple) else (result, None)
        _carry_pooler(model, _pooler_tensors(Path(path)))
        if info is not None:
            info["unexpected_keys"] = {k for k in info["unexpected_keys"] if ".pooler." not in f".{k}"}
            _tie_new_head(model, Path(path), info["missing_keys"])
        return result

    @staticmethod
    def from_config(config: Any, **kwargs: Any) -> Any:
        """The architecture (an adapter run's reload): the pooler weights come with the base's
        state dict when it is loaded into the body."""
        from transformers import AutoModelForMaskedLM

        model = AutoModelForMaskedLM.from_config(config, **kwargs)
        _carry_pooler(model, {})
        return model


MaskedLMKeepingPooler.__name__ = "AutoModelForMaskedLM"  # what the model card tells users to load with


def _pooler_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's pooler weights by their name inside the pooler ("dense.weight")."""
    from safetensors import safe_open

    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():
                if ".pooler." in f".{key}":
                    tensors[key.split("pooler.", 1)[1]] = handle.get_tensor(key)
    return tensors


def _carry_pooler(model: Any, kept: dict[str, torch.Tensor]) -> None:
    """Hooks on the body (where its class has a pooler the head dropped): its state dict gains
    `kept` as pooler.*, and a state dict loaded into it hands its pooler.* entries to `kept`."""
    body = getattr(model, model.base_model_prefix, None)
    if body is None or getattr(body, "pooler", 0) is not None:
        return  # no body, its class has no pooler, or it kept its own

    def add(module: Any, state: dict[str, Any], prefix: str, metadata: Any) -> None:
        state.update({f"{prefix}pooler.{name}": tensor for name, tensor in kept.items()})

    def take(module: Any, state: dict[str, Any], prefix: str, *args: Any) -> None:
        for key in [k for k in state if k.startswith(f"{prefix}pooler.")]:
            kept[key.removeprefix(f"{prefix}pooler.")] = state.pop(key)

    body.register_state_dict_post_hook(add)
    body.register_load_state_dict_pre_hook(take)


def _tie_new_head(model: Any, folder: Path, missing: Any) -> None:
    """A head the checkpoint lacked: tie its output layer to the input embeddings, and say so."""
    output = model.get_output_embeddings()
    if not any(key.startswith(_head_prefix(model, output)) for key in missing):
        return
    if output.weight is not model.get_input_embeddings().weight:
        model.config.tie_word_embeddings = True
        model.tie_weights()
    print(f"lmtune: {folder} has no masked-LM head; a new one was created, its output layer tied to "
          "the input embeddings", file=sys.stderr)


def _head_prefix(model: Any, output: Any) -> str:
    """The name of the module that holds the output layer (e.g. "cls")."""
    name = next(n for n, m in model.named_modules() if m is output)
    return name.split(".", 1)[0]
