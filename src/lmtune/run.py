"""The run folder: one self-describing directory per training run.

    <run>/config.yaml        resolved config (what `--resume` and `lmtune.load` read)
    <run>/model/             best weights (safetensors) + tokenizer + config with label maps
    <run>/metrics.json       validation/test metrics, data report, speed, parameter counts
    <run>/train_log.jsonl    one JSON object per logged step and per evaluation
    <run>/learning_curve.png, confusion_matrix.png
    <run>/README.md          model card
    <run>/checkpoints/       latest (for resume) and best checkpoints
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config, ConfigError


@dataclass
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def log(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def card(self) -> Path:
        return self.root / "README.md"

    def load_config(self) -> Config:
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such run folder (runs are under --output-dir, "
                                    "runs/ by default)")
        if not self.config.is_file():
            raise FileNotFoundError(f"{self.root}: not an lmtune run folder (no config.yaml)")
        return Config.from_yaml(self.config)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        self.metrics.write_text(json.dumps(metrics, indent=1))

    def drop_checkpoints(self) -> None:
        """Remove the resume checkpoints of a finished run (model/ holds its result)."""
        import shutil

        shutil.rmtree(self.checkpoints, ignore_errors=True)

    def log_rows(self) -> list[dict[str, Any]]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def new_run(cfg: Config) -> RunFolder:
    """Create the folder for a new run; refuse to overwrite a finished one unless asked."""
    name = cfg.train.run_name or f"{cfg.task}-{Path(cfg.model.name).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    root = Path(cfg.train.output_dir) / name
    if root.exists() and any(root.iterdir()) and not cfg.train.overwrite:
        raise ConfigError(
            f"{root} already exists: continue it with `lmtune train --resume {root}`, replace it "
            f"with --train.overwrite true, or choose another --train.run-name"
        )
    if root.exists() and cfg.train.overwrite:
        import shutil

        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    cfg.train.run_name = name
    return RunFolder(root)


def _table(rows: dict[str, Any]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    for key, value in rows.items():
        if isinstance(value, float):
            lines.append(f"| {key} | {value:.4f} |")
        elif isinstance(value, int):
            lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


def _front_matter(cfg: Config, base: str, metrics: dict[str, Any], pipeline_tag: str | None) -> str:
    """The YAML metadata header hub model cards start with (what the hub indexes and shows)."""
    import yaml

    scored = metrics.get("test") or metrics.get("validation") or {}
    meta: dict[str, Any] = {"library_name": "transformers", "base_model": base}
    if pipeline_tag:
        meta["pipeline_tag"] = pipeline_tag
    meta["tags"] = ["lmtune", cfg.task, cfg.method.name]
    if scored:
        # Scores only: not counts (support) nor the training objective (loss).
        meta["metrics"] = [name for name, value in scored.items() if isinstance(value, float) and name != "loss"]
    return f"---\n{yaml.safe_dump(meta, sort_keys=False)}---"


def _data_lines(cfg: Config) -> list[str]:
    """The data files a run used; splits that were not given are left out."""
    data = cfg.data
    lines = [f"- train: `{data.train}`"]
    if data.validation:
        lines.append(f"- validation: `{data.validation}`")
    elif data.validation_split:
        lines.append(f"- validation: {data.validation_split:.0%} of the training file, held out")
    if data.test:
        lines.append(f"- test: `{data.test}`")
    return lines


def write_model_card(run: RunFolder, cfg: Config, metrics: dict[str, Any], summary: str,
                     auto_class: str, pipeline_tag: str | None = None) -> None:
    """A README for the run as hub model cards are: a YAML metadata header, then the base
    model (by a name a reader can find), data, hyperparameters and results."""
    from .models import ALIASES, base_model_id

    tc = cfg.train
    base = base_model_id(cfg.model.name)
    alias = f" (lmtune alias `{cfg.model.name}`)" if cfg.model.name in ALIASES else ""
    parts = [
        _front_matter(cfg, base, metrics, pipeline_tag),
        "",
        f"# {cfg.train.run_name}",
        "",
        f"Fine-tuned with lmtune for **{cfg.task}** ({cfg.method.name} fine-tuning).",
        "",
        "## Base model",
        f"`{base}`{alias}, max length {cfg.model.max_length} tokens",
        "",
        "## Data",
        *_data_lines(cfg),
        f"- text column `{cfg.data.text_column}`"
        + (f" + `{cfg.data.text_pair_column}`" if cfg.data.text_pair_column else "")
        + f", label column `{cfg.data.label_column}`"
        + (" (multi-label)" if cfg.data.multi_label else ""),
        "",
        "```json",
        json.dumps(metrics.get("data", {}), indent=1),
        "```",
        "",
        "## Hyperparameters",
        f"epochs {tc.epochs}, batch size {tc.batch_size} x accumulation {tc.grad_accum}, "
        f"learning rate {tc.learning_rate} ({tc.scheduler}, warm-up {tc.warmup_ratio}), "
        f"weight decay {tc.weight_decay}, max grad norm {tc.max_grad_norm}, "
        f"precision {metrics.get('training', {}).get('precision', tc.mixed_precision)}, seed {tc.seed}.",
        "",
        "## Results",
    ]
    for split in ("validation", "test"):
        if split in metrics:
            parts += [f"### {split}", "", _table(metrics[split]), ""]
    parts += ["```", summary, "```", "",
              "## Use",
              "```python",
              "import lmtune",
              f"model = lmtune.load({str(run.root)!r})",
              "model.predict([\"some text\"])",
              "# or plain transformers:",
              f"from transformers import {auto_class}",
              f"{auto_class}.from_pretrained({str(run.model)!r})",
              "```", ""]
    run.card.write_text("\n".join(parts))
