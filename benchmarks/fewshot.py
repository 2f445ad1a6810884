"""Few-shot learning (issue 17): how good a classifier K labeled examples per class make. For each
data set, K and seed, on the same K-shot sample (lmtune's own sampler: `--train.examples-per-class
K --train.seed S` draws it inside lmtune; the SetFit baseline gets the very same rows as a file):

- few-shot:  `lmtune train --method few-shot` (sentence-embedding classifier started from the
             label descriptions), then `lmtune evaluate RUN --data EVAL`;
- few-shot-decoder: `lmtune train --model.name smollm2 --method few-shot --data.template PROMPT`
             (prompt-based fine-tuning of the decoder: a head started from the label words);
- plain:     `lmtune train --method full` (a new classification head), evaluated the same way;
- zero-shot: the encoder's similarity to the label descriptions, no training (once per data set;
             the K = 0 column);
- setfit:    SetFit 1.2 with its defaults (benchmarks/setfit_baseline.py, in .venv-setfit).

Reported: accuracy and macro F1 on the evaluation file, and training seconds (lmtune: its
training loop, metrics.json training.seconds; SetFit: Trainer.train), mean ± std over seeds.
The lmtune runs train with no validation data (a few-shot learner has none): the last epoch counts.
The raw results also hold eval_seconds (lmtune: the `lmtune evaluate` command's wall time, model
loading included; SetFit: predicting only; zero-shot: loading and scoring) and train_wall_seconds.

    make setfit-venv                                                 # once: SetFit's own virtualenv
    .venv/bin/python benchmarks/fewshot.py                           # sst2, trec x K 8,16,32,64 x seeds 0-4
    .venv/bin/python benchmarks/fewshot.py --methods plain,zero-shot,setfit --datasets sst2 \\
        --ks 8 --seeds 0 --eval-rows 200                             # a quick check
    .venv/bin/python benchmarks/fewshot.py --setting "few-shot=--train.epochs 10 --train.batch-size 16"

Raw results go to --out (runs/bench-fewshot/results.json), written after each run; a rerun skips
every (data set, method, K, seed, eval rows) already there, so an interrupted run continues.
`--eval-rows N` scores a seeded sample of N evaluation rows (the same for every method).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from preset_run import ROOT, SHARED_DATA


@dataclass(frozen=True)
class DataSet:
    train: str  # the pool the K-shot samples are drawn from, under ../shared/data
    eval: str
    text_column: str
    label_column: str
    labels: str  # value=word,... : the words the encoder sees
    description: str  # how a label is described to the encoder
    template: str = ""  # the decoder's prompt (few-shot-decoder)
    words: str = ""  # the decoder's label words (one first token each)


DATASETS = {
    "sst2": DataSet("sst2/train.tsv", "sst2/dev.tsv", "sentence", "label", "0=negative,1=positive",
                    "a {label} review", "Classify the text. Answer with one of: negative, positive.\nText: {text}",
                    "0=negative,1=positive"),
    "trec": DataSet("continual/tasks/trec/train.tsv", "continual/tasks/trec/test.tsv", "text", "label",
                    "ABBR=an abbreviation,DESC=a description,ENTY=a thing,HUM=a person,LOC=a place,NUM=a number",
                    "a question asking for {label}",  # written once, never tuned on the test rows
                    "Classify the question. Answer with one of: abbreviation, description, entity, person, "
                    "location, number.\nQuestion: {text}",
                    "ABBR=abbreviation,DESC=description,ENTY=entity,HUM=person,LOC=location,NUM=number"),
}
# Extra `lmtune train` overrides per method (`--setting METHOD=OVERRIDES` replaces one).
SETTINGS = {
    "few-shot": "--train.epochs 20 --train.batch-size 16",
    "few-shot-decoder": "--train.epochs 10 --train.batch-size 16",
    "plain": "--train.epochs 20 --train.batch-size 16",
}
METHODS = ["few-shot", "few-shot-decoder", "plain", "zero-shot", "setfit"]
MODEL = "minilm"
SETFIT_PYTHON = ROOT / ".venv-setfit" / "bin" / "python"
LMTUNE = [str(Path(sys.executable).with_name("lmtune"))]  # the CLI of the virtualenv running this


def lmtune_method_flags(method: str, data: DataSet) -> list[str]:
    """The `lmtune train` flags that make `method` (few-shot or plain)."""
    flags = {"few-shot": ["--method", "few-shot", "--few-shot.labels", data.labels,
                          "--few-shot.description", data.description],
             "few-shot-decoder": ["--model.name", "smollm2", "--method", "few-shot", "--few-shot.labels",
                                  data.words, "--data.template", data.template],
             "plain": ["--method", "full"]}
    return flags[method]


def check_inputs(names: list[str], methods: list[str]) -> None:
    """Stop with a message, not a traceback, at an unknown name or a missing file or virtualenv."""
    for given, known, what in ((names, DATASETS, "data set"), (methods, METHODS, "method")):
        unknown = [n for n in given if n not in known]
        if unknown:
            sys.exit(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    for name in names:
        for relative in (DATASETS[name].train, DATASETS[name].eval):
            if not (SHARED_DATA / relative).is_file():
                sys.exit(f"{SHARED_DATA / relative} not found: the benchmark reads ../shared/data")
    if "setfit" in methods and not SETFIT_PYTHON.is_file():
        sys.exit(f"{SETFIT_PYTHON} not found: run `make setfit-venv` first (SetFit has its own virtualenv)")


def eval_subset(data: DataSet, rows: int, folder: Path) -> Path:
    """The evaluation file, or a seeded sample of `rows` of its lines (in file order) as a TSV."""
    path = SHARED_DATA / data.eval
    header, *lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if not rows or rows >= len(lines):
        print(f"evaluating on all {len(lines):,} rows of {path}", flush=True)
        return path
    keep = sorted(random.Random(0).sample(range(len(lines)), rows))
    out = folder / f"{path.stem}-{rows}.tsv"
    out.write_text(header + "".join(lines[i] for i in keep), encoding="utf-8")
    print(f"evaluating on {rows:,} of {len(lines):,} rows of {path} (a seeded sample, seed 0)", flush=True)
    return out


class KShot:
    """K-shot samples drawn as `lmtune train --train.examples-per-class K --train.seed S` draws
    them: the pool read and checked by lmtune's own data preparation, then its sampler."""

    def __init__(self, folder: Path):
        self.folder, self.pools = folder, {}

    def file(self, name: str, k: int, seed: int) -> tuple[Path, int]:
        """The sample as a TSV (text and label columns) and its row count."""
        from lmtune.data.sampling import sample_per_class

        data = DATASETS[name]
        task, train = self._pool(name)
        records = sample_per_class(train.records, task.record_classes, k, seed, train.path)
        out = self.folder / f"{name}-k{k}-s{seed}.tsv"
        lines = [f"{data.text_column}\t{data.label_column}\n"]
        lines += [f"{r.fields[data.text_column]}\t{r.fields[data.label_column]}\n" for r in records]
        out.write_text("".join(lines), encoding="utf-8")
        return out, len(records)

    def _pool(self, name: str):
        if name not in self.pools:
            from lmtune.pipeline import prepare_data
            from lmtune.tasks import get_task

            cfg = train_config(DATASETS[name])
            task = get_task(cfg)
            splits, _, _ = prepare_data(cfg, task)
            self.pools[name] = task, splits["train"]
        return self.pools[name]


def train_config(data: DataSet):
    """The data settings of the lmtune runs, as a Config (for drawing the same sample)."""
    from lmtune.config import Config

    cfg = Config()
    cfg.model.name = MODEL
    cfg.data.train = str(SHARED_DATA / data.train)
    cfg.data.text_column, cfg.data.label_column = data.text_column, data.label_column
    return cfg


def run_lmtune(name: str, method: str, k: int, seed: int, eval_path: Path, args: argparse.Namespace) -> dict | None:
    """Train with lmtune on the K-shot sample it draws itself, then `lmtune evaluate`."""
    data, run_name = DATASETS[name], f"{name}-{method}-k{k}-s{seed}"
    run = args.runs / run_name
    argv = [*LMTUNE, "train", "--model.name", MODEL, "--data.train", str(SHARED_DATA / data.train),
            "--data.text-column", data.text_column, "--data.label-column", data.label_column,
            "--train.examples-per-class", str(k), "--train.seed", str(seed),
            "--train.output-dir", str(args.runs), "--train.run-name", run_name, "--train.overwrite", "true",
            "--train.progress", "false", *lmtune_method_flags(method, data), *shlex.split(args.settings[method])]
    start = time.perf_counter()
    if not child(argv, run_name, args):
        return None
    wall = round(time.perf_counter() - start, 2)
    metrics = json.loads((run / "metrics.json").read_text())
    start = time.perf_counter()
    if not child([*LMTUNE, "evaluate", str(run), "--data", str(eval_path)], f"{run_name} evaluation", args):
        return None
    scores = json.loads((run / "eval" / eval_path.stem / "metrics.json").read_text())
    if not args.keep_models:
        shutil.rmtree(run / "model", ignore_errors=True)  # ~90 MB a run
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            "train_seconds": metrics["training"]["seconds"], "train_wall_seconds": wall, "eval_seconds": round(time.perf_counter() - start, 2),
            "train_rows": metrics["data"]["train"]["rows_used"]}


def child(argv: list[str], what: str, args: argparse.Namespace) -> bool:
    """Run a command with the benchmark's thread count; on failure print its output's tail."""
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=child_env(args))
    if done.returncode:
        print(f"{what} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}", flush=True)
    return done.returncode == 0


def child_env(args: argparse.Namespace) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def run_zero_shot(name: str, eval_path: Path, args: argparse.Namespace) -> dict:
    """The encoder's similarity to each label's description, no training (`lmtune evaluate
    --zero-shot` through its Python API, which takes the description template)."""
    import torch

    from lmtune.data import read_table
    from lmtune.inference.predictor import load_prompted

    data = DATASETS[name]
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    predictor = load_prompted(MODEL, data.labels, description=data.description, device="cpu",
                              text_column=data.text_column, label_column=data.label_column)
    scores = predictor.evaluate_records(read_table(eval_path).records)
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "train_seconds": 0.0,
            "eval_seconds": round(time.perf_counter() - start, 2), "train_rows": 0}


def run_setfit(name: str, k: int, seed: int, eval_path: Path, args: argparse.Namespace) -> dict | None:
    """SetFit on the same K-shot rows, in its own virtualenv (benchmarks/setfit_baseline.py)."""
    from lmtune.models import resolve_model

    data = DATASETS[name]
    sample, rows = args.kshot.file(name, k, seed)
    argv = [str(SETFIT_PYTHON), str(Path(__file__).with_name("setfit_baseline.py")), "--train", str(sample),
            "--eval", str(eval_path), "--text-column", data.text_column, "--label-column", data.label_column,
            "--model", str(resolve_model(MODEL)), "--seed", str(seed)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=child_env(args))
    if done.returncode:
        print(f"setfit {name} k{k} s{seed} failed (exit {done.returncode}):\n{done.stderr[-3000:]}", flush=True)
        return None
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "train_rows": rows}


def load_results(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def save_results(path: Path, results: list[dict]) -> None:
    """Write through a temporary file, so an interrupted run never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(results, indent=1))
    partial.replace(path)


def plan(args: argparse.Namespace) -> list[tuple[str, str, int, int | None]]:
    """(data set, method, K, seed) of every run asked for; zero-shot once per data set (K 0)."""
    jobs = []
    for name in args.datasets:
        if "zero-shot" in args.methods:
            jobs.append((name, "zero-shot", 0, None))
        jobs += [(name, method, k, seed) for k in args.ks for seed in args.seeds
                 for method in args.methods if method != "zero-shot"]
    return jobs


def run_all(args: argparse.Namespace) -> list[dict]:
    """Every planned run not already in the results file, each saved as soon as it ends."""
    results = load_results(args.out)
    done = {key(r) for r in results}
    with tempfile.TemporaryDirectory() as tmp:
        args.kshot = KShot(Path(tmp))
        eval_files = {name: eval_subset(DATASETS[name], args.eval_rows, Path(tmp)) for name in args.datasets}
        for name, method, k, seed in plan(args):
            row = {"dataset": name, "method": method, "k": k, "seed": seed, "eval_rows": args.eval_rows}
            if key(row) in done:
                continue
            print(f"{name} {method} K={k} seed={seed} ...", flush=True)
            scores = run_one(name, method, k, seed, eval_files[name], args)
            if scores is None:
                continue
            results.append({**row, **scores})
            print(json.dumps(results[-1]), flush=True)
            save_results(args.out, results)
    return results


def run_one(name: str, method: str, k: int, seed: int | None, eval_path: Path,
            args: argparse.Namespace) -> dict | None:
    if method == "zero-shot":
        return run_zero_shot(name, eval_path, args)
    if method == "setfit":
        return run_setfit(name, k, seed, eval_path, args)
    return run_lmtune(name, method, k, seed, eval_path, args)  # few-shot, few-shot-decoder, plain


def key(row: dict) -> tuple:
    return row["dataset"], row["method"], row["k"], row["seed"], row["eval_rows"]


def cell(values: list[float], digits: int = 4) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f} ({len(values)})"


def tables(results: list[dict], args: argparse.Namespace) -> None:
    """Per data set: accuracy (mean ± std over seeds, n) by method and K, then training seconds."""
    ks = [0, *args.ks] if "zero-shot" in args.methods else list(args.ks)
    for name in args.datasets:
        rows = [r for r in results if r["dataset"] == name and r["eval_rows"] == args.eval_rows]
        where = f"all rows of {DATASETS[name].eval}" if not args.eval_rows else \
            f"{args.eval_rows} rows of {DATASETS[name].eval}"
        for field, title, digits in (("accuracy", "accuracy", 4), ("macro_f1", "macro F1", 4),
                                     ("train_seconds", "training seconds", 1)):
            print(f"\n{name}: {title} ({where}), mean ± std (seeds); K examples per class (0: no training)\n")
            print("| method | " + " | ".join(f"K={k}" for k in ks) + " |")
            print("|---|" + "---|" * len(ks))
            for method in args.methods:
                cells = [cell([r[field] for r in rows if r["method"] == method and r["k"] == k], digits)
                         for k in ks]
                print(f"| {method} | " + " | ".join(cells) + " |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="sst2,trec")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--ks", default="8,16,32,64")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--eval-rows", type=int, default=0, help="a seeded sample of N evaluation rows (0: all)")
    parser.add_argument("--setting", action="append", default=[], help="METHOD=OVERRIDES (replaces SETTINGS')")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-fewshot" / "results.json")
    parser.add_argument("--keep-models", action="store_true", help="keep each run's model/ (~90 MB)")
    args = parser.parse_args()
    args.datasets, args.methods = args.datasets.split(","), args.methods.split(",")
    args.ks, args.seeds = [int(k) for k in args.ks.split(",")], [int(s) for s in args.seeds.split(",")]
    args.settings = {**SETTINGS, **dict(s.split("=", 1) for s in args.setting)}
    args.runs = args.out.parent
    return args


def main() -> None:
    args = parse_args()
    check_inputs(args.datasets, args.methods)
    tables(run_all(args), args)


if __name__ == "__main__":
    main()
