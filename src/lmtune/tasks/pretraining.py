"""What the two continued-pretraining tasks (mlm, clm) share: unlabeled documents packed into
token blocks, and token-level loss / accuracy / perplexity.

Input: any record with a text field (data.text_column; plain-text files read into `text`).
Training and evaluation features are blocks of the documents' token stream (data/blocks.py):
long documents span several blocks, short ones share one, separated by the tokenizer's
separator; every token is used once. Prediction inputs are encoded one text each.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.blocks import pack_blocks
from ..data.records import DataIssue, Dataset, Record
from .base import Encoded, Task, VocabularyOutputs
from .batch import IGNORE_INDEX


class PretrainingTask(VocabularyOutputs, Task):
    """A language-modelling objective on plain documents; subclasses frame blocks and make labels."""

    onnx_outputs = ()  # vocabulary-sized outputs per token: served with PyTorch
    default_format = "text"  # a file of unknown extension (corpus.txt) is read as plain text
    metric_prefix = "token"  # metric names: <prefix>_loss, <prefix>_accuracy
    counted = "predicted_tokens"  # the metric that counts the tokens scored
    shift = False  # whether position t predicts token t+1 (causal) or token t (masked)

    def required_columns(self, columns: Sequence[str], labeled: bool = True) -> list[tuple[str, str | None]]:
        return [(self.cfg.data.text_column, "--data.text-column")]

    def check(self, datasets: dict[str, Dataset]) -> list[DataIssue]:
        name = self.cfg.data.text_column
        issues: list[DataIssue] = []
        for dataset in datasets.values():
            issues += dataset.issues
            for record in dataset.records:
                value = record.fields.get(name)
                if not isinstance(value, str) or not value.strip():
                    issues.append(DataIssue("error", record.source, record.line, name,
                                            f"missing or empty {name}", "every row needs some text"))
        return issues

    @abstractmethod
    def framing(self, tokenizer: Any) -> tuple[list[int], list[int], int | None]:
        """(tokens before each block, tokens after it, the separator between documents)."""

    # ---- encoding ---------------------------------------------------------------------------
    def encode(self, records: Sequence[Record], tokenizer: Any, max_length: int,
               with_labels: bool = True) -> Encoded:
        """Labeled (training, evaluation): blocks of the documents' token stream. Unlabeled
        (prediction): each text on its own, cut at max_length."""
        texts = [str(r.fields.get(self.cfg.data.text_column, "")) for r in records]
        if not with_labels:
            return self._encode_inputs(records, texts, tokenizer, max_length)
        prefix, suffix, separator = self.framing(tokenizer)
        size = max_length - len(prefix) - len(suffix)
        if size < 1:
            raise ValueError(f"--model.max-length {max_length} leaves no room for text in a block "
                             f"({len(prefix) + len(suffix)} special tokens); raise it")
        encoding = tokenizer(texts, add_special_tokens=False)
        starts = [_word_starts(encoding, i) for i in range(len(texts))]
        blocks = pack_blocks(encoding["input_ids"], size, separator, starts)
        special = set(tokenizer.all_special_ids)
        features = []
        for index, (ids, marks) in enumerate(zip(blocks.ids, blocks.word_starts)):
            tokens = prefix + ids + suffix
            features.append({"input_ids": tokens, "block": index, "record": blocks.first_document[index],
                             "word_starts": [False] * len(prefix) + marks + [False] * len(suffix),
                             "maskable": [t not in special for t in tokens]})
        return Encoded(features, records, lengths=blocks.lengths)

    def _encode_inputs(self, records: Sequence[Record], texts: list[str], tokenizer: Any,
                       max_length: int) -> Encoded:
        ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        lengths = [len(i) for i in tokenizer(texts)["input_ids"]]
        features = [{"input_ids": row, "record": r} for r, row in enumerate(ids)]
        return Encoded(features, records, truncated=sum(n > max_length for n in lengths), lengths=lengths)

    # ---- loss and metrics -------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labeled tokens (0, not NaN, for a batch with none)."""
        losses, counts, _ = token_stats(logits, labels, self.shift)
        return losses.sum() / counts.sum().clamp(min=1)

    def feature_outputs(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Per block: (summed loss, labeled tokens, correct predictions); without labels, the
        logits (prediction)."""
        if labels is None:
            return logits
        return torch.stack(token_stats(logits, labels, self.shift), dim=1)

    def metrics(self, logits: Sequence[np.ndarray], encoded: Encoded) -> dict[str, Any]:
        total = np.sum(logits, axis=0) if len(logits) else np.zeros(3)
        mean = float(total[0] / max(total[1], 1))
        prefix = self.metric_prefix
        return {"perplexity": float(np.exp(mean)), f"{prefix}_loss": mean,
                f"{prefix}_accuracy": float(total[2] / max(total[1], 1)), self.counted: int(total[1]),
                "blocks": len(encoded.features), "document_tokens": int(sum(encoded.lengths))}

    def summary(self, metrics: dict[str, Any]) -> str:
        prefix = self.metric_prefix
        keys = ("perplexity", f"{prefix}_loss", f"{prefix}_accuracy")
        return "\n".join(f"{key:>18}  {metrics[key]:.4f}" for key in keys if key in metrics)


def token_stats(logits: torch.Tensor, labels: torch.Tensor, shift: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of (batch, tokens, vocab) logits: summed cross-entropy over labeled tokens, how
    many there are, and how many the argmax predicts. `shift`: position t predicts label t+1."""
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    labeled = labels != IGNORE_INDEX
    losses = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX,
                             reduction="none")  # (batch, tokens)
    correct = (logits.argmax(-1) == labels) & labeled
    return losses.sum(1), labeled.sum(1).float(), correct.sum(1).float()


def _word_starts(encoding: Any, index: int) -> list[bool]:
    """Whether each token of document `index` begins a word (fast tokenizers know; else every
    token counts as a word)."""
    try:
        words = encoding.word_ids(index)
    except (ValueError, AttributeError):  # a slow tokenizer keeps no word alignment
        return [True] * len(encoding["input_ids"][index])
    return [w is None or i == 0 or w != words[i - 1] for i, w in enumerate(words)]

