"""Training speed: lmtune against the transformers Trainer, as a user runs each (issue 20).

Same model (packaged MiniLM), same SST-2 training rows, one epoch, batch size 32, same threads,
at every precision this machine computes natively (bf16 and fp32 where the CPU has AMX or
AVX512-BF16, else fp32 only). Each run is its own process, started as a user would:
- lmtune: `lmtune train` with its defaults (validation on dev, model card, plots, predictions);
- Trainer: a script with the Trainer's own defaults, dynamic padding and group_by_length
  sampling, that saves only the final model.
Runs alternate (lmtune, Trainer, lmtune, ...) and the best of `--repeats` counts. Printed:
- in-loop samples/s as each tool reports it, and lmtune's ratio to the Trainer;
- whole process (command start to exit) against lmtune's own loop time (target: <= 1.2x);
- final training loss (mean of the last quarter of logged steps) and dev accuracy, every saved
  model scored the same way (fp32, all dev rows);
- model FLOP/s (6 x non-embedding parameters x tokens/s) against dense matmul peaks measured here.

    .venv/bin/python benchmarks/speed_vs_trainer.py [--rows 4000] [--repeats 3] [--threads N]
        [--precisions bf16,fp32]

`--default-run` times instead the whole-process target on the default SST-2 run itself
(`lmtune train --config examples/sst2.yaml`: all 60,614 rows, 3 epochs, an evaluation of the dev
set per epoch): command start to exit against the loop's own seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed_ideas import cpu_flags, read_tsv  # noqa: E402


def matmul_peaks() -> dict[str, float]:
    """Dense matmul GFLOP/s per dtype here (2048-square, best of 6): lmtune's own measurement."""
    from lmtune.training.precision import measure_matmul

    bf16, fp32 = measure_matmul(size=2048, repeats=6)
    return {"bf16": bf16, "fp32": fp32}


def tail_loss(losses: list[float]) -> float:
    """Mean training loss over the last quarter of logged windows (one window is noisy)."""
    tail = losses[-max(1, len(losses) // 4):]
    return sum(tail) / len(tail)


# ---- the two tools, each in its own process ------------------------------------------------------
def run_lmtune(train: Path, dev: Path, out: Path, precision: str, threads: int) -> dict:
    """`lmtune train` as a user runs it; the whole process is timed from outside."""
    out.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).with_name("lmtune")), "train", "--data.train", str(train),
               "--data.validation", str(dev), "--data.text-column", "sentence", "--train.epochs", "1",
               "--train.output-dir", str(out), "--train.run-name", "run", "--train.overwrite", "true",
               "--train.mixed-precision", precision, "--train.num-threads", str(threads),
               "--train.logging-steps", "10", "--train.progress", "false"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"lmtune train failed:\n{done.stderr[-3000:]}")
    run = out / "run"
    metrics = json.loads((run / "metrics.json").read_text())["training"]
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return {"samples_per_s": metrics["samples_per_s"], "tokens_per_s": metrics["tokens_per_s"],
            "loop_s": metrics["seconds"], "wall_s": wall, "model_dir": str(run / "model"),
            "loss": tail_loss([r["loss"] for r in rows if r.get("kind") == "train"])}


def run_trainer(train: Path, out: Path, precision: str, threads: int) -> dict:
    """This file as a Trainer script in a child process (see trainer_child)."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--trainer-child", str(train), str(out), precision, str(threads)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"Trainer run failed:\n{done.stderr[-3000:]}")
    return {**json.loads((out / "result.json").read_text()), "wall_s": wall}


def trainer_child(train: str, out: str, precision: str, threads: str) -> None:
    """The Trainer with its own optimization defaults (lr 5e-5, linear, no warm-up), dynamic
    padding, group_by_length sampling; saves the final model only."""
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments)

    from lmtune.models import quiet_transformers, resolve_model

    torch.set_num_threads(int(threads))
    quiet_transformers()
    rows = read_tsv(Path(train))
    path = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    encoded = tokenizer([t for t, _ in rows], truncation=True, max_length=128)
    dataset = [{"input_ids": ids, "attention_mask": mask, "labels": label}
               for ids, mask, (_, label) in zip(encoded["input_ids"], encoded["attention_mask"], rows)]
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=2)
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=32, num_train_epochs=1, bf16=precision == "bf16",
        train_sampling_strategy="group_by_length", logging_steps=10, save_strategy="no",
        eval_strategy="no", report_to=[], seed=42, use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(f"{out}/model")
    tokenizer.save_pretrained(f"{out}/model")
    tokens = sum(len(row["input_ids"]) for row in dataset)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    Path(out, "result.json").write_text(json.dumps({
        "samples_per_s": len(dataset) / seconds, "tokens_per_s": tokens / seconds, "loop_s": seconds,
        "model_dir": f"{out}/model", "loss": tail_loss(losses)}))


def default_run() -> None:
    """`lmtune train --config examples/sst2.yaml` as a user runs it, timed from outside."""
    with tempfile.TemporaryDirectory() as out:
        command = [str(Path(sys.executable).with_name("lmtune")), "train", "--config",
                   str(ROOT / "examples" / "sst2.yaml"), "--train.output-dir", out, "--train.progress", "false"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"lmtune train failed:\n{done.stderr[-3000:]}")
        metrics = json.loads((Path(out) / "sst2" / "metrics.json").read_text())
    training = metrics["training"]
    print(f"{cpu_flags()}; default SST-2 run ({training['steps']} steps, {training['epochs']} epochs, "
          f"{training['precision']}): process {wall:.0f} s, loop {training['seconds']:.0f} s, "
          f"process / loop {wall / training['seconds']:.3f}x (target <= 1.2x); "
          f"{training['samples_per_s']:.1f} samples/s; dev accuracy {metrics['validation']['accuracy']:.4f}")


# ---- scoring --------------------------------------------------------------------------------------
def dev_accuracy(model_dir: str, dev: list[tuple[str, int]]) -> float:
    """Score any saved model the same way: length-sorted batches of 64, fp32."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
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


def non_embedding_params() -> int:
    from transformers import AutoModelForSequenceClassification

    from lmtune.models import resolve_model

    model = AutoModelForSequenceClassification.from_pretrained(str(resolve_model("minilm")), num_labels=2)
    embeddings = sum(p.numel() for p in model.base_model.embeddings.parameters())
    return sum(p.numel() for p in model.parameters()) - embeddings


def native_precisions() -> list[str]:
    from lmtune.training.precision import cpu_precision

    return ["bf16", "fp32"] if cpu_precision().mode == "bf16" else ["fp32"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--trainer-child":
        trainer_child(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--precisions", help="comma-separated (bf16, fp32); default: what this CPU runs natively")
    parser.add_argument("--default-run", action="store_true",
                        help="time the default SST-2 run (examples/sst2.yaml) end to end instead")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"SST-2 not found at {DATA}")
    if args.default_run:
        default_run()
        return
    import torch

    torch.set_num_threads(args.threads)
    from lmtune.models import quiet_transformers

    quiet_transformers()
    precisions = args.precisions.split(",") if args.precisions else native_precisions()
    unknown = [p for p in precisions if p not in ("bf16", "fp32")]
    if unknown:
        sys.exit(f"--precisions: {', '.join(unknown)} unknown; use bf16 and/or fp32")
    peaks = matmul_peaks()
    print(f"{cpu_flags()}; {args.threads} threads; matmul peaks fp32 {peaks['fp32']:.0f}, "
          f"bf16 {peaks['bf16']:.3g} GFLOP/s", flush=True)
    dev = read_tsv(DATA / "dev.tsv")
    n_params = non_embedding_params()
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = tmp / "train.tsv"
        with open(train, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
            writer.writerow(["sentence", "label"])
            writer.writerows(read_tsv(DATA / "train.tsv", args.rows))
        for precision in precisions:
            ours: list[dict] = []
            theirs: list[dict] = []
            for repeat in range(args.repeats):
                ours.append(run_lmtune(train, DATA / "dev.tsv", tmp / f"lmtune-{precision}-{repeat}",
                                       "no" if precision == "fp32" else precision, args.threads))
                theirs.append(run_trainer(train, tmp / f"trainer-{precision}-{repeat}", precision, args.threads))
                print(f"  {precision} round {repeat + 1}: lmtune {ours[-1]['samples_per_s']:.1f} samples/s "
                      f"(process {ours[-1]['wall_s']:.0f} s, loop {ours[-1]['loop_s']:.0f} s), Trainer "
                      f"{theirs[-1]['samples_per_s']:.1f} (process {theirs[-1]['wall_s']:.0f} s)", flush=True)
            for tool, runs in (("lmtune", ours), ("Trainer", theirs)):
                best = max(runs, key=lambda r: r["samples_per_s"])
                best["tool"], best["precision"] = tool, precision
                best["fastest_wall_s"] = min(r["wall_s"] for r in runs)
                best["dev_accuracy"] = dev_accuracy(best["model_dir"], dev)
                best["gflops"] = 6 * n_params * best["tokens_per_s"] / 1e9
                table.append(best)
    print(f"\n{args.rows:,} SST-2 rows, 1 epoch, batch 32, {args.threads} threads, best of {args.repeats}; "
          f"{cpu_flags()}\n")
    print("| precision | tool | samples/s | vs Trainer | process s | process / loop | final loss | "
          "dev accuracy | GFLOP/s (% of peak) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in table:
        trainer = next(r for r in table if r["tool"] == "Trainer" and r["precision"] == row["precision"])
        print(f"| {row['precision']} | {row['tool']} | {row['samples_per_s']:.1f} | "
              f"{row['samples_per_s'] / trainer['samples_per_s']:.2f}x | {row['fastest_wall_s']:.0f} | "
              f"{row['fastest_wall_s'] / row['loop_s']:.2f}x | {row['loss']:.4f} | {row['dev_accuracy']:.4f} | "
              f"{row['gflops']:.0f} ({100 * row['gflops'] / peaks[row['precision']]:.0f}%) |")


if __name__ == "__main__":
    main()
