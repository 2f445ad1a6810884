"""A fixed label set (data.labels) and label groups (data.label_groups): one classification
head over labels the training file may lack, and over several tasks whose labels compete only
within their own group (loss, metrics and, given a group, prediction)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lmtune
from lmtune.config import Config, ConfigError
from lmtune.data import read_table
from lmtune.data.records import DataError
from lmtune.pipeline import finetune
from lmtune.tasks.base import Encoded
from conftest import FILLER, make_task, tiny_config, toy_rows, write_csv

LABELS = "a,b,c,d,e"
GROUPS = "a,b|c,d,e"  # columns 0-1 and 2-4
TOPICS = ["sports", "politics", "science"]


def _grouped_task(**overrides):
    return make_task("classification", **{"data.labels": LABELS, "data.label_groups": GROUPS, **overrides})


def _two_task_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Sentiment rows (pos/neg) and topic rows (sports/politics/science), mixed."""
    rng = random.Random(seed)
    rows = toy_rows(n // 2, seed)
    for _ in range(n - n // 2):
        topic = rng.choice(TOPICS)
        rows.append((" ".join(rng.sample(FILLER, 3) + [topic]), topic))
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def two_task_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-tasks")
    rows = _two_task_rows(240, seed=3)
    return {"train": write_csv(folder / "train.csv", rows[:200]),
            "validation": write_csv(folder / "dev.csv", rows[200:])}


# ---- a fixed label set -------------------------------------------------------------------------
def test_fixed_labels_train_on_a_subset_and_the_head_has_them_all(tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path, epochs=1, class_weights="balanced")
    cfg.data.labels = "pos,neutral,neg"  # train has no 'neutral'
    run = finetune(cfg, quiet=True)
    config = json.loads((run.model / "config.json").read_text())
    assert config["id2label"] == {"0": "pos", "1": "neutral", "2": "neg"}
    assert "label_groups" not in config
    metrics = json.loads(run.metrics.read_text())
    assert np.isfinite(metrics["validation"]["loss"])
    assert lmtune.load(run.root).labels == ["pos", "neutral", "neg"]


def test_balanced_weights_give_a_class_absent_from_train_weight_one(toy_data):
    task = make_task("classification", **{"data.labels": "neg,neutral,pos", "train.class_weights": "balanced"})
    task.fit(read_table(toy_data["train"]))
    counts = task.label_counts
    n = counts["neg"] + counts["pos"]
    assert counts["neutral"] == 0
    assert task.class_weights.tolist() == pytest.approx([n / (2 * counts["neg"]), 1.0, n / (2 * counts["pos"])])
    only_absent = task.loss(torch.tensor([[0.1, 0.5, -0.2]]), torch.tensor([1]))
    assert torch.isfinite(only_absent)


def test_a_label_outside_data_labels_is_an_error_naming_file_and_line(tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path, epochs=1)
    cfg.data.labels = "pos,neutral"
    with pytest.raises(DataError) as caught:
        finetune(cfg, quiet=True)
    first = next(i for i in caught.value.issues if "'neg'" in i.message)
    lines = read_table(toy_data["train"]).records
    expected_line = next(r.line for r in lines if r.fields["label"] == "neg")
    assert (first.source, first.line) == (str(toy_data["train"]), expected_line)
    assert "data.labels" in first.message and "data.labels" in first.hint
    assert f"{toy_data['train']}:{expected_line}" in str(caught.value)
    assert any(i.source == str(toy_data["validation"]) for i in caught.value.issues)  # every split


def test_labels_read_from_a_yaml_list_or_a_comma_list(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  labels: [a, b, 3, c, d, e]\n  label_groups: [[a, b], [3, c, d, e]]\n")
    task = make_task("classification")
    assert task.labels == [] and task.label_groups is None
    from lmtune.tasks import get_task

    from_yaml = get_task(Config.from_yaml(path))
    assert from_yaml.labels == ["a", "b", "3", "c", "d", "e"]
    assert from_yaml.label_groups == [["a", "b"], ["3", "c", "d", "e"]]
    from_text = make_task("classification", **{"data.labels": " a, b,3 ,c,d,e",
                                               "data.label_groups": "a,b | 3,c,d,e"})
    assert (from_text.labels, from_text.label_groups) == (from_yaml.labels, from_yaml.label_groups)


@pytest.mark.parametrize("overrides, message", [
    ({"data.label_groups": "a,b|c"}, "needs data.labels"),
    ({"data.labels": "a,b,c", "data.label_groups": "a,b|b,c"}, "'b' is in group 1 and group 2"),
    ({"data.labels": "a,b,c", "data.label_groups": "a|b"}, "'c' in no group"),
    ({"data.labels": "a,b,c", "data.label_groups": "a,b,c|x"}, "'x' (group 2) is not in data.labels (a, b, c)"),
    ({"data.labels": "a,b,c", "data.label_groups": "a,b||c"}, "group 2 is empty"),
    ({"data.labels": "a,b,c", "data.label_groups": "a,b|c", "data.multi_label": True}, "single-label"),
    ({"data.labels": "a,b,a"}, "'a' listed more than once"),
    ({"data.labels": "a"}, "needs at least 2"),
])
def test_impossible_labels_or_groups_are_config_errors(overrides, message):
    with pytest.raises(ConfigError) as caught:
        make_task("classification", **overrides)
    assert message in str(caught.value)


# ---- the grouped loss --------------------------------------------------------------------------
def _sliced_loss(logits, labels, weights, eps, groups):
    """The reference: F.cross_entropy on each group's own logits (sums), over the weighted count."""
    total = torch.tensor(0.0)
    for cols in groups:
        rows = [i for i, y in enumerate(labels.tolist()) if y in cols]
        if not rows:
            continue
        local = torch.tensor([cols.index(labels[i].item()) for i in rows])
        w = None if weights is None else weights[cols]
        total = total + F.cross_entropy(logits[rows][:, cols], local, weight=w, label_smoothing=eps,
                                        reduction="sum")
    return total / (len(labels) if weights is None else weights[labels].sum())


@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_loss_equals_cross_entropy_on_the_group_logits(eps, weighted):
    task = _grouped_task(**{"train.label_smoothing": eps})
    weights = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.7]) if weighted else None
    task.class_weights = weights
    torch.manual_seed(0)
    logits = torch.randn(12, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 4, 4, 1, 2, 3, 0])
    loss = task.loss(logits, labels)
    expected = _sliced_loss(logits.detach(), labels, weights, eps, [[0, 1], [2, 3, 4]])
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 2:].abs().max() == 0  # labels of another group get no gradient
    one_group = labels < 2  # a batch of one task: plain mean cross-entropy on its sliced logits
    alone = F.cross_entropy(logits.detach()[one_group][:, :2], labels[one_group], label_smoothing=eps,
                            weight=None if weights is None else weights[:2])
    assert float(task.loss(logits.detach()[one_group], labels[one_group])) == pytest.approx(float(alone), rel=1e-5)


def test_the_grouped_loss_differs_from_the_plain_loss():
    logits, labels = torch.tensor([[0.0, 1.0, 5.0, 5.0, 5.0]]), torch.tensor([0])
    grouped = _grouped_task().loss(logits, labels)
    plain = make_task("classification", **{"data.labels": LABELS}).loss(logits, labels)
    assert float(grouped) == pytest.approx(float(F.cross_entropy(logits[:, :2], labels)))
    assert float(plain) > float(grouped) + 1


# ---- metrics and prediction --------------------------------------------------------------------
def test_metrics_take_the_argmax_within_the_gold_labels_group():
    # every row's overall argmax lies in the other group; within its own group it is right
    logits = [np.array([2.0, 1.0, 9.0, 0.0, 0.0]), np.array([0.0, 3.0, 0.0, 0.0, 8.0]),
              np.array([7.0, 0.0, 1.0, 0.5, 0.0]), np.array([0.0, 9.0, 0.0, 0.0, 2.0])]
    encoded = Encoded([{"labels": y} for y in (0, 1, 2, 4)])
    assert _grouped_task().metrics(logits, encoded)["accuracy"] == 1.0
    plain = make_task("classification", **{"data.labels": LABELS})
    assert plain.metrics(logits, encoded)["accuracy"] == 0.0
    # scored on one group's data, the report covers that group's labels only
    one_group = _grouped_task().metrics(logits[:2], Encoded([{"labels": y} for y in (0, 1)]))
    assert list(one_group["per_class"]) == ["a", "b"] and one_group["macro_f1"] == 1.0
    assert len(one_group["confusion_matrix"]) == 2


def test_decode_over_a_subset_of_labels():
    task = _grouped_task()
    logits = [np.array([2.0, 1.0, 9.0, 0.0, 0.0])]
    everything = task.decode(logits, Encoded([]))[0]
    assert everything["label"] == "c" and set(everything["probabilities"]) == set("abcde")
    sub = task.decode(logits, Encoded([]), labels=["b", "a"])[0]
    assert sub["label"] == "a" and list(sub["probabilities"]) == ["b", "a"]
    assert sub["score"] == pytest.approx(1 / (1 + np.exp(-1.0)))
    assert sum(sub["probabilities"].values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"unknown label\(s\) 'x'; choose among this model's labels: a, b, c, d, e"):
        task.decode(logits, Encoded([]), labels=["a", "x"])
    with pytest.raises(ValueError, match="no labels given"):
        task.decode(logits, Encoded([]), labels=[])


def test_a_grouped_run_reloads_with_its_groups_and_predicts_within_a_group(tiny_model, two_task_data, tmp_path):
    cfg = tiny_config(tiny_model, two_task_data, tmp_path, epochs=2, label_smoothing=0.1)
    cfg.data.labels = ["pos", "neg", *TOPICS, "arts"]  # as the Python API or continual sets it
    cfg.data.label_groups = [["pos", "neg"], [*TOPICS, "arts"]]
    run = finetune(cfg, quiet=True)
    config = json.loads((run.model / "config.json").read_text())
    assert config["label_groups"] == [["pos", "neg"], [*TOPICS, "arts"]]
    assert np.isfinite(json.loads(run.metrics.read_text())["validation"]["loss"])
    model = lmtune.load(run.root)
    assert model.task.label_groups == [["pos", "neg"], [*TOPICS, "arts"]]
    texts = ["the film was sports", "really good plot"]
    topics = model.predict(texts, labels=TOPICS)
    assert all(p["label"] in TOPICS and list(p["probabilities"]) == TOPICS for p in topics)
    assert all(sum(p["probabilities"].values()) == pytest.approx(1.0) for p in topics)
    assert set(model.predict(texts)[0]["probabilities"]) == {"pos", "neg", *TOPICS, "arts"}
    with pytest.raises(ValueError, match="choose among this model's labels: pos, neg, sports"):
        model.predict(texts, labels=["sport"])
    from transformers import AutoModelForSequenceClassification

    plain = AutoModelForSequenceClassification.from_pretrained(str(run.model))
    assert plain.config.num_labels == 6 and plain.config.label_groups == config["label_groups"]
