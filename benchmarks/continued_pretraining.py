"""Continued pretraining (issue 21): does masked-LM pretraining on a domain's unlabeled text help
a classifier fine-tuned on 200 labeled rows of that domain? (Gururangan et al. 2020 report +0.5
to +3.5 points for domain/task-adaptive pretraining.)

For each domain of ../shared/data/continual/domains/<Domain>/{train,dev,test}.tsv (text, label):
- mlm:  `--task mlm` on the domain's train texts (labels unused; the dev texts pick the best
        checkpoint by masked-LM perplexity), once per domain; its time is the pretraining time;
- dapt: fine-tune the mlm run (`--model runs/<mlm-run>`) on 200 labeled train rows;
- base: fine-tune the packaged model directly on the same 200 rows.
Fine-tuning picks its best checkpoint on dev; test accuracy is reported, mean ± std over seeds
(each seed draws its own 200 rows, the same for both arms).

    .venv/bin/python benchmarks/continued_pretraining.py                     # the full benchmark
    .venv/bin/python benchmarks/continued_pretraining.py --domains Books --seeds 0 \\
        --pretrain-rows 200 --pretrain-epochs 1 --finetune-epochs 1 --eval-rows 50   # a smoke test

Results go to --out (runs/bench-continued-pretraining/results.json) after every run; a rerun skips
what is there (and reuses finished mlm runs), so an interrupted benchmark continues.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ROOT.parent / "shared" / "data" / "continual" / "domains"
sys.path.insert(0, str(ROOT / "src"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domains", default="Books,Electronics,Movies_and_TV")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--labeled", type=int, default=200, help="labeled training rows per fine-tuning run")
    p.add_argument("--pretrain-rows", type=int, default=0, help="train texts for mlm (0: all)")
    p.add_argument("--pretrain-epochs", type=float, default=3.0)
    p.add_argument("--pretrain-lr", type=float, default=1e-4)
    p.add_argument("--finetune-epochs", type=float, default=10.0)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--eval-rows", type=int, default=0, help="dev/test rows scored (0: all; seeded sample)")
    p.add_argument("--model", default="minilm")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench-continued-pretraining"))
    return p.parse_args(argv)


def rows(path: Path, limit: int = 0, seed: int = 0) -> list[str]:
    """Data lines (header dropped); a seeded sample of `limit` of them when limit > 0."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return random.Random(seed).sample(lines, limit) if 0 < limit < len(lines) else lines


def write_tsv(path: Path, lines: list[str]) -> Path:
    path.write_text("text\tlabel\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def config(args: argparse.Namespace, out: Path, name: str, model: str, train_file: Path, dev: Path,
           test: Path | None = None, **groups: dict) -> "object":
    """A run's config; `groups`: field values by group ("top": the task)."""
    from lmtune.config import Config

    cfg = Config()
    cfg.model.name, cfg.model.max_length = model, args.max_length
    cfg.data.train, cfg.data.validation = str(train_file), str(dev)
    cfg.data.test = str(test) if test else None
    cfg.train.output_dir, cfg.train.run_name, cfg.train.progress = str(out), name, False
    for group, values in groups.items():
        for key, value in values.items():
            setattr(getattr(cfg, group) if group != "top" else cfg, key, value)
    return cfg


def pretrain(args: argparse.Namespace, domain: str, data: dict[str, Path], out: Path) -> tuple[Path, float]:
    """The domain's mlm run (reused when finished) and its training seconds."""
    from lmtune import finetune

    name = f"mlm-{domain}"
    metrics = out / name / "metrics.json"
    if not metrics.is_file():
        cfg = config(args, out, name, args.model, data["corpus"], data["dev_texts"],
                     top={"task": "mlm"}, train={"epochs": args.pretrain_epochs, "learning_rate": args.pretrain_lr,
                                                 "batch_size": 32, "eval_strategy": "epoch"})
        finetune(cfg, quiet=True)
    report = json.loads(metrics.read_text())
    return out / name, report["training"]["seconds"]


def finetune_accuracy(args: argparse.Namespace, model: str, name: str, data: dict[str, Path], train: Path,
                      seed: int, out: Path) -> dict:
    from lmtune import finetune

    cfg = config(args, out, name, model, train, data["dev"], data["test"],
                 train={"epochs": args.finetune_epochs, "batch_size": 16, "seed": seed})
    started = time.perf_counter()
    run = finetune(cfg, quiet=True)
    report = json.loads(run.metrics.read_text())
    return {"test_accuracy": report["test"]["accuracy"], "dev_accuracy": report["validation"]["accuracy"],
            "seconds": round(time.perf_counter() - started, 1)}


def domain_files(args: argparse.Namespace, domain: str, work: Path) -> dict[str, Path]:
    """The domain's files as the runs read them: unlabeled train texts, (sampled) dev and test."""
    folder, work = DOMAINS / domain, work / domain
    work.mkdir(parents=True, exist_ok=True)
    train = rows(folder / "train.tsv", args.pretrain_rows)
    dev, test = rows(folder / "dev.tsv", args.eval_rows), rows(folder / "test.tsv", args.eval_rows)
    corpus = work / "corpus.txt"  # one review per line: plain text, labels dropped
    corpus.write_text("\n".join(line.rsplit("\t", 1)[0] for line in train) + "\n", encoding="utf-8")
    dev_texts = work / "dev_texts.txt"
    dev_texts.write_text("\n".join(line.rsplit("\t", 1)[0] for line in dev) + "\n", encoding="utf-8")
    return {"corpus": corpus, "dev_texts": dev_texts, "dev": write_tsv(work / "dev.tsv", dev),
            "test": write_tsv(work / "test.tsv", test), "folder": folder}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for domain in args.domains.split(","):
        data = domain_files(args, domain, out / "data")
        mlm_run, mlm_seconds = pretrain(args, domain, data, out / "runs")
        results.setdefault(domain, {})["pretrain_seconds"] = mlm_seconds
        for seed in map(int, args.seeds.split(",")):
            labeled = write_tsv(out / "data" / domain / f"labeled-{seed}.tsv",
                                rows(data["folder"] / "train.tsv", args.labeled, seed=1000 + seed))
            for arm, model in (("base", args.model), ("dapt", str(mlm_run))):
                key = f"{arm}/seed{seed}"
                if key not in results[domain]:
                    results[domain][key] = finetune_accuracy(args, model, f"{arm}-{domain}-{seed}", data, labeled,
                                                             seed, out / "runs")
                    results_path.write_text(json.dumps(results, indent=1))
                print(domain, key, results[domain][key], flush=True)
        results_path.write_text(json.dumps(results, indent=1))
    print_table(results, args)
    return 0


def print_table(results: dict, args: argparse.Namespace) -> None:
    print(f"\n| domain | base (packaged) | + continued MLM | gain | MLM pretraining s |  ({args.labeled} labeled rows, "
          f"seeds {args.seeds})\n|---|---|---|---|---|")
    for domain, row in results.items():
        scores = {arm: [v["test_accuracy"] for k, v in row.items() if k.startswith(f"{arm}/")] for arm in ("base", "dapt")}
        if not all(scores.values()):
            continue
        shown = {arm: f"{statistics.fmean(s):.4f} ± {statistics.pstdev(s):.4f}" for arm, s in scores.items()}
        gain = statistics.fmean(scores["dapt"]) - statistics.fmean(scores["base"])
        print(f"| {domain} | {shown['base']} | {shown['dapt']} | {gain:+.4f} | {row['pretrain_seconds']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
