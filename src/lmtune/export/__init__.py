"""Exporting runs for use outside lmtune: merged adapters (plain transformers) and ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, ExportConfig, check_group
from .merge import export_merged
from .onnx import export_onnx

__all__ = ["export_merged", "export_onnx", "export_run"]


def export_run(run_dir: str | Path, settings: ExportConfig, quiet: bool = False) -> Any:
    """Export a run as the export config group (`cfg.export`) says: the merged model's folder
    (merge), or the ONNX parity report (format onnx)."""
    cfg = Config()
    cfg.export = settings
    check_group(cfg, "export")
    if settings.merge == bool(settings.format):
        raise ConfigError("choose one: --merge (adapter -> transformers model) or --format onnx")
    if settings.merge:
        return export_merged(run_dir, settings.output)
    return export_onnx(run_dir, quantize=settings.quantize, data=settings.data, sample=settings.sample,
                       quiet=quiet)
