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
        raise FileNotFoundError(f"{runs_dir}: no such folder (runs are under --train.output-dir, runs/ by "
                                "default); point --runs at the folder of your run folders")
    print(f"lmtune ui: {runs_dir} at http://{host}:{port}/" + ("?key=YOUR_KEY" if api_key else ""))
    uvicorn.run(create_ui_app(runs_dir, api_key), host=host, port=port, log_level="warning")
