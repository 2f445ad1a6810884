"""Training speed: lmtune (its defaults) vs the transformers Trainer, in one run.

Same model (packaged MiniLM), same 4,000 SST-2 training rows, one epoch, batch size 32, the same
thread count. Each tool uses its own optimization defaults. The Trainer runs at the setting named
as its fastest sensible one (dynamic padding, group_by_length sampling, bf16=True), and also in
fp32 for reference (on CPUs without native bf16, fp32 is what lmtune's `auto` precision picks).
Prints samples/s, the ratio, final training loss, dev accuracy (all 6,735 dev rows, scored the
same way for every model), achieved model FLOP/s against bf16/fp32 matmul peaks measured here,
and a breakdown of where a training step's time goes.

    .venv/bin/python benchmarks/speed_vs_trainer.py [--rows 4000] [--threads N] [--skip-fp32-trainer]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"


def read_tsv(path: Path, limit: int | None = None) -> list[tuple[str, int]]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        rows = [(text, int(label)) for text, label in reader]
    return rows[:limit] if limit else rows


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Achievable dense matmul GFLOP/s for `dtype` on this machine (best of a few runs)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best / 1e9


def non_embedding_params(model: torch.nn.Module) -> int:
    embeddings = sum(p.numel() for p in model.base_model.embeddings.parameters())
    return sum(p.numel() for p in model.parameters()) - embeddings


def dev_accuracy(model_dir: Path, dev: list[tuple[str, int]]) -> float:
    """Score any saved model the same way: length-sorted batches of 64, fp32."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    order = sorted(range(len(dev)), key=lambda i: len(dev[i][0]))
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(order), 64):
            index = order[start:start + 64]
            batch = tokenizer([dev[i][0] for i in index], padding=True, truncation=True,
                              max_length=128, return_tensors="pt")
            predicted = model(**batch).logits.argmax(-1)
            label_ids = [model.config.label2id.get(str(dev[i][1]), dev[i][1]) for i in index]
            correct += int((predicted == torch.tensor(label_ids)).sum())
    return correct / len(dev)


def tail_loss(losses: list[float]) -> float:
    """Mean training loss over the last quarter of logged windows (one window is noisy)."""
    tail = losses[-max(1, len(losses) // 4):]
    return float(np.mean(tail))


def run_lmtune(train_path: Path, out: Path, threads: int) -> dict:
    from lmtune.config import Config
    from lmtune.pipeline import finetune

    cfg = Config()  # lmtune's defaults, one epoch
    cfg.data.train, cfg.data.text_column = str(train_path), "sentence"
    cfg.train.epochs, cfg.train.eval_strategy = 1, "no"
    cfg.train.output_dir, cfg.train.run_name, cfg.train.progress = str(out), "lmtune", False
    cfg.train.logging_steps, cfg.train.num_threads = 10, threads
    run = finetune(cfg, quiet=True)
    metrics = json.loads(run.metrics.read_text())
    losses = [r["loss"] for r in run.log_rows() if r["kind"] == "train"]
    return {"model_dir": run.model, "samples_per_s": metrics["training"]["samples_per_s"],
            "tokens_per_s": metrics["training"]["tokens_per_s"], "loss": tail_loss(losses),
            "precision": metrics["training"]["precision"], "lr": cfg.train.learning_rate}


def run_trainer(train: list[tuple[str, int]], out: Path, bf16: bool) -> dict:
    """The Trainer with its own optimization defaults (what its users get: lr 5e-5, linear, no
    warm-up), dynamic padding, group_by_length sampling, and bf16 or fp32."""
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              DataCollatorWithPadding, Trainer, TrainingArguments)

    from lmtune.models import resolve_model

    path = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    encoded = tokenizer([t for t, _ in train], truncation=True, max_length=128)
    dataset = [{"input_ids": ids, "attention_mask": mask, "labels": label}
               for ids, mask, (_, label) in zip(encoded["input_ids"], encoded["attention_mask"], train)]
    torch.manual_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=2)
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=32, num_train_epochs=1, bf16=bf16,
        train_sampling_strategy="group_by_length", logging_steps=10, save_strategy="no",
        eval_strategy="no", report_to=[], seed=42, use_cpu=True, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=DataCollatorWithPadding(tokenizer))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(str(out / "model"))
    tokenizer.save_pretrained(str(out / "model"))
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    tokens = sum(len(row["input_ids"]) for row in dataset)
    return {"model_dir": out / "model", "samples_per_s": len(dataset) / seconds,
            "tokens_per_s": tokens / seconds, "loss": tail_loss(losses)}


def step_breakdown(train: list[tuple[str, int]], steps: int = 12) -> dict:
    """Where a training step's time goes: forward+backward vs optimizer, fp32 vs bf16 autocast,
    and the padding the length-grouped batches leave."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmtune.models import resolve_model
    from lmtune.config import Config
    from lmtune.tasks import get_task
    from lmtune.training.batching import epoch_batches

    path = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    task = get_task(Config())  # classification: one class id per example
    features = [{"input_ids": ids, "labels": label} for ids, (_, label) in
                zip(tokenizer([t for t, _ in train])["input_ids"], train)]
    lengths = [len(f["input_ids"]) for f in features]
    grouped = epoch_batches(lengths, 32, 42, 0, True)
    random_batches = epoch_batches(lengths, 32, 42, 0, False)
    real = sum(lengths)
    pad = {name: real / sum(len(b) * max(lengths[i] for i in b) for b in batches)
           for name, batches in (("grouped", grouped), ("random", random_batches))}
    result: dict = {"padding_efficiency": pad}
    for label, dtype in (("fp32", None), ("bf16_autocast", torch.bfloat16)):
        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        fwd_bwd = opt = 0.0
        for step, batch_ids in enumerate(grouped[:steps + 2]):
            batch = task.collate([features[i] for i in batch_ids], 0)
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                loss = model(**batch).loss
            loss.backward()
            t1 = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            t2 = time.perf_counter()
            if step >= 2:  # warm-up steps excluded
                fwd_bwd += t1 - t0
                opt += t2 - t1
        result[label] = {"forward_backward_ms": 1000 * fwd_bwd / steps, "optimizer_ms": 1000 * opt / steps}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-fp32-trainer", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"SST-2 not found at {DATA}")
    torch.set_num_threads(args.threads)
    from lmtune.models import quiet_transformers

    quiet_transformers()
    train = read_tsv(DATA / "train.tsv", args.rows)
    dev = read_tsv(DATA / "dev.tsv")
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"threads {args.threads}; matmul peaks: fp32 {peaks['fp32']:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16']:.0f} GFLOP/s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subset = tmp / "train.tsv"
        with open(subset, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
            writer.writerow(["sentence", "label"])
            writer.writerows(train)
        results = {"lmtune": run_lmtune(subset, tmp, args.threads)}
        print(f"lmtune done: {results['lmtune']['samples_per_s']:.1f} samples/s", flush=True)
        results["trainer_bf16"] = run_trainer(train, tmp / "trainer-bf16", True)
        print(f"trainer bf16 done: {results['trainer_bf16']['samples_per_s']:.1f} samples/s", flush=True)
        if not args.skip_fp32_trainer:
            results["trainer_fp32"] = run_trainer(train, tmp / "trainer-fp32", False)
        from transformers import AutoModelForSequenceClassification

        from lmtune.models import resolve_model

        n_params = non_embedding_params(AutoModelForSequenceClassification.from_pretrained(
            str(resolve_model("minilm")), num_labels=2))
        for r in results.values():
            r["dev_accuracy"] = dev_accuracy(r["model_dir"], dev)
            r["gflops"] = 6 * n_params * r["tokens_per_s"] / 1e9
    breakdown = step_breakdown(train)

    base = results["trainer_bf16"]
    print(f"\n{args.rows} SST-2 rows, 1 epoch, batch 32, {args.threads} threads, "
          f"{n_params / 1e6:.1f}M non-embedding parameters")
    print(f"{'':14}{'samples/s':>10}{'vs Trainer':>11}{'tail loss':>10}{'dev acc':>9}"
          f"{'GFLOP/s':>9}{'% fp32 pk':>10}{'% bf16 pk':>10}")
    for name, r in results.items():
        print(f"{name:14}{r['samples_per_s']:10.1f}{r['samples_per_s'] / base['samples_per_s']:10.2f}x"
              f"{r['loss']:10.4f}{r['dev_accuracy']:9.4f}{r['gflops']:9.1f}"
              f"{100 * r['gflops'] / peaks['fp32']:9.1f}%{100 * r['gflops'] / peaks['bf16']:9.1f}%")
    ours = results["lmtune"]
    print(f"\nlmtune: learning rate {ours['lr']:g} (its default for this width); Trainer: its "
          "defaults (5e-05, no warm-up)")
    print(f"lmtune precision chosen by `auto`: {ours['precision']} "
          f"(this CPU {'has' if peaks['bf16'] > peaks['fp32'] else 'lacks'} fast bf16 matmuls)")
    print(f"loss vs Trainer: {100 * (ours['loss'] - base['loss']) / base['loss']:+.1f}%; "
          f"dev accuracy vs Trainer: {100 * (ours['dev_accuracy'] - base['dev_accuracy']):+.2f} points")
    print("step breakdown (batch 32, length-grouped):")
    for label in ("fp32", "bf16_autocast"):
        row = breakdown[label]
        print(f"  {label:14} forward+backward {row['forward_backward_ms']:6.1f} ms, "
              f"optimizer {row['optimizer_ms']:5.1f} ms")
    pad = breakdown["padding_efficiency"]
    print(f"  real/padded tokens: grouped {pad['grouped']:.3f}, random order {pad['random']:.3f}")


if __name__ == "__main__":
    main()
