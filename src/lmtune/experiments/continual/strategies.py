"""The continual-learning strategies: what each one changes about a step's run (its config, the
loop plug-ins) and what it keeps between steps (a replay memory, the Fisher information, task
centroids). Each keeps its state in the continual run folder, so a resumed sequence continues
with exactly the state an uninterrupted one would have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from ...config import Config, ContinualConfig
from ...data import load_splits
from ...data.records import Dataset, Record


def step_records(cfg: Config, split: str = "train") -> list[Record]:
    """A step's records of one split as its run reads them (validation carved as the run carves
    it), under the common field names text / text_pair / label, whatever its file calls them."""
    names = _field_names(cfg)
    return [Record({k: r.fields.get(v) for k, v in names.items() if v}, r.source, r.line)
            for r in load_splits(cfg).get(split, Dataset("", [])).records]


def _field_names(cfg: Config) -> dict[str, str | None]:
    """Common field name -> the name a run's files use."""
    data = cfg.data
    return {"text": data.text_column, "text_pair": data.text_pair_column, "label": data.label_column}


def as_columns(records: list[Record], cfg: Config) -> list[Record]:
    """Common-name records (step_records) under the field names a run reads."""
    names = _field_names(cfg)
    return [Record({names[k]: v for k, v in r.fields.items() if names.get(k)}, r.source, r.line) for r in records]


class Strategy:
    """sequential: each step fine-tunes the previous step's model on the new data alone (the
    baseline that forgets)."""

    name: ClassVar[str] = "sequential"
    carries_model: ClassVar[bool] = True  # step i starts from step i-1's model
    shared_model: ClassVar[bool] = True  # one model answers every step after training (else one run per step)

    def __init__(self, settings: ContinualConfig, root: Path, seed: int):
        self.settings, self.root, self.seed = settings, root, seed

    def state_path(self, kind: str, index: int) -> Path:
        """What the strategy kept after step `index` (1-based in the name, like the step folders).
        One file per step, so redoing a step after a crash never counts it twice."""
        return self.root / "strategy" / f"{kind}-{index + 1:02d}{self.suffix}"

    suffix: ClassVar[str] = ".json"

    def latest(self, kind: str, before: int) -> Path | None:
        """The state file of the last step before `before` that has one."""
        for index in range(before - 1, -1, -1):
            if self.state_path(kind, index).is_file():
                return self.state_path(kind, index)
        return None

    def step_config(self, cfg: Config, index: int) -> Config:
        return cfg

    def plugins(self, cfg: Config, index: int) -> dict[str, Any]:
        """finetune's keyword arguments for step `index` (loss_terms, batch_source)."""
        return {}

    def after_step(self, cfg: Config, index: int, name: str, run_dir: Path) -> None:
        """Save what the strategy keeps after step `index`, from what it kept before it."""

    def stored(self, steps: int) -> str:
        """What the strategy keeps after `steps` steps, for the cost table."""
        return "nothing"


class Multitask(Strategy):
    """multitask: every step's data in one run (the upper bound every report shows)."""

    name = "multitask"


class Replay(Strategy):
    """replay: a memory of earlier steps' training examples, mixed into every batch at a set ratio."""

    name = "replay"

    def memory(self, before: int) -> Any:
        from .replay import ReplayMemory

        path = self.latest("memory", before)
        return (ReplayMemory.from_state(json.loads(path.read_text())) if path
                else ReplayMemory(self.settings.memory, self.settings.memory_selection, self.seed))

    def plugins(self, cfg: Config, index: int) -> dict[str, Any]:
        memory = self.memory(index)
        if not len(memory):
            return {}
        from .replay import ReplayBatches

        features = encode_records(cfg, [record for _, record in memory.items()])
        ratio, seed = self.settings.replay_ratio, self.seed + index
        return {"batch_source": lambda default: ReplayBatches(default, features, ratio, seed)}

    def after_step(self, cfg: Config, index: int, name: str, run_dir: Path) -> None:
        memory = self.memory(index)
        memory.add_step(name, step_records(cfg))
        _write(self.state_path("memory", index), json.dumps(memory.state_dict()).encode())

    def stored(self, steps: int) -> str:
        return f"{len(self.memory(steps))} examples"


class Ewc(Strategy):
    """ewc: elastic weight consolidation, a pull towards the weights earlier steps ended with,
    weighted by each weight's Fisher information (summed over the earlier steps)."""

    name = "ewc"
    suffix = ".safetensors"

    def plugins(self, cfg: Config, index: int) -> dict[str, Any]:
        path = self.latest("ewc", index)
        if path is None:
            return {}
        from .ewc import EWC, load_ewc

        fisher, anchor = load_ewc(path)
        return {"loss_terms": [EWC(fisher, anchor, self.settings.ewc_lambda)]}

    def after_step(self, cfg: Config, index: int, name: str, run_dir: Path) -> None:
        from ...inference.predictor import load
        from .ewc import fisher_information, load_ewc, merge_fisher, save_ewc

        predictor = load(run_dir)
        model, task = predictor.model, predictor.task
        records = as_columns(step_records(predictor.cfg), predictor.cfg)
        features = task.encode(records, predictor.tokenizer, predictor.cfg.model.max_length).features
        fisher = fisher_information(model, task, features, predictor.tokenizer.pad_token_id or 0,
                                    max_examples=self.settings.ewc_samples, seed=self.seed)
        earlier = self.latest("ewc", index)
        anchor = {n: p.detach().clone() for n, p in model.named_parameters() if n in fisher}
        path = self.state_path("ewc", index)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_ewc(path, merge_fisher(load_ewc(earlier)[0] if earlier else None, fisher), anchor)
        if index >= 2:  # a redone step needs only the one before it: the rest is disk (2 x model size)
            self.state_path("ewc", index - 2).unlink(missing_ok=True)

    def stored(self, steps: int) -> str:
        path = self.latest("ewc", steps)
        return f"Fisher + anchor weights, {path.stat().st_size / 1e6:.1f} MB" if path else "nothing"


class AdapterPerTask(Strategy):
    """adapter-per-task: one LoRA adapter (and head) per step over the shared frozen base, so
    nothing is forgotten given the task; without it, inputs go to the nearest task centroid of
    the base model's sentence embeddings."""

    name = "adapter-per-task"
    carries_model = False
    shared_model = False
    suffix = ".npz"

    def step_config(self, cfg: Config, index: int) -> Config:
        from ...methods import method_class

        if not method_class(cfg.method.name).adapter:
            cfg.method.name = "lora"
        return cfg

    def router(self, steps: int) -> Any:
        from .routing import CentroidRouter

        path = self.latest("router", steps)
        return CentroidRouter.load(path) if path else None

    def after_step(self, cfg: Config, index: int, name: str, run_dir: Path) -> None:
        import random

        from .routing import CentroidRouter, Embedder

        texts = [str(r.fields["text"]) for r in step_records(cfg)]
        random.Random(self.seed).shuffle(texts)
        earlier = self.router(index)
        # an earlier step's centroid stands for its embeddings: the mean of one unit row is itself
        centroids = {step: row[None] for step, row in zip(earlier.steps, earlier.centroids)} if earlier else {}
        centroids[name] = Embedder(cfg.model.name)(texts[: self.settings.router_samples])
        path = self.state_path("router", index)
        path.parent.mkdir(parents=True, exist_ok=True)
        CentroidRouter().fit(centroids).save(path)

    def stored(self, steps: int) -> str:
        files = sorted((self.root / "steps").glob("*/model/adapter_model.safetensors"))[:steps]
        return f"{len(files)} adapters, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB"


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Strategy, Replay, Ewc, AdapterPerTask, Multitask)}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_bytes(data)
    temp.replace(path)


def make_strategy(settings: ContinualConfig, root: Path, seed: int) -> Strategy:
    return STRATEGIES[settings.strategy](settings, root, seed)


def encode_records(cfg: Config, records: list[Record]) -> list[dict[str, Any]]:
    """Records encoded as a step's run encodes its own (the head's fixed labels, its tokenizer)."""
    from ...models import load_tokenizer, resolve_model
    from ...tasks import get_task

    records = as_columns(records, cfg)
    task = get_task(cfg)
    task.fit(Dataset("<memory>", records))
    tokenizer = load_tokenizer(resolve_model(cfg.model.name))
    return task.encode(records, tokenizer, cfg.model.max_length).features
