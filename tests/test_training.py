"""The one training loop, tested once on a tiny model: learning, determinism, accumulation,
early stopping, class weights, freezing, and the run folder it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lmtune.config import ConfigError
from lmtune.pipeline import finetune
from conftest import tiny_config

pytestmark = pytest.mark.precision


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run.model / "model.safetensors"))


def test_learns_toy_task_and_writes_run_folder(tiny_model, toy_data, tmp_path):
    run = finetune(tiny_config(tiny_model, toy_data, tmp_path, epochs=8), quiet=True)
    metrics = json.loads(run.metrics.read_text())
    assert metrics["validation"]["accuracy"] >= 0.9
    for name in ("config.yaml", "metrics.json", "train_log.jsonl", "learning_curve.png",
                 "confusion_matrix.png", "README.md", "model/model.safetensors", "model/config.json"):
        assert (run.root / name).is_file(), name
    rows = [json.loads(line) for line in run.log.read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"train", "eval"}
    assert "| accuracy |" in run.card.read_text()
    config = json.loads((run.model / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}


def test_two_seeded_runs_are_identical(tiny_model, toy_data, tmp_path):
    first = finetune(tiny_config(tiny_model, toy_data, tmp_path / "a", epochs=1), quiet=True)
    second = finetune(tiny_config(tiny_model, toy_data, tmp_path / "b", epochs=1), quiet=True)
    a, b = _weights(first), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    third = finetune(tiny_config(tiny_model, toy_data, tmp_path / "c", epochs=1, seed=7), quiet=True)
    assert not all(torch.equal(a[k], _weights(third)[k]) for k in a)


def test_accumulation_matches_one_big_batch(no_dropout_model, toy_data, tmp_path):
    """2 micro-batches of 8 accumulate to the same update as one batch of 16 (in fp32: on a GPU
    `auto` means bf16, whose rounding differs between the two batchings)."""
    common = dict(max_steps=3, eval_strategy="no", max_grad_norm=1.0, mixed_precision="no")
    big = finetune(tiny_config(no_dropout_model, toy_data, tmp_path / "big", batch_size=16, **common),
                   quiet=True)
    small = finetune(tiny_config(no_dropout_model, toy_data, tmp_path / "acc", batch_size=8,
                                 grad_accum=2, **common), quiet=True)
    a, b = _weights(big), _weights(small)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    la = [r["loss"] for r in big.log_rows() if r["kind"] == "train"]
    lb = [r["loss"] for r in small.log_rows() if r["kind"] == "train"]
    assert la == pytest.approx(lb, rel=1e-5)
    base = load_file(str(no_dropout_model / "model.safetensors"))
    assert not torch.equal(a["bert.encoder.layer.0.output.dense.weight"],
                           base["encoder.layer.0.output.dense.weight"])


def test_early_stopping_stops_and_keeps_best(tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path, epochs=30, early_stopping_patience=2,
                      eval_strategy="steps", eval_steps=2, metric_for_best="loss",
                      greater_is_better=False)
    run = finetune(cfg, quiet=True)
    metrics = json.loads(run.metrics.read_text())
    assert metrics["training"]["stopped_early"]
    evals = [r for r in run.log_rows() if r["kind"] == "eval"]
    best = min(evals, key=lambda r: r["loss"])
    assert metrics["training"]["best_step"] == best["step"]
    assert metrics["validation"]["loss"] == pytest.approx(best["loss"])
    assert evals[-1]["step"] - best["step"] == 2 * 2  # patience 2 evaluations, every 2 steps
    assert metrics["training"]["steps"] < 30 * 13


def test_evaluations_per_epoch_fall_at_equal_fractions_of_each_epoch(tiny_model, toy_data, tmp_path):
    """200 rows at batch 16: 13 steps an epoch, thirds end at steps 5, 9 and 13; max_steps 20 ends
    mid-epoch and gets its own final evaluation."""
    cfg = tiny_config(tiny_model, toy_data, tmp_path, epochs=2, max_steps=20, evals_per_epoch=3)
    run = finetune(cfg, quiet=True)
    steps = [r["step"] for r in run.log_rows() if r["kind"] == "eval"]
    assert steps == [5, 9, 13, 18, 20]


@pytest.mark.parametrize("metric, pick", [("loss", min), ("accuracy", max)])
def test_the_best_checkpoint_follows_the_metrics_direction(metric, pick, tiny_model, toy_data, tmp_path):
    """No greater_is_better given: loss is lower-is-better, accuracy higher-is-better."""
    cfg = tiny_config(tiny_model, toy_data, tmp_path, epochs=4, eval_strategy="steps", eval_steps=4,
                      metric_for_best=metric)
    run = finetune(cfg, quiet=True)
    evals = [r for r in run.log_rows() if r["kind"] == "eval"]
    assert len({r[metric] for r in evals}) > 1  # the choice matters
    # The first of equal values wins, and equal values break ties by lower loss.
    best = sorted(evals, key=lambda r: (-r[metric] if pick is max else r[metric], r["loss"]))[0]
    assert json.loads(run.metrics.read_text())["training"]["best_step"] == best["step"]


def test_an_unknown_metric_is_refused_before_the_model_loads(tiny_model, toy_data, tmp_path, capsys):
    from lmtune.cli import main

    code = main(["train", "--model", str(tiny_model), "--train", str(toy_data["train"]),
                 "--output-dir", str(tmp_path), "--run-name", "typo", "--train.metric-for-best", "f1"])
    err = capsys.readouterr().err
    assert code == 2 and "--train.metric-for-best 'f1' is not a classification metric" in err
    assert "accuracy, subset_accuracy, macro_f1" in err and "loss" in err
    assert not (tmp_path / "typo").exists()
    cfg = tiny_config(tiny_model, toy_data, tmp_path, metric_for_best="acuracy")
    with pytest.raises(ConfigError, match="did you mean 'accuracy'"):
        finetune(cfg, quiet=True)


def test_class_weights_and_label_smoothing_change_the_loss(tiny_model, toy_data, tmp_path):
    from lmtune.config import Config
    from lmtune.tasks import get_task
    from lmtune.data import read_table

    cfg = Config()
    cfg.data.train = str(toy_data["train"])
    cfg.train.class_weights = "balanced"
    task = get_task(cfg)
    task.fit(read_table(cfg.data.train))
    counts = task.label_counts
    n = sum(counts.values())
    expected = [n / (2 * counts["neg"]), n / (2 * counts["pos"])]
    assert task.class_weights.tolist() == pytest.approx(expected)
    logits, labels = torch.tensor([[2.0, -1.0], [0.5, 0.2]]), torch.tensor([0, 1])
    weighted = task.loss(logits, labels)
    manual = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor(expected))
    assert float(weighted) == pytest.approx(float(manual))
    cfg.train.class_weights, cfg.train.label_smoothing = None, 0.1
    smooth = get_task(cfg)
    smooth.fit(read_table(cfg.data.train))
    assert float(smooth.loss(logits, labels)) > float(torch.nn.functional.cross_entropy(logits, labels))


def test_freeze_lower_layers_leaves_them_unchanged(tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path, epochs=1)
    cfg.method.name = "freeze"
    cfg.method.freeze_embeddings = True
    cfg.method.freeze_layers = 1
    run = finetune(cfg, quiet=True)
    base = load_file(str(tiny_model / "model.safetensors"))
    tuned = _weights(run)
    emb = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(tuned[emb], base["embeddings.word_embeddings.weight"])
    assert torch.equal(tuned["bert.encoder.layer.0.attention.self.query.weight"],
                       base["encoder.layer.0.attention.self.query.weight"])
    assert not torch.equal(tuned["bert.encoder.layer.1.attention.self.query.weight"],
                           base["encoder.layer.1.attention.self.query.weight"])
    metrics = json.loads(run.metrics.read_text())
    assert metrics["parameters"]["trainable"] < metrics["parameters"]["total"]


def test_multi_label_training_reports_per_label_f1(tiny_model, tmp_path):
    from conftest import write_csv, toy_rows

    rows = [(text, "|".join(["tone"] + (["pos"] if label == "pos" else []))) for text, label in toy_rows(120, 3)]
    train = write_csv(tmp_path / "train.csv", rows[:100])
    dev = write_csv(tmp_path / "dev.csv", rows[100:])
    cfg = tiny_config(tiny_model, {"train": train, "validation": dev}, tmp_path / "runs", epochs=20,
                      metric_for_best="micro_f1")
    cfg.data.multi_label, cfg.data.label_separator = True, "|"
    run = finetune(cfg, quiet=True)
    metrics = json.loads(run.metrics.read_text())
    assert set(metrics["validation_report"]["per_class"]) == {"pos", "tone"}
    assert metrics["validation"]["micro_f1"] > 0.8


def test_existing_run_folder_is_not_overwritten(tiny_model, toy_data, tmp_path):
    from lmtune.config import ConfigError

    cfg = tiny_config(tiny_model, toy_data, tmp_path, max_steps=1, eval_strategy="no")
    finetune(cfg, quiet=True)
    with pytest.raises(ConfigError, match="already exists: continue it with `lmtune train --resume"):
        finetune(tiny_config(tiny_model, toy_data, tmp_path, max_steps=1), quiet=True)


def test_length_grouped_batches_cover_every_example_once():
    from lmtune.training.batching import epoch_batches, shard

    lengths = list(np.random.default_rng(0).integers(3, 60, size=1003))
    batches = epoch_batches(lengths, 32, seed=1, epoch=0, group_by_length=True)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1003))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded / sum(lengths) < 1.1  # grouping keeps padding small
    assert epoch_batches(lengths, 32, 1, 0, True) == batches
    assert epoch_batches(lengths, 32, 1, 1, True) != batches
    parts = [shard(batches[0], r, 3) for r in range(3)]
    assert sum(parts, []) == batches[0]
