"""report.html: built from a real run, opened in a real headless Chromium (Debian's package,
driven by Playwright, no browser download), with every request that leaves the file blocked."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from handgrad.cli.main import main as cli_main
from handgrad.train import layer_stats as ls
from handgrad.train import records as rec
from handgrad.train.report_page import REPORT, build_report, write_report
from tests.doctor_runs import cli_run
from tests.train_fixtures import one_thread  # noqa: F401

try:
    import plotly  # noqa: F401
except ImportError:  # in CI the report extra must be installed; elsewhere skip
    if os.environ.get("CI"):
        raise ImportError("tests need the report extra: pip install -e '.[report]'") from None
    pytest.skip("the report extra (plotly) is not installed", allow_module_level=True)

SECTIONS = ("doctor", "curves", "layers", "confusion", "mistakes", "config")
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "runs"
    path = cli_run(out, "--epochs", "3", "--bias-std", "10")  # a run with a finding
    return path


def test_page_is_self_contained_without_layers_or_model(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "784-10", "loss": "cross_entropy"}))
    m = {"step": 0, "train_loss": 2.3, "train_error": 0.9, "batch_loss": None}
    (run / "metrics.jsonl").write_text(json.dumps(m) + "\n")
    page = build_report(run)
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page
    assert "recorded no per-layer statistics" in page
    assert "could not be evaluated" in page
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", page)  # nothing fetched


def test_report_command(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["report", str(run)]) == 0
    assert (run / REPORT).stat().st_size > 1_000_000  # plotly.js inlined
    assert "wrote" in capsys.readouterr().out
    assert cli_main(["report", str(run.parent / "nowhere")]) == 2


def _browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing: .ci/run must apt-get install chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright missing: pip install -e '.[dev]' (never 'playwright install')")
        pytest.skip("pip install playwright")
    return sync_api


def test_page_in_headless_chromium(run: Path) -> None:
    sync_api = _browser()
    page_path = write_report(run)
    metrics = rec.read_metrics(run)
    layers = ls.by_layer(ls.read_layers(run))
    errors: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r) -> None:
                if r.request.url.startswith("file://"):
                    r.continue_()
                else:
                    outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(page_path.resolve().as_uri())
            page.wait_for_selector("#colorful-dimension .main-svg")
            for sid in SECTIONS:
                assert page.locator(f"section#{sid}").is_visible(), sid
            assert "dead_units" in page.locator("#doctor").inner_text()

            def data(div: str) -> list[dict]:
                return page.evaluate(
                    f"""() => document.getElementById('{div}').data.map(t => ({{
                        name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || []),
                        z: t.z, customdata: t.customdata, visible: t.visible}}))"""
                )

            curves = {t["name"]: t for t in data("curves-chart")}
            assert curves["train_loss"]["x"] == [r["step"] for r in metrics]
            assert curves["train_loss"]["y"] == pytest.approx([r["train_loss"] for r in metrics])
            assert curves["test_error"]["y"] == pytest.approx([r["test_error"] for r in metrics])

            heat = data("colorful-dimension")
            assert [t["name"] for t in heat] == [ls.label(rs[0]) for rs in layers.values()]
            first = layers["0"]
            assert heat[0]["x"] == [r["step"] for r in first]
            assert heat[0]["customdata"] == [
                [r["hist"][k] for r in first] for k in range(ls.HIST_BINS)
            ]
            assert [t["visible"] for t in heat][:2] == [False, True]  # the first activation
            # the layer picker: choose "0 (Linear)" and only its heat map is shown
            page.locator("#colorful-dimension .updatemenu-header-group").click()
            page.locator("#colorful-dimension .updatemenu-dropdown-button-group").get_by_text(
                "0 (Linear)"
            ).click()
            page.wait_for_timeout(300)
            shown = [t["visible"] for t in data("colorful-dimension")]
            assert shown[0] is True and shown.count(True) == 1

            dead = {t["name"]: t for t in data("dead-saturated")}
            assert dead["1 (ReLU) dead"]["y"] == pytest.approx([r["dead"] for r in layers["1"]])
            ratios = {t["name"]: t for t in data("update-ratios")}
            assert ratios["0.weight"]["y"] == pytest.approx(
                [r["params"]["weight"]["update_ratio"] for r in layers["0"]]
            )
            (confusion,) = data("confusion-chart")
            total = sum(map(sum, confusion["z"]))
            assert total == 1000  # the fleuret preset's test records
            correct = sum(confusion["z"][i][i] for i in range(10))
            assert correct / total == pytest.approx(1 - metrics[-1]["test_error"])
            assert len(data("mistakes-chart")) == 12
        finally:
            browser.close()
    assert errors == []
    assert outside == []


def test_screenshot_script(run: Path, tmp_path: Path) -> None:
    _browser()
    import runpy
    import sys

    png = tmp_path / "shot.png"
    argv = sys.argv
    sys.argv = ["report_screenshot.py", str(run), "--png", str(png)]
    try:
        runpy.run_path(
            str(Path(__file__).parents[1] / "bench" / "report_screenshot.py"), {}, "__main__"
        )
    finally:
        sys.argv = argv
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
