"""The local web dashboard over a runs folder: `lmtune ui` (FastAPI + Jinja2, read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["create_ui_app", "run_ui"]


def create_ui_app(runs_dir: str | Path, api_key: str | None = None) -> Any:
    """The dashboard app over `runs_dir` (see lmtune.ui.app)."""
    from .app import create_ui_app as create

    return create(runs_dir, api_key)


def run_ui(runs_dir: str | Path = "runs", host: str = "127.0.0.1", port: int = 8000,
           api_key: str | None = None) -> None:
    """Serve the dashboard until interrupted (localhost only unless `host` says otherwise)."""
    import uvicorn

    if not Path(runs_dir).is_dir():
        what = "is a file, not a folder" if Path(runs_dir).exists() else "no such folder"
        raise FileNotFoundError(f"{runs_dir}: {what} (runs are under --train.output-dir, runs/ by "
                                "default); point --runs at the folder of your run folders")
    _check_address(host, port)
    print(f"lmtune ui: {runs_dir} at http://{host}:{port}/" + ("?key=YOUR_KEY" if api_key else ""))
    uvicorn.run(create_ui_app(runs_dir, api_key), host=host, port=port, log_level="warning")


def _check_address(host: str, port: int) -> None:
    """A bad or busy address as one clear error before the server starts (uvicorn would print
    a traceback, or a log line and exit)."""
    import socket

    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as error:
        raise ValueError(f"cannot listen on {host}:{port} ({error.strerror or error}); pick another --port "
                         "or --host") from None
