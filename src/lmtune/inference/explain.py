"""Why a run predicted what it did: token attributions by integrated gradients.

    from lmtune.inference.explain import explain, render_terminal, write_html
    explanations = explain(lmtune.load("runs/demo"), ["a dull, lifeless mess"])

Integrated gradients (Captum's LayerIntegratedGradients) integrates the gradient of one score
along the straight line from a baseline input to the input, in the space of the model's input
embeddings (the word-embedding layer: positions and segments are the same at both ends). The
baseline is the input with every token replaced by the pad token, the special tokens ([CLS],
[SEP], ...) kept as they are, so they get no attribution. What is explained depends on the task
(`Task.explain_targets`): the probability of the predicted class (or of a chosen label), the
tag logit of each predicted entity's first token, the start and end logits of a predicted
answer. Attributions are given per word piece and summed per word, with the word's character
offsets in its text.

Completeness: the attributions of one score add up to score(input) - score(baseline) when the
integral is exact; the relative gap measures how good the approximation is. Over `tolerance`
(5%), the number of steps doubles (up to `max_steps`) and the attribution is recomputed; every
result records the steps it used and its gap.

Captum is an optional dependency (`pip install 'lmtune[explain]'`), imported when used.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import ConfigError
from ..tasks.base import ExplainTarget, Feature, TokenWords, not_explainable

DEFAULT_STEPS = 50
MAX_STEPS = 400  # the cap when the completeness check keeps doubling the steps
TOLERANCE = 0.05  # relative completeness error accepted


@dataclass
class WordAttribution:
    field: str  # which text the word is in (text, pair, question, context, ...)
    text: str
    start: int  # character offsets into that text
    end: int
    attribution: float


@dataclass
class TokenAttribution:
    token: str
    attribution: float
    word: int | None  # index into the target's words; None for special tokens


@dataclass
class TargetExplanation:
    """The attribution of one score to the tokens and words it was computed from."""

    name: str
    kind: str  # "probability" or "logit"
    score: float  # on the input
    baseline_score: float  # on the all-pad baseline
    attribution_sum: float
    error: float  # |attribution_sum - (score - baseline_score)| / |score - baseline_score|
    n_steps: int
    converged: bool  # error <= tolerance
    tokens: list[TokenAttribution] = field(default_factory=list)
    words: list[WordAttribution] = field(default_factory=list)


@dataclass
class Explanation:
    """One input: its texts, the prediction and the explained targets."""

    segments: dict[str, str]  # field -> text, what the word offsets index into
    prediction: Any
    targets: list[TargetExplanation]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def explain(predictor: Any, texts: Sequence[Any] | Any, pairs: Sequence[str] | str | None = None, *,
            label: str | None = None, n_steps: int = DEFAULT_STEPS, max_steps: int = MAX_STEPS,
            tolerance: float = TOLERANCE, batch_size: int = 32) -> list[Explanation]:
    """Explanations of a loaded run's predictions (lmtune.load), one per input, in order.

    Inputs are what `predictor.predict` takes (texts, text pairs, word lists, question +
    context pairs). `label`: classification: the label(s) to explain ("a" or "a,b") instead of
    the predicted one; NER: explain only entities of this type. `n_steps`: integration steps
    to start from; `batch_size`: interpolated inputs per forward pass."""
    _check(predictor, n_steps, max_steps)
    texts = [texts] if isinstance(texts, str) else list(texts)
    pairs = [pairs] * len(texts) if isinstance(pairs, str) else pairs
    if not texts:
        return []
    task = predictor.task
    logits, encoded = predictor.logits(predictor._records(texts, pairs))
    predictions = task.decode(logits, encoded)
    targets = task.explain_targets(logits, encoded, label)
    owner = [f.get("record", i) for i, f in enumerate(encoded.features)]
    settings = dict(n_steps=n_steps, max_steps=max(max_steps, n_steps), tolerance=tolerance,
                    batch_size=batch_size)
    results = []
    for r, prediction in enumerate(predictions):
        words = task.explain_words(encoded, owner.index(r), predictor.tokenizer)
        explained = [_explain_target(predictor, encoded.features[t.feature],
                                     task.explain_words(encoded, t.feature, predictor.tokenizer), t, **settings)
                     for t in targets[r]]
        results.append(Explanation(dict(words.segments), prediction, explained))
    return results


def _check(predictor: Any, n_steps: int, max_steps: int) -> None:
    """Refuse early, with the reason, what cannot be explained."""
    if not getattr(predictor.task, "explainable", False):
        raise not_explainable(predictor.task.name)
    if not isinstance(predictor.model, torch.nn.Module):
        raise ValueError("explanations need the PyTorch model (gradients); load the run without "
                         "backend='onnx'")
    if not isinstance(n_steps, int) or n_steps < 1 or max_steps < 1:
        raise ValueError(f"steps={n_steps!r}: the number of integration steps must be a positive integer")
    import importlib.util

    if importlib.util.find_spec("captum") is None:
        raise ConfigError("explanations need Captum: pip install 'lmtune[explain]'")


def _baseline(input_ids: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    """The input with every non-special token replaced by the pad token."""
    pad = next(i for i in (tokenizer.pad_token_id, tokenizer.unk_token_id, 0) if i is not None)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=input_ids.device)
    return torch.where(torch.isin(input_ids, special), input_ids, torch.full_like(input_ids, pad))


def _explain_target(predictor: Any, feature: Feature, words: TokenWords, target: ExplainTarget,
                    n_steps: int, max_steps: int, tolerance: float, batch_size: int) -> TargetExplanation:
    """Integrated gradients for one score, the steps doubled until complete enough."""
    from captum.attr import LayerIntegratedGradients

    model, task, tokenizer = predictor.model, predictor.task, predictor.tokenizer
    batch = {k: v.to(predictor.device) for k, v in task.collate([feature], tokenizer.pad_token_id or 0).items()}
    input_ids, names = batch.pop("input_ids"), list(batch)  # input_ids: (1, tokens)
    baseline = _baseline(input_ids, tokenizer)

    temperature = getattr(predictor, "temperature", None)  # the predictions' calibration, if any

    def score(ids: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        from ..forward import forward_logits

        logits = forward_logits(model, task, {"input_ids": ids, **dict(zip(names, extra))}, predictor.method)
        return target.score(logits if temperature is None else logits / temperature)  # (batch,)

    others = tuple(batch[k] for k in names)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            with torch.no_grad():
                ends = float(score(input_ids, *others)[0]), float(score(baseline, *others)[0])
            ig = LayerIntegratedGradients(score, model.get_input_embeddings())
            steps = n_steps
            while True:
                attributions = ig.attribute(input_ids, baselines=baseline, additional_forward_args=others,
                                            n_steps=steps, internal_batch_size=batch_size)
                per_token = attributions.sum(-1)[0].detach().float().cpu()  # (tokens,)
                error = _relative_error(float(per_token.sum()), ends[0] - ends[1])
                if error <= tolerance or steps >= max_steps:
                    break
                steps = min(steps * 2, max_steps)
    finally:
        model.train(was_training)
    tokens, word_list = _by_word(tokenizer.convert_ids_to_tokens(feature["input_ids"]), per_token.tolist(), words)
    return TargetExplanation(target.name, target.kind, ends[0], ends[1], float(per_token.sum()), error,
                             steps, error <= tolerance, tokens, word_list)


def _relative_error(total: float, delta: float) -> float:
    """How far the attributions' sum is from the score difference, relative to that difference."""
    return abs(total - delta) / max(abs(delta), 1e-6)


def _by_word(pieces: list[str], values: list[float], words: TokenWords
             ) -> tuple[list[TokenAttribution], list[WordAttribution]]:
    """Per-piece attributions, and their sums per word (words in the order they first appear)."""
    if len(words.spans) != len(pieces):
        raise ValueError(f"the task gave words for {len(words.spans)} tokens but the input has "
                         f"{len(pieces)}; the tokenizer splits differently than when encoding")
    index: dict[tuple[int, int, int], int] = {}
    word_list: list[WordAttribution] = []
    tokens = []
    for piece, value, span in zip(pieces, values, words.spans):
        if span is not None and span not in index:
            name, text = words.segments[span[0]]
            index[span] = len(word_list)
            word_list.append(WordAttribution(name, text[span[1]:span[2]], span[1], span[2], 0.0))
        if span is not None:
            word_list[index[span]].attribution += value
        tokens.append(TokenAttribution(piece, value, None if span is None else index[span]))
    return tokens, word_list


# ---- rendering --------------------------------------------------------------------------------
def _colour(value: float, scale: float) -> tuple[int, int, int]:
    """White blended toward green (positive) or red (negative) by |value| / scale."""
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    full = (22, 163, 74) if value >= 0 else (220, 38, 38)
    return tuple(round(255 + (c - 255) * strength) for c in full)  # type: ignore[return-value]


def _pieces(explanation: Explanation, target: TargetExplanation) -> list[tuple[str, list[tuple[str, WordAttribution | None]]]]:
    """Per segment, its text cut into runs: (text, the word it is or None for the gaps)."""
    result = []
    for name, text in explanation.segments.items():
        runs, at = [], 0
        for word in sorted((w for w in target.words if w.field == name), key=lambda w: w.start):
            if word.start < at:  # a word seen again in an overlapping window
                continue
            runs += [(text[at:word.start], None)] if word.start > at else []
            runs.append((text[word.start:word.end], word))
            at = word.end
        runs += [(text[at:], None)] if at < len(text) else []
        result.append((name, runs))
    return result


def _scale(target: TargetExplanation) -> float:
    return max((abs(w.attribution) for w in target.words), default=0.0)


def _heading(target: TargetExplanation) -> str:
    return (f"{target.name}: {target.kind} {target.score:.4f} (baseline {target.baseline_score:.4f}); "
            f"{target.n_steps} steps, completeness error {target.error:.1%}"
            + ("" if target.converged else " (over the tolerance)"))


def render_terminal(explanations: Sequence[Explanation], console: Any = None) -> None:
    """Each explained score, then its texts with each word coloured by its attribution (green
    raises the score, red lowers it; the stronger, the deeper)."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    for number, explanation in enumerate(explanations, 1):
        console.print(Text(f"input {number}", style="bold"))
        if not explanation.targets:
            console.print("  nothing to explain (no entity predicted)")
        for target in explanation.targets:
            console.print(Text(f"  {_heading(target)}"))
            scale = _scale(target)
            for name, runs in _pieces(explanation, target):
                line = Text(f"    {name}: ")
                for text, word in runs:
                    style = None if word is None else "black on rgb({},{},{})".format(*_colour(word.attribution, scale))
                    line.append(text, style=style)
                console.print(line)
            top = sorted(target.words, key=lambda w: -abs(w.attribution))[:5]
            console.print("    top words: " + ", ".join(f"{w.text} {w.attribution:+.3f}" for w in top))


def to_html(explanations: Sequence[Explanation]) -> str:
    """A standalone HTML page of the explanations: inline styles only, no script, nothing fetched."""
    body = []
    for number, explanation in enumerate(explanations, 1):
        body.append(f'<h2 style="font-size:1.1em">Input {number}</h2>')
        if not explanation.targets:
            body.append("<p>Nothing to explain (no entity predicted).</p>")
        for target in explanation.targets:
            body.append(f'<h3 style="font-size:1em">{html.escape(_heading(target))}</h3>')
            scale = _scale(target)
            for name, runs in _pieces(explanation, target):
                spans = "".join(html.escape(text) if word is None else
                                '<span style="background-color:rgb({},{},{});padding:1px 2px;border-radius:3px" '
                                'title="{:+.4f}">{}</span>'.format(*_colour(word.attribution, scale),
                                                                   word.attribution, html.escape(text))
                                for text, word in runs)
                body.append(f'<p style="line-height:1.8"><b>{html.escape(name)}:</b> {spans}</p>')
    legend = ('<p style="color:#555">Integrated gradients: <span style="background-color:rgb(22,163,74);'
              'color:white;padding:1px 4px">green</span> words raise the explained score, <span style='
              '"background-color:rgb(220,38,38);color:white;padding:1px 4px">red</span> words lower it; '
              'the deeper the colour, the larger the share (hover a word for its value).</p>')
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>lmtune explanations</title></head>\n"
            '<body style="font-family:sans-serif;max-width:60em;margin:2em auto">\n'
            f'<h1 style="font-size:1.3em">lmtune explanations</h1>\n{legend}\n' + "\n".join(body)
            + "\n</body></html>\n")


def write_html(explanations: Sequence[Explanation], path: str | Path) -> Path:
    """`to_html` written to `path`."""
    path = Path(path)
    path.write_text(to_html(explanations), encoding="utf-8")
    return path
