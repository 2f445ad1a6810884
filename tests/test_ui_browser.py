"""`lmtune ui` in a real browser: Playwright (PyPI) driving Debian's Chromium (/usr/bin/chromium;
Playwright's own browser download cannot be reached). One server (uvicorn in a thread) and one
browser for the module. These tests fail, not skip, when Chromium or Playwright is missing
(`make test` installs both); LMTUNE_SKIP_BROWSER=1 skips them on purpose.

Screenshots go to tests/artifacts/ui/; LMTUNE_UI_SCREENSHOTS=docs/ui also writes the README's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from ui_fixtures import write_fixture_runs

if os.environ.get("LMTUNE_SKIP_BROWSER") == "1":
    pytest.skip("LMTUNE_SKIP_BROWSER=1", allow_module_level=True)

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

# A tiny training, slowed down so the page can watch it: evaluations twice an epoch.
TRAINING = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from conftest import make_tiny_model, tiny_config, toy_rows, write_csv
    from lmtune import finetune
    from lmtune.training.callbacks import Callback

    class Slow(Callback):
        def on_step(self, row, control):
            time.sleep(0.25)

    work = Path({work!r})
    data = {{"train": write_csv(work / "train.csv", toy_rows(160, 1)), "validation": write_csv(work / "dev.csv", toy_rows(40, 2))}}
    cfg = tiny_config(make_tiny_model(work / "model"), data, {runs!r}, run_name="live", epochs=3, evals_per_epoch=2)
    finetune(cfg, callbacks=[Slow()], quiet=True)
""")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    docs = os.environ.get("LMTUNE_UI_SCREENSHOTS")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(docs) / f"{name}.png"), type="png")


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    return write_fixture_runs(tmp_path_factory.mktemp("ui-browser") / "runs")


@pytest.fixture(scope="module")
def server(runs_root):
    import uvicorn

    from lmtune.ui import create_ui_app

    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(create_ui_app(runs_root), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    assert instance.started, "the dashboard did not start"
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: apt-get install -y chromium (make test does), or LMTUNE_SKIP_BROWSER=1 to skip")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    yield context.new_page()
    context.close()


def metric_column(page) -> list[str]:
    return page.locator("#runs tbody td.metric").evaluate_all("cells => cells.map(c => c.dataset.value)")


def test_sort_open_run_and_click_a_confusion_cell(page, server):
    page.goto(server + "/")
    page.click("#metric-col")  # numbers: best first
    values = [float(v) for v in metric_column(page) if v]
    assert values == sorted(values, reverse=True) and values[0] == 0.86
    shot(page, "runs")
    page.click("#runs tbody tr:first-child td:nth-child(2) a")
    page.wait_for_selector("table.confusion")
    assert "clf-b" in page.title()
    shot(page, "run")
    page.click('table.confusion a[data-gold="pos"][data-predicted="neg"]')
    page.wait_for_selector("#examples")
    items = page.locator("li.example")
    assert items.count() >= 1
    golds = page.locator("li.example b.gold").all_inner_texts()
    predicted = page.locator("li.example b.predicted").all_inner_texts()
    assert set(golds) == {"pos"} and set(predicted) == {"neg"}
    losses = [float(x) for x in page.locator("li.example").evaluate_all("els => els.map(e => e.dataset.loss)")]
    assert losses == sorted(losses, reverse=True)
    assert page.locator("li.example .bars .bar-row").count() >= 2
    shot(page, "errors")


def test_select_two_runs_and_compare_shows_two_curves(page, server):
    page.goto(server + "/")
    page.check('input[value="clf-a"]')
    page.check('input[value="clf-b"]')
    page.click("#compare")
    page.wait_for_selector("#deltas")
    first_chart = page.locator("#curves svg.chart").first
    assert first_chart.locator("path.series").count() == 2
    shot(page, "compare")


def test_studies_and_sequences_pages_from_the_menu(page, server):
    page.goto(server + "/")
    page.click('nav a[href="/studies"]')
    page.wait_for_selector("section.study")
    assert "best trial 0" in page.locator("p.best").inner_text()
    assert page.locator("section.study tr.best a").inner_text() == "0"  # the best trial links to its run
    shot(page, "studies")
    page.click('nav a[href="/sequences"]')
    page.wait_for_selector("table.matrix")
    cells = page.locator("table.matrix td.cell").all_inner_texts()
    assert cells == ["0.900", "", "0.700", "0.880"]
    shot(page, "sequences")


def test_ner_errors_highlight_entities(page, server):
    page.goto(server + "/runs/ner-run/errors")
    gold = page.locator("li.example .gold-text mark")
    assert gold.count() == 3 and gold.nth(2).get_attribute("data-label") == "location"
    assert page.locator("li.example .predicted-text mark").nth(1).inner_text().startswith("bob")
    shot(page, "errors-ner")


def test_a_running_training_shows_new_steps_without_a_reload(page, server, runs_root, tmp_path):
    code = TRAINING.format(tests=str(ROOT / "tests"), work=str(tmp_path), runs=str(runs_root))
    training = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path,
                                env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})
    try:
        log = runs_root / "live" / "train_log.jsonl"
        deadline = time.time() + 90
        while not (log.is_file() and log.read_text().count("\n") >= 2) and time.time() < deadline:
            assert training.poll() is None, "the training ended before the page could watch it"
            time.sleep(0.2)
        page.goto(server + "/runs/live")
        assert page.locator("#run-status").inner_text() == "running"
        page.evaluate("window.sameDocument = true")
        before = page.locator("#log tbody tr").count()
        page.wait_for_function(f"document.querySelectorAll('#log tbody tr').length > {before} + 2", timeout=60_000)
        page.wait_for_selector("#log tbody tr.eval.live", timeout=60_000)  # an evaluation as it arrived
        assert page.evaluate("window.sameDocument") is True  # no reload happened
        shot(page, "live")
        assert training.wait(120) == 0
        page.wait_for_function("document.getElementById('run-status').textContent === 'finished'", timeout=20_000)
    finally:
        if training.poll() is None:
            training.kill()
    page.goto(server + "/runs/live/try")
    page.fill("#text", "a great film")
    page.click("#predict")
    page.wait_for_selector("#prediction", timeout=60_000)
    assert '"label"' in page.locator("#prediction").inner_text()
    shot(page, "try")
