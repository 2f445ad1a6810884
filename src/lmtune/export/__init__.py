"""Exporting runs for use outside lmtune: merged adapters (plain transformers) and ONNX."""

from __future__ import annotations

from .merge import export_merged
from .onnx import export_onnx

__all__ = ["export_merged", "export_onnx"]
