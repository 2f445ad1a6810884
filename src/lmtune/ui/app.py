"""The dashboard app (`lmtune ui`): server-rendered pages over a runs folder, read-only.

    GET /                     runs: sortable, filterable (?filter=accuracy>0.9,lora), select -> compare
    GET /compare?run=A&run=B  curves overlaid, config differences, metric deltas (per class too)
    GET /runs/{id}            config, metrics, per-class report, confusion matrix, curves, card
    GET /runs/{id}/errors     wrong validation examples, worst loss first (?gold=&predicted=&show=all)
    GET|POST /runs/{id}/try   a text through the run's model (loaded on first use), attributions
    GET /api/runs/{id}/log?offset=N   a running training's new log rows (the run page polls it)
    GET /studies  /sequences  search studies and continual runs, when the folder has any

A run id is its name under the folder with ":" for "/" (study:trial-003); an id that does not
name a run folder inside the folder is a 404. With an API key every request needs it: the
X-API-Key header or Authorization: Bearer (as `lmtune serve`), or the `key` cookie that a first
visit with ?key=... sets. FastAPI and Jinja2 are imported where the app is built. (No
`from __future__ import annotations`: FastAPI reads the routes' annotations, which name classes
imported inside `create_ui_app`.)
"""

import hmac
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from . import examples, pages
from ..experiments.runs import read_log
from .folder import RunsView, sequences, studies

if TYPE_CHECKING:
    from fastapi import FastAPI

HERE = Path(__file__).parent
SPECIAL_TTL_S = 5.0  # how long the nav's "are there studies/sequences" answer is reused


def _given_key(request: Any) -> str:
    header = request.headers.get("x-api-key") or ""
    bearer = request.headers.get("authorization") or ""
    if not header and bearer.lower().startswith("bearer "):
        header = bearer[7:].strip()
    return header or request.query_params.get("key") or request.cookies.get("key") or ""


def _add_auth(app: Any, api_key: str) -> None:
    """Every request needs the key; one given as ?key= is kept in a cookie for the next pages."""
    from fastapi.responses import PlainTextResponse

    @app.middleware("http")
    async def authorize(request: Any, call_next: Any) -> Any:
        given = _given_key(request)
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            return PlainTextResponse("missing or wrong API key: send X-API-Key (or Authorization: Bearer), "
                                     "or open the dashboard once with ?key=YOUR_KEY", status_code=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        response = await call_next(request)
        if request.query_params.get("key"):
            response.set_cookie("key", given, httponly=True, samesite="strict")
        return response


def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    env.globals.update(label_colour=examples.label_colour, highlight=examples.highlight,
                       bars=examples.probability_bars)
    return env


def create_ui_app(runs_dir: str | Path, api_key: str | None = None) -> "FastAPI":
    """The dashboard over `runs_dir` (read-only); with `api_key`, every request must carry it."""
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    root = Path(runs_dir)
    view = RunsView(root)
    env = _templates()
    app = FastAPI(title="lmtune ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    if api_key:
        _add_auth(app, api_key)
    special: dict[str, Any] = {"at": -SPECIAL_TTL_S}

    def extras() -> dict[str, bool]:
        """Whether the Studies and Sequences pages have anything to show (rechecked every few s)."""
        if time.monotonic() - special["at"] > SPECIAL_TTL_S:
            special.update(at=time.monotonic(), studies=bool(studies(root, [])) if root.is_dir() else False,
                           sequences=bool(sequences(root)) if root.is_dir() else False)
        return {"studies": special["studies"], "sequences": special["sequences"]}

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(name).render(root=str(root), nav=extras(), **values)
        return HTMLResponse(html, status_code=status)

    def find(rid: str) -> Any:
        try:
            return view.run(rid)
        except FileNotFoundError:
            raise HTTPException(404, f"no run {rid!r} under {root}") from None

    @app.exception_handler(HTTPException)
    async def page_error(request: Request, exc: HTTPException) -> Any:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return render("message.html", exc.status_code, title=str(exc.status_code), message=str(exc.detail))

    @app.get("/", response_class=HTMLResponse)
    def runs_page(filter: str = "", sort: str = "") -> HTMLResponse:
        error = ""
        try:
            listed = view.runs()
            shown = pages.apply_filter(listed, filter)
            table = pages.runs_table(shown, sort or None)
        except (ValueError, FileNotFoundError) as exc:
            listed, error, table = [], str(exc), pages.runs_table([])
        return render("runs.html", table=table, filter=filter, sort=sort, error=error, total=len(listed),
                      columns=pages.column_names())

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(run: list[str] = Query([])) -> HTMLResponse:
        from ..experiments.runs import compare_runs

        chosen = [find(rid) for rid in dict.fromkeys(run)]
        if len(chosen) < 2:
            raise HTTPException(400, "select two runs or more on the runs page to compare them")
        result = compare_runs(root, [str(r.path) for r in chosen])
        return render("compare.html", runs=chosen, result=result, curves=pages.compare_curves(chosen),
                      ids=[pages.run_id(r.name) for r in chosen], cells=pages.delta_cells)

    @app.get("/runs/{rid}", response_class=HTMLResponse)
    def run_page(rid: str) -> HTMLResponse:
        run = find(rid)
        return render("run.html", page=pages.run_page(run), sources=examples.prediction_files(run.path))

    @app.get("/api/runs/{rid}/log")
    def run_log(rid: str, offset: int = 0) -> dict[str, Any]:
        return pages.log_update(find(rid), max(offset, 0))

    @app.get("/runs/{rid}/errors", response_class=HTMLResponse)
    def errors_page(rid: str, source: str = "validation", gold: str = "", predicted: str = "",
                    show: str = "errors") -> HTMLResponse:
        run = find(rid)
        files = examples.prediction_files(run.path)
        chosen = files.get(source)
        selection = examples.select(read_log(chosen)[0], gold or None, predicted or None,
                                    show == "all") if chosen else None
        return render("errors.html", run=run, id=rid, files=files, source=source, selection=selection,
                      gold=gold, predicted=predicted, show=show)

    @app.get("/runs/{rid}/try", response_class=HTMLResponse)
    def try_page(rid: str) -> HTMLResponse:
        run = find(rid)
        return render("try.html", run=run, id=rid, text="", pair="", result=None, error="")

    @app.post("/runs/{rid}/try", response_class=HTMLResponse)
    async def try_post(rid: str, request: Request) -> HTMLResponse:
        import asyncio

        from .predict import try_it

        run = find(rid)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        text, pair = form.get("text", "").strip(), form.get("pair", "").strip()
        result, error = None, ""
        if not text:
            error = "type a text to predict"
        else:
            try:
                result = await asyncio.to_thread(try_it, run.path, text, pair or None, "explain" in form)
            except (ValueError, FileNotFoundError, TypeError) as exc:
                error = str(exc)
        return render("try.html", run=run, id=rid, text=text, pair=pair, result=result, error=error)

    @app.get("/studies", response_class=HTMLResponse)
    def studies_page() -> HTMLResponse:
        found = studies(root, view.runs()) if root.is_dir() else []
        if not found:
            raise HTTPException(404, f"no search study under {root} (lmtune search writes one)")
        return render("studies.html", studies=found)

    @app.get("/sequences", response_class=HTMLResponse)
    def sequences_page() -> HTMLResponse:
        found = sequences(root) if root.is_dir() else []
        if not found:
            raise HTTPException(404, f"no continual run under {root} (lmtune continual writes one)")
        return render("sequences.html", sequences=found)

    return app
