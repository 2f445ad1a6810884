"""Batched text generation from token ids: left padding, greedy or sampling, stop strings, streaming."""

from __future__ import annotations

from typing import Any, Sequence

import torch


def generate(model: Any, tokenizer: Any, prompts: Sequence[list[int]], settings: Any,
             stream: bool = False, **options: Any) -> list[str]:
    """Continue each prompt (token ids); returns only the new text, cut at the first stop string.

    options override the run's generation settings: max_new_tokens, temperature (0 = greedy),
    top_p, stop (a string or a list), batch_size, seed. Batches are left-padded so every prompt
    ends where generation starts; greedy output is the same as one prompt at a time.
    """
    get = lambda key: options.get(key, getattr(settings, key))  # noqa: E731
    stops = get("stop")
    stops = [stops] if isinstance(stops, str) else list(stops or [])
    temperature, batch_size = float(get("temperature")), int(get("batch_size"))
    if options.get("seed") is not None:
        torch.manual_seed(int(options["seed"]))
    pad = pad_id(tokenizer)
    device = next(model.parameters()).device
    kwargs: dict[str, Any] = {"max_new_tokens": int(get("max_new_tokens")), "pad_token_id": pad,
                              "eos_token_id": tokenizer.eos_token_id, "do_sample": temperature > 0}
    if temperature > 0:
        kwargs.update(temperature=temperature, top_p=float(get("top_p")))
    if stops:
        kwargs.update(stop_strings=stops, tokenizer=tokenizer)
    if stream:
        from transformers import TextStreamer

        kwargs["streamer"] = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        batch_size = 1
    outputs: list[str] = []
    model.eval()
    for start in range(0, len(prompts), batch_size):
        ids, mask = left_pad(prompts[start:start + batch_size], pad)
        with torch.inference_mode():
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        for row in generated[:, ids.shape[1]:].tolist():
            outputs.append(cut_at_stop(tokenizer.decode(row, skip_special_tokens=True), stops))
    return outputs


def pad_id(tokenizer: Any) -> int:
    """The id that fills left padding (EOS for decoders that have no pad token)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def left_pad(sequences: Sequence[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) with every sequence ending at the last column, where a decoder
    continues it."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, longest - len(sequence):] = torch.tensor(sequence, dtype=torch.long)
        mask[row, longest - len(sequence):] = 1
    return ids, mask


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text before the first stop string, without surrounding whitespace."""
    positions = [text.find(s) for s in stops if s and s in text]
    return (text[:min(positions)] if positions else text).strip()
