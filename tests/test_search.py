"""Hyperparameter search (lmtune search): trials are run folders, pruning stops bad trials, the
study survives kill -9 and is shared by workers, memory is released between trials, and the
Ray backend runs trials on a two-node local cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest

import lmtune
from lmtune.cli import main
from conftest import tiny_config

optuna = pytest.importorskip("optuna")


def _base(tiny_model, toy_data, out: Path, **train) -> Path:
    """The tiny model's config as a YAML file (what `lmtune search --config` reads)."""
    cfg = tiny_config(tiny_model, toy_data, out, **{"epochs": 2, **train})
    cfg.train.run_name = None
    path = out / "base.yaml"
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(path)
    return path


def _space(folder: Path, text: str) -> Path:
    path = folder / "space.yaml"
    path.write_text(text)
    return path


def _study(storage: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")


def _states(study) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(t.state.name for t in study.trials))


SPACE = "train.learning_rate: {low: 1e-3, high: 1e-2, log: true}\ntrain.epochs: {low: 1, high: 2}\n"


def test_a_three_trial_study_gives_three_run_folders_and_the_best_trial(tiny_model, toy_data, tmp_path, capsys):
    base = _base(tiny_model, toy_data, tmp_path)
    with open(base, "a") as handle:  # the YAML search: section and the flags set the same group
        handle.write("search:\n  trials: 3\n  pruner: none\n")
    assert main(["search", "--config", str(base), "--space", str(_space(tmp_path, SPACE)),
                 "--sampler", "random", "--search.study-name", "s"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "s"
    trials = sorted(p.name for p in folder.glob("trial-*"))
    assert trials == ["trial-000", "trial-001", "trial-002"]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counts"] == {"COMPLETE": 3} and summary["direction"] == "maximize"
    best = summary["best"]
    assert best["value"] == max(t["value"] for t in summary["trials"])
    assert f"best trial {best['number']}: accuracy" in out and best["run_dir"] in out
    assert all(isinstance(t["params"]["train.epochs"], int) for t in summary["trials"])  # ints stay ints
    assert {"optimization_history.png", "param_importances.png"} <= set(summary["plots"])
    assert all((folder / name).stat().st_size > 0 for name in summary["plots"])
    run = Path(best["run_dir"])  # an ordinary run folder, with the trial's values in its config
    config = lmtune.Config.from_yaml(run / "config.yaml")
    assert config.train.learning_rate == pytest.approx(best["params"]["train.learning_rate"])
    assert lmtune.load(run).predict(["a great film"])[0]["label"] in ("pos", "neg")
    support = json.loads((run / "metrics.json").read_text())["validation"]["support"]
    stored = _study(folder / "study.db", "s").trials[best["number"]].user_attrs
    assert stored["eval_examples"] == support > 0  # what the pruner's noise margin divides by


def _finish(study, values: list[float]) -> None:
    for value in values:
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, value)


def _stopped(study, value: float, examples: int = 500) -> bool:
    trial = study.ask()
    trial.set_user_attr("eval_examples", examples)
    trial.report(value, 1)
    stopped = trial.should_prune()
    study.tell(trial, state=optuna.trial.TrialState.PRUNED if stopped else optuna.trial.TrialState.COMPLETE,
               values=None if stopped else value)
    return stopped


def test_the_median_pruner_keeps_a_trial_within_the_dev_sets_noise():
    """3 of 500 examples behind the median is noise (one standard error is 0.018): kept; 0.06
    behind is not; margin 0 is Optuna's plain median rule, which stops both."""
    from lmtune.experiments.pruning import make_pruner, noise_margin

    assert noise_margin(0.8, 500) == pytest.approx(0.017889, abs=1e-6)
    assert noise_margin(2.5, 500) == 0.0 and noise_margin(0.8, None) == 0.0  # not a proportion / size unknown
    for margin, expected in ((None, [False, True]), (0.0, [True, True]), (0.1, [False, False])):
        outcomes = []
        for value in (0.794, 0.74):
            study = optuna.create_study(direction="maximize", pruner=make_pruner("median", 4, margin))
            _finish(study, [0.80, 0.81, 0.79, 0.80])
            outcomes.append(_stopped(study, value))
        assert outcomes == expected, margin
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", 5, None))
    _finish(study, [0.80, 0.81, 0.79, 0.80])
    assert not _stopped(study, 0.1)  # 4 finished trials < 5 startup trials: nothing is stopped yet
    study = optuna.create_study(direction="minimize", pruner=make_pruner("median", 2, None))
    _finish(study, [0.40, 0.42])
    assert _stopped(study, 0.415)  # a loss gets no noise margin


def test_a_bad_trial_is_pruned_early_and_keeps_a_valid_run_folder(tiny_model, toy_data, tmp_path):
    from lmtune.experiments.search import open_study, prepare, search

    cfg = lmtune.Config.from_yaml(_base(tiny_model, toy_data, tmp_path, epochs=3))
    cfg.train.metric_for_best = "loss"  # lower is better: the study minimizes
    cfg.search.trials, cfg.search.pruner, cfg.search.startup_trials = 2, "median", 1
    cfg.search.study_name = "prune"
    space = {"train.learning_rate": {"low": 1e-3, "high": 100.0, "log": True}}
    job = prepare(cfg, space, quiet=True)
    job.folder.mkdir(parents=True)
    study = open_study(job, create=True)
    study.enqueue_trial({"train.learning_rate": 3e-3})  # a sane trial, then an absurd one
    study.enqueue_trial({"train.learning_rate": 50.0})
    result = search(cfg, space, quiet=True)
    study = _study(job.folder / "study.db", "prune")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    good, bad = study.trials
    assert (good.state.name, bad.state.name) == ("COMPLETE", "PRUNED")
    assert len(good.intermediate_values) == 3 and len(bad.intermediate_values) == 1  # stopped at its 1st
    assert result.best_run == job.folder / "trial-000"
    metrics = json.loads((job.folder / "trial-001" / "metrics.json").read_text())
    assert metrics["training"]["stopped_early"] and metrics["training"]["steps"] < json.loads(
        (job.folder / "trial-000" / "metrics.json").read_text())["training"]["steps"]
    assert lmtune.load(job.folder / "trial-001").predict(["dull"])  # still loads and predicts


def test_a_trial_is_never_pruned_at_its_final_evaluation(tiny_model, toy_data, tmp_path):
    """Pruning there saves nothing and would hide a finished result from the sampler."""
    from lmtune.experiments.search import open_study, prepare, search

    cfg = lmtune.Config.from_yaml(_base(tiny_model, toy_data, tmp_path, epochs=1))
    cfg.train.metric_for_best = "loss"
    cfg.search.trials, cfg.search.pruner, cfg.search.startup_trials = 2, "median", 1
    cfg.search.study_name = "final"
    space = {"train.learning_rate": {"low": 1e-3, "high": 100.0, "log": True}}
    job = prepare(cfg, space, quiet=True)
    job.folder.mkdir(parents=True)
    study = open_study(job, create=True)
    study.enqueue_trial({"train.learning_rate": 3e-3})
    study.enqueue_trial({"train.learning_rate": 50.0})  # trails, but its only evaluation is its last
    search(cfg, space, quiet=True)
    good, bad = _study(job.folder / "study.db", "final").trials
    assert (good.state.name, bad.state.name) == ("COMPLETE", "COMPLETE")
    assert bad.value > good.value  # it did trail: only the final-evaluation rule kept it


def test_models_of_finished_trials_are_released_within_one_process(tiny_model, toy_data, tmp_path, monkeypatch):
    import lmtune.pipeline as pipeline
    from lmtune.experiments.search import search

    refs: list[weakref.ref] = []
    alive_at_load: list[int] = []
    real_load = pipeline.load_model

    def recording_load(*args, **kwargs):
        alive_at_load.append(sum(r() is not None for r in refs))  # earlier trials' models still alive
        model, new = real_load(*args, **kwargs)
        refs.append(weakref.ref(model))
        return model, new

    monkeypatch.setattr(pipeline, "load_model", recording_load)
    cfg = lmtune.Config.from_yaml(_base(tiny_model, toy_data, tmp_path, epochs=1))
    cfg.search.trials, cfg.search.pruner, cfg.search.study_name = 3, "none", "memory"
    search(cfg, {"train.learning_rate": [1e-3, 2e-3, 3e-3]}, quiet=True)
    assert len(refs) == 3
    assert alive_at_load == [0, 0, 0], alive_at_load  # each trial starts with the others' models gone
    assert all(r() is None for r in refs)


@pytest.mark.parametrize("space, flags, message", [
    ("train.learnig_rate: [1e-3]", [], "unknown config key 'train.learnig_rate'; did you mean train.learning_rate?"),
    ("train.learning_rate: {low: 1e-2, high: 1e-3}", [], "bad range: low (0.01) must be below high (0.001)"),
    ("train.learning_rate: {low: 0, high: 1, log: true}", [], "a log range needs low > 0"),
    ("train.epochs: {low: 1, hihg: 3}", [], "unknown range setting 'hihg'; did you mean 'high'?"),
    ("lora.r: {low: 2.5, high: 8}", [], "lora.r takes whole numbers"),
    ("train.warmup_ratio: {low: 0, high: 1}", [], "--train.warmup-ratio must be in [0, 1), got 1.0"),
    ("method.name: [full, lorra]", [], "unknown method 'lorra'"),
    ("train.output_dir: [a, b]", [], "train.output_dir cannot be searched"),
    ("train.epochs: [1, 2]", ["--trials", "0"], "--search.trials must be >= 1, got 0"),
    ("train.epochs: [1, 2]", ["--timeout", "soon"], "--search.timeout 'soon'"),
    ("train.epochs: [1, 2]", ["--search.trails", "3"], "did you mean --search.trials?"),
])
def test_bad_spaces_and_settings_are_one_line_errors_before_any_trial(tiny_model, toy_data, tmp_path, capsys,
                                                                       space, flags, message):
    base = _base(tiny_model, toy_data, tmp_path)
    assert main(["search", "--config", str(base), "--space", str(_space(tmp_path, space)), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not list(tmp_path.glob("search-base/trial-*"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from lmtune.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_study_killed_mid_trial_resumes_and_ends_with_exactly_the_asked_trials(tiny_model, toy_data, tmp_path):
    base = _base(tiny_model, toy_data, tmp_path, max_steps=150, eval_strategy="steps", eval_steps=50)
    command = _cli("search", "--config", str(base), "--space", str(_space(tmp_path, SPACE)), "--trials", "3",
                   "--pruner", "none", "--study-name", "killed")
    folder = tmp_path / "killed"
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (folder / "trial-001" / "config.yaml").exists():
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be killed"
    time.sleep(0.5)  # into trial 1's training
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    study = _study(folder / "study.db", "killed")
    assert _states(study) == {"COMPLETE": 1, "RUNNING": 1}  # killed in the middle of trial 1

    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trial 1: its process is gone" in done.stdout
    study = _study(folder / "study.db", "killed")
    assert _states(study) == {"COMPLETE": 3, "FAIL": 1}
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    for trial in study.trials:
        if trial.state.name == "COMPLETE":
            assert (Path(trial.user_attrs["run_dir"]) / "model").is_dir()
    assert json.loads((folder / "summary.json").read_text())["counts"] == {"COMPLETE": 3, "FAIL": 1}


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study_without_duplicates(tiny_model, toy_data, tmp_path):
    base = _base(tiny_model, toy_data, tmp_path, max_steps=100, eval_strategy="steps", eval_steps=50)
    done = subprocess.run(_cli("search", "--config", str(base), "--space", str(_space(tmp_path, SPACE)),
                               "--trials", "4", "--workers", "2", "--pruner", "none", "--study-name", "pair"),
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    study = _study(tmp_path / "pair" / "study.db", "pair")
    assert _states(study) == {"COMPLETE": 4}
    numbers = [t.number for t in study.trials]
    folders = [t.user_attrs["run_dir"] for t in study.trials]
    assert sorted(numbers) == [0, 1, 2, 3] and len(set(folders)) == 4
    assert sorted(p.name for p in (tmp_path / "pair").glob("trial-*")) == [f"trial-00{i}" for i in range(4)]
    assert all((Path(f) / "model").is_dir() for f in folders)
    assert len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 2  # both workers ran trials


@pytest.mark.slow
def test_ray_backend_runs_two_trials_on_a_local_two_node_cluster(tiny_model, toy_data, tmp_path, monkeypatch):
    pytest.importorskip("ray.tune")
    import ray
    from ray.cluster_utils import Cluster

    from lmtune.experiments.search import search

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 * 2**20,
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
        cluster.wait_for_nodes()
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        cfg = lmtune.Config.from_yaml(_base(tiny_model, toy_data, tmp_path, epochs=1))
        cfg.search.backend, cfg.search.trials, cfg.search.workers = "ray", 2, 2
        cfg.search.pruner, cfg.search.study_name, cfg.search.timeout = "none", "ray", "10m"
        result = search(cfg, {"train.learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}})
    finally:
        ray.shutdown()
        cluster.shutdown()
    study = _study(tmp_path / "ray" / "study.db", "ray")
    assert _states(study) == {"COMPLETE": 2}
    assert len({t.user_attrs["worker"]["node"] for t in study.trials}) == 2  # one trial on each node
    assert result.best_run is not None and (result.best_run / "model").is_dir()
    assert lmtune.load(result.best_run).predict(["great"])
