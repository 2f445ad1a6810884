"""`lmtune continual`: train the steps of a sequence one after another, each an ordinary run under
<continual run>/steps/, score every step's test set after each one (the accuracy matrix) and
write the report. The folder's continual.json records where the sequence is, so an interrupted
one resumes at the step (and, from its last checkpoint, the position) it reached."""

from __future__ import annotations

import copy
import json
import resource
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from ...config import Config, ConfigError, check_group
from ...methods import method_class
from ...tasks import task_class
from ...data.records import Record
from ...run import RunFolder
from .sequence import Heads, Step, read_sequence, read_step_labels, resolve_heads
from .strategies import Strategy, as_columns, make_strategy, step_records

STATE = "continual.json"


def is_continual_run(path: str | Path) -> bool:
    return (Path(path) / STATE).is_file()


def continual(sequence: str | Path | None, overrides: Sequence[tuple[str, Any]] = (),
              resume: str | Path | None = None, quiet: bool = False) -> Path:
    """Run a sequence (or resume the continual run folder `resume`); returns its folder.
    `overrides` are config keys (`train.epochs`, `continual.strategy`, ...) over the sequence
    file's own config. Everything is checked before the first step trains."""
    job = _resume(Path(resume)) if resume is not None else _start(Path(sequence), overrides)
    job.run(quiet)
    return job.root


class Job:
    """One continual run: the sequence, its settings, its folder and its recorded progress."""

    def __init__(self, root: Path, steps: list[Step], base: Config, heads: Heads, state: dict[str, Any]):
        self.root, self.steps, self.base, self.heads, self.state = root, steps, base, heads, state
        self.strategy: Strategy = make_strategy(base.continual, root, base.train.seed)
        self.multitask = base.continual.strategy == "multitask"
        self._records: dict[tuple[str, str], list[Record]] = {}

    def records(self, step: Step, split: str) -> list[Record]:
        """A step's records of a split, read once for the whole sequence (the matrix scores
        every step after every step)."""
        if (step.name, split) not in self._records:
            self._records[step.name, split] = step_records(self.data_config(step), split)
        return self._records[step.name, split]

    # ---- configs of the steps -----------------------------------------------------------------
    def data_config(self, step: Step) -> Config:
        """The base config reading `step`'s files and columns, with the head's labels."""
        cfg = copy.deepcopy(self.base)
        data = cfg.data
        data.train = str(step.train)
        data.validation = str(step.validation) if step.validation else None
        data.test = str(step.test) if step.test else None
        for name in ("text_column", "text_pair_column", "label_column"):
            if getattr(step, name) is not None:
                setattr(data, name, getattr(step, name))
        own = self.heads.groups[self.heads.group_of_step[step.name]]
        if self.strategy.shared_model:
            data.labels = list(self.heads.labels)
            data.label_groups = [list(g) for g in self.heads.groups] if len(self.heads.groups) > 1 else None
        else:  # a run per step: its own head over its own labels
            data.labels, data.label_groups = list(own), None
        return cfg

    def step_config(self, index: int) -> Config:
        step = self.steps[index]
        cfg = self.data_config(step) if not self.multitask else self._multitask_config()
        if self.strategy.carries_model and index > 0:
            cfg.model.name = str(self.run_dir(index - 1) / "model")
        cfg.train.output_dir, cfg.train.run_name = str(self.root / "steps"), self.run_dir(index).name
        cfg.train.overwrite = False
        return self.strategy.step_config(cfg, index)

    def run_dir(self, index: int) -> Path:
        name = "multitask" if self.multitask else self.steps[index].name
        return self.root / "steps" / f"{index + 1:02d}-{name}"

    def _multitask_config(self) -> Config:
        """One run over every step's training (and validation) data, written as JSON lines."""
        folder = self.root / "multitask-data"
        folder.mkdir(parents=True, exist_ok=True)
        splits: dict[str, list[Record]] = {"train": [], "validation": []}
        for step in self.steps:
            cfg = self.data_config(step)
            for split in splits:
                splits[split] += step_records(cfg, split)
        cfg = self.data_config(self.steps[0])
        for split, records in splits.items():
            path = folder / f"{split}.jsonl"
            with open(path, "w", encoding="utf-8") as handle:
                for record in as_columns(records, cfg):
                    handle.write(json.dumps(record.fields) + "\n")
            setattr(cfg.data, split, str(path) if records else None)
        cfg.data.test, cfg.data.validation_split, cfg.data.format = None, 0.0, "auto"
        return cfg

    # ---- the sequence ---------------------------------------------------------------------------
    def run(self, quiet: bool) -> None:
        count = 1 if self.multitask else len(self.steps)
        if self.heads.mode == "shared" and not self.multitask and "baseline" not in self.state:
            self.state["baseline"] = self._untrained_scores()
            self.save()
        for index in range(count):
            entry = self.state["steps"][index]
            if entry["status"] != "finished":
                self._say(quiet, f"lmtune continual: step {index + 1}/{count}: {entry['name']} "
                                 f"({self.base.continual.strategy})")
            # Each stage is recorded when done, so a resumed sequence redoes only the one it was in.
            if entry["status"] in ("pending", "training"):
                self._train(index, entry, quiet)
                self._advance(entry, "trained")
            if entry["status"] == "trained":
                start = time.perf_counter()
                self.strategy.after_step(self.step_config(index), index, entry["name"], self.run_dir(index))
                entry["strategy_seconds"] = time.perf_counter() - start  # e.g. EWC's Fisher information
                self._advance(entry, "kept")
            if entry["status"] == "kept":
                self._score_row(index)
                self._advance(entry, "finished")
        from .reporting import write_report

        write_report(self, quiet)
        self.state["status"] = "finished"
        self.save()

    def _train(self, index: int, entry: dict[str, Any], quiet: bool) -> None:
        from ...pipeline import finetune

        cfg, run_dir = self.step_config(index), self.run_dir(index)
        if RunFolder(run_dir).read_status().get("status") == "finished":
            return  # trained before an interruption that came before the progress was saved
        plugins = self.strategy.plugins(cfg, index)
        resume = run_dir if _has_checkpoint(run_dir) else None
        if resume is None and run_dir.exists():
            shutil.rmtree(run_dir)  # started, but nothing to continue from: start the step again
        entry["status"] = "training"
        self.save()
        start = time.perf_counter()
        finetune(None if resume else cfg, resume=resume, quiet=quiet, **plugins)
        entry["seconds"] = entry.get("seconds", 0.0) + time.perf_counter() - start
        entry["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _advance(self, entry: dict[str, Any], status: str) -> None:
        entry["status"] = status
        self.save()

    # ---- scores -------------------------------------------------------------------------------
    def _score_row(self, index: int) -> None:
        """Row `index` of the matrices: every step's test (and validation) score after it."""
        from ...inference.predictor import load

        predictor = load(self.run_dir(index))  # the model after this step (its own adapter: adapter-per-task)
        for split in ("test", "validation"):
            matrix = self.state["matrix"].setdefault(split, [])
            row: list[float | None] = [None] * len(self.steps)
            for j, step in enumerate(self.steps):
                if self.strategy.shared_model and (j <= index or self.heads.mode == "shared" or self.multitask):
                    row[j] = _score(predictor, self.records(step, split))
                elif not self.strategy.shared_model and j < index:
                    row[j] = matrix[j][j]  # step j's own adapter answers it: nothing changes
                elif not self.strategy.shared_model and j == index:
                    row[j] = _score(predictor, self.records(step, split))
            del matrix[index:]
            matrix.append(row)

    def _untrained_scores(self) -> dict[str, list[float | None]]:
        """Each step's score with the base model and an untrained head (forward transfer's baseline)."""
        from ...inference.predictor import Predictor
        from ...models import load_model, load_tokenizer, resolve_model
        from ...tasks import get_task
        from ...data.records import Dataset
        from accelerate.utils import set_seed

        cfg = self.data_config(self.steps[0])
        task = get_task(cfg)
        task.fit(Dataset("<labels>", []))
        set_seed(cfg.train.seed)
        path = resolve_model(cfg.model.name)
        model, _ = load_model(path, task.auto_model_class, **task.model_config())
        predictor = Predictor(model, load_tokenizer(path), task, cfg)
        return {split: [_score(predictor, self.records(step, split)) for step in self.steps]
                for split in ("test", "validation")}

    # ---- the folder ---------------------------------------------------------------------------
    def save(self) -> None:
        path = self.root / STATE
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.state, indent=1))
        temp.replace(path)

    @staticmethod
    def _say(quiet: bool, message: str) -> None:
        if not quiet:
            print(message, flush=True)


def _score(predictor: Any, records: list[Record]) -> float | None:
    if not records:
        return None
    metrics = predictor.evaluate_records(as_columns(records, predictor.cfg))
    return float(metrics["accuracy"])


def _has_checkpoint(run_dir: Path) -> bool:
    """Whether the run has a complete checkpoint (latest.txt names one only once it is written)."""
    from ...training.checkpoint import read_pointer

    return read_pointer(RunFolder(run_dir).checkpoints, "latest.txt") is not None


def _start(sequence_path: Path, overrides: Sequence[tuple[str, Any]]) -> Job:
    sequence = read_sequence(sequence_path)
    base = _base_config(sequence, overrides)
    check_group(base, "continual")
    if not task_class(base.task).learns_in_sequence:
        raise ConfigError(f"{sequence_path}: continual learning trains classification steps, not {base.task!r}")
    heads = resolve_heads(sequence, read_step_labels(sequence, base), base.continual.heads)
    _check_strategy(base, sequence_path)
    from ...models import resolve_model

    resolve_model(base.model.name)  # an unreachable model is an error now, not after a folder exists
    root = Path(base.train.output_dir) / (base.train.run_name or f"{sequence.name}-{base.continual.strategy}")
    _claim(root, base)
    base.train.run_name = None
    steps = [{"name": s.name, "status": "pending"} for s in sequence.steps]
    if base.continual.strategy == "multitask":
        steps = [{"name": "multitask", "status": "pending"}]
    state = {"version": 1, "sequence": str(sequence_path.resolve()), "status": "running",
             "strategy": base.continual.strategy, "overrides": [list(o) for o in overrides],
             "heads": heads.__dict__, "steps": steps, "matrix": {}}
    job = Job(root, sequence.steps, base, heads, state)
    job.save()
    return job


def _resume(root: Path) -> Job:
    path = root / STATE
    if not path.is_file():
        hint = " (a single run resumes with `lmtune train --resume`)" if (root / "config.yaml").is_file() else ""
        raise ConfigError(f"{root} is not a continual run folder: it has no {STATE}{hint}")
    state = json.loads(path.read_text())
    sequence = read_sequence(state["sequence"])
    base = _base_config(sequence, state["overrides"])
    base.train.output_dir, base.train.run_name = str(root.parent), None
    heads = Heads(**state["heads"])
    return Job(root, sequence.steps, base, heads, state)


def _base_config(sequence: Any, overrides: Sequence[Sequence[Any]]) -> Config:
    """The sequence file's config with the command's overrides; its `heads:` unless overridden."""
    base = Config.from_dict(copy.deepcopy(sequence.config), source=str(sequence.path))
    for key, value in overrides:
        base.override(key, value)
    if sequence.heads and base.continual.heads == "auto":
        base.continual.heads = sequence.heads
    return base


def _check_strategy(base: Config, where: Path) -> None:
    if base.continual.strategy == "ewc" and method_class(base.method.name).adapter:
        raise ConfigError(f"{where}: ewc pulls a model's own weights back; use method full or freeze, "
                          f"not {base.method.name!r} (adapter-per-task is the adapter strategy)")


def _claim(root: Path, base: Config) -> None:
    if root.exists() and any(root.iterdir()):
        if not base.train.overwrite:
            raise ConfigError(f"{root} already exists: continue it with `lmtune continual --resume {root}`, "
                              "replace it with --train.overwrite true, or choose another --train.run-name")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
