"""Active learning (`lmtune active`): the strategies on hand-made probabilities, the cold start's
spread, and the loop over tiny runs: never asking for a labeled or pending row, resuming from a
half-filled file, simulation with its learning curve, and the refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config, toy_rows, write_csv
from lmtune.cli import main
from lmtune.config import ConfigError
from lmtune.data.records import DataError
from lmtune.experiments.active import ID_COLUMN, active, breaking_ties, diverse_rows, entropy, random_rows


# ---- strategies ------------------------------------------------------------------------------
def test_breaking_ties_picks_the_smallest_top_two_margins():
    probs = np.array([[0.90, 0.05, 0.05],   # margin .85
                      [0.40, 0.35, 0.25],   # .05
                      [0.50, 0.50, 0.00],   # 0
                      [0.30, 0.60, 0.10],   # .30 (top two not in column order)
                      [0.10, 0.15, 0.75]])  # .60
    assert breaking_ties(probs, 3, np.random.default_rng(0)).tolist() == [2, 1, 3]


def test_entropy_picks_the_flattest_rows_and_random_is_seeded_and_distinct():
    probs = np.array([[0.98, 0.02], [0.5, 0.5], [0.7, 0.3], [0.9, 0.1]])
    assert entropy(probs, 2, np.random.default_rng(0)).tolist() == [1, 2]
    a = random_rows(np.zeros((50, 2)), 10, np.random.default_rng(3))
    assert len(set(a.tolist())) == 10
    assert a.tolist() == random_rows(np.zeros((50, 2)), 10, np.random.default_rng(3)).tolist()


def test_cold_start_takes_one_row_nearest_each_cluster():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 10
    embeddings = np.concatenate([c + rng.normal(0, 0.1, (10, 4)) for c in centres])  # rows 0-9 near centre 0, ...
    chosen = diverse_rows(embeddings, 4, seed=0)
    assert len(set(chosen)) == 4
    assert sorted(i // 10 for i in chosen) == [0, 1, 2, 3]  # one per cluster
    assert len(set(diverse_rows(embeddings[:3], 5))) == 3  # never more rows than the pool has


# ---- the loop over tiny runs -----------------------------------------------------------------
@pytest.fixture
def setup(tiny_model, toy_data, tmp_path):
    cfg = tiny_config(tiny_model, toy_data, tmp_path / "unused", epochs=1)
    cfg.data.validation = None
    rows = toy_rows(120, seed=7)
    pool = write_csv(tmp_path / "pool.csv", [(t,) for t, _ in rows[:60]], header=("text",))
    gold = {t: label for t, label in rows[:60]}
    seed = write_csv(tmp_path / "seed.csv", rows[100:120])
    return {"cfg": cfg, "pool": pool, "gold": gold, "seed": seed, "dir": tmp_path / "active", "tmp": tmp_path}


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _fill(path: Path, gold: dict[str, str], how_many: int) -> list[int]:
    """Label the first `how_many` rows of a to_label.csv from the gold labels, write the rows back
    in reverse order (ids must match whatever the order); returns the ids filled."""
    rows = _read(path)
    for row in rows[:how_many]:
        row["label"] = gold[row["text"]]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(reversed(rows))
    return [int(r[ID_COLUMN]) for r in rows[:how_many]]


def test_the_loop_never_asks_twice_and_resumes_from_a_half_filled_file(setup):
    s = setup
    state = active(s["cfg"], s["pool"], s["dir"], labeled=s["seed"], batch=5, quiet=True)
    first = s["dir"] / "round-001" / "to_label.csv"
    rows = _read(first)
    assert list(rows[0]) == [ID_COLUMN, "text", "label"] and all(r["label"] == "" for r in rows)
    assert state["rounds"][0]["labels_used"] == 20 and (s["dir"] / "round-001" / "run" / "model").is_dir()
    filled = _fill(first, s["gold"], 3)

    state = active(s["cfg"], s["pool"], s["dir"], labeled=s["seed"], batch=5, quiet=True)
    assert sorted(map(int, state["labels"])) == sorted(filled)
    pending = state["rounds"][0]["pending"]
    assert len(pending) == 2 and not set(pending) & set(filled)
    second = state["rounds"][1]
    assert second["labels_used"] == 23 and len(_read(s["dir"] / "round-002" / "train.csv")) == 23
    assert len(second["asked"]) == 5 and not set(second["asked"]) & (set(filled) | set(pending))

    # nothing new filled: no new round, nothing trained
    state = active(s["cfg"], s["pool"], s["dir"], labeled=s["seed"], batch=5, quiet=True)
    assert len(state["rounds"]) == 2

    _fill(s["dir"] / "round-002" / "to_label.csv", s["gold"], 5)
    state = active(s["cfg"], s["pool"], s["dir"], labeled=s["seed"], batch=5, quiet=True)
    asked = [i for r in state["rounds"] for i in r["asked"]]
    assert len(asked) == len(set(asked)) == 15  # no row asked twice over three rounds
    assert state["rounds"][0]["pending"] == pending  # still pending, never asked again
    assert json.loads((s["dir"] / "active.json").read_text()) == state


def test_a_label_outside_the_label_set_names_file_line_and_field(setup):
    s = setup
    active(s["cfg"], s["pool"], s["dir"], labeled=s["seed"], batch=3, quiet=True)
    path = s["dir"] / "round-001" / "to_label.csv"
    rows = _read(path)
    rows[1]["label"] = "maybe"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DataError, match=rf"to_label.csv:3: field 'label': label 'maybe' is not one of: neg, pos"):
        active(s["cfg"], s["pool"], s["dir"], labeled=s["seed"], batch=3, quiet=True)


def test_cold_start_asks_for_batch_distinct_rows_without_training(setup):
    s = setup
    empty = s["tmp"] / "empty.csv"
    empty.write_text("")
    state = active(s["cfg"], s["pool"], s["dir"], labeled=empty, batch=6, quiet=True)
    rows = _read(s["dir"] / "round-001" / "to_label.csv")
    assert len({r[ID_COLUMN] for r in rows}) == 6 and state["rounds"][0]["run"] is None
    assert not (s["dir"] / "round-001" / "run").exists()


def test_simulate_runs_rounds_from_gold_labels_and_draws_the_curve(setup, toy_data, capsys):
    s = setup
    gold_pool = write_csv(s["tmp"] / "gold.csv", list(s["gold"].items()))
    folder = s["tmp"] / "sims" / "bt"
    state = active(s["cfg"], gold_pool, folder, labeled=s["seed"], batch=8, simulate=True, rounds=2,
                   eval_file=toy_data["validation"])
    assert [r["labels_used"] for r in state["rounds"]] == [20, 28]
    assert all(0 <= r["accuracy"] <= 1 for r in state["rounds"])
    assert all(state["labels"][str(i)] == s["gold"][text] for i, text in enumerate(s["gold"], 1)
               if str(i) in state["labels"])
    assert (folder / "learning_curve.png").stat().st_size > 0
    table = (folder / "curve.md").read_text()
    assert "| labels | breaking-ties |" in table and "| 20 |" in table and "| 28 |" in table
    assert "| 28 |" in capsys.readouterr().out


@pytest.mark.parametrize("override", [("task", "ner"), ("task", "qa"), ("data.multi_label", "true")])
def test_tasks_without_one_label_per_input_refuse(setup, override):
    s = setup
    s["cfg"].override(*override)
    with pytest.raises(ConfigError, match="single-label classification"):
        active(s["cfg"], s["pool"], s["dir"], batch=5)


def test_cli_bad_input_ends_in_one_line(setup, capsys):
    s = setup
    base = ["active", "--model", str(s["cfg"].model.name), "--output-dir", str(s["dir"])]
    assert main([*base, "--pool", str(s["pool"]), "--batch", "0"]) == 2
    assert "--batch 0: ask for at least 1 row" in capsys.readouterr().err
    assert main([*base, "--pool", str(s["tmp"] / "nope.csv")]) == 2
    assert "--pool" in capsys.readouterr().err
    other = write_csv(s["tmp"] / "other.csv", [("x",)], header=("sentence",))
    assert main([*base, "--pool", str(other)]) == 2
    err = capsys.readouterr().err
    assert "other.csv" in err and "'text'" in err and "sentence" in err
    assert main([*base, "--pool", str(s["pool"]), "--rounds", "3"]) == 2
    assert "--simulate" in capsys.readouterr().err


def test_cli_cold_start_writes_the_batch_and_says_where(setup, capsys):
    s = setup
    code = main(["active", "--pool", str(s["pool"]), "--model", str(s["cfg"].model.name), "--max-length", "32",
                 "--output-dir", str(s["dir"]), "--batch", "4", "--train.epochs", "1"])
    path = s["dir"] / "round-001" / "to_label.csv"
    assert code == 0 and len(_read(path)) == 4
    assert str(path) in capsys.readouterr().out.replace("\n", "")
