"""The continual-learning report: metrics from an accuracy matrix, its tables and its heatmap."""

from __future__ import annotations

import pytest

from lmtune.experiments.continual.report import comparison_table, format_matrix, heatmap, transfer_metrics

# R[i][j]: accuracy on step j's test set after training step i.
R = [[0.90, 0.20, 0.10],
     [0.95, 0.80, 0.30],
     [0.60, 0.75, 0.85]]
BASELINE = [0.10, 0.15, 0.20]  # each step's score with no training at all
NAMES = ["a", "b", "c"]


def test_metrics_of_a_hand_written_matrix():
    m = transfer_metrics(R, BASELINE)
    assert m["average_accuracy"] == pytest.approx((0.60 + 0.75 + 0.85) / 3)
    assert m["average_accuracy_per_step"] == pytest.approx([0.90, (0.95 + 0.80) / 2, (0.60 + 0.75 + 0.85) / 3])
    assert m["learning_accuracy"] == pytest.approx((0.90 + 0.80 + 0.85) / 3)
    # BWT: last row minus the diagonal, over the steps before the last.
    assert m["backward_transfer"] == pytest.approx(((0.60 - 0.90) + (0.75 - 0.80)) / 2)  # -0.175
    # Forgetting: best earlier score minus the last one; step a peaked after b (0.95), not after a.
    assert m["forgetting"] == pytest.approx(((0.95 - 0.60) + (0.80 - 0.75)) / 2)  # 0.2
    # FWT: the score just before a step is trained, minus its baseline.
    assert m["forward_transfer"] == pytest.approx(((0.20 - 0.15) + (0.30 - 0.20)) / 2)  # 0.075


def test_cells_not_computed_are_skipped():
    holes = [[0.90, None, None],
             [None, 0.80, None],
             [0.60, 0.75, 0.85]]
    m = transfer_metrics(holes, BASELINE)
    assert m["forward_transfer"] is None  # no R[j-1][j] at all
    assert m["average_accuracy_per_step"] == pytest.approx([0.90, 0.80, (0.60 + 0.75 + 0.85) / 3])
    assert m["forgetting"] == pytest.approx(((0.90 - 0.60) + (0.80 - 0.75)) / 2)
    assert transfer_metrics(R)["forward_transfer"] is None  # no baseline
    assert transfer_metrics(R, [None, None, 0.25])["forward_transfer"] == pytest.approx(0.30 - 0.25)


def test_a_single_step_has_no_transfer():
    m = transfer_metrics([[0.8]], [0.5])
    assert m["average_accuracy"] == pytest.approx(0.8)
    assert m["learning_accuracy"] == pytest.approx(0.8)
    assert m["average_accuracy_per_step"] == pytest.approx([0.8])
    assert m["backward_transfer"] is None and m["forgetting"] is None and m["forward_transfer"] is None


def test_missing_entries_and_bad_shapes_are_named():
    missing_diagonal = [[0.9, None], [0.7, None]]
    with pytest.raises(ValueError, match=r"R\[1\]\[1\].*missing"):
        transfer_metrics(missing_diagonal)
    with pytest.raises(ValueError, match=r"R\[1\]\[0\].*after the last step"):
        transfer_metrics([[0.9, None], [None, 0.8]])
    with pytest.raises(ValueError, match="row 1 has 1 entries, expected 2"):
        transfer_metrics([[0.9, 0.1], [0.8]])
    with pytest.raises(ValueError, match="empty"):
        transfer_metrics([])
    with pytest.raises(ValueError, match="baseline has 2 entries, expected 3"):
        transfer_metrics(R, [0.1, 0.2])
    with pytest.raises(ValueError, match="2 step names"):
        format_matrix(R, ["a", "b"])


def test_format_matrix_shows_cells_and_summary():
    holes = [[0.9, None], [0.7, 0.8]]
    text = format_matrix(holes, ["first", "second"], title="Sequential")
    lines = text.splitlines()
    assert lines[0] == "## Sequential"
    assert "| trained \\ tested | first | second |" in lines
    assert "| after first | 0.9000 |  |" in lines  # a blank for the cell not computed
    assert "| after second | 0.7000 | 0.8000 |" in lines
    assert "- average accuracy: 0.7500" in lines
    assert "- BWT: -0.2000" in lines
    assert "- forgetting: 0.2000" in lines
    assert "- FWT: n/a" in lines
    assert "- FWT: 0.0750" in format_matrix(R, NAMES, baseline=BASELINE)


def test_comparison_table_prints_values_and_na():
    rows = {"sequential": {**transfer_metrics(R), "seconds": 12.345, "peak_rss_mb": 800.04},
            "replay": {"average_accuracy": 0.8, "stored": "400 examples | quota"}}
    lines = comparison_table(rows).splitlines()
    assert lines[0] == ("| strategy | average accuracy | BWT | forgetting | FWT | training seconds "
                        "| peak memory MB | stored |")
    assert lines[2] == "| sequential | 0.7333 | -0.1750 | 0.2000 | n/a | 12.3 | 800.0 | n/a |"
    assert lines[3] == "| replay | 0.8000 | n/a | n/a | n/a | n/a | n/a | 400 examples \\| quota |"


def test_heatmap_writes_a_png(tmp_path):
    holes = [[0.9, None, None], [0.7, 0.8, None], [0.6, 0.75, 0.85]]
    path = heatmap(holes, NAMES, tmp_path / "plots" / "matrix.png", title="Sequential")
    assert path == tmp_path / "plots" / "matrix.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
