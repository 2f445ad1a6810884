"""The SetFit baseline of benchmarks/fewshot.py (Tunstall et al., 2022): contrastive fine-tuning of
a sentence-transformers body on pairs of the K-shot sample, then a logistic-regression head, all
with setfit's defaults (only the seed is set). Prints one JSON line: accuracy, macro_f1,
train_seconds (Trainer.train: body and head), eval_seconds (predicting the evaluation file).

Runs in its own virtualenv (`make setfit-venv`), so setfit's requirements never move lmtune's:

    .venv-setfit/bin/python benchmarks/setfit_baseline.py --train k8.tsv --eval dev.tsv \\
        --text-column sentence --label-column label --model FOLDER --seed 0

FOLDER is a local sentence-transformers folder (the packaged all-MiniLM-L6-v2:
`.venv/bin/python -c "from lmtune.models import resolve_model; print(resolve_model('minilm'))"`);
nothing is fetched from a model hub.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import: local folders only
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MISSING_VENV = ("setfit is not installed for {python}: run `make setfit-venv` in the repository root, "
                "then run this script with .venv-setfit/bin/python")


def read_tsv(path: str, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """Texts and labels (as strings, the data's own values) of a TSV file with a header."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {text_column, label_column} - set(reader.fieldnames or [])
        if missing:
            sys.exit(f"{path}: no column {', '.join(sorted(missing))} (columns: {reader.fieldnames}); "
                     "set --text-column / --label-column")
        rows = [(r[text_column], r[label_column]) for r in reader]
    return [t for t, _ in rows], [label for _, label in rows]


def load_model(folder: Path):
    """SetFitModel.from_pretrained(folder), its default logistic-regression head included. A
    folder without modules.json is built as all-MiniLM-L6-v2 is (Transformer, mean Pooling,
    Normalize), where sentence-transformers would otherwise guess the pooling."""
    from setfit import SetFitModel
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from sklearn.linear_model import LogisticRegression

    if (folder / "modules.json").is_file():
        return SetFitModel.from_pretrained(str(folder), device="cpu")
    print(f"{folder} has no modules.json: building Transformer + Pooling(mean) + Normalize", file=sys.stderr)
    transformer = Transformer(str(folder), max_seq_length=256)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    body = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
    return SetFitModel(model_body=body, model_head=LogisticRegression())


def check_mean_pooling(body) -> None:
    """SetFit's result depends on the pooling; this baseline is defined with mean pooling."""
    from sentence_transformers.models import Pooling

    modes = [getattr(m, "pooling_mode", None) for m in body if isinstance(m, Pooling)]
    if modes != ["mean"]:
        sys.exit(f"expected one mean Pooling module in the sentence-transformers model, found {modes}")


def train_and_score(args: argparse.Namespace) -> dict[str, float]:
    """Train SetFit with its default TrainingArguments (seed aside) and score the eval file."""
    from datasets import Dataset
    from setfit import Trainer, TrainingArguments
    from sklearn.metrics import accuracy_score, f1_score

    texts, labels = read_tsv(args.train, args.text_column, args.label_column)
    eval_texts, eval_labels = read_tsv(args.eval, args.text_column, args.label_column)
    model = load_model(Path(args.model))
    check_mean_pooling(model.model_body)
    # setfit prints its training log to stdout: keep stdout for the result line alone
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(sys.stderr):
        training = TrainingArguments(seed=args.seed, output_dir=scratch, report_to="none")  # checkpoints: scratch
        trainer = Trainer(model=model, args=training,
                          train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        predicted = [str(p) for p in model.predict(eval_texts, batch_size=64, as_numpy=True)]
        eval_seconds = time.perf_counter() - start
    return {"accuracy": accuracy_score(eval_labels, predicted),
            "macro_f1": f1_score(eval_labels, predicted, average="macro"),
            "train_seconds": round(train_seconds, 2), "eval_seconds": round(eval_seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="the K-shot sample (TSV with a header)")
    parser.add_argument("--eval", required=True, help="the labeled evaluation file (TSV)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--model", required=True, help="a local sentence-transformers folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in (args.train, args.eval, args.model):
        if not Path(path).exists():
            sys.exit(f"{path} not found")
    try:
        import setfit  # noqa: F401
    except ImportError:
        sys.exit(MISSING_VENV.format(python=sys.executable))
    print(json.dumps(train_and_score(args)), flush=True)


if __name__ == "__main__":
    main()
