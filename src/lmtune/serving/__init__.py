"""Serving run folders over HTTP (FastAPI + uvicorn): `lmtune serve`."""

from __future__ import annotations

from pathlib import Path

from .app import Limits, create_app, load_runs

__all__ = ["Limits", "create_app", "load_runs", "serve"]


def serve(run_dirs: list[str | Path], host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          limits: Limits | None = None, batching: bool = True, max_batch: int = 32,
          max_wait_ms: float = 5.0, backend: str = "pytorch", quantized: bool = False) -> None:
    """Serve until interrupted; on SIGTERM/Ctrl-C in-flight requests finish before exit."""
    import uvicorn

    app = create_app(load_runs(run_dirs, backend, quantized), api_key=api_key, limits=limits, batching=batching,
                     max_batch=max_batch, max_wait_ms=max_wait_ms)
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=30, log_level="info")
