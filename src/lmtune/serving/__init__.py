"""Serving run folders over HTTP (FastAPI + uvicorn): `lmtune serve`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..config import ConfigError, ServeConfig
from .app import Limits, create_app, load_runs

__all__ = ["Limits", "create_app", "load_runs", "read_api_key", "serve", "serve_app"]

# Keyword arguments of the earlier `serve(...)` that are named differently in the serve group.
_RENAMED = {"max_batch": "max_batch_size"}


def read_api_key(path: str | Path | None) -> str | None:
    """The API key in `path` (surrounding whitespace dropped); None without a file."""
    if not path:
        return None
    key = Path(path).read_text().strip()
    if not key:
        raise ConfigError(f"{path}: the API key file is empty")
    return key


def _settings(settings: ServeConfig | None, fields: dict[str, Any]) -> ServeConfig:
    """`settings` (default: the serve group's defaults) with keyword arguments on top."""
    names = {f.name for f in dataclasses.fields(ServeConfig)}
    changes = {_RENAMED.get(k, k): v for k, v in fields.items()}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise TypeError(f"serve() got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"the serve settings are {', '.join(sorted(names))}")
    return dataclasses.replace(settings or ServeConfig(), **changes)


def serve_app(run_dirs: list[str | Path], settings: ServeConfig, api_key: str | None = None,
              limits: Limits | None = None) -> Any:
    """The app `serve` runs for these settings: runs loaded, limits, batching and the API key
    (`api_key` if given, else the one in settings.api_key_file)."""
    key = api_key if api_key is not None else read_api_key(settings.api_key_file)
    return create_app(load_runs(run_dirs, settings.backend, settings.quantized), api_key=key,
                      limits=limits or Limits.from_settings(settings), batching=settings.batching,
                      max_batch=settings.max_batch_size, max_wait_ms=settings.max_wait_ms)


def serve(run_dirs: list[str | Path], settings: ServeConfig | None = None, *, api_key: str | None = None,
          limits: Limits | None = None, **fields: Any) -> None:
    """Serve until interrupted; on SIGTERM/Ctrl-C in-flight requests finish before exit.
    `settings`: the serve config group (`cfg.serve`); keyword arguments (host=, port=,
    max_batch=, ...) override its fields, as the earlier signature took them."""
    import uvicorn

    settings = _settings(settings, fields)
    app = serve_app(run_dirs, settings, api_key, limits)
    uvicorn.run(app, host=settings.host, port=settings.port, timeout_graceful_shutdown=30, log_level="info")
