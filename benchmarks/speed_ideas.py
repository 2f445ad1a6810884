"""Issue 20: what each idea for a faster training step is worth, measured one by one.

Every variant trains the packaged MiniLM for classification on the same length-grouped batches
of 32 SST-2 sentences (lmtune's own batching and collate), from the same weights, and is timed
over the same steps: forward, backward, gradient clipping, AdamW step. Variants run in turns
(round-robin) so a machine that slows down slows all of them; the best round counts.

    .venv/bin/python benchmarks/speed_ideas.py [--steps 30] [--rounds 3] [--precision bf16|fp32]
        [--only baseline,frozen-word-embeddings,...] [--compile]

Variants (each changes one thing against `baseline`):
- baseline: what lmtune's loop does (SDPA attention, dropout 0.1, fused AdamW on every weight,
  autocast where the precision is bf16);
- eager-attention: the model's own attention code instead of SDPA;
- no-attention-dropout / no-dropout: attention-probability dropout off / all dropout off;
- frozen-word-embeddings: the 11.7M word-embedding weights do not train;
- sparse-embeddings: the word embeddings get a sparse gradient and a lazy Adam (torch SparseAdam:
  only the rows in the batch move), everything else as baseline;
- bf16-weights (bf16 only): the model's weights in bf16 with an fp32 master copy in the
  optimizer, no autocast;
- packed: each batch's sentences concatenated into rows of up to 256 tokens, positions restarting
  per sentence, block-diagonal attention, pooled per sentence (same examples per step);
- compile (with --compile): torch.compile(dynamic=True); its compile time is printed apart.

Prints ms per step, samples/s, the speed-up against baseline and the mean loss over the timed
steps (so a variant that changes the optimisation shows it), and the CPU flags it ran on.
"""

from __future__ import annotations

import argparse
import copy
import csv
import functools
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"
VARIANTS = ("baseline", "eager-attention", "no-attention-dropout", "no-dropout", "frozen-word-embeddings",
            "sparse-embeddings", "bf16-weights", "packed", "compile")


def cpu_flags() -> str:
    """The CPU model and the flags that decide bf16 speed (what figures must be quoted with)."""
    model, flags = "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16") if f in flags]
    return f"{model} ({' '.join(wanted) or 'no AVX512/AMX'})"


def read_tsv(path: Path, limit: int | None = None) -> list[tuple[str, int]]:
    """(sentence, label) rows of an SST-2 TSV file."""
    with open(path, newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        rows = [(text, int(label)) for text, label in reader]
    return rows[:limit] if limit else rows


def sst2_batches(rows: int, batch_size: int = 32) -> tuple[list[list[dict]], object]:
    """lmtune's length-grouped batches (epoch 0, seed 42) of tokenized SST-2 training rows."""
    from transformers import AutoTokenizer

    from lmtune.models import resolve_model
    from lmtune.training.batching import epoch_batches

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model("minilm")))
    data = read_tsv(DATA / "train.tsv", rows)
    ids = tokenizer([t for t, _ in data], truncation=True, max_length=128)["input_ids"]
    features = [{"input_ids": i, "labels": label} for i, (_, label) in zip(ids, data)]
    groups = epoch_batches([len(f["input_ids"]) for f in features], batch_size, 42, 0, True)
    return [[features[i] for i in group] for group in groups], tokenizer


@functools.lru_cache(maxsize=1)
def classification_task():
    from lmtune.config import Config
    from lmtune.tasks import get_task

    return get_task(Config())


def padded(batch: list[dict]) -> dict[str, torch.Tensor]:
    """What the loop feeds the model: the classification task's own collate."""
    return classification_task().collate(batch, 0)


def packed(batch: list[dict], row_tokens: int = 256) -> dict[str, torch.Tensor]:
    """Sentences laid end to end in rows of up to `row_tokens` (first fit, longest first), with
    positions restarting per sentence and a block-diagonal boolean mask (True: may attend)."""
    rows: list[list[int]] = []
    fill: list[int] = []
    for index in sorted(range(len(batch)), key=lambda i: -len(batch[i]["input_ids"])):
        n = len(batch[index]["input_ids"])
        for r, used in enumerate(fill):
            if used + n <= row_tokens:
                rows[r].append(index)
                fill[r] += n
                break
        else:
            rows.append([index])
            fill.append(n)
    width = max(fill)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    positions = torch.zeros(len(rows), width, dtype=torch.long)
    segment = torch.full((len(rows), width), -1, dtype=torch.long)
    starts = torch.zeros(len(batch), 2, dtype=torch.long)  # (row, column) of each sentence's [CLS]
    for r, members in enumerate(rows):
        at = 0
        for index in members:
            tokens = batch[index]["input_ids"]
            ids[r, at:at + len(tokens)] = torch.tensor(tokens)
            positions[r, at:at + len(tokens)] = torch.arange(len(tokens))
            segment[r, at:at + len(tokens)] = index
            starts[index] = torch.tensor([r, at])
            at += len(tokens)
    mask = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
    mask |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: no all-masked rows
    return {"input_ids": ids, "position_ids": positions, "attention_mask": mask[:, None],
            "starts": starts, "labels": torch.tensor([f["labels"] for f in batch])}


def packed_logits(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The classifier on each sentence's [CLS] state out of packed rows."""
    out = model.bert(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                     position_ids=inputs["position_ids"], token_type_ids=torch.zeros_like(inputs["input_ids"]))
    starts = inputs["starts"]
    cls = out.last_hidden_state[starts[:, 0], starts[:, 1]]
    pooled = model.bert.pooler.activation(model.bert.pooler.dense(cls))
    return model.classifier(model.dropout(pooled))


def packing_gap(base, batch: list[dict]) -> float:
    """|packed loss - padded loss| on one batch in fp32 without dropout: packing must not change
    what is computed, only how."""
    model = copy.deepcopy(base).eval()
    with torch.no_grad():
        inputs = padded(batch)
        labels = inputs.pop("labels")
        plain = F.cross_entropy(model(**inputs).logits, labels)
        inputs = packed(batch)
        labels = inputs.pop("labels")
        pack = F.cross_entropy(packed_logits(model, inputs), labels)
    return abs(float(plain) - float(pack))


class Variant:
    """One way of running the training step, built fresh from the same weights."""

    def __init__(self, name: str, base, precision: str):
        self.name, self.precision = name, precision
        parts = set(name.split("+"))  # "a+b": both changes at once
        model = copy.deepcopy(base)
        config = model.config
        if "eager-attention" in parts:
            config._attn_implementation = "eager"
        if parts & {"no-attention-dropout", "no-dropout"}:
            for module in model.modules():
                if "SelfAttention" in type(module).__name__:
                    module.dropout.p = 0.0
                    module.dropout_prob = 0.0
        if "no-dropout" in parts:
            for module in model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        embeddings = model.bert.embeddings.word_embeddings
        if "frozen-word-embeddings" in parts:
            embeddings.weight.requires_grad_(False)
        self.autocast = precision == "bf16" and "bf16-weights" not in parts
        self.master = None
        if "bf16-weights" in parts:
            model.to(torch.bfloat16)
            self.master = [p.detach().float().clone().requires_grad_(True) for p in model.parameters()]
        model.train()
        self.model = model
        sparse = "sparse-embeddings" in parts
        if sparse:
            embeddings.sparse = True
        trainable = self.master or [p for p in model.parameters() if p.requires_grad
                                    and not (sparse and p is embeddings.weight)]
        self.optimizers = [torch.optim.AdamW(trainable, lr=1e-4, fused=True)]
        if sparse:
            self.optimizers.append(torch.optim.SparseAdam([embeddings.weight], lr=1e-4))
        self.forward = model
        self.compile_seconds = 0.0
        if "compile" in parts:
            self.forward = torch.compile(model, dynamic=True)

    def step(self, batch: list[dict]) -> float:
        if "packed" in self.name.split("+"):
            inputs = packed(batch)
            labels = inputs.pop("labels")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                logits = packed_logits(self.model, inputs)
        else:
            inputs = padded(batch)
            labels = inputs.pop("labels")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                logits = self.forward(**inputs).logits
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.master is not None:
            for master, p in zip(self.master, self.model.parameters()):
                master.grad = p.grad.float()
            params = self.master
        dense = [p.grad for p in params if not p.grad.is_sparse]
        norms = [torch.linalg.vector_norm(g) for g in dense]
        norms += [p.grad.coalesce().values().norm() for p in params if p.grad.is_sparse]
        scale = (1.0 / (torch.stack(norms).norm() + 1e-6)).clamp(max=1.0)
        for p in params:
            p.grad.mul_(scale)
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if self.master is not None:
            with torch.no_grad():
                for master, p in zip(self.master, self.model.parameters()):
                    p.copy_(master)
                    p.grad = None
        return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                        help="default: bf16 where torch reports native bf16, else fp32")
    parser.add_argument("--only", help="comma-separated variants (baseline always runs); a+b combines two")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"SST-2 not found at {DATA}")
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForSequenceClassification

    from lmtune.models import quiet_transformers, resolve_model
    from lmtune.training.precision import cpu_precision

    quiet_transformers()
    precision = args.precision or ("bf16" if cpu_precision().mode == "bf16" else "fp32")
    names = ["baseline"] + [n for n in (args.only.split(",") if args.only else VARIANTS) if n != "baseline"]
    unknown = [n for n in names if not set(n.split("+")) <= set(VARIANTS)]
    if unknown:
        sys.exit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if precision != "bf16" and "bf16-weights" in names:
        names.remove("bf16-weights")
    if "compile" in names and not args.compile and not args.only:
        names.remove("compile")
    batches, _ = sst2_batches(args.rows)
    needed = args.warmup + args.steps
    if len(batches) < needed:
        sys.exit(f"{args.rows} rows give {len(batches)} batches; need {needed} (raise --rows)")
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(str(resolve_model("minilm")), num_labels=2)
    if "packed" in names:
        print(f"packed vs padded loss on one batch (fp32, no dropout): {packing_gap(base, batches[0]):.2e}")
    print(f"{cpu_flags()}; {args.threads} threads; precision {precision}; batch 32; "
          f"{args.steps} timed steps x {args.rounds} rounds", flush=True)
    best: dict[str, float] = {n: float("inf") for n in names}
    losses: dict[str, float] = {}
    for round_ in range(args.rounds):
        for name in names:
            torch.manual_seed(1)
            variant = Variant(name, base, precision)
            start = time.perf_counter()
            for batch in batches[:args.warmup]:
                variant.step(batch)
            if round_ == 0 and "compile" in name.split("+"):
                print(f"compile + {args.warmup} warm-up steps: {time.perf_counter() - start:.0f} s", flush=True)
            start = time.perf_counter()
            step_losses = [variant.step(batch) for batch in batches[args.warmup:needed]]
            seconds = (time.perf_counter() - start) / args.steps
            best[name] = min(best[name], seconds)
            losses[name] = statistics.fmean(step_losses)
            print(f"  round {round_ + 1} {name:24} {1000 * seconds:7.1f} ms/step", flush=True)
            del variant
    tokens = sum(len(f["input_ids"]) for b in batches[args.warmup:needed] for f in b) / args.steps
    print(f"\n{tokens:.0f} real tokens per step on average\n")
    print("| variant | ms/step | samples/s | vs baseline | mean loss |")
    print("|---|---|---|---|---|")
    for name in names:
        print(f"| {name} | {1000 * best[name]:.1f} | {32 / best[name]:.0f} | "
              f"{best['baseline'] / best[name]:.2f}x | {losses[name]:.4f} |")


if __name__ == "__main__":
    main()
