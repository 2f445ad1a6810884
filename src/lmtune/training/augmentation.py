"""Data augmentation (--augment): edited copies of the training records, drawn anew every epoch,
and paraphrases written once by a decoder, mixed into the epoch's step batches.

Each epoch, every training record gets `copies` augmented copies; each copy gets ONE op drawn
among the configured ones (as EDA does: Wei & Zou 2019), from a generator seeded by (train.seed,
epoch, record, copy). The epoch is therefore a function of (seed, epoch) alone, as exact resume
and DDP require, and holds the same number of records every epoch. Word ops go through
`Task.edit_record` (labels follow their words); ops that need the labels (an entity `mention`)
come from `Task.record_ops`. A copy that came out identical to its original still trains but is not
counted as augmented.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import DECODER_EXTRA, Config, ConfigError, augment_ops
from ..data.edits import OPERATIONS, WordEdit, make_edit, record_rng, unchanged
from ..data.records import Record
from ..tasks.base import RecordOp, Task
from .batching import LengthGroupedBatches, epoch_batches
from .hooks import BatchSource, Feature

SYNONYM_OPS = ("synonym", "insert")  # the edits that need a synonym source
PARAPHRASE_CACHE = Path("augment") / "paraphrases.jsonl"  # in the run folder: a resume reads it
PARAPHRASE_BATCH = 16  # texts the decoder paraphrases at once
PARAPHRASE_PROMPT = ("Paraphrase the following text: say the same thing in other words, keeping its "
                     "meaning and tone. Reply with the paraphrase only.\n\n{text}")


def check_ops(cfg: Config, task: Task, records: Sequence[Record]) -> tuple[str, ...]:
    """The --augment ops, once the task is known to be able to do each (a ConfigError naming
    the op and the task otherwise): checked before anything loads or trains."""
    ops = augment_ops(cfg.augment.ops)
    for op in ops:
        if op not in OPERATIONS and op not in task.record_ops(records):
            known = [*OPERATIONS, *task.record_ops(records)]
            raise ConfigError(f"--augment.ops {op}: the {task.name} task has no {op!r} augmentation (it "
                              f"edits with another task's labels); choose among {', '.join(known)}")
    if any(op in OPERATIONS for op in ops) and records:
        try:
            task.edit_record(records[0], lambda words, protected: unchanged(words))
        except ValueError as error:
            word_op = next(op for op in ops if op in OPERATIONS)
            raise ConfigError(f"--augment.ops {word_op}: {error}") from None
    if cfg.augment.paraphrase is not None and not task.attackable:
        raise ConfigError(f"--augment.paraphrase: the {task.name} task cannot train on paraphrases: a "
                          "paraphrase rewrites the whole text, which keeps one label per text but not "
                          "labels tied to its words (tags, answer spans) nor a set of labels")
    return ops


class AugmentedBatches(BatchSource):
    """The default source's features plus, each epoch, `copies` augmented copies of every
    training record (and the paraphrases, the same every epoch), shuffled and length-grouped
    as the default is. Deterministic in (seed, epoch); caches the last epoch built."""

    def __init__(self, default: LengthGroupedBatches, records: Sequence[Record], task: Task, tokenizer: Any,
                 cfg: Config, synonyms: Any = None, paraphrased: Sequence[Record] = ()):
        self.default, self.records, self.task, self.tokenizer = default, records, task, tokenizer
        self.ops = augment_ops(cfg.augment.ops)
        self.rate, self.copies = cfg.augment.rate, cfg.augment.copies if self.ops else 0
        self.seed, self.max_length, self.synonyms = cfg.train.seed, cfg.model.max_length, synonyms
        self.record_ops: dict[str, RecordOp] = (task.record_ops(records)
                                                if any(op not in OPERATIONS for op in self.ops) else {})
        self.paraphrased = self._encode(paraphrased)  # encoded once: they do not change
        self.augmented_counts: dict[int, int] = {}  # epoch -> augmented model inputs in it
        self._per_batch: dict[int, list[int]] = {}  # epoch -> augmented inputs in each step batch
        self._cached: tuple[int, list[list[Feature]]] | None = None

    def step_batches(self, epoch: int) -> list[list[Feature]]:
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._build(epoch))
        return self._cached[1]

    def augment(self, record: Record, rng: random.Random) -> Record:
        """One augmented copy: one op drawn among the configured ones, applied with `rng`."""
        op = rng.choice(self.ops)
        if op in self.record_ops:
            return self.record_ops[op](record, rng, self.rate)[0]
        return self.task.edit_record(record, make_edit(op, rng, self.rate, self.synonyms))[0]

    def augmented_records(self, epoch: int) -> tuple[list[Record], list[Record]]:
        """The epoch's copies: (those that differ from their original, those that came out the same)."""
        changed: list[Record] = []
        same: list[Record] = []
        for i, record in enumerate(self.records):
            for copy in range(self.copies):
                new = self.augment(record, record_rng(self.seed, epoch, i, copy))
                (changed if new.fields != record.fields else same).append(new)
        return changed, same

    def _build(self, epoch: int) -> list[list[Feature]]:
        changed, same = self.augmented_records(epoch)
        extra = self.paraphrased + self._encode(changed)  # what counts as augmented
        features = [*self.default.features, *extra, *self._encode(same)]
        first, last = len(self.default.features), len(self.default.features) + len(extra)
        lengths = [len(f["input_ids"]) for f in features]
        batches = epoch_batches(lengths, self.default.step_batch, self.seed, epoch, self.default.group_by_length)
        self._per_batch[epoch] = [sum(first <= i < last for i in batch) for batch in batches]
        self.augmented_counts[epoch] = len(extra)
        return [[features[i] for i in batch] for batch in batches]

    def _encode(self, records: Sequence[Record]) -> list[Feature]:
        return self.task.encode(records, self.tokenizer, self.max_length).features if records else []

    def trained_per_epoch(self, steps: int) -> list[int]:
        """Augmented model inputs in the step batches of the first `steps` optimizer steps, per
        epoch (the last one partial); epochs trained before a resume are rebuilt to count them."""
        counts: list[int] = []
        epoch = 0
        while steps > 0:
            if epoch not in self._per_batch:
                self._build(epoch)
            per_batch = self._per_batch[epoch]
            counts.append(sum(per_batch[:steps]))
            steps -= max(len(per_batch), 1)
            epoch += 1
        return counts


class Augmentation:
    """What --augment asks of a run: checked against the task first (`from_config`, before any
    model loads), then prepared (synonyms, paraphrases), then wrapped around the default batch
    source (called as a SourceWrapper); reports what training used."""

    def __init__(self, cfg: Config, task: Task, records: Sequence[Record]):
        self.cfg, self.task, self.records = cfg, task, records
        self.ops = check_ops(cfg, task, records)
        self.tokenizer: Any = None
        self.synonyms: Any = None
        self.paraphrases: Paraphrases | None = None
        self.batches: AugmentedBatches | None = None

    @classmethod
    def from_config(cls, cfg: Config, task: Task, records: Sequence[Record]) -> "Augmentation | None":
        """None when the config asks for no augmentation."""
        if not augment_ops(cfg.augment.ops) and cfg.augment.paraphrase is None:
            return None
        return cls(cfg, task, records)

    def prepare(self, model: Any, tokenizer: Any, run_root: Path, say: Callable[[str], None]) -> None:
        """Load the synonyms the ops need (from `model` before training, for embedding
        neighbours) and the paraphrases (generated once, cached in the run folder)."""
        from ..data.synonyms import WORDNET_ADVICE, load_synonyms

        self.tokenizer = tokenizer
        aug = self.cfg.augment
        if any(op in SYNONYM_OPS for op in self.ops):
            self.synonyms = load_synonyms(aug.synonyms, model, tokenizer)  # neighbours copy the embeddings
            if aug.synonyms == "auto" and self.synonyms.name == "embeddings":
                say(f"WordNet not found, so synonyms come from the model's embedding neighbours, which "
                    f"measured worse than WordNet on SST-2 (README, Augmentation); {WORDNET_ADVICE}")
        if self.ops:
            say(f"augmentation: {aug.copies} cop{'y' if aug.copies == 1 else 'ies'} of each of the "
                f"{len(self.records):,} training examples per epoch, each by one of {','.join(self.ops)} "
                f"(rate {aug.rate})" + (f"; synonyms: {self.synonyms.name}" if self.synonyms else ""))
        if aug.paraphrase is not None:
            from .distributed import from_main

            self.paraphrases = from_main(lambda: paraphrase(self.records, self.task, self.cfg,
                                                            run_root / PARAPHRASE_CACHE, say))

    def __call__(self, default: BatchSource) -> AugmentedBatches:
        if not isinstance(default, LengthGroupedBatches):
            raise TypeError("augmentation wraps the run's default batch source (LengthGroupedBatches)")
        paraphrased = self.paraphrases.records if self.paraphrases else ()
        self.batches = AugmentedBatches(default, self.records, self.task, self.tokenizer, self.cfg,
                                        self.synonyms, paraphrased)
        return self.batches

    def report(self, steps: int) -> dict[str, Any]:
        """metrics.json's training entries: augmented examples trained on, in all and per epoch."""
        per_epoch = self.batches.trained_per_epoch(steps) if self.batches else []
        aug = self.cfg.augment
        report: dict[str, Any] = {"augmented_examples": sum(per_epoch), "augmented_per_epoch": per_epoch,
                                  "augment": {"ops": ",".join(self.ops) or "none", "rate": aug.rate,
                                              "copies": aug.copies if self.ops else 0,
                                              "synonyms": getattr(self.synonyms, "name", None)}}
        if self.paraphrases is not None:
            report["augment"]["paraphrase"] = self.paraphrases.report(aug.paraphrase)
        return report

    def summary(self, report: dict[str, Any]) -> str:
        """The line said at the end of training."""
        settings = report["augment"]
        line = (f"trained on {report['augmented_examples']:,} augmented examples (ops {settings['ops']}, "
                f"rate {settings['rate']}, copies {settings['copies']}")
        if self.paraphrases is not None:
            line += f"; {len(self.paraphrases.records):,} paraphrases per epoch"
        return line + ")"


# ---- paraphrases -------------------------------------------------------------------------------

@dataclass
class Paraphrases:
    """The accepted paraphrases as training records, and how they were made."""

    records: list[Record]
    generated: int
    rejected: int  # empty, or the same text as the input
    seconds: float  # the decoder's time (that of the run that wrote them, when read from the cache)
    cached: bool = False

    def report(self, model: str) -> dict[str, Any]:
        return {"model": model, "generated": self.generated, "accepted": len(self.records),
                "rejected": self.rejected, "seconds": round(self.seconds, 2),
                "per_s": round(self.generated / self.seconds, 2) if self.seconds > 0 else None}


def paraphrase(records: Sequence[Record], task: Task, cfg: Config, cache: Path,
               say: Callable[[str], None]) -> Paraphrases:
    """`cfg.augment.paraphrases` paraphrases of each record's text, from the cache when it holds
    this run's (a resume), else generated once and cached; empty or unchanged ones are rejected."""
    aug = cfg.augment
    texts = [_text_of(task, record) for record in records]
    header = {"model": aug.paraphrase, "records": len(records), "per_record": aug.paraphrases}
    rows, seconds = _read_cache(cache, header)
    cached = rows is not None
    if rows is None:
        start = time.perf_counter()
        outputs = generate_paraphrases(texts, aug.paraphrase, aug.paraphrases, cfg.train.seed)
        seconds = time.perf_counter() - start
        rows = [{"record": i, "k": k, "text": out[k], "accepted": _acceptable(out[k], texts[i])}
                for i, out in enumerate(outputs) for k in range(aug.paraphrases)]
        _write_cache(cache, {**header, "seconds": round(seconds, 3)}, rows)
    kept = [_with_text(task, records[row["record"]], row["text"]) for row in rows if row["accepted"]]
    result = Paraphrases(kept, len(rows), len(rows) - len(kept), seconds, cached)
    speed = result.report(aug.paraphrase)["per_s"]
    say(f"paraphrases by {aug.paraphrase}: {result.generated:,} for {len(records):,} training examples, "
        f"{len(kept):,} kept, {result.rejected:,} rejected (empty or unchanged); "
        + (f"read from {cache}" if cached else f"{speed} paraphrases/s"))
    return result


def generate_paraphrases(texts: Sequence[str], ref: str, per_text: int, seed: int,
                         batch_size: int = PARAPHRASE_BATCH) -> list[list[str]]:
    """`per_text` paraphrases of each text by the causal LM `ref` (alias or folder): the first
    greedy, the others sampled; each up to ~1.5x its input's length in tokens."""
    from types import SimpleNamespace

    import torch

    from ..inference.generate import generate

    model, tokenizer = _load_decoder(ref)
    prompts = [_prompt_ids(tokenizer, text) for text in texts]
    sizes = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    order = sorted(range(len(texts)), key=lambda i: sizes[i])  # similar lengths batch together
    outputs: list[list[str]] = [[] for _ in texts]
    settings = SimpleNamespace(max_new_tokens=8, temperature=0.0, top_p=1.0, stop=None, batch_size=batch_size)
    with torch.random.fork_rng():  # sampling must not move training's random state
        for k in range(per_text):
            sampling = dict(temperature=0.8, top_p=0.95) if k else dict(temperature=0.0, top_p=1.0)
            for b, start in enumerate(range(0, len(order), batch_size)):
                batch = order[start:start + batch_size]
                new_tokens = max(8, math.ceil(1.5 * max(sizes[i] for i in batch)))
                texts_out = generate(model, tokenizer, [prompts[i] for i in batch], settings,
                                     max_new_tokens=new_tokens, seed=seed * 1_000_003 + k * 10_007 + b,
                                     **sampling)
                for i, out in zip(batch, texts_out):
                    outputs[i].append(_first_line(out))
    return outputs


def _load_decoder(ref: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from ..models import ALIASES, ModelNotFoundError, load_model, load_tokenizer, resolve_model

    try:
        path = resolve_model(ref)
    except ModelNotFoundError as error:
        hint = f"\nthe packaged decoders need {DECODER_EXTRA}" if ref in ALIASES else ""
        raise ConfigError(f"--augment.paraphrase {ref}: {error}{hint}") from None
    model, _ = load_model(path, AutoModelForCausalLM)
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), load_tokenizer(path)


def _prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """The instruction around `text`, in the tokenizer's chat template when it has one."""
    instruction = PARAPHRASE_PROMPT.format(text=text)
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False,
                                               add_generation_prompt=True)
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return tokenizer(f"{instruction}\n\nParaphrase:", add_special_tokens=True)["input_ids"]


def _first_line(output: str) -> str:
    """The paraphrase itself: a model may add notes after it, or quote it."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[0].strip("\"'“”").strip() if lines else ""


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _acceptable(paraphrase: str, original: str, kept_share: float = 0.5) -> bool:
    """Not empty, not the input, and still about it: a small decoder often answers with a story
    of its own (SmolLM2-135M did for about half of SST-2's phrases), so at least `kept_share` of
    the input's content words must survive."""
    from ..data.synonyms import STOPWORDS

    if not paraphrase.strip() or _normal(paraphrase) == _normal(original):
        return False
    content = {w for w in _normal(original).split() if w.isalpha() and w not in STOPWORDS}
    return not content or len(content & set(_normal(paraphrase).split())) >= kept_share * len(content)


def _text_of(task: Task, record: Record) -> str:
    """The record's first editable text (its text column), as the task edits it."""
    seen: list[str] = []

    def capture(words: list[str], protected: list[bool]) -> WordEdit:
        seen.append(" ".join(words))
        return unchanged(words)

    task.edit_record(record, capture)
    return seen[0] if seen else ""


def _with_text(task: Task, record: Record, text: str) -> Record:
    """A copy of the record with its first editable text replaced by `text` (a pair text stays)."""
    done: list[bool] = []

    def replace(words: list[str], protected: list[bool]) -> WordEdit:
        if done:
            return unchanged(words)
        done.append(True)
        new = text.split()
        return WordEdit(new, [None] * len(new), max(1, len(new)))

    return task.edit_record(record, replace)[0]


def _read_cache(cache: Path, header: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, float]:
    """The cached rows and the decoder's time, if the cache was made for this run's settings."""
    if not cache.is_file():
        return None, 0.0
    lines = cache.read_text().splitlines()
    first = json.loads(lines[0]) if lines else {}
    if any(first.get(key) != value for key, value in header.items()):
        return None, 0.0
    return [json.loads(line) for line in lines[1:]], float(first.get("seconds", 0.0))


def _write_cache(cache: Path, header: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.name + ".partial")
    partial.write_text("".join(json.dumps(row) + "\n" for row in [header, *rows]))
    partial.replace(cache)  # whole or absent: a crash mid-write leaves no half cache behind
