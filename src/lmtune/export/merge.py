"""Export a run for use outside lmtune: adapters merged into a plain transformers model."""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError
from ..methods import get_method
from ..run import RunFolder
from ..tasks import get_task


def export_merged(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Fold a LoRA/AdaLoRA/IA3 run's adapter into the base weights and save a standalone model
    (default <run>/merged) that plain `transformers` loads with its label map."""
    from ..methods.adapters import AdapterMethod, merge
    from ..models import quiet_transformers

    quiet_transformers()
    run = RunFolder(Path(run_dir))
    cfg = run.load_config()
    method = get_method(cfg)
    if not isinstance(method, AdapterMethod):
        raise ConfigError(f"{run.root}: a {cfg.method.name} run is already a plain transformers "
                          f"model ({run.model}); there is nothing to merge")
    return merge(run.root, method, get_task(cfg).auto_model_class,
                 Path(out_dir) if out_dir else run.root / "merged")
