"""Generation: instruction-tune a causal LM on prompt -> response pairs, and generate.

- Input: JSONL/CSV with `prompt` and `response` fields (data.prompt_column/response_column), or
  chat `messages` ([{role, content}, ...]; the last assistant turn is the response). The
  tokenizer's chat template formats the prompt when it has one (data.chat_template=auto).
- Loss only on response tokens (the prompt is masked), and EOS closes every response so the
  tuned model learns to stop. A prompt too long for max_length is cut from the left (the
  response is kept) and counted.
- data.packing puts several short examples in one sequence; each attends only to itself
  (block-diagonal causal mask) and its positions restart at 0, so the loss is unchanged.
- Evaluation during training is perplexity on held-out responses; `evaluate` generates and
  scores outputs (exact match, token F1, ROUGE-L; per-class P/R/F1 when outputs are labels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.records import DataIssue, Dataset, Record
from .base import Encoded, Feature, Task, VocabularyOutputs, edit_fields
from .batch import IGNORE_INDEX, pad_token_labels

if TYPE_CHECKING:
    from ..data.edits import Edit


class GenerationTask(VocabularyOutputs, Task):
    name = "generation"
    pipeline_tag = "text-generation"
    default_metric = "perplexity"
    selection_metrics = {"perplexity": False, "response_loss": False}
    onnx_outputs = ()  # served with PyTorch: generation loops over the model, one token at a time
    generates = True
    peft_task_type = "CAUSAL_LM"
    usable_untrained = True  # a pretrained causal LM generates as it is (the zero-shot baseline)

    def input_fields(self) -> tuple[str, str | None]:
        return self.cfg.data.prompt_column, None

    def format_prediction(self, prediction: Any, text: str) -> str:
        return prediction["generated_text"] + "\n"

    def edit_record(self, record: Record, edit: Edit) -> tuple[Record, int]:
        """The prompt only (the response is the target); a chat record is returned as it is."""
        messages = record.fields.get("messages")
        if isinstance(messages, list) and messages:
            return record, 0
        return edit_fields(record, [self.cfg.data.prompt_column], edit)

    @property
    def auto_model_class(self) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    # ---- records -> prompt text and response text -----------------------------------------
    def conversation(self, record: Record) -> tuple[list[dict[str, str]] | str, str | None]:
        """(chat messages or a plain prompt, the response or None)."""
        data = self.cfg.data
        messages = record.fields.get("messages")
        if isinstance(messages, list) and messages:
            if messages[-1].get("role") == "assistant":
                return messages[:-1], str(messages[-1].get("content", ""))
            return messages, None
        response = record.fields.get(data.response_column)
        return str(record.fields.get(data.prompt_column, "")), None if response is None else str(response)

    def prompt_text(self, tokenizer: Any, prompt: list[dict[str, str]] | str) -> tuple[str, bool]:
        """The text the model continues, and whether it already holds the special tokens."""
        template = self.cfg.data.chat_template == "auto" and getattr(tokenizer, "chat_template", None)
        if template:
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
        if isinstance(prompt, list):
            prompt = "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in prompt) + "\nassistant:"
        return prompt, False

    def prompt_ids(self, tokenizer: Any, record: Record) -> list[int]:
        text, formatted = self.prompt_text(tokenizer, self.conversation(record)[0])
        return tokenizer(text, add_special_tokens=not formatted)["input_ids"]

    def make_record(self, item: Any, pair: Any = None, index: int = 0) -> Record:
        """A prompt string, or a list of chat messages."""
        if isinstance(item, str):
            return Record({self.cfg.data.prompt_column: item}, "<input>", index + 1)
        if isinstance(item, list) and all(isinstance(m, dict) and "content" in m for m in item):
            return Record({"messages": item}, "<input>", index + 1)
        raise TypeError(f"input {index}: expected a prompt string or a list of chat messages, "
                        f"got {type(item).__name__}")

    def required_columns(self, columns: Sequence[str], labeled: bool = True) -> list[tuple[str, str | None]]:
        if "messages" in columns:  # chat conversations; rows without them are checked one by one
            return []
        data = self.cfg.data
        wanted: list[tuple[str, str | None]] = [(data.prompt_column, "--data.prompt-column")]
        return wanted + ([(data.response_column, "--data.response-column")] if labeled else [])

    def check(self, datasets: dict[str, Dataset]) -> list[DataIssue]:
        data = self.cfg.data
        issues: list[DataIssue] = []
        for dataset in datasets.values():
            issues += dataset.issues
            for record in dataset.records:
                messages = record.fields.get("messages")
                if messages is not None:
                    if (not isinstance(messages, list) or not messages
                            or not all(isinstance(m, dict) and "content" in m for m in messages)):
                        issues.append(DataIssue("error", record.source, record.line, "messages",
                                                "expected a list of {role, content} objects"))
                    elif messages[-1].get("role") != "assistant":
                        issues.append(DataIssue("error", record.source, record.line, "messages",
                                                "the last message is not an assistant turn (nothing to learn)",
                                                "end each conversation with the assistant's reply"))
                    continue
                for name in (data.prompt_column, data.response_column):
                    value = record.fields.get(name)
                    if value is None or not str(value).strip():
                        issues.append(DataIssue("error", record.source, record.line, name,
                                                f"missing or empty {name}",
                                                f"give {data.prompt_column}/{data.response_column} "
                                                "fields, or chat messages"))
        return issues

    # ---- encoding ---------------------------------------------------------------------------
    def encode(self, records: Sequence[Record], tokenizer: Any, max_length: int,
               with_labels: bool = True) -> Encoded:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; generation needs one to end responses")
        examples, lengths, truncated = [], [], 0
        for r, record in enumerate(records):
            prompt = self.prompt_ids(tokenizer, record)
            response = self.conversation(record)[1] if with_labels else None
            answer = [] if response is None else (
                tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
            lengths.append(len(prompt) + len(answer))
            if len(prompt) + len(answer) > max_length:
                truncated += 1
                answer = answer[:max_length - 1]
                prompt = prompt[len(prompt) - (max_length - len(answer)):]  # keep the prompt's end
            feature: dict[str, Any] = {"input_ids": prompt + answer, "record": r}
            if with_labels:
                feature["labels"] = [IGNORE_INDEX] * len(prompt) + answer
            examples.append(feature)
        if with_labels and self.cfg.data.packing:
            examples = pack(examples, max_length)
        return Encoded(examples, records, truncated=truncated, lengths=lengths)

    def collate(self, features: Sequence[Feature], pad_token_id: int) -> dict[str, torch.Tensor]:
        """Packed features (several examples in one row) attend only within their own example."""
        batch = super().collate(features, pad_token_id)
        if "segments" in features[0]:
            batch["position_ids"], batch["attention_mask"] = packed_positions_and_mask(
                features, batch["input_ids"].shape[1])
        return batch

    def collate_labels(self, labels: Sequence[Any], longest: int) -> torch.Tensor:
        return pad_token_labels(labels, longest)

    # ---- loss and perplexity ----------------------------------------------------------------
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over response tokens."""
        return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                               labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)

    def feature_outputs(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Per token: (its loss as the next token, 1 if it is a response token; 0, 0 otherwise),
        (batch, tokens, 2): sums give perplexity, and each example's own loss (a packed row
        splits by its segments); the logits would be vocabulary-sized."""
        if labels is None:
            return torch.zeros(*logits.shape[:2], 2)
        targets = labels[:, 1:]
        losses = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets,
                                 ignore_index=IGNORE_INDEX, reduction="none")
        kept = torch.stack([losses, (targets != IGNORE_INDEX).float()], dim=-1)  # (batch, tokens - 1, 2)
        return F.pad(kept, (0, 0, 1, 0))  # the first token is no token's target

    def metrics(self, logits: Sequence[np.ndarray], encoded: Encoded) -> dict[str, Any]:
        total = np.sum([row.sum(0) for row in logits], axis=0) if len(logits) else np.zeros(2)
        mean = float(total[0] / max(total[1], 1))
        return {"perplexity": float(np.exp(mean)), "response_loss": mean, "response_tokens": int(total[1])}

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded, **options: Any) -> list[Any]:
        raise TypeError("a generation model predicts by generating text: use predict()/generate()")

    # ---- generation -------------------------------------------------------------------------
    def predict_records(self, predictor: Any, records: Sequence[Record], **options: Any) -> list[Any]:
        from ..inference.generate import generate

        prompts = [self.prompt_ids(predictor.tokenizer, r) for r in records]
        texts = generate(predictor.model, predictor.tokenizer, prompts, self.cfg.generation, **options)
        return [{"generated_text": t} for t in texts]

    def evaluate_records(self, predictor: Any, records: Sequence[Record],
                         rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Generated outputs scored against the references, and perplexity; given `rows`, also
        appends the per-example predictions (with the outputs generated here)."""
        from ..evaluation.generation_metrics import generation_scores

        outputs = [p["generated_text"] for p in self.predict_records(predictor, records)]
        golds = [self.conversation(r)[1] or "" for r in records]
        result = generation_scores(outputs, golds)
        logits, encoded = predictor.logits(records, with_labels=True)
        result.update(self.metrics(logits, encoded))
        if rows is not None:
            rows.extend(self.example_rows(logits, encoded, outputs=outputs))
        result["examples"] = [{"prompt": str(self.conversation(r)[0])[-300:], "gold": g, "output": o}
                              for r, g, o in list(zip(records, golds, outputs))[:20]]
        return result

    def example_rows(self, logits: Sequence[np.ndarray], encoded: Encoded,
                     outputs: Sequence[str] | None = None, **options: Any) -> list[dict[str, Any]]:
        """Per record: the prompt, the reference and the generated output (None where nothing was
        generated, as in training's final evaluation: correct is then false), correct when they
        are equal as the exact_match metric compares them; loss: the mean loss of the response
        tokens."""
        from ..evaluation.examples import example_row
        from ..evaluation.squad_metrics import exact_match

        sums = np.zeros((len(encoded.records), 2))  # per record: summed response loss, tokens
        for feature, row in zip(encoded.features, logits):  # row: (tokens, 2)
            if "segments" in feature:  # a packed row: each token belongs to its segment's record
                owners = np.array(feature["records"])[np.array(feature["segments"]) - 1]
            else:
                owners = np.full(len(row), feature["record"])
            np.add.at(sums, owners, row)
        rows = []
        for r, record in enumerate(encoded.records):
            prompt, reference = self.conversation(record)
            output = None if outputs is None else outputs[r]
            shown = self.prompt_text(None, prompt)[0]  # no tokenizer: chat turns as "role: content" lines
            rows.append(example_row(r, record, shown, reference or "", output,
                                    correct=output is not None and bool(exact_match(output, reference or "")),
                                    loss=sums[r, 0] / max(sums[r, 1], 1)))
        return rows

    def summary(self, metrics: dict[str, Any]) -> str:
        from ..evaluation.metrics import format_report

        lines = [format_report(metrics)] if "per_class" in metrics else []
        for key in ("exact_match", "f1", "rouge_l", "perplexity"):
            if key in metrics:
                lines.append(f"{key:>14}  {metrics[key]:.4f}")
        return "\n".join(lines)


def pack(examples: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
    """First-fit-decreasing packing of examples into sequences of at most max_length tokens."""
    bins: list[list[dict[str, Any]]] = []
    room: list[int] = []
    for example in sorted(examples, key=lambda e: -len(e["input_ids"])):
        n = len(example["input_ids"])
        slot = next((i for i, free in enumerate(room) if free >= n), None)
        if slot is None:
            bins.append([example])
            room.append(max_length - n)
        else:
            bins[slot].append(example)
            room[slot] -= n
    packed = []
    for group in bins:
        packed.append({
            "input_ids": [t for e in group for t in e["input_ids"]],
            "labels": [t for e in group for t in e["labels"]],
            "segments": [k + 1 for k, e in enumerate(group) for _ in e["input_ids"]],
            "segment_lengths": [len(e["input_ids"]) for e in group],
            "record": group[0]["record"],
            "records": [e["record"] for e in group],  # segment k + 1 is records[k]
        })
    return packed


def packed_positions_and_mask(features: Sequence[Feature], longest: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids restarting at each packed example, and a 4-D additive causal mask that is
    block-diagonal over examples (0 where attention is allowed, the dtype minimum elsewhere)."""
    segments = torch.zeros((len(features), longest), dtype=torch.long)  # 0: padding
    for row, feature in enumerate(features):
        segments[row, : len(feature["segments"])] = torch.tensor(feature["segments"])
    positions = torch.zeros_like(segments)
    for row, feature in enumerate(features):
        start = 0
        for length in feature["segment_lengths"]:
            positions[row, start:start + length] = torch.arange(length)
            start += length
    same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, :, None] > 0)
    causal = torch.ones(longest, longest, dtype=torch.bool).tril()
    allowed = same & causal
    allowed |= torch.eye(longest, dtype=torch.bool)  # padding rows attend to themselves (no NaN)
    mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return positions, mask[:, None]
