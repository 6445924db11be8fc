"""The report and the MLflow UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright). Screenshots are kept in reports/test-artifacts/.

Locally these tests skip when Chromium or Playwright is absent; with CI set they fail instead,
so CI cannot pass without running them (`.ci/run` installs Chromium).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow_fixtures import log_fake_run, log_fake_sweep

from harness.report.page import SECTIONS, build_report
from harness.suite.load import load_suite

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "reports" / "test-artifacts"
CHROMIUM = Path(os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LAPTOP = {"width": 1366, "height": 768}
EXPERIMENT = "fer-study"
SERVER_START_S = 180  # mlflow server needs ~45 s to start on a loaded 2-core machine

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _require_browser() -> None:
    problems = []
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed (pip install -e '.[dev]')")
    if not problems:
        return
    if _in_ci():
        pytest.fail("browser tests must run in CI: " + "; ".join(problems))
    pytest.skip("; ".join(problems))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser-report")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    for index, (name, model, sampler, quality) in enumerate(
        (
            ("cnn_baseline", "cnn", "natural", 0.35),
            ("cnn_residual", "resnet", "natural", 0.5),
            ("cnn_residual_balanced", "resnet", "balanced", 0.5),
            ("resnext", "resnext", "natural", 0.36),
        )
    ):
        for train_seed in (0, 1):
            log_fake_run(
                uri, EXPERIMENT, name, model=model, sampler=sampler, quality=quality,
                paper_iteration=str(index + 1), train_seed=train_seed, seed=10 * index + train_seed,
                comparisons=("imbalance", "architecture"),
            )  # fmt: skip
    log_fake_sweep(uri, EXPERIMENT, "lr-search")
    claims = load_suite(Path(__file__).resolve().parents[1] / "experiments.yaml").claims
    return build_report(uri, EXPERIMENT, root / "index.html", claims=claims).out_path


def test_report_renders_every_plot_offline_without_console_errors(
    browser: Any, report_file: Path
) -> None:
    context = browser.new_context(viewport=LAPTOP, offline=True)
    requested: list[str] = []

    def only_the_file(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            requested.append(url)
            route.abort()

    context.route("**/*", only_the_file)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(report_file.as_uri(), wait_until="load")
        expected = report_file.read_text(encoding="utf-8").count("Plotly.newPlot(")
        assert expected >= 10
        page.wait_for_function(
            """n => { const divs = [...document.querySelectorAll('.plotly-graph-div')];
                      return divs.length === n && divs.every(d => d.querySelector('svg.main-svg')); }""",
            arg=expected,
            timeout=60_000,
        )
        rendered = page.evaluate(
            "() => [...document.querySelectorAll('.plotly-graph-div')]"
            ".filter(d => d.querySelectorAll('svg.main-svg g.trace, svg.main-svg g.hm').length > 0).length"
        )
        assert rendered == expected, "a plot container has an SVG but draws nothing"
        # Every contents link points at a section on the page; nothing scrolls sideways on a laptop.
        targets = page.evaluate(
            "() => [...document.querySelectorAll('nav#contents a')]"
            ".map(a => [a.getAttribute('href'), !!document.querySelector(a.getAttribute('href'))])"
        )
        assert [href for href, _ in targets] == [f"#{anchor}" for anchor, _ in SECTIONS]
        assert all(found for _, found in targets)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(ARTIFACTS / "report-top.png"))
        page.locator("#claims").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "report-claims.png"))
        page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
    finally:
        context.close()
    assert requested == [], f"the report tried to fetch {requested[:3]}"
    assert errors == []


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """An `mlflow server` on 127.0.0.1 over a store holding one fake training run."""
    _require_browser()
    root = tmp_path_factory.mktemp("mlflow-server")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run_id = log_fake_run(uri, EXPERIMENT, "cnn_baseline")
    from mlflow import MlflowClient

    experiment_id = MlflowClient(tracking_uri=uri).get_experiment_by_name(EXPERIMENT).experiment_id
    port = _free_port()
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [mlflow, "server", "--backend-store-uri", uri, "--default-artifact-root",
         str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base + "/health", server, root / "server.log")
        yield base, experiment_id, run_id
    finally:
        os.killpg(server.pid, 15)  # its own session: the server and its uvicorn worker
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        log.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer {url} within {SERVER_START_S} s")


def test_mlflow_ui_shows_the_experiment_and_a_confusion_matrix(
    browser: Any, mlflow_server: tuple[str, str, str]
) -> None:
    base, experiment_id, run_id = mlflow_server
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    try:
        page.goto(f"{base}/#/experiments/{experiment_id}/runs")
        page.get_by_text(EXPERIMENT, exact=True).first.wait_for(timeout=90_000)
        page.get_by_text("cnn_baseline", exact=True).first.wait_for(timeout=90_000)
        page.screenshot(path=str(ARTIFACTS / "mlflow-experiment.png"))

        page.goto(
            f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/eval/confusion_matrix.json"
        )
        page.get_by_text("confusion_matrix.json", exact=True).first.wait_for(timeout=90_000)
        # The file's content, not just its name: the viewer shows the JSON with its class names.
        page.get_by_text('"labels"').first.wait_for(timeout=90_000)
        page.get_by_text('"contempt"').first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "mlflow-confusion-matrix.png"))
    finally:
        context.close()
