"""Two "machines" on the loopback interface: two `accelerate launch` commands (one process each,
`--num_machines 2`), each in its own working directory with its own copy of the config, data and
model, as nodes that share no filesystem. They match one process with the same global batch;
only the global main process writes the run folder; and a run whose second node is killed
resumes from the main node's checkpoint and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from lmtune.pipeline import finetune
from lmtune.training.checkpoint import read_pointer
from conftest import free_port, tiny_config

pytestmark = pytest.mark.slow

# Global batch 16 = 8 per process x 2 nodes; 200 examples -> 13 steps an epoch, 26 in all.
SETTINGS = dict(epochs=2, eval_strategy="epoch", save_steps=2)
STEPS = 26
END = "from lmtune.training.distributed import end_processes\nend_processes()\n"  # as `lmtune train` ends
TRAIN = "from lmtune.pipeline import finetune\nfinetune('cfg.yaml', quiet=True)\n" + END
RESUME = "from lmtune.pipeline import finetune\nfinetune(None, resume='runs/run', quiet=True)\n" + END
SLOW_TRAIN = """import time
from lmtune.pipeline import finetune
from lmtune.training.hooks import Callback

class SlowDown(Callback):  # gives the test time to kill a node mid-run
    def on_step(self, row, control):
        time.sleep(0.2)

finetune('cfg.yaml', callbacks=[SlowDown()], quiet=True)
"""


def _make_nodes(root: Path, model: Path, data: dict) -> list[Path]:
    """Two node folders, each with its own model, data and config (all paths relative)."""
    nodes = []
    for rank in range(2):
        node = root / f"node{rank}"
        node.mkdir(parents=True)
        shutil.copytree(model, node / "model")
        shutil.copy(data["train"], node / "train.csv")
        shutil.copy(data["validation"], node / "dev.csv")
        cfg = tiny_config(Path("model"), {"train": "train.csv", "validation": "dev.csv"}, Path("runs"),
                          batch_size=8, **SETTINGS)
        cfg.save(node / "cfg.yaml")
        nodes.append(node)
    return nodes


def _launch(nodes: list[Path], script: str, logs: Path) -> list[subprocess.Popen]:
    """Both nodes' `accelerate launch`, each in its node folder and its own process group."""
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert launcher, "accelerate's launcher is installed with lmtune"
    logs.mkdir(parents=True, exist_ok=True)
    port, procs = free_port(), []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for rank, node in enumerate(nodes):
        (node / "worker.py").write_text(script)
        log_path = logs / f"node{rank}-{time.monotonic_ns()}.log"
        log = open(log_path, "w")
        procs.append(subprocess.Popen(
            [launcher, "launch", "--multi_gpu", "--num_machines", "2", "--num_processes", "2",
             "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
             "--mixed_precision", "no", "--dynamo_backend", "no", "worker.py"],
            cwd=node, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        procs[-1].log_path = log_path
        log.close()
    return procs


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL a node: its launcher's process group and every process under it (torchrun
    starts each worker in a session of its own, out of the launcher's group)."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    for child in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    proc.wait()


def _finish(procs: list[subprocess.Popen], logs: Path, timeout: float = 600) -> None:
    try:
        for proc in procs:
            proc.wait(timeout=timeout)
    finally:
        for proc in procs:
            _kill(proc)
    tails = "\n".join(p.read_text()[-2000:] for p in sorted(logs.glob("*.log")))
    assert all(p.returncode == 0 for p in procs), tails


def _contents(node: Path) -> set[str]:
    return {str(p.relative_to(node)) for p in node.rglob("*")}


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def two_nodes(no_dropout_model, toy_data, tmp_path_factory) -> dict:
    """One uninterrupted two-node run; what node 1's folder held before it."""
    root = tmp_path_factory.mktemp("two-nodes")
    nodes = _make_nodes(root, no_dropout_model, toy_data)
    before = _contents(nodes[1])
    _finish(_launch(nodes, TRAIN, root / "logs"), root / "logs")
    return {"nodes": nodes, "node1_before": before, "run": nodes[0] / "runs" / "run"}


def test_two_nodes_match_one_process(two_nodes, no_dropout_model, toy_data, tmp_path):
    run = two_nodes["run"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["training"]["processes"] == 2
    # Only the global main process wrote the run: node 1 holds exactly what it was given.
    assert _contents(two_nodes["nodes"][1]) == two_nodes["node1_before"] | {"worker.py"}
    assert not (two_nodes["nodes"][1] / "runs").exists()

    single = finetune(tiny_config(no_dropout_model, toy_data, tmp_path / "one", batch_size=16, **SETTINGS),
                      quiet=True)
    two, one = _losses(run), _losses(single.root)
    assert len(two) == len(one) == STEPS
    assert two == pytest.approx(one, rel=1e-3, abs=1e-4)
    single_metrics = json.loads(single.metrics.read_text())
    assert metrics["validation"]["accuracy"] == single_metrics["validation"]["accuracy"]


def test_resume_after_killing_a_node(two_nodes, no_dropout_model, toy_data, tmp_path):
    """Node 1 is SIGKILLed mid-run; node 0 then fails (or hangs, and is killed). Both relaunch
    with `--resume` semantics; node 1 has no run folder, so the config and the checkpoint (weights,
    optimizer, schedule, RNG, data position) reach it from the main process."""
    nodes, logs = _make_nodes(tmp_path, no_dropout_model, toy_data), tmp_path / "logs"
    procs = _launch(nodes, SLOW_TRAIN, logs)
    checkpoints = nodes[0] / "runs" / "run" / "checkpoints"
    try:
        deadline, latest = time.time() + 300, None
        while time.time() < deadline and all(p.poll() is None for p in procs):
            latest = read_pointer(checkpoints, "latest.txt")
            if latest is not None and int(latest.name.split("-")[1]) >= 6:
                break
            time.sleep(0.05)
        assert all(p.poll() is None for p in procs), "a node ended before it could be killed"
        _kill(procs[1])
        try:
            procs[0].wait(timeout=120)  # it loses its peer: an error, or a hang we end here
        except subprocess.TimeoutExpired:
            pass
    finally:
        for proc in procs:
            _kill(proc)
    run = nodes[0] / "runs" / "run"
    assert not (run / "model").exists(), "the run finished before node 1 was killed"
    killed_at = int(read_pointer(checkpoints, "latest.txt").name.split("-")[1])
    assert 6 <= killed_at < STEPS
    assert not (nodes[1] / "runs").exists()

    # Launched again without --resume, the main node refuses to overwrite the run, and node 1
    # learns it and stops too rather than wait forever for the run's name.
    procs = _launch(nodes, TRAIN, logs)
    try:
        for proc in procs:
            proc.wait(timeout=300)
    finally:
        for proc in procs:
            _kill(proc)
    assert all(proc.returncode != 0 for proc in procs)
    assert "already exists" in procs[1].log_path.read_text()

    _finish(_launch(nodes, RESUME, logs), logs)
    assert not (nodes[1] / "runs").exists()  # resuming wrote nothing on node 1 either
    resumed, straight = _weights(run), _weights(two_nodes["run"])
    assert set(resumed) == set(straight)
    assert all(torch.equal(resumed[k], straight[k]) for k in resumed), "resumed weights differ"
    ma = json.loads((run / "metrics.json").read_text())
    mb = json.loads((two_nodes["run"] / "metrics.json").read_text())
    assert ma["training"]["steps"] == mb["training"]["steps"] == STEPS
    assert ma["validation"] == mb["validation"]
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert steps == list(range(1, STEPS + 1))  # the log trimmed to the checkpoint and continued
    assert _losses(run) == _losses(two_nodes["run"])
