"""Snakemake's report, as a person sees it: a tiny sweep through the real workflow, `snakemake --report`,
then the HTML opened offline in headless Chromium (Debian `chromium`, driven by `playwright`).

Skipped when Chromium or playwright is missing, unless LEDSWEEP_REQUIRE_BROWSER=1 (as in CI), which
turns the skip into a failure. Never run `playwright install`: the system Chromium is used.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from conftest import TINY_SWEEP, copy_tree
from workflow_helpers import LOCAL, make_workdir, snakemake

pytestmark = pytest.mark.slow
SWEEP = TINY_SWEEP
RUNS = ["tiny_lr0.001_seed1", "tiny_lr0.001_seed2", "tiny_lr0.002_seed1", "tiny_lr0.002_seed2"]
CHROMIUM = os.environ.get("LEDSWEEP_CHROMIUM", "/usr/bin/chromium")
PLOTS = [
    *(f"results/{r}/plots/loss.png" for r in RUNS),
    "results/sweeps/tiny/rougeL_vs_training.learning_rate.png",
    "results/sweeps/tiny/loss_curves.png",
    "results/sweeps/tiny/comparison.html",
]


def browser_or_skip():
    """playwright's sync API, or skip (fail with LEDSWEEP_REQUIRE_BROWSER=1) when it or Chromium is missing."""
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "playwright is not installed (pip install -r requirements-dev.txt)"
    if why is None and not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        why = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if why is None:
        return sync_playwright
    if os.environ.get("LEDSWEEP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"LEDSWEEP_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def report(tiny_sweep, tmp_path_factory):
    """(workdir, report.html, seconds): a copy of the session's tiny sweep (rule all made the plots) and
    its report."""
    wd = copy_tree(tiny_sweep, tmp_path_factory.mktemp("report") / "wd")
    t0 = time.monotonic()
    proc = snakemake(wd, "--report", "results/sweeps/report.html", timeout=300)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0 and "Report created" in proc.stdout, proc.stdout[-6000:]
    return wd, wd / "results/sweeps/report.html", seconds


ONE = """sweeps:
  one:
    base: config/tiny_run.yaml
    grid:
      seed: [1]
"""


def test_report_after_one_sweep_run_with_configfile(tmp_path):
    """issue 14: after `snakemake results/sweeps/one/comparison.csv --configfile one.yaml`, the report works
    (it used to fail on the default config's sweep, never run: "marked for report but does not exist"); it
    shows what exists and says what it left out. Once the sweep is complete, all of it."""
    wd = make_workdir(tmp_path / "wd", SWEEP, extra={"one.yaml": ONE})
    proc = snakemake(wd, *LOCAL, "--configfile", "one.yaml", targets=["results/sweeps/one/comparison.csv"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert not (wd / "results/sweeps/one/loss_curves.png").exists()  # only the table was asked for
    table = (wd / "results/sweeps/one/comparison.csv").read_text().splitlines()
    assert len(table) == 2 and table[1].startswith("one_seed1,completed,"), table  # config.yaml matches meta.json

    proc = snakemake(wd, "--configfile", "one.yaml", "--report", "report.html", timeout=300)
    assert proc.returncode == 0 and "Report created" in proc.stdout, proc.stdout[-6000:]
    assert "report: sweep tiny left out: it has no results yet" in proc.stdout
    assert "report: sweep one: 1 of 4 results in the report, 3 not made yet" in proc.stdout
    text = (wd / "report.html").read_text(encoding="utf-8")
    for path in (
        "results/sweeps/one/comparison.csv",
        "results/sweeps/one/comparison_by_config.csv",
        "results/one_seed1/config.yaml",
        "results/one_seed1/summary.json",
    ):
        assert path in text, path
    assert "results/sweeps/one/loss_curves.png" not in text and "tiny_lr" not in text

    # the rest of the sweep (its plots), then the report has all of it, and still leaves out `tiny`
    proc = snakemake(wd, *LOCAL, "--configfile", "one.yaml", "--config", "run_sweeps=[one]")
    assert proc.returncode == 0, proc.stdout[-6000:]
    proc = snakemake(wd, "--configfile", "one.yaml", "--report", "report.html", timeout=300)
    assert proc.returncode == 0 and "report: sweep one: all 4 results" in proc.stdout, proc.stdout[-6000:]
    assert "report: sweep tiny left out" in proc.stdout
    text = (wd / "report.html").read_text(encoding="utf-8")
    assert "results/sweeps/one/loss_curves.png" in text and "results/one_seed1/plots/loss.png" in text


def test_rule_all_makes_the_plots_and_they_are_reproducible(report):
    wd, _, _ = report
    before = {p: sha(wd / p) for p in PLOTS}
    proc = snakemake(wd, *LOCAL, "--forcerun", "plot_loss", "plot_metric", "plot_loss_curves")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "plot_loss_curves" in proc.stdout  # they really ran again
    assert {p: sha(wd / p) for p in PLOTS} == before, "plots differ between two runs on the same inputs"


def test_report_is_one_self_contained_file(report):
    _, html, seconds = report
    text = html.read_text(encoding="utf-8")
    assert 100_000 < len(text) < 50_000_000
    assert text.count("data:image/png;") >= 6 and "filename=comparison.html;base64," in text
    for run in RUNS:
        assert run in text
    print(f"snakemake --report: {seconds:.1f} s, {html.stat().st_size / 1e6:.1f} MB")


def test_report_in_headless_chromium(report, tmp_path):
    sync_playwright = browser_or_skip()
    _, html, _ = report
    t0 = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri(), wait_until="load")
            page.get_by_text("Sweep tiny", exact=True).wait_for(timeout=30_000)  # the app has rendered

            # every reported file is in the page, the PNGs as decodable images
            results = page.evaluate("Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.mime_type]))")
            for plot in PLOTS:
                assert plot in results, sorted(results)
            for run in RUNS:
                assert f"results/{run}/config.yaml" in results and f"results/{run}/summary.json" in results
            widths = page.evaluate("""async () => Promise.all(Object.values(results)
                .filter(r => r.mime_type === 'image/png').map(r => new Promise(ok => {
                    const img = new Image(); img.onload = () => ok(img.naturalWidth); img.onerror = () => ok(0);
                    img.src = r.data_uri; })))""")
            assert len(widths) == 6 and all(w == 640 for w in widths), widths

            # as a person: Results -> Sweep tiny -> Comparison table -> view "comparison"
            page.locator("li", has_text="Results").first.click()
            page.get_by_text("Sweep tiny", exact=True).click()
            page.get_by_text("Comparison table", exact=True).first.click()
            row = page.get_by_text("comparison", exact=True).locator("xpath=..")
            row.locator("a[iconname=eye]").click()
            frame = None
            for _ in range(100):
                frame = next((f for f in page.frames if "filename=comparison.html" in f.url), None)
                if frame is not None:
                    break
                page.wait_for_timeout(100)
            assert frame is not None, [f.url[:80] for f in page.frames]
            frame.locator("tr[data-run]").first.wait_for(timeout=10_000)
            shown = frame.locator("tr[data-run]").evaluate_all("rows => rows.map(r => r.dataset.run)")
            assert sorted(shown) == RUNS
            assert frame.locator("tr.best").count() == 1
            page.screenshot(path=str(tmp_path / "report_comparison.png"), full_page=True)

            # back to the sweep: its plots category lists the metric plot and the loss curves
            page.get_by_text("Sweep tiny", exact=True).first.click()
            page.get_by_text("Plots", exact=True).first.click()
            page.get_by_text("rougeL vs training.learning_rate", exact=True).wait_for(timeout=10_000)
            assert page.get_by_text("loss curves", exact=True).count() == 1
            page.screenshot(path=str(tmp_path / "report_plots.png"), full_page=True)
            assert not [u for u in requests if u.startswith(("http:", "https:"))], requests  # offline
        finally:
            browser.close()
    assert (tmp_path / "report_comparison.png").stat().st_size > 10_000
    print(f"browser check: {time.monotonic() - t0:.1f} s; screenshots in {tmp_path}")
