"""One typed config: the YAML file, the CLI flags and the Python API all fill the same dataclasses.

Groups: model, data, method (with lora, ia3, prompt settings), train, eval, generation. A YAML file mirrors the groups; CLI overrides are
`--group.field value` (dashes or underscores), plus a few shorthands for the common data flags.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml


class ConfigError(ValueError):
    """A config value or key that cannot be used; the message says which and what to do."""


@dataclass
class ModelConfig:
    name: str = "minilm"  # packaged alias | local folder | hub id
    max_length: int = 128  # tokens per example; longer inputs are truncated (and counted)


@dataclass
class DataConfig:
    train: Optional[str] = None
    validation: Optional[str] = None
    test: Optional[str] = None
    text_column: str = "text"
    text_pair_column: Optional[str] = None  # second text for pair tasks (NLI, paraphrase)
    label_column: str = "label"
    multi_label: bool = False
    label_separator: Optional[str] = None  # e.g. "|" for "sports|politics" multi-label fields
    on_error: str = "raise"  # raise | skip (skip counts and reports every skipped row)
    validation_split: float = 0.0  # carve a validation set from train when none is given
    tag_scheme: str = "auto"  # ner: auto | iob1 | iob2 | bioes (auto: BIOES if S-/E- tags, else IOB2)
    label_all_tokens: bool = False  # ner: label every word piece, not just the first
    window_overlap: int = 32  # ner: word pieces shared by consecutive windows of a long input
    prompt_column: str = "prompt"  # generation: prompt/response fields, or chat `messages`
    response_column: str = "response"
    chat_template: str = "auto"  # generation: auto (the tokenizer's, when it has one) | none
    packing: bool = False  # generation: pack short examples into one sequence (isolated attention)


@dataclass
class MethodConfig:
    name: str = "full"  # full | freeze | lora | adalora | ia3 | prefix | prompt
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # freeze the lower N encoder layers
    modules_to_save: Optional[str] = None  # adapters: extra modules that train fully (comma list)


@dataclass
class LoraSettings:
    """LoRA and AdaLoRA (for AdaLoRA, r is the average rank it ends with)."""
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: Optional[str] = None  # comma list, or all-linear; None: per-architecture default


@dataclass
class Ia3Settings:
    target_modules: Optional[str] = None  # None: per-architecture default
    feedforward_modules: Optional[str] = None


@dataclass
class PromptSettings:
    """Prefix tuning and prompt tuning."""
    num_virtual_tokens: int = 20


@dataclass
class TrainConfig:
    epochs: float = 3.0
    max_steps: int = 0  # >0 overrides epochs
    batch_size: int = 32
    learning_rate: Optional[float] = None  # None: by model width (see training/loop.py)
    weight_decay: float = 0.01
    scheduler: str = "linear"  # linear | cosine | constant
    warmup_ratio: float = 0.06
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16  (auto: bf16 where the hardware has it)
    group_by_length: bool = True
    eval_strategy: str = "epoch"  # epoch | steps | no
    eval_steps: int = 500
    save_steps: int = 0  # extra checkpoints every N optimizer steps (0: at each evaluation)
    early_stopping_patience: int = 0  # evaluations without improvement before stopping (0: off)
    metric_for_best: str = "accuracy"
    greater_is_better: bool = True
    class_weights: Optional[str] = None  # balanced | none
    label_smoothing: float = 0.0
    seed: int = 42
    num_threads: int = 0  # 0: torch default
    logging_steps: int = 20
    output_dir: str = "runs"
    run_name: Optional[str] = None
    overwrite: bool = False  # replace an existing run folder of the same name
    progress: bool = True


@dataclass
class EvalConfig:
    batch_size: int = 64
    threshold: float = 0.5  # multi-label decision threshold
    max_answer_tokens: int = 30  # qa: longest answer span considered
    null_threshold: Optional[float] = None  # qa: allow "no answer" when it wins by this margin


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy; > 0: sampling
    top_p: float = 1.0
    stop: Optional[str] = None  # stop string (generation ends at its first occurrence)
    batch_size: int = 8


@dataclass
class Config:
    task: str = "classification"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    ia3: Ia3Settings = field(default_factory=Ia3Settings)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    generation: GenerationSettings = field(default_factory=GenerationSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "Config":
        cfg = cls()
        for key, value in (values or {}).items():
            if isinstance(value, dict):
                for sub, subvalue in value.items():
                    _set(cfg, f"{key}.{sub}", subvalue, source)
            else:
                _set(cfg, key, value, source)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of groups (model, data, train, ...)")
        return cls.from_dict(values, source=str(path))

    def override(self, dotted: str, value: Any, source: str = "command line") -> None:
        _set(self, dotted, value, source)


def _field_type(owner: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(owner))
    return hints[name]


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        annotation = args[0]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{source}: {key} expects true/false, got {value!r}")
    if annotation in (int, float):
        try:
            number = float(value) if annotation is float else int(str(value), 10)
        except ValueError:
            try:
                as_float = float(value)
            except ValueError:
                raise ConfigError(f"{source}: {key} expects a number, got {value!r}") from None
            if annotation is int and as_float.is_integer():
                return int(as_float)
            raise ConfigError(f"{source}: {key} expects {annotation.__name__}, got {value!r}") from None
        return number
    if annotation is str:
        return str(value)
    return value


def _set(cfg: Config, dotted: str, value: Any, source: str) -> None:
    parts = dotted.replace("-", "_").split(".")
    target: Any = cfg
    for depth, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(target)}
        if part not in names:
            where = ".".join(parts[:depth]) or "config"
            raise ConfigError(
                f"{source}: unknown key {dotted!r}; {where} has: {', '.join(sorted(names))}"
            )
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(target, part)):
                raise ConfigError(f"{source}: {dotted!r} is a group; set one of its fields")
            setattr(target, part, _coerce(value, _field_type(target, part), ".".join(parts), source))
            return
        target = getattr(target, part)
        if not dataclasses.is_dataclass(target):
            raise ConfigError(f"{source}: {'.'.join(parts[: depth + 1])!r} is not a group")


def validate(cfg: Config) -> None:
    """Catch impossible combinations before any model is loaded."""
    choices = {
        "train.scheduler": (cfg.train.scheduler, ("linear", "cosine", "constant")),
        "train.mixed_precision": (cfg.train.mixed_precision, ("auto", "no", "bf16", "fp16")),
        "train.eval_strategy": (cfg.train.eval_strategy, ("epoch", "steps", "no")),
        "data.on_error": (cfg.data.on_error, ("raise", "skip")),
        "data.tag_scheme": (cfg.data.tag_scheme, ("auto", "iob1", "iob2", "bioes")),
        "data.chat_template": (cfg.data.chat_template, ("auto", "none")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: choose one of {', '.join(allowed)}")
    if cfg.train.class_weights not in (None, "none", "balanced"):
        raise ConfigError(f"train.class_weights={cfg.train.class_weights!r}: use 'balanced' or 'none'")
    if cfg.train.batch_size < 1 or cfg.train.grad_accum < 1:
        raise ConfigError("train.batch_size and train.grad_accum must be >= 1")
    if not 0.0 <= cfg.data.validation_split < 1.0:
        raise ConfigError("data.validation_split must be in [0, 1)")
    if cfg.data.packing and cfg.method.name in ("prefix", "prompt"):
        raise ConfigError(f"data.packing cannot be used with --method {cfg.method.name}: its virtual "
                          "tokens would be shared by every packed example; use lora, or no packing")
    frozen = [f"method.{key}" for key in ("freeze_embeddings", "freeze_layers") if getattr(cfg.method, key)]
    if frozen and cfg.method.name != "freeze":
        raise ConfigError(f"{' and '.join(frozen)} only apply to --method freeze (this run uses "
                          f"--method {cfg.method.name}): add --method freeze, or drop them")
    if cfg.data.train is None:
        raise ConfigError("no training data: pass --train FILE (or data.train in the YAML config)")
