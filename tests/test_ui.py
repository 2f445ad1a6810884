"""`lmtune ui` over plain HTTP (TestClient): every page on synthetic run folders, run names that
try to leave the runs folder, the API key, the errors page's order and filters, the live log."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")
from fastapi.testclient import TestClient  # noqa: E402

from lmtune.cli import main  # noqa: E402
from lmtune.ui import create_ui_app  # noqa: E402
from ui_fixtures import write_fixture_runs, write_run  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_fixture_runs(tmp_path_factory.mktemp("ui-runs") / "runs")


@pytest.fixture(scope="module")
def client(root) -> TestClient:
    return TestClient(create_ui_app(root))


@pytest.mark.parametrize("url, text", [
    ("/", "clf-b"), ("/runs/clf-a", "Confusion matrix"), ("/runs/clf-a/errors", "worst (highest loss) first"),
    ("/runs/clf-a/try", "Predict"), ("/runs/ner-run/errors", "<mark"), ("/runs/study:trial-000", "trial-000"),
    ("/compare?run=clf-a&run=clf-b", "Config differences"), ("/studies", "best trial 0"),
    ("/sequences", "0.880"), ("/static/ui.js", "followLog"), ("/static/ui.css", "mark"),
])
def test_every_page_renders(client, url, text):
    answer = client.get(url)
    assert answer.status_code == 200, answer.text[:500]
    assert text in answer.text


def test_runs_page_lists_differing_hyperparameters_and_filters(client):
    page = client.get("/").text
    assert "train.learning_rate" in page  # differs between runs: a column
    assert "train.epochs" not in page  # the same everywhere: no column
    kept = client.get("/", params={"filter": "accuracy>0.8"}).text
    assert 'href="/runs/clf-b"' in kept and 'href="/runs/clf-a"' not in kept
    words = client.get("/", params={"filter": "ner"}).text
    assert 'href="/runs/ner-run"' in words and 'href="/runs/clf-b"' not in words
    wrong = client.get("/", params={"filter": "acuracy>0.8"}).text
    assert "did you mean &#39;accuracy&#39;" in wrong


@pytest.mark.parametrize("rid", ["..:..", "study:..:..", "%2e%2e", "%2Fetc%2Fpasswd", "clf-a%2F..",
                                 "study:", ":clf-a", "nothing-here", "continual-seq", "clf-a%5C..", "~"])
def test_names_outside_the_runs_folder_are_404(client, rid):
    for suffix in ("", "/errors", "/try"):
        assert client.get(f"/runs/{rid}{suffix}").status_code == 404, (rid, suffix)
    assert client.get(f"/api/runs/{rid}/log").status_code == 404


@pytest.mark.parametrize("name", ["..", "../runs/clf-a", "/etc", "study/../..", "clf-a/..", "", ".", "a\\b"])
def test_run_under_refuses_names_that_leave_the_folder(root, name):
    # what an HTTP client would normalise away before sending (/runs/.. becomes /)
    from lmtune.experiments.runs import run_under

    with pytest.raises(FileNotFoundError):
        run_under(root, name)
    assert run_under(root, "study/trial-000") == root / "study" / "trial-000"


def test_a_symlink_leading_out_is_404(tmp_path):
    inside, outside = tmp_path / "runs", tmp_path / "secret"
    write_run(inside, "ok")
    write_run(outside, "target")
    (inside / "escape").symlink_to(outside / "target", target_is_directory=True)
    client = TestClient(create_ui_app(inside))
    assert client.get("/runs/ok").status_code == 200
    assert client.get("/runs/escape").status_code == 404
    assert "escape" not in client.get("/").text


def test_api_key_is_required_and_accepted(root):
    client = TestClient(create_ui_app(root, api_key="s3cret"))
    assert client.get("/").status_code == 401
    assert client.get("/", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/static/ui.js").status_code == 401
    assert client.get("/", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/runs/clf-a", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = client.get("/", params={"key": "s3cret"})  # a browser's first visit; then the cookie
    assert first.status_code == 200 and "key=s3cret" in first.headers["set-cookie"]
    assert client.get("/runs/clf-a/errors").status_code == 200
    client.cookies.clear()
    assert client.get("/runs/clf-a/errors").status_code == 401


def _losses(page: str) -> list[float]:
    return [float(x) for x in re.findall(r'data-loss="([0-9.]+)"', page)]


def test_errors_page_lists_wrong_examples_worst_first(client, root):
    rows = [json.loads(line) for line in (root / "clf-a/predictions/validation.jsonl").read_text().splitlines()]
    wrong = sorted((r["loss"] for r in rows if not r["correct"]), reverse=True)
    page = client.get("/runs/clf-a/errors").text
    assert _losses(page) == wrong
    cell = client.get("/runs/clf-a/errors", params={"gold": "pos", "predicted": "neg"}).text
    expected = sorted((r["loss"] for r in rows if r["gold"] == "pos" and r["predicted"] == "neg"), reverse=True)
    assert _losses(cell) == expected and expected
    everything = client.get("/runs/clf-a/errors", params={"gold": "pos", "predicted": "pos", "show": "all"}).text
    assert len(_losses(everything)) == sum(1 for r in rows if r["gold"] == r["predicted"] == "pos")


def test_confusion_cells_link_to_their_examples(client):
    page = client.get("/runs/clf-a").text
    assert 'href="/runs/clf-a/errors?gold=pos&amp;predicted=neg"' in page
    assert 'href="/runs/clf-a/errors?gold=neg&amp;predicted=neg&amp;show=all"' in page


def test_ner_errors_highlight_gold_and_predicted_entities(client):
    page = client.get("/runs/ner-run/errors").text
    assert re.search(r'<mark data-label="location"[^>]*>paris<sup>location</sup></mark>', page)  # gold
    assert re.search(r'<mark data-label="location"[^>]*>bob<sup>location</sup></mark>', page)  # predicted


def test_compare_shows_one_curve_per_run_and_deltas(client):
    page = client.get("/compare", params=[("run", "clf-a"), ("run", "clf-b")]).text
    assert len(re.findall(r'<path class="series" data-name="clf-[ab]"', page)) == 4  # metric + loss charts
    assert "+0.1500" in page  # accuracy 0.86 - 0.71
    assert client.get("/compare", params={"run": "clf-a"}).status_code == 400
    assert client.get("/compare", params=[("run", "clf-a"), ("run", "..")]).status_code == 404


def test_live_log_returns_only_complete_new_rows(tmp_path):
    folder = write_run(tmp_path / "runs", "live")
    client = TestClient(create_ui_app(tmp_path / "runs"))
    first = client.get("/api/runs/live/log").json()
    assert len(first["rows"]) == 44 and first["curves"]
    log = folder / "train_log.jsonl"
    with open(log, "a") as handle:
        handle.write(json.dumps({"kind": "eval", "step": 41, "accuracy": 0.95, "loss": 0.1}) + "\n" + '{"kind": "tr')
    update = client.get("/api/runs/live/log", params={"offset": first["offset"]}).json()
    assert [(r["kind"], r["step"], r["metric"]) for r in update["rows"]] == [("eval", 41, "0.9500")]
    assert client.get("/api/runs/live/log", params={"offset": update["offset"]}).json()["rows"] == []


def test_studies_and_sequences_appear_only_with_data(tmp_path, client):
    assert 'href="/studies"' in client.get("/").text
    write_run(tmp_path / "runs", "only")
    bare = TestClient(create_ui_app(tmp_path / "runs"))
    page = bare.get("/").text
    assert 'href="/studies"' not in page and 'href="/sequences"' not in page
    assert bare.get("/studies").status_code == 404 and bare.get("/sequences").status_code == 404


def test_cli_names_a_missing_runs_folder(tmp_path, capsys):
    assert main(["ui", "--runs", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_cli_refuses_a_file_a_bad_port_and_a_busy_one(tmp_path, capsys):
    import socket

    (tmp_path / "runs.txt").write_text("")
    assert main(["ui", "--runs", str(tmp_path / "runs.txt")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["ui", "--runs", str(tmp_path), "--port", "99999"]) == 2
    assert "--port must be in [0, 65535], got 99999" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--runs", str(tmp_path), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
