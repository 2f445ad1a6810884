"""Integrated-gradients explanations on SST-2 dev: are they complete, and do they point at the
words the prediction rests on?

With the fine-tuned default run (runs/bench-sst2, from benchmarks/sst2_accuracy.py), on the
first --rows dev sentences:
- completeness: the share whose attributions add up to p(input) - p(baseline) within 5% at the
  default 50 steps, and after doubling the steps (up to 400) where they did not;
- deletion test: the k words with the highest attribution toward the predicted class removed
  from the sentence lower that class's probability more than k random words removed (mean
  over --draws random draws), for k = 1, 3, 5 and the top 10% / 20% of the words.

    .venv/bin/python benchmarks/explanations_sst2.py [--run runs/bench-sst2] [--rows 100]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

from preset_run import ROOT, SHARED_DATA

SIZES = [("1", 1), ("3", 3), ("5", 5), ("10%", 0.1), ("20%", 0.2)]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def without(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the character spans cut out (and the spaces they leave collapsed)."""
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + text[end:]
    return " ".join(text.split())


def how_many(size: float, words: int) -> int:
    """k words for a size (a count, or a fraction of the words, at least 1); always one left."""
    k = size if isinstance(size, int) else max(1, math.ceil(size * words))
    return min(k, words - 1)


def deletion_rows(explanation, rng: random.Random, draws: int) -> list[tuple[str, int, str, list[str]]]:
    """(size, k, the text without the top-k words, texts without k random words) per size."""
    (text,) = explanation.segments.values()
    words = explanation.targets[0].words
    ranked = sorted(words, key=lambda w: -w.attribution)
    rows = []
    for name, size in SIZES:
        k = how_many(size, len(words))
        top = without(text, [(w.start, w.end) for w in ranked[:k]])
        randoms = [without(text, [(w.start, w.end) for w in rng.sample(words, k)]) for _ in range(draws)]
        rows.append((name, k, top, randoms))
    return rows


def main() -> None:
    import lmtune
    from lmtune.data import read_table
    from lmtune.inference.explain import DEFAULT_STEPS, explain

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(ROOT / "runs" / "bench-sst2"))
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--draws", type=int, default=5, help="random deletions per sentence and k")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = Path(args.run)
    if not (run / "model").is_dir():
        sys.exit(f"{run}: no model/ here. Train the default SST-2 run first (about 40 min on CPU):\n"
                 "    .venv/bin/python benchmarks/sst2_accuracy.py\nor pass --run with another SST-2 run folder.")
    predictor = lmtune.load(run)
    texts = [" ".join(str(r.fields["sentence"]).split()) for r in read_table(SHARED_DATA / "sst2" / "dev.tsv").records]
    texts = [t for t in texts if len(t.split()) >= 2][: args.rows]  # one word cannot lose one and keep a text

    start = time.time()
    explanations = explain(predictor, texts)
    seconds = time.time() - start
    targets = [e.targets[0] for e in explanations]
    first_try = sum(t.converged and t.n_steps == DEFAULT_STEPS for t in targets)
    print(f"\n{run.name}: {len(texts)} SST-2 dev sentences, {seconds / len(texts):.2f} s per explanation")
    print(f"completeness within 5% at {DEFAULT_STEPS} steps: {first_try}/{len(targets)} "
          f"({first_try / len(targets):.0%}); after doubling (up to 400): "
          f"{sum(t.converged for t in targets)}/{len(targets)}; "
          f"error at the steps used: median {sorted(t.error for t in targets)[len(targets) // 2]:.2e}, "
          f"max {max(t.error for t in targets):.2e}")

    rng = random.Random(args.seed)
    drops: dict[str, dict[str, list[float]]] = {name: {"top": [], "random": [], "wins": []} for name, _ in SIZES}
    for explanation, target in zip(explanations, targets):
        rows_for = deletion_rows(explanation, rng, args.draws)
        edited = [text for _, _, top, randoms in rows_for for text in (top, *randoms)]
        probs = [p["probabilities"][target.name] for p in predictor.predict(edited)]
        before = explanation.prediction["probabilities"][target.name]
        for i, (name, _, _, _) in enumerate(rows_for):
            chunk = probs[i * (1 + args.draws):(i + 1) * (1 + args.draws)]
            top, randoms = before - chunk[0], [before - p for p in chunk[1:]]
            drops[name]["top"].append(top)
            drops[name]["random"].append(sum(randoms) / len(randoms))
            drops[name]["wins"].append(float(top > drops[name]["random"][-1]))
    print("\nDeletion test: drop in the predicted class's probability when words are removed")
    print("| words removed | top-attributed | random (mean of {}) | top > random |\n|---|---|---|---|".format(args.draws))
    for name, _ in SIZES:
        d = drops[name]
        print(f"| {name} | {mean(d['top']):.3f} | {mean(d['random']):.3f} | {mean(d['wins']):.0%} |")


if __name__ == "__main__":
    main()
