"""Parameter-efficient methods through the peft library: LoRA, AdaLoRA, IA3, prefix and prompt tuning.

Each method is a small class that builds its peft config; everything else (which modules train
fully, saving, reloading over a shared base, merging) is common. The run folder keeps the
adapter, the task head and the task model's config (labels), never the base weights.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Collection

from ..config import Config, ConfigError
from .base import Method

TASK_CONFIG = "task_config.json"  # the task model's transformers config (labels), no weights
# peft 0.21 calls a transformers 5 property that warns of its own deprecation on every wrap.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
_BODIES: dict[str, Any] = {}  # resolved base folder -> pretrained body whose tensors runs share


def _names(text: str | None) -> list[str] | str | None:
    if not text:
        return None
    return text if text == "all-linear" else [t.strip() for t in text.split(",") if t.strip()]


def trained_modules(model: Any, new_weights: Collection[str] = ()) -> list[str]:
    """Modules outside the pretrained body that must train fully and be saved with the adapter:
    the task head, a pooler (BERT's is a sentence-level head), and anything the checkpoint lacked.
    Output embeddings (a decoder's LM head, tied to the input embeddings) are left out."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {name for name, child in model.named_children()
             if name != model.base_model_prefix and child is not output
             and any(True for _ in child.parameters())}
    names |= {name for name, module in model.named_modules()
              if name.rsplit(".", 1)[-1] == "pooler" and any(True for _ in module.parameters())}
    modules = dict(model.named_modules())
    for key in new_weights:
        owner = key.rsplit(".", 1)[0]
        if owner in modules and modules[owner] is not output and not any(
                owner == n or owner.startswith(n + ".") for n in names):
            names.add(owner)
    return sorted(names)


def _not_adapted(model: Any, config: Any) -> list[str] | None:
    """Fully trained modules less those the adapter itself targets: with
    `--lora.target-modules ...,pooler.dense` the pooler gets LoRA instead of training whole."""
    targets = getattr(config, "target_modules", None)
    keep = list(config.modules_to_save or [])
    if targets and not isinstance(targets, str):
        suffixes = tuple("." + t for t in targets)
        adapted = [name for name, _ in model.named_modules() if name in targets or name.endswith(suffixes)]
        keep = [m for m in keep if not any(f".{m}." in f".{a}." for a in adapted)]
    return keep or None


class AdapterMethod(Method):
    """A peft method: the base stays frozen, a small set of new weights and the head train."""

    mergeable = False  # whether the adapter folds into the base weights (export --merge)
    adapter = True

    def peft_config(self, model: Any, common: dict[str, Any]) -> Any:
        raise NotImplementedError

    def prepare(self, model: Any, new_weights: Collection[str] = (), total_steps: int = 0,
                peft_task_type: str | None = None) -> Any:
        from peft import get_peft_model

        self.total_steps = total_steps
        extra = [m.strip() for m in (self.cfg.method.modules_to_save or "").split(",") if m.strip()]
        common = {"task_type": peft_task_type,
                  "modules_to_save": sorted(set(trained_modules(model, new_weights)) | set(extra)) or None}
        try:
            config = self.peft_config(model, common)
            config.modules_to_save = _not_adapted(model, config)
            self.model = get_peft_model(model, config)
        except ValueError as exc:
            raise ConfigError(f"method {self.name} cannot wrap {type(model).__name__}: {exc}") from exc
        return self.model

    def save(self, model: Any, tokenizer: Any, out_dir: Path) -> None:
        """The adapter and trained head (adapter_model.safetensors), its config with the base
        model reference, the task config (labels) and the tokenizer; no base weights."""
        out_dir = Path(out_dir)
        # AdaLoRA prunes some modules to rank 0; peft takes such empty tensors for unsaved
        # DeepSpeed shards and warns, but they reload exactly.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tensor\\(s\\) have invalid shape")
            model.save_pretrained(str(out_dir))
        model.get_base_model().config.to_json_file(str(out_dir / TASK_CONFIG))
        tokenizer.save_pretrained(str(out_dir))

    def load(self, model_dir: Path, auto_class: Any, share_base: bool = True) -> Any:
        """Rebuild the trained model: the base from the run's model reference (loaded once per
        process and shared by every adapter run over it), then the adapter and head."""
        from peft import PeftModel
        from transformers import AutoConfig

        model_dir = Path(model_dir)
        config = AutoConfig.from_pretrained(str(model_dir / TASK_CONFIG))
        model = auto_class.from_config(config)
        body = getattr(model, model.base_model_prefix)
        pretrained = shared_body(base_folder(model_dir, self.cfg.model.name)).state_dict()
        body.load_state_dict(pretrained, strict=False, assign=share_base)
        model.tie_weights()
        # peft warns that AdaLoRA's saved rank pattern (keyed by lora_E tensor names) matches no
        # module; the pruned ranks are zeros in the saved weights, so reloading is exact anyway.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*rank_pattern keys did not match")
            return PeftModel.from_pretrained(model, str(model_dir), is_trainable=False)


def base_folder(model_dir: Path, reference: str) -> Path:
    """The base model of an adapter run: its lmtune reference (alias, folder, hub id), else
    the folder peft recorded at training time."""
    from ..models import ModelNotFoundError, resolve_model

    try:
        return resolve_model(reference)
    except ModelNotFoundError as exc:
        recorded = json.loads((Path(model_dir) / "adapter_config.json").read_text()).get(
            "base_model_name_or_path")
        if recorded and (Path(recorded) / "config.json").is_file():
            return Path(recorded)
        raise ModelNotFoundError(f"{model_dir} is an adapter over the base model {reference!r}, "
                                 f"which is not available here: {exc}") from exc


def shared_body(folder: Path) -> Any:
    """The pretrained body (no head) of a base model, loaded once per process."""
    from transformers import AutoModel

    from ..models import quiet_transformers

    key = str(Path(folder).resolve())
    if key not in _BODIES:
        quiet_transformers()
        _BODIES[key] = AutoModel.from_pretrained(key).eval().requires_grad_(False)
    return _BODIES[key]


# LoRA on every linear layer of a BERT-style block and on the pooler (which then gets LoRA
# rather than training whole): SST-2 dev, MiniLM, 3 epochs over 60k rows: 0.9400 with 1.47% of
# the parameters trainable, against 0.9476 for full fine-tuning; a whole pooler scored 0.9427
# with 2.07% (README). At 20k rows x 1 epoch, peft's query/value default scored 0.866 vs 0.892.
BERT_LORA_TARGETS = ["query", "key", "value", "intermediate.dense", "output.dense", "pooler.dense"]
BERT_FAMILY = ("bert", "roberta", "xlm-roberta", "electra", "camembert")


def _default_targets(kind: str, model: Any) -> list[str] | None:
    """Default target modules per architecture: all block linears for BERT-style encoders
    (LoRA, AdaLoRA), else peft's table (Llama: q_proj/v_proj; IA3 BERT: key/value/output.dense)."""
    from peft.utils import constants

    if kind in ("LORA", "ADALORA") and getattr(model.config, "model_type", "") in BERT_FAMILY:
        return list(BERT_LORA_TARGETS)

    table = getattr(constants, f"TRANSFORMERS_MODELS_TO_{kind}_TARGET_MODULES_MAPPING", {})
    targets = table.get(getattr(model.config, "model_type", ""))
    return list(targets) if targets else None


class LoraMethod(AdapterMethod):
    name = "lora"
    learning_rate = 1e-3
    mergeable = True

    def peft_config(self, model: Any, common: dict[str, Any]) -> Any:
        from peft import LoraConfig

        lora = self.cfg.lora
        return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=_names(lora.target_modules) or _default_targets("LORA", model)
                          or "all-linear", **common)


class AdaLoraMethod(AdapterMethod):
    """LoRA whose ranks are re-allocated during training by importance (from 1.5 r to r on average)."""
    name = "adalora"
    learning_rate = 1e-3
    mergeable = True

    def peft_config(self, model: Any, common: dict[str, Any]) -> Any:
        from peft import AdaLoraConfig

        lora, steps = self.cfg.lora, max(self.total_steps, 1)
        # Rank budgeting runs between the first 10% and the last 20% of steps.
        tinit, tfinal = steps // 10, steps // 5
        return AdaLoraConfig(target_r=lora.r, init_r=math.ceil(1.5 * lora.r), lora_alpha=lora.alpha,
                             lora_dropout=lora.dropout, total_step=steps, tinit=tinit, tfinal=tfinal,
                             deltaT=max(1, (steps - tinit - tfinal) // 20),
                             target_modules=_names(lora.target_modules) or _default_targets("ADALORA", model)
                             or _default_targets("LORA", model), **common)

    def after_optimizer_step(self, step: int) -> None:
        self.model.base_model.update_and_allocate(step)

    _STATISTICS = ("ipt", "exp_avg_ipt", "exp_avg_unc")  # the rank allocator's running importance

    def training_state(self) -> dict[str, Any]:
        allocator = self.model.base_model.rankallocator
        return {name: dict(getattr(allocator, name)) for name in self._STATISTICS}

    def load_training_state(self, state: dict[str, Any]) -> None:
        allocator = self.model.base_model.rankallocator
        for name in self._STATISTICS:
            getattr(allocator, name).update(state.get(name, {}))


class Ia3Method(AdapterMethod):
    name = "ia3"
    learning_rate = 3e-3
    mergeable = True

    def peft_config(self, model: Any, common: dict[str, Any]) -> Any:
        from peft import IA3Config

        ia3 = self.cfg.ia3
        targets = _names(ia3.target_modules) or _default_targets("IA3", model)
        feedforward = _names(ia3.feedforward_modules)
        if feedforward is None and not ia3.target_modules:
            from peft.utils import constants

            feedforward = constants.TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(
                model.config.model_type)
        if targets is None:
            raise ConfigError(f"ia3 has no default target modules for {model.config.model_type!r}; "
                              "pass --ia3.target-modules (and --ia3.feedforward-modules)")
        return IA3Config(target_modules=targets, feedforward_modules=feedforward or [], **common)


def _refuse_packing(cfg: Config) -> None:
    """Virtual tokens (prefix and prompt tuning) would be shared by every example packed into
    one sequence."""
    if cfg.data.packing:
        raise ConfigError(f"data.packing cannot be used with --method {cfg.method.name}: its virtual "
                          "tokens would be shared by every packed example; use lora, or no packing")


class PrefixMethod(AdapterMethod):
    """Trained key/value prefixes in every layer; needs a model that takes past key values
    (decoders such as Llama; transformers 5 BERT-style encoders do not)."""
    name = "prefix"
    learning_rate = 1e-2

    @classmethod
    def check(cls, cfg: Config) -> None:
        _refuse_packing(cfg)
        super().check(cfg)

    def peft_config(self, model: Any, common: dict[str, Any]) -> Any:
        import inspect

        from peft import PrefixTuningConfig

        # peft feeds the prefixes as a decoder's cache; for other heads it looks for a
        # `past_key_values` argument, which transformers 5 encoders no longer have.
        body = getattr(model, model.base_model_prefix)
        if common["task_type"] != "CAUSAL_LM" and not any(
                "past_key_values" in inspect.signature(m.forward).parameters for m in (model, body)):
            raise ConfigError(f"prefix tuning needs a model that takes past key values (decoders such "
                              f"as Llama); {type(body).__name__} does not. Use --method prompt "
                              "(virtual input tokens) or lora instead")
        return PrefixTuningConfig(num_virtual_tokens=self.cfg.prompt.num_virtual_tokens, **common)


class PromptMethod(AdapterMethod):
    """Trained virtual token embeddings prepended to the input."""
    name = "prompt"
    learning_rate = 3e-2

    @classmethod
    def check(cls, cfg: Config) -> None:
        _refuse_packing(cfg)
        super().check(cfg)

    def peft_config(self, model: Any, common: dict[str, Any]) -> Any:
        from peft import PromptTuningConfig

        return PromptTuningConfig(num_virtual_tokens=self.cfg.prompt.num_virtual_tokens, **common)

    def align_logits(self, logits: Any, input_ids: Any) -> Any:
        """Per-token logits include the virtual tokens in front; drop them."""
        extra = logits.shape[1] - input_ids.shape[1] if logits.dim() > 2 else 0
        return logits[:, extra:] if extra > 0 else logits


def merged_model(run_dir: Path, method: AdapterMethod, auto_class: Any) -> Any:
    """A LoRA/AdaLoRA/IA3 run as one plain transformers model: the adapter folded into a private
    copy of the base weights (never the shared ones)."""
    if not method.mergeable:
        raise ConfigError(f"{run_dir}: {method.name} adds virtual tokens that cannot be merged into "
                          "the weights; load the run with lmtune.load instead")
    model = method.load(Path(run_dir) / "model", auto_class, share_base=False)
    _unwrap_trained_modules(model)
    return model.merge_and_unload()


def merge(run_dir: Path, method: AdapterMethod, auto_class: Any, out_dir: Path) -> Path:
    """Save a merged adapter run as a standalone model folder that plain transformers loads."""
    from ..models import load_tokenizer

    model = merged_model(run_dir, method, auto_class)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    load_tokenizer(Path(run_dir) / "model").save_pretrained(str(out_dir))
    return out_dir


def _unwrap_trained_modules(model: Any) -> None:
    """Put each fully trained module (the head, the pooler) in place of peft's wrapper before
    merging: peft 0.21's IA3 merge fails on a wrapped module that has no `weight` (a pooler)."""
    from peft.utils import ModulesToSaveWrapper

    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.modules_to_save["default"])
