"""lmtune continual on tiny models: the matrix, each strategy's promise, resume after SIGKILL,
and clear errors before anything trains."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

import lmtune
from conftest import FILLER, toy_rows, write_csv
from lmtune.cli import main
from lmtune.experiments.continual.runner import continual

TOPIC = {"who": ["alice", "bob", "carol"], "where": ["paris", "london", "rome"]}


def topic_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """A second task with its own labels: is a person or a place named?"""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(list(TOPIC))
        words = rng.sample(FILLER, rng.randint(2, 6))
        words.insert(rng.randrange(len(words) + 1), rng.choice(TOPIC[label]))
        rows.append((" ".join(words), label))
    return rows


def _step(folder: Path, name: str, rows: list[tuple[str, str]]) -> dict:
    files = {split: write_csv(folder / f"{name}-{split}.csv", part)
             for split, part in (("train", rows[:80]), ("validation", rows[80:100]), ("test", rows[100:]))}
    return {"name": name, **{split: path.name for split, path in files.items()}}


def _sequence(tmp_path: Path, tiny_model: Path, steps: list[dict], **config) -> Path:
    train = {"epochs": 2, "batch_size": 16, "learning_rate": 3e-3, "progress": False, "num_threads": 1,
             "output_dir": str(tmp_path / "runs"), **config.pop("train", {})}
    body = {"steps": steps, "config": {"model": {"name": str(tiny_model), "max_length": 32}, "train": train,
                                       **config}}
    path = tmp_path / "sequence.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.fixture
def two_tasks(tmp_path, tiny_model) -> Path:
    steps = [_step(tmp_path, "sentiment", toy_rows(140, seed=3)), _step(tmp_path, "topic", topic_rows(140, seed=4))]
    return _sequence(tmp_path, tiny_model, steps)


@pytest.fixture
def three_domains(tmp_path, tiny_model) -> Path:
    steps = [_step(tmp_path, f"d{i}", toy_rows(140, seed=10 + i)) for i in range(3)]
    return _sequence(tmp_path, tiny_model, steps)


def _report(root: Path) -> dict:
    return json.loads((root / "report.json").read_text())


def _weights(root: Path, step: str) -> dict:
    return load_file(str(next((root / "steps").glob(f"*-{step}")) / "model" / "model.safetensors"))


def test_the_matrix_holds_each_steps_score_after_each_step(two_tasks, tmp_path):
    root = continual(two_tasks, [("continual.strategy", "sequential")], quiet=True)
    report = _report(root)
    matrix = report["matrix"]["test"]
    assert report["heads"] == "per-step" and len(matrix) == 2 and all(len(row) == 2 for row in matrix)
    assert matrix[0][1] is None  # the topic head is untrained before its step
    for i, run in enumerate(sorted((root / "steps").iterdir())):
        for j, name in enumerate(["sentiment", "topic"][: i + 1]):
            scored = lmtune.evaluate(run, tmp_path / f"{name}-test.csv", quiet=True)["accuracy"]
            assert matrix[i][j] == pytest.approx(scored, abs=1e-9)
    assert report["test"]["backward_transfer"] == pytest.approx(matrix[1][0] - matrix[0][0])
    assert (root / "matrix.png").stat().st_size > 0 and "| after" in (root / "report.md").read_text()
    model = lmtune.load(root)
    assert {p["label"] for p in model.predict(["alice was here", "the film was good"], task="topic")} <= set(TOPIC)
    assert all(p["task"] in ("sentiment", "topic") for p in model.predict(["alice met bob"]))


def test_replay_memory_stays_within_its_size_and_holds_every_earlier_step(three_domains):
    root = continual(three_domains, [("continual.strategy", "replay"), ("continual.memory", "10")], quiet=True)
    from lmtune.experiments.continual.replay import ReplayMemory

    for last, steps in ((2, {"d0", "d1"}), (3, {"d0", "d1", "d2"})):  # what steps 3 and (a next) 4 replay
        memory = ReplayMemory.from_state(json.loads((root / "strategy" / f"memory-0{last}.json").read_text()))
        assert len(memory) <= 10 and set(memory.counts()) == steps
    assert _report(root)["heads"] == "shared" and _report(root)["test"]["forward_transfer"] is not None


def test_ewc_with_lambda_zero_equals_sequential_exactly(three_domains, tmp_path):
    plain = continual(three_domains, [("continual.strategy", "sequential"), ("train.run_name", "plain")], quiet=True)
    ewc = continual(three_domains, [("continual.strategy", "ewc"), ("continual.ewc_lambda", "0"),
                                    ("train.run_name", "ewc0")], quiet=True)
    a, b = _weights(plain, "d2"), _weights(ewc, "d2")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert (ewc / "strategy" / "ewc-02.safetensors").is_file()
    strong = continual(three_domains, [("continual.strategy", "ewc"), ("continual.ewc_lambda", "1e6"),
                                       ("train.run_name", "ewc-strong")], quiet=True)
    c = _weights(strong, "d2")
    assert any(not (a[k] == c[k]).all() for k in a)  # a real pull changes the result


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from lmtune.cli import main; sys.exit(main(sys.argv[1:]))", *args]


@pytest.mark.slow
def test_a_sequence_killed_in_step_two_resumes_to_the_uninterrupted_weights(three_domains, tmp_path):
    flags = [("continual.strategy", "replay"), ("train.save_steps", "2"), ("train.eval_strategy", "steps"),
             ("train.eval_steps", "2"), ("train.keep_checkpoints", "true")]
    whole = continual(three_domains, [*flags, ("train.run_name", "whole")], quiet=True)
    command = _cli("continual", "--sequence", str(three_domains), "--quiet", "--train.run-name", "killed",
                   *[x for key, value in flags for x in (f"--{key}", value)])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = tmp_path / "runs" / "killed"
    deadline = time.time() + 300
    while time.time() < deadline and not list(root.glob("steps/02-d1/checkpoints/*/")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(root.glob("steps/02-d1/checkpoints/*/")), "the child never reached step 2"
    assert json.loads((root / "continual.json").read_text())["status"] == "running"
    continual(None, resume=root, quiet=True)
    a, b = _weights(whole, "d2"), _weights(root, "d2")
    assert all((a[k] == b[k]).all() for k in a)
    assert _report(root)["matrix"] == _report(whole)["matrix"]


def test_adapter_per_task_forgets_nothing_and_reports_routing(two_tasks):
    root = continual(two_tasks, [("continual.strategy", "adapter-per-task")], quiet=True)
    report = _report(root)
    matrix = report["matrix"]["test"]
    assert matrix[1][0] == matrix[0][0] and report["test"]["backward_transfer"] == 0
    assert 0 <= report["routing"]["accuracy"] <= 1 and report["routing"]["routed_accuracy"] is not None
    assert "adapters" in report["stored"]
    predictions = lmtune.load(root).predict(["alice met bob", "the plot was awful"])
    assert all(p["task"] in ("sentiment", "topic") for p in predictions)


def test_multitask_reports_one_row_over_every_step(two_tasks):
    root = continual(two_tasks, [("continual.strategy", "multitask")], quiet=True)
    report = _report(root)
    assert len(report["matrix"]["test"]) == 1 and None not in report["matrix"]["test"][0]
    assert report["test"]["average_accuracy"] == pytest.approx(sum(report["matrix"]["test"][0]) / 2)


def test_a_label_the_shared_head_never_saw_is_an_error_naming_file_and_label(tmp_path, tiny_model, capsys):
    rows = toy_rows(140, seed=5)
    odd = [(text, "meh") if i == 7 else (text, label) for i, (text, label) in enumerate(toy_rows(140, seed=6))]
    path = _sequence(tmp_path, tiny_model, [_step(tmp_path, "a", rows), _step(tmp_path, "b", odd)])
    body = yaml.safe_load(path.read_text())
    body["heads"] = "shared"
    path.write_text(yaml.safe_dump(body))
    assert main(["continual", "--sequence", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'meh'" in err and "b-train.csv" in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("change, message", [
    (lambda b: b["steps"][1].update(tset="x.csv"), "unknown"),
    (lambda b: b["steps"][1].update(train="missing.csv"), "does not exist"),
    (lambda b: b["steps"].append({}), "step 3"),
    (lambda b: b["steps"][1].update(task="ner"), "task"),
])
def test_bad_sequence_files_are_one_clear_error_before_training(two_tasks, tmp_path, capsys, change, message):
    body = yaml.safe_load(two_tasks.read_text())
    change(body)
    two_tasks.write_text(yaml.safe_dump(body))
    assert main(["continual", "--sequence", str(two_tasks)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_resume_of_a_folder_that_is_not_a_continual_run_says_so(tmp_path, capsys):
    assert main(["continual", "--resume", str(tmp_path)]) == 2
    assert "not a continual run folder" in capsys.readouterr().err
