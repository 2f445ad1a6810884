"""Hyperparameter search: many ordinary runs over a search space, chosen by Optuna.

    lmtune search --config base.yaml --space space.yaml --trials 20 [--workers 2] [--backend ray]

The space is a small YAML file over any config field (experiments/space.py):

    train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}
    method.name: [full, lora]

Every trial is a normal run folder, `<output_dir>/<study>/trial-NNN`, so load/serve/evaluate
work on it. The study lives in a database (SQLite beside the trials by default): killing the
search and starting it again resumes it, and several processes (`--workers`, or the same
command started twice) share it. Trials report each evaluation to the pruner through a loop
callback; a pruned trial stops training the way early stopping does, so its folder is complete.
`--trials` counts finished trials (complete + pruned) in the whole study, not attempts: a trial
that failed or was killed does not count, and another takes its place.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import socket
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..config import Config, ConfigError, SearchConfig, check_group, validate
from ..training.hooks import Callback, Control
from . import pruning
from .space import SearchSpace, load_space

SEARCH_EXTRA = "pip install 'lmtune[search]'"
RAY_EXTRA = "pip install 'lmtune[ray]'"
FINISHED = ("COMPLETE", "PRUNED")  # what --trials counts
# A trial still RUNNING with no worker record this long after it started was never picked up by
# a live process (the process died between creating it and recording itself).
UNCLAIMED_AFTER_S = 120.0
CONSECUTIVE_FAILURES = 3  # a worker stops when this many trials in a row fail (a broken config)


# ---- settings ------------------------------------------------------------------------------------
def parse_duration(text: str | float | None) -> float | None:
    """Seconds in `3600`, `90s`, `30m`, `1h`, `1h30m`, `2d`; None for none."""
    if text is None or str(text).strip().lower() in ("", "none", "null", "0"):
        return None
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not re.fullmatch(r"(\d+(\.\d+)?[smhd])+", value):
        raise ConfigError(f"--search.timeout {text!r}: give seconds (3600) or a duration such as 90s, 30m, "
                          "1h, 1h30m")
    return sum(float(n) * units[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)([smhd])", value))


@dataclass
class Study:
    """Everything a worker needs to run trials of one study (plain data: it crosses processes)."""

    name: str
    folder: Path  # <output_dir>/<study>: the trial folders, the lock, summary and plots
    storage: str  # SQLAlchemy URL
    base: dict[str, Any]  # the base config (Config.to_dict()), data paths absolute
    space: SearchSpace
    metric: str
    direction: str  # maximize | minimize
    trials: int
    timeout_s: float | None
    workers: int
    sampler: str
    pruner: str
    startup_trials: int
    seed: int
    prune_margin: float | None = None  # None: the evaluation's noise (pruning.noise_margin)
    backend: str = "optuna"
    quiet: bool = False
    grid: dict[str, list[Any]] | None = None

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)


@dataclass
class SearchResult:
    """What `search` returns: the study folder, its summary (summary.json) and the best trial."""

    folder: Path
    summary: dict[str, Any]
    best_run: Path | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)


def prepare(cfg: Config | dict | str | Path, space: str | Path | dict | None = None,
            settings: SearchConfig | None = None, config_name: str | None = None,
            quiet: bool = False) -> Study:
    """Check the base config, the search settings and the space (nothing is trained or loaded):
    every mistake is a ConfigError naming the key before the first trial."""
    from ..pipeline import _absolute_paths, _as_config
    from ..tasks import task_class

    base = copy.deepcopy(_as_config(cfg))
    if settings is not None:
        base.search = copy.deepcopy(settings)
    s = base.search
    check_group(base, "search")
    timeout = parse_duration(s.timeout)
    _require(s.backend)
    space = space if space is not None else s.space
    if space is None:
        raise ConfigError("no search space: pass --space FILE (or search.space in the config); e.g.\n"
                          "  train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}\n  train.epochs: [2, 3]")
    validate(base)
    if not base.data.validation and not base.data.validation_split:
        raise ConfigError("a search selects on validation data: give data.validation (--validation FILE) "
                          "or data.validation_split")
    if base.train.eval_strategy == "no":
        raise ConfigError("a search selects on evaluations: --train.eval-strategy must be epoch or steps, not no")
    metric, greater = task_class(base.task).selection(base.train.metric_for_best, base.train.greater_is_better)
    parsed = load_space(space, base)
    name = s.study_name or (f"search-{Path(config_name).stem}" if config_name else "search")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"--search.study-name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
    stored = _absolute_paths(base)
    stored.train.output_dir = str(Path(base.train.output_dir).expanduser().resolve())
    folder = Path(stored.train.output_dir) / name
    trials, grid = s.trials, None
    if s.sampler == "grid":
        grid = parsed.grid()
        size = math.prod(len(values) for values in grid.values())
        if trials > size:
            if not quiet:
                print(f"lmtune: the grid has {size} point(s); running {size} trial(s), not {trials}")
            trials = size
    return Study(name=name, folder=folder, storage=s.storage or f"sqlite:///{folder / 'study.db'}",
                 base=stored.to_dict(), space=parsed, metric=metric,
                 direction="maximize" if greater else "minimize", trials=trials, timeout_s=timeout,
                 workers=s.workers, sampler=s.sampler, pruner=s.pruner, startup_trials=s.startup_trials,
                 prune_margin=s.prune_margin,
                 seed=base.train.seed if s.seed is None else s.seed, backend=s.backend, quiet=quiet, grid=grid)


def _require(backend: str) -> None:
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise ConfigError(f"lmtune search needs optuna: {SEARCH_EXTRA}")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError(f"--search.backend ray needs Ray Tune: {RAY_EXTRA}")


# ---- the study: storage, sampler, pruner ---------------------------------------------------------
def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Heartbeats run around each trial here (ask/tell), not only inside Study.optimize.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def make_storage(url: str) -> Any:
    """An RDB storage with heartbeats (a trial whose process vanished on another machine is
    failed after grace_period) and, for SQLite, a long lock wait (workers write at once)."""
    import optuna

    _quiet_optuna()
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=60, grace_period=600)
    except ImportError as exc:
        raise ConfigError(f"--search.storage {_masked(url)}: its database driver is not installed ({exc})") from None
    except Exception as exc:  # sqlalchemy's errors: a malformed URL, an unreachable server
        raise ConfigError(f"--search.storage {_masked(url)}: cannot open it: {exc}") from None


def _masked(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def make_sampler(job: Study, seed: int) -> Any:
    import optuna

    if job.sampler == "grid":
        return optuna.samplers.GridSampler(job.grid, seed=job.seed)
    if job.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: with several workers, running trials count as bad guesses, so parallel
    # trials do not all try the same region.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=job.workers > 1)


def make_pruner(job: Study) -> Any:
    return pruning.make_pruner(job.pruner, job.startup_trials, job.prune_margin)


def open_study(job: Study, create: bool = False, sampler: Any = None) -> Any:
    """The study in its storage (created when `create`); a study started with another space,
    metric or direction is refused, not mixed."""
    import optuna

    storage = make_storage(job.storage)
    sampler = sampler or make_sampler(job, job.seed)
    if not create:
        return optuna.load_study(study_name=job.name, storage=storage, sampler=sampler, pruner=make_pruner(job))
    study = optuna.create_study(study_name=job.name, storage=storage, sampler=sampler, pruner=make_pruner(job),
                                direction=job.direction, load_if_exists=True)
    mine = {"metric": job.metric, "direction": job.direction, "space": job.space.as_dict()}
    theirs = study.user_attrs.get("lmtune")
    if theirs is None:
        if not study.trials and any(job.folder.glob("trial-*")):
            raise ConfigError(f"{job.folder} holds trial folders, but {_masked(job.storage)} has no study "
                              f"{job.name!r}: remove the folder, or give another --search.study-name")
        study.set_user_attr("lmtune", mine)
    elif theirs != mine:
        changed = [k for k in mine if json.dumps(mine[k], sort_keys=True) != json.dumps(theirs.get(k), sort_keys=True)]
        raise ConfigError(f"study {job.name!r} in {_masked(job.storage)} was started with another "
                          f"{' and '.join(changed)} ({json.dumps({k: theirs.get(k) for k in changed})}); "
                          "resume it with the same settings, or give another --search.study-name")
    return study


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One process at a time counts the study's trials and starts one (workers on this machine
    share the lock file), so no more trials start than were asked for."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): counts may overshoot by a trial per extra worker
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _me() -> dict[str, Any]:
    """This process, so a restart can tell a trial whose process is gone (kill -9)."""
    import psutil

    try:
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:
        node = None
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time(),
            "node": node}


def _alive(worker: dict[str, Any]) -> bool:
    import psutil

    try:
        return abs(psutil.Process(worker["pid"]).create_time() - worker["started"]) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, TypeError):
        return False


def fail_dead_trials(job: Study, study: Any) -> None:
    """Mark failed the trials left RUNNING by a process that is gone: on this machine by its
    pid, elsewhere by Optuna's heartbeat. Their folders stay (resumable with lmtune train --resume
    when they reached a checkpoint); the study runs other trials in their place."""
    import datetime

    import optuna
    from optuna.trial import TrialState

    host, now = socket.gethostname(), datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if worker is None:
            dead = (now - trial.datetime_start).total_seconds() > UNCLAIMED_AFTER_S
        else:
            dead = worker.get("host") == host and not _alive(worker)
        if dead:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            job.say(f"trial {trial.number}: its process is gone (killed?); marked failed, another trial "
                    "takes its place")
    optuna.storages.fail_stale_trials(study)


def _counts(study: Any) -> tuple[int, int]:
    """(finished: complete + pruned, running)."""
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return sum(s in FINISHED for s in states), states.count("RUNNING")


def _tell(study: Any, trial: Any, **kwargs: Any) -> None:
    try:
        study.tell(trial, skip_if_finished=True, **kwargs)
    except RuntimeError as exc:  # GridSampler asks the study to stop once the grid is done;
        if "stop" not in str(exc):  # outside study.optimize that is an error, and harmless here
            raise


# ---- one trial -------------------------------------------------------------------------------
class PruneTrial(Callback):
    """Reports each evaluation's selection metric to the Optuna trial (as step 1, 2, ...: the Nth
    evaluation of every trial is compared with the others' Nth) and stops training when the
    pruner says the trial trails; the run then ends as a stopped-early run, with its model.
    The final evaluation is reported but never pruned: stopping there saves nothing, and a
    pruned trial counts as worse than every finished one to the sampler, however good it was."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric
        self.evaluations, self.pruned, self.total_steps = 0, False, 0

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.total_steps = int(info.get("total_steps") or 0)

    def on_evaluate(self, row: dict[str, Any], control: Control) -> None:
        if self.pruned or self.metric not in row:
            return
        self.evaluations += 1
        value = float(row[self.metric])
        if self.evaluations == 1 and row.get("support"):
            self.trial.set_user_attr(pruning.EVAL_EXAMPLES, int(row["support"]))
        self.trial.report(value, self.evaluations)
        final = bool(self.total_steps) and int(row.get("step", 0)) >= self.total_steps
        if not final and self.trial.should_prune():
            self.pruned = True
            control.stop = True


@dataclass
class Outcome:
    state: str  # COMPLETE | PRUNED | FAIL
    value: float | None = None
    run_dir: Path | None = None
    error: str | None = None


def trial_config(job: Study, params: dict[str, Any], number: int, threads: int | None = None) -> Config:
    """The base config with the trial's values, writing to <study>/trial-NNN. CPU threads:
    `threads` (a Ray trial's share), else the cores split between local workers."""
    cfg = Config.from_dict(copy.deepcopy(job.base), source=f"study {job.name}")
    for key, value in params.items():
        cfg.override(key, value, f"trial {number}")
    cfg.train.output_dir, cfg.train.run_name = str(job.folder), f"trial-{number:03d}"
    cfg.train.overwrite, cfg.train.progress = False, False
    if threads and cfg.train.num_threads == 0:
        cfg.train.num_threads = threads
    elif job.workers > 1 and cfg.train.num_threads == 0:
        import torch

        if not torch.cuda.is_available():  # CPU: the cores split between the workers
            cfg.train.num_threads = max(1, (os.cpu_count() or 1) // job.workers)
    return cfg


def train_trial(job: Study, trial: Any, params: dict[str, Any], threads: int | None = None) -> Outcome:
    """Train one trial as an ordinary run; pruning stops it through the loop's callback. Memory
    is released before returning, so the next trial in this process starts clean."""
    from ..pipeline import finetune

    cfg = trial_config(job, params, trial.number, threads)
    run_dir = Path(cfg.train.output_dir) / cfg.train.run_name
    trial.set_user_attr("run_dir", str(run_dir))
    pruning = PruneTrial(trial, job.metric)
    start = time.perf_counter()
    job.say(f"trial {trial.number}: {_params_text(params)}")
    try:
        with _heartbeat(trial):
            run = finetune(cfg, callbacks=[pruning], quiet=True)
        value = json.loads(run.metrics.read_text()).get("validation", {}).get(job.metric)
        del run
    except Exception as exc:  # a trial's failure is the trial's; the study goes on
        error = f"{type(exc).__name__}: {exc}"
        job.say(f"trial {trial.number}: failed: {error}")
        return Outcome("FAIL", error=error)
    finally:
        del cfg
        release_memory()
    seconds = time.perf_counter() - start
    if pruning.pruned:
        job.say(f"trial {trial.number}: pruned after evaluation {pruning.evaluations} ({seconds:.0f} s) {run_dir}")
        return Outcome("PRUNED", run_dir=run_dir)
    if value is None or not math.isfinite(value):
        error = f"no finite {job.metric} in {run_dir}/metrics.json (got {value!r})"
        job.say(f"trial {trial.number}: failed: {error}")
        return Outcome("FAIL", run_dir=run_dir, error=error)
    job.say(f"trial {trial.number}: {job.metric} {value:.4f} ({seconds:.0f} s) {run_dir}")
    return Outcome("COMPLETE", value=float(value), run_dir=run_dir)


@contextmanager
def _heartbeat(trial: Any) -> Iterator[None]:
    """Optuna's heartbeat for the trial (RDB storages), so another machine can tell it is alive."""
    try:
        from optuna.storages._heartbeat import get_heartbeat_thread
    except ImportError:  # a later Optuna moved it: the pid check still covers this machine
        yield
        return
    with get_heartbeat_thread(trial._trial_id, trial.storage):
        yield


def release_memory() -> None:
    """What one trial allocated goes before the next: cycles collected, the CUDA cache emptied
    (a long search in one process otherwise grows trial by trial)."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _params_text(params: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


# ---- workers ---------------------------------------------------------------------------------
def work(job: Study) -> None:
    """One worker: start trials until the study has `job.trials` finished ones (counting those
    other workers run), the timeout passes, or trials keep failing."""
    from optuna.trial import TrialState

    study = open_study(job)
    started, failures, waiting = time.monotonic(), 0, False
    while True:
        if job.timeout_s is not None and time.monotonic() - started > job.timeout_s:
            job.say(f"timeout ({job.timeout_s:.0f} s): no new trials")
            return
        with _locked(job.folder):
            fail_dead_trials(job, study)
            finished, running = _counts(study)
            if finished >= job.trials:
                return
            trial = None
            if finished + running < job.trials:
                # Seeded by trial number: reproducible with one worker, and workers do not
                # propose the same values.
                if job.sampler != "grid":
                    study.sampler = make_sampler(job, job.seed + len(study.get_trials(deepcopy=False)))
                trial = study.ask()
                trial.set_user_attr("worker", _me())
        if trial is None:  # the rest are running elsewhere; wait in case one of them fails
            if not waiting:
                job.say(f"waiting for {running} running trial(s) of other workers")
            waiting = True
            time.sleep(3)
            continue
        waiting = False
        try:
            outcome = train_trial(job, trial, job.space.suggest(trial))
        except BaseException:  # Ctrl-C, or a bug in the space: the trial is not left RUNNING
            _tell(study, trial, state=TrialState.FAIL)
            raise
        if outcome.error:
            trial.set_user_attr("error", outcome.error[:2000])
        _tell(study, trial, **({"values": outcome.value} if outcome.state == "COMPLETE"
                               else {"state": TrialState[outcome.state]}))
        failures = failures + 1 if outcome.state == "FAIL" else 0
        if failures >= CONSECUTIVE_FAILURES:
            raise ConfigError(f"{failures} trials in a row failed; the last: {outcome.error}")


def _worker_main(job: Study) -> None:
    """A spawned worker process: errors said in one line, not as a traceback."""
    try:
        work(job)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        print(f"lmtune: search worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def run_workers(job: Study) -> None:
    """`job.workers` processes on this machine: this one and spawned others (fresh interpreters:
    no CUDA or thread state inherited), all on the one storage."""
    import multiprocessing

    others = []
    if job.workers > 1:
        context = multiprocessing.get_context("spawn")
        others = [context.Process(target=_worker_main, args=(job,), daemon=False) for _ in range(job.workers - 1)]
        for process in others:
            process.start()
    try:
        work(job)
    except BaseException:
        for process in others:
            process.terminate()
        raise
    finally:
        for process in others:
            process.join()
    failed = [p.exitcode for p in others if p.exitcode not in (0, None)]
    if failed:
        job.say(f"{len(failed)} worker process(es) ended with an error (exit codes {failed})")


# ---- the whole search -----------------------------------------------------------------------
def search(cfg: Config | dict | str | Path, space: str | Path | dict | None = None,
           settings: SearchConfig | None = None, *, config_name: str | None = None,
           quiet: bool = False) -> SearchResult:
    """Run (or resume) a study: trials until `settings.trials` have finished, then the summary
    (<study>/summary.json and plots) and the best trial. `cfg` is the base config; `settings`
    default to its `search` group; `space` to settings.space."""
    job = prepare(cfg, space, settings, config_name=config_name, quiet=quiet)
    job.folder.mkdir(parents=True, exist_ok=True)
    with _locked(job.folder):  # one process creates the tables and the study
        study = open_study(job, create=True)
    finished, _ = _counts(study)
    job.say(f"study {job.name} ({_masked(job.storage)}): {'resuming, ' if study.trials else ''}"
            f"{finished} of {job.trials} trial(s) finished; {job.direction} {job.metric}; "
            f"{job.sampler} sampler, {job.pruner} pruner; trials in {job.folder}")
    if job.backend == "ray":
        from .ray_backend import run_on_ray

        run_on_ray(job)
    else:
        run_workers(job)
    return finish(job)


def finish(job: Study) -> SearchResult:
    """Write the summary and plots; print the best trial."""
    study = open_study(job)
    summary = write_summary(job, study)
    best = summary.get("best")
    counts = summary["counts"]
    job.say(f"\nstudy {job.name}: {counts.get('COMPLETE', 0)} complete, {counts.get('PRUNED', 0)} pruned, "
            f"{counts.get('FAIL', 0)} failed, in {summary['seconds']:.0f} s")
    if best is None:
        job.say("no trial completed")
        return SearchResult(job.folder, summary)
    job.say(f"best trial {best['number']}: {job.metric} {best['value']:.4f}\n  run folder: {best['run_dir']}\n"
            f"  {_params_text(best['params'])}\nsummary: {job.folder / 'summary.json'} (plots beside it)")
    return SearchResult(job.folder, summary, Path(best["run_dir"]), best["value"], best["params"])


def write_summary(job: Study, study: Any) -> dict[str, Any]:
    """<study>/summary.json: every trial (state, value, params, folder, evaluations, seconds),
    the best one, counts and the study's wall time; plus the plots."""
    from collections import Counter

    trials = study.get_trials(deepcopy=False)
    rows = []
    for t in trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and \
            t.datetime_start else None
        row = {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
               "run_dir": t.user_attrs.get("run_dir"), "seconds": seconds,
               "evaluations": {str(k): v for k, v in sorted(t.intermediate_values.items())}}
        if "error" in t.user_attrs:
            row["error"] = t.user_attrs["error"]
        rows.append(row)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = None
    if complete:
        b = study.best_trial
        best = {"number": b.number, "value": b.value, "params": b.params, "run_dir": b.user_attrs.get("run_dir")}
    summary = {"study": job.name, "storage": _masked(job.storage), "backend": job.backend, "metric": job.metric,
               "direction": job.direction, "sampler": job.sampler, "pruner": job.pruner, "prune_margin": job.prune_margin,
               "trials_asked": job.trials, "counts": dict(Counter(r["state"] for r in rows)),
               "seconds": (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0,
               "trial_seconds": sum(r["seconds"] or 0 for r in rows),
               "space": job.space.as_dict(), "best": best, "trials": rows}
    summary["plots"] = write_plots(study, job.folder)
    temp = job.folder / f".summary.{os.getpid()}.json"
    temp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(temp, job.folder / "summary.json")  # workers may finish at once: whole files only
    return summary


def write_plots(study: Any, folder: Path) -> list[str]:
    """Optimisation history, each trial's evaluations, parameter importances (Optuna's
    matplotlib plots); a plot the study cannot have yet (importances need 2+ complete trials
    with varied values) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    written = []
    for name, draw in (("optimization_history.png", plots.plot_optimization_history),
                       ("intermediate_values.png", plots.plot_intermediate_values),
                       ("param_importances.png", plots.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study)
            first = axes.flat[0] if hasattr(axes, "flat") else axes
            if name.startswith("intermediate"):
                first.set_xlabel("evaluation (the Nth of each trial)")
            figure = first.figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            figure.savefig(folder / name, dpi=100)
            plt.close(figure)
            written.append(name)
        except Exception:  # too few trials for this plot
            plt.close("all")
    return written

