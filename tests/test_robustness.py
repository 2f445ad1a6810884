"""Robustness evaluation: seeded perturbation tables for every task, and the word-substitution
attack (its algorithm on a scripted classifier, its limits and report on a trained tiny run)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import lmtune
from lmtune.cli import main
from lmtune.config import ConfigError
from lmtune.data.records import Record
from lmtune.evaluation.attack import AttackSettings, run_attack
from lmtune.evaluation.robustness import perturb_records
from lmtune.pipeline import finetune
from lmtune.tasks.base import Encoded
from conftest import make_task, tiny_config

FLIPS = {"good": ["bad", "fine"], "great": ["awful"], "lovely": ["dull"], "superb": ["poor"],
         "fine": ["boring"], "bad": ["good"], "awful": ["great"], "poor": ["superb"], "dull": ["lovely"],
         "boring": ["fine"], "film": ["movie"], "movie": ["film"], "plot": ["story"], "story": ["plot"],
         "the": ["a"]}


class StubSynonyms:
    """Dictionary synonyms (sentiment words map to their opposites, so attacks can succeed)."""

    name = "stub"

    def __init__(self, table: dict[str, list[str]] = FLIPS):
        self.table = table

    def __call__(self, word: str) -> list[str]:
        return list(self.table.get(word.lower(), []))


@pytest.fixture(scope="module")
def trained_run(tiny_model, toy_data, tmp_path_factory):
    return finetune(tiny_config(tiny_model, toy_data, tmp_path_factory.mktemp("robust-runs"), epochs=8), quiet=True)


@pytest.fixture(scope="module")
def ner_run(tiny_model, ner_data, tmp_path_factory):
    cfg = tiny_config(tiny_model, ner_data, tmp_path_factory.mktemp("robust-ner"), epochs=2)
    cfg.task = "ner"
    return finetune(cfg, quiet=True)


def _labels_by_line(path) -> dict[int, str]:
    with open(path, newline="") as handle:
        return {i: row["label"] for i, row in enumerate(csv.DictReader(handle), start=2)}


# ---- perturbations ------------------------------------------------------------------------------
def test_perturbations_are_seeded_and_counted(trained_run, toy_data):
    kinds = "typo,case,punct,synonym,swap"
    first = lmtune.evaluate(trained_run.root, toy_data["validation"], quiet=True, perturb=kinds,
                            synonyms=StubSynonyms(), seed=0)
    again = lmtune.evaluate(trained_run.root, toy_data["validation"], quiet=True, perturb=kinds,
                            synonyms=StubSynonyms(), seed=0)
    other = lmtune.evaluate(trained_run.root, toy_data["validation"], quiet=True, perturb=kinds,
                            synonyms=StubSynonyms(), seed=1)
    table = first["robustness"]
    assert table == again["robustness"]
    assert table["perturbed_examples"] != other["robustness"]["perturbed_examples"]
    assert [r["perturbation"] for r in table["rows"]] == ["clean", *kinds.split(",")]
    assert table["rows"][0]["value"] == first["accuracy"] and table["metric"] == "accuracy"
    for row in table["rows"][1:]:
        assert row["change"] == pytest.approx(row["value"] - first["accuracy"])
        assert row["examples_changed"] == 1.0  # every toy sentence has a word each edit can change
        assert 0.1 <= row["words_changed"] <= 0.5  # rate 0.1 of 3-9 words: at least one word
    synonym = next(r for r in table["rows"] if r["perturbation"] == "synonym")
    assert synonym["change"] < -0.2  # the stub swaps sentiment words for their opposites
    saved = trained_run.root / "eval" / "dev"
    assert json.loads((saved / "robustness.json").read_text()) == other["robustness"]
    assert "| synonym |" in (saved / "robustness.md").read_text()


def test_perturbed_texts_depend_on_the_seed_only(trained_run, toy_data):
    from lmtune.data import read_table

    task = lmtune.load(trained_run.root).task
    records = read_table(toy_data["validation"]).records
    texts = lambda seed: [r.fields["text"] for r in perturb_records(task, records, "typo", 0.2, seed).records]
    assert texts(3) == texts(3)
    assert texts(3) != texts(4)
    assert [r.fields["label"] for r in perturb_records(task, records, "swap", 0.5, 3).records] == \
           [r.fields["label"] for r in records]


def test_ner_runs_take_perturbations_but_not_the_attack(ner_run, ner_data):
    metrics = lmtune.evaluate(ner_run.root, ner_data["validation"], quiet=True, perturb="typo,swap")
    rows = metrics["robustness"]["rows"]
    assert [r["perturbation"] for r in rows] == ["clean", "typo", "swap"]
    assert metrics["robustness"]["metric"] == "f1" and rows[0]["value"] == metrics["f1"]
    assert rows[1]["examples_changed"] > 0.5
    with pytest.raises(ConfigError, match="single-label classification runs; this ner run cannot be "
                                          "attacked.*--perturb"):
        lmtune.evaluate(ner_run.root, ner_data["validation"], quiet=True, attack=True)


# ---- the attack's algorithm on a scripted classifier ------------------------------------------
class CountingClassifier:
    """A Predictor stand-in: logits [negative words, positive words + 0.5], so one opposite
    word lowers the positive probability and two flip it. Counts the calls to logits."""

    POSITIVE, NEGATIVE = {"good", "great", "fine"}, {"bad", "awful", "boring"}

    def __init__(self):
        self.task = make_task("classification")
        self.task.labels = ["neg", "pos"]
        self.cfg, self.labels, self.calls = self.task.cfg, ["neg", "pos"], 0

    def logits(self, records, with_labels=False):
        self.calls += 1
        rows = []
        for r in records:
            words = r.fields["text"].split()
            rows.append(np.array([sum(w in self.NEGATIVE for w in words),
                                  sum(w in self.POSITIVE for w in words) + 0.5]))
        features = [{"labels": self.labels.index(r.fields["label"])} for r in records] if with_labels else []
        return rows, Encoded(features, records)


TEN_WORDS = "good great film plot story acting movie ending really the"


def _attack(text: str, cap: float, synonyms=None):
    predictor = CountingClassifier()
    record = Record({"text": text, "label": "pos"}, "x.csv", 2)
    report, rows = run_attack(predictor, [record], synonyms or StubSynonyms(), AttackSettings(cap=cap))
    return predictor, report, rows


def test_the_attack_changes_the_most_important_words_until_the_prediction_flips():
    predictor, report, rows = _attack(TEN_WORDS, cap=0.2)  # ten words: two may change
    assert report["succeeded"] == 1 and report["success_rate"] == 1.0
    row = rows[0]
    assert row["changed"] == [[0, "good", "bad"], [1, "great", "awful"]]
    assert row["adversarial_text"] == "bad awful film plot story acting movie ending really the"
    assert row["original"]["label"] == "pos" and row["adversarial"]["label"] == "neg"
    assert row["label"] == "pos" and row["share_changed"] == 0.2
    # 1 first prediction + 6 deletions (the words with synonyms; "the" is a stop word) + 2 + 1
    assert report["queries_per_example"] == 1 + 6 + 2 + 1
    assert predictor.calls == 4  # first prediction, all deletions at once, one batch per word


def test_the_attack_stops_at_its_cap():
    predictor, report, rows = _attack(TEN_WORDS, cap=0.1)  # one word may change: not enough
    assert (report["attacked"], report["succeeded"], rows) == (1, 0, [])
    assert report["attack_accuracy"] == report["clean_accuracy"] == 1.0
    predictor, report, rows = _attack("good great film", cap=0.01)  # at least one word, whatever the cap
    assert report["succeeded"] == 0 and report["queries_per_example"] == 1 + 3 + 2  # good -> bad or fine


def test_the_attack_skips_wrong_predictions_and_words_without_synonyms():
    predictor = CountingClassifier()
    records = [Record({"text": "bad film", "label": "pos"}, "x.csv", 2),  # wrong already
               Record({"text": "good acting", "label": "pos"}, "x.csv", 3)]
    report, rows = run_attack(predictor, records, StubSynonyms({"good": ["good", "fine"]}),
                              AttackSettings(cap=1.0))
    assert (report["rows"], report["attacked"], report["succeeded"]) == (2, 1, 0)
    assert report["clean_accuracy"] == 0.5 and report["queries_per_example"] == 1 + 1 + 1


def test_words_of_a_text_pair_are_read_and_rewritten_through_the_task():
    from lmtune.evaluation.robustness import editable_words, with_words

    task = make_task("classification", **{"data.text_pair_column": "pair"})
    record = Record({"text": "good  film", "pair": "a dull plot", "label": "pos"}, "x.csv", 2)
    fields, protected = editable_words(task, record)
    assert fields == [["good", "film"], ["a", "dull", "plot"]] and protected == [[False] * 2, [False] * 3]
    swapped = with_words(task, record, [["good", "film"], ["a", "lovely", "plot"]])
    assert swapped.fields == {"text": "good  film", "pair": "a lovely plot", "label": "pos"}
    shorter = with_words(task, record, [["film"], fields[1]], [0, None])
    assert (shorter.fields["text"], shorter.fields["pair"]) == ("film", "a dull plot")


# ---- the attack on a trained run --------------------------------------------------------------
def test_attack_rows_stay_within_the_cap_and_keep_their_labels(trained_run, toy_data):
    cap = 0.3
    metrics = lmtune.evaluate(trained_run.root, toy_data["validation"], quiet=True, attack=True,
                              attack_cap=cap, synonyms=StubSynonyms())
    report = metrics["attack"]
    out = trained_run.root / "eval" / "dev"
    rows = [json.loads(line) for line in (out / "attack.jsonl").read_text().splitlines()]
    assert json.loads((out / "attack.json").read_text()) == report
    gold = _labels_by_line(toy_data["validation"])
    assert rows and report["succeeded"] == len(rows)
    for row in rows:
        before, after = row["text"].split(), row["adversarial_text"].split()
        differing = [[i, a, b] for i, (a, b) in enumerate(zip(before, after)) if a != b]
        assert len(before) == len(after) and differing == row["changed"]
        assert 1 <= len(differing) <= max(1, math.floor(cap * len(before)))
        assert row["label"] == gold[row["line"]] == row["original"]["label"] != row["adversarial"]["label"]
    assert report["rows"] == 60 and report["clean_accuracy"] == metrics["accuracy"]
    assert report["attacked"] == round(metrics["accuracy"] * 60)
    assert report["success_rate"] == pytest.approx(len(rows) / report["attacked"])
    assert report["attack_accuracy"] == pytest.approx((report["attacked"] - len(rows)) / 60)
    assert report["words_changed"] == pytest.approx(np.mean([len(r["changed"]) / len(r["text"].split())
                                                             for r in rows]))


def test_attack_limit_draws_a_seeded_sample(trained_run, toy_data):
    def lines(seed):
        metrics = lmtune.evaluate(trained_run.root, toy_data["validation"], quiet=True, attack=True, limit=7,
                                  seed=seed, synonyms=StubSynonyms())
        assert (metrics["attack"]["rows"], metrics["attack"]["sampled"]) == (7, True)
        out = trained_run.root / "eval" / "dev" / "attack.jsonl"
        return [json.loads(line)["line"] for line in out.read_text().splitlines()]

    assert lines(0) == lines(0) != lines(5)


# ---- the command line ---------------------------------------------------------------------------
def test_cli_perturb_and_attack(trained_run, toy_data, capsys):
    data = str(toy_data["validation"])
    assert main(["evaluate", str(trained_run.root), "--data", data, "--perturb", "typo,case",
                 "--perturb-rate", "0.2", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "robustness (rate 0.2, seed 2)" in out and "typo" in out and "examples changed" in out
    table = json.loads((trained_run.root / "eval" / "dev" / "robustness.json").read_text())
    assert (table["rate"], table["seed"], len(table["rows"])) == (0.2, 2, 3)
    assert main(["evaluate", str(trained_run.root), "--data", data, "--attack", "--limit", "5",
                 "--synonyms", "embeddings", "--attack-cap", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "synonyms: embeddings" in out and "a random sample of 5 of 60 rows" in out
    assert "attack success rate" in out and "cap 0.5 of the words" in out


@pytest.mark.parametrize("flags, message", [
    (["--perturb", "typos,case"], "unknown perturbation 'typos'; choose from typo, case, punct, synonym, swap"),
    (["--perturb", "typo", "--perturb-rate", "0"], "--perturb-rate 0.0: give a share of the words in (0, 1]"),
    (["--perturb", "typo", "--perturb-rate", "1.5"], "--perturb-rate 1.5: give a share"),
    (["--attack", "--attack-cap", "1.5"], "--attack-cap 1.5: give a share of the words in (0, 1]"),
    (["--attack", "--attack-candidates", "0"], "--attack-candidates 0: give a whole number of at least 1"),
    (["--perturb", "typo", "--limit", "3"], "--limit applies to --zero-shot"),
    (["--zero-shot", "--perturb", "typo"], "they do not apply to --zero-shot"),
])
def test_cli_bad_values_are_clear_errors(tmp_path, flags, message, capsys):
    # Checked before any model loads: the run folder need not exist.
    assert main(["evaluate", str(tmp_path / "no-run"), "--data", "dev.csv", *flags]) == 2
    assert message in capsys.readouterr().err


def test_cli_attack_on_an_ner_run_suggests_perturb(ner_run, ner_data, capsys):
    assert main(["evaluate", str(ner_run.root), "--data", str(ner_data["validation"]), "--attack"]) == 2
    err = capsys.readouterr().err
    assert "this ner run cannot be attacked" in err and "--perturb" in err
