"""`lmtune search --backend ray`: trials on a Ray cluster, proposed by Optuna's sampler.

Ray Tune schedules the trials (`--workers` at once, each with its share of a node's CPUs and a
GPU where the cluster has them); Ray's OptunaSearch asks the study's sampler for each trial's
values, over the same storage as the optuna backend, so trial numbers, summary and plots are the
same. Each trial opens the study itself to report its evaluations and ask the pruner, exactly as
in the optuna backend: a pruned trial stops training the way early stopping does and keeps a
complete run folder (Tune's own schedulers would kill the trial process mid-training).

On a cluster of several machines the storage must be a database every node reaches
(`--search.storage postgresql://...`) and `--train.output-dir` a shared folder; on one machine
the defaults do. `ray.init(address="auto")` joins a running cluster ($RAY_ADDRESS, or one
started with `ray start`), else a local one is started for the search and stopped after it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from ..config import ConfigError
from .search import (Study, _counts, _me, _tell, fail_dead_trials, make_pruner, make_sampler, make_storage,
                     open_study, train_trial)


def run_on_ray(job: Study) -> None:
    """Trials through Ray Tune until the study has `job.trials` finished ones (a trial that
    fails is replaced, in rounds), or the timeout passes."""
    import ray

    started_here = _connect()
    try:
        resources = _trial_resources(job.workers)
        job.say(f"ray: {len(ray.nodes())} node(s), {ray.cluster_resources().get('CPU', 0):.0f} CPU(s); "
                f"each trial gets {resources}")
        deadline = None if job.timeout_s is None else time.monotonic() + job.timeout_s
        while True:
            study = open_study(job)
            fail_dead_trials(job, study)
            finished, _ = _counts(study)
            if finished >= job.trials:
                return
            budget = None if deadline is None else deadline - time.monotonic()
            if budget is not None and budget <= 0:
                job.say(f"timeout ({job.timeout_s:.0f} s): no new trials")
                return
            errors = _round(job, job.trials - finished, resources, budget)
            if _counts(open_study(job))[0] == finished:  # a whole round and nothing finished
                raise ConfigError(f"no trial finished on Ray; the first error: {errors[0] if errors else 'none'}")
    finally:
        if started_here:
            ray.shutdown()


def _connect() -> bool:
    """Join a running Ray cluster, else start a local one; True if this call connected."""
    import ray

    if ray.is_initialized():
        return False
    try:
        ray.init(address="auto", logging_level=logging.WARNING)
    except ConnectionError:
        ray.init(logging_level=logging.WARNING, include_dashboard=False)
    return True


def _trial_resources(workers: int) -> dict[str, float]:
    """Each of `workers` concurrent trials gets an equal share of the CPUs (no more than one node
    has) and a GPU when the cluster has any."""
    import ray

    total = ray.cluster_resources()
    largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=1)
    cpus = max(1, min(int(total.get("CPU", 1) // workers), int(largest)))
    return {"cpu": cpus, "gpu": 1 if total.get("GPU", 0) >= 1 else 0}


def _round(job: Study, samples: int, resources: dict[str, float], budget: float | None) -> list[str]:
    """One Tuner run of `samples` trials; returns the errors of those that failed."""
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(_trainable, job=job, threads=int(resources["cpu"])),
                                    resources)
    searcher = _searcher_class()(_Space(job), metric=job.metric, mode="max" if job.direction == "maximize"
                                 else "min", sampler=make_sampler(job, job.seed), study_name=job.name,
                                 storage=make_storage(job.storage))
    searcher.job = job
    tuner = tune.Tuner(trainable,
                       tune_config=tune.TuneConfig(search_alg=searcher, num_samples=samples,
                                                   max_concurrent_trials=job.workers, time_budget_s=budget,
                                                   reuse_actors=False),
                       run_config=tune.RunConfig(name=f"round-{time.strftime('%Y%m%d-%H%M%S')}",
                                                 storage_path=str(job.folder / "ray"), verbose=0,
                                                 failure_config=tune.FailureConfig(max_failures=0)))
    results = tuner.fit()
    return [str(e) for e in results.errors]


class _Space:
    """The define-by-run space OptunaSearch calls with each new Optuna trial."""

    def __init__(self, job: Study):
        self.space = job.space

    def __call__(self, trial: Any) -> None:
        self.space.suggest(trial)


_SEARCHER: Any = None


def _searcher_class() -> Any:
    """OptunaSearch as the study needs it (built on first use: ray is imported only here)."""
    global _SEARCHER
    if _SEARCHER is not None:
        return _SEARCHER
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    class StudySearch(OptunaSearch):
        """Hands each trial its Optuna trial id, lets the trial report its own evaluations (to
        the pruner), and records pruned trials as pruned."""

        job: Study

        def suggest(self, trial_id: str) -> dict | None:
            if trial_id not in self._ot_trials:  # seeded by trial number, as in the optuna backend
                trials = self._ot_study.get_trials(deepcopy=False)
                self._ot_study.sampler = make_sampler(self.job, self.job.seed + len(trials))
            params = super().suggest(trial_id)
            if params is None:
                return None
            ot_trial = self._ot_trials[trial_id]
            return {"params": dict(ot_trial.params), "trial_id": ot_trial._trial_id, "number": ot_trial.number}

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            """The trial reports its evaluations to the study itself."""

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            ot_trial = self._ot_trials[trial_id]
            if result and result.get("pruned") and not error:
                _tell(self._ot_study, ot_trial, state=TrialState.PRUNED)
            elif error or not result:
                _tell(self._ot_study, ot_trial, state=TrialState.FAIL)
            else:
                _tell(self._ot_study, ot_trial, values=result[self.metric])
            self._completed_trials.add(trial_id)

        def save(self, checkpoint_path: str) -> None:
            """The study is in its storage; Tune's experiment checkpoints need no copy of it."""

        def restore(self, checkpoint_path: str) -> None:
            """See save."""

    _SEARCHER = StudySearch
    return _SEARCHER


def _trainable(config: dict[str, Any], job: Study, threads: int) -> None:
    """One trial, in a Ray worker: an ordinary run with the pruning callback on the study."""
    import optuna
    from ray import tune

    study = optuna.load_study(study_name=job.name, storage=make_storage(job.storage),
                              sampler=optuna.samplers.RandomSampler(), pruner=make_pruner(job))
    trial = optuna.trial.Trial(study, config["trial_id"])
    trial.set_user_attr("worker", _me())
    outcome = train_trial(dataclasses.replace(job, workers=1), trial, config["params"], threads=threads)
    if outcome.state == "FAIL":
        trial.set_user_attr("error", (outcome.error or "")[:2000])
        raise RuntimeError(f"trial {trial.number} failed: {outcome.error}")
    last = trial.storage.get_trial(trial._trial_id).intermediate_values
    value = outcome.value if outcome.value is not None else last[max(last)] if last else float("nan")
    tune.report({job.metric: value, "pruned": outcome.state == "PRUNED", "number": trial.number,
                 "run_dir": str(outcome.run_dir)})
