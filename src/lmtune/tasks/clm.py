"""Causal LM on plain text: continue a decoder's pretraining on unlabeled domain text.

Unlike `generation` (prompt -> response pairs, loss on the response only), every token of the
documents is a target. Blocks of the token stream ([BOS] block; documents separated by EOS)
attend across document boundaries, as in pretraining. Metrics: next-token loss, accuracy and
perplexity; prediction continues a text (`lmtune generate` works on these runs).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..data.records import Record
from .base import Encoded, Feature
from .batch import IGNORE_INDEX, pad_inputs
from .pretraining import PretrainingTask


class CausalLMTask(PretrainingTask):
    name = "clm"
    pipeline_tag = "text-generation"
    default_metric = "perplexity"
    selection_metrics = {"perplexity": False, "token_loss": False, "token_accuracy": True}
    peft_task_type = "CAUSAL_LM"
    generates = True
    usable_untrained = True  # a pretrained decoder's perplexity on the text is the baseline
    shift = True

    @property
    def auto_model_class(self) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def model_config(self) -> dict[str, Any]:
        # An encoder loaded as a causal LM (BERT's LM head) would otherwise attend both ways and
        # see the tokens it predicts; decoders ignore the flag.
        return {"is_decoder": True}

    def framing(self, tokenizer: Any) -> tuple[list[int], list[int], int | None]:
        if tokenizer.eos_token_id is None and tokenizer.sep_token_id is None:
            raise ValueError("the tokenizer has no EOS (or SEP) token to separate documents with")
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
        separator = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        return ([] if bos is None else [bos]), [], separator

    def collate(self, features: Sequence[Feature], pad_token_id: int) -> dict[str, torch.Tensor]:
        """Padded inputs; blocks get labels = their own tokens (the loss shifts them)."""
        batch = pad_inputs(features, pad_token_id)
        if "maskable" in features[0]:
            batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        return batch

    def format_prediction(self, prediction: Any, text: str) -> str:
        return prediction["generated_text"] + "\n"

    def predict_records(self, predictor: Any, records: Sequence[Record], **options: Any) -> list[Any]:
        """The continuation of each text."""
        from ..inference.generate import generate

        column = self.cfg.data.text_column
        prompts = [predictor.tokenizer(str(r.fields[column]))["input_ids"] for r in records]
        texts = generate(predictor.model, predictor.tokenizer, prompts, self.cfg.generation, **options)
        return [{"generated_text": t} for t in texts]

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[Any]:
        raise TypeError("a causal-LM model predicts by continuing text: use predict()/generate()")
