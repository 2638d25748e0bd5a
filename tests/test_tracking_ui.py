"""The trackers as a user sees them (issue 25.3): `mlflow server` on the store of the tiny sweep and
`tensorboard --logdir results`, each opened in headless Chromium (as the report test does): every run is there
with its metric. `LEDSWEEP_SCREENSHOTS=<folder>` keeps the screenshots (the README's come from here).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import PY, copy_tree
from test_report import CHROMIUM, RUNS, browser_or_skip

pytestmark = pytest.mark.slow
BIN = Path(PY).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(cmd: list[str], url: str, cwd: Path, timeout: float = 180):
    """A server process, up once `url` answers 200; stopped (its whole process group) afterwards."""
    log = open(cwd / f"{Path(cmd[0]).name}.log", "w")
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"{cmd[0]} exited {proc.returncode}: {(cwd / log.name).read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{cmd[0]} not up after {timeout} s"
            time.sleep(1)
        yield
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


@contextlib.contextmanager
def chromium_page():
    sync_playwright = browser_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 800})
        finally:
            browser.close()


def shot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("LEDSWEEP_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name))


def test_mlflow_server_shows_every_run_with_its_metric(tiny_sweep, tmp_path):
    wd = copy_tree(tiny_sweep, tmp_path / "wd")
    record = json.loads((wd / "results/sweeps/tiny/mlflow.json").read_text())
    assert sorted(record["runs"]) == sorted(RUNS)
    port = free_port()
    store = f"sqlite:///{wd / 'results' / 'mlflow.db'}"
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with server([*cmd, "--workers", "1"], f"{base}/health", wd), chromium_page() as page:
        page.goto(f"{base}/#/experiments/{record['experiment_id']}/runs", wait_until="load")
        for run in RUNS:
            page.get_by_text(run, exact=True).wait_for(timeout=60_000)
        shot(page, "mlflow_runs.png", tmp_path)
        for run in RUNS:  # each run's page lists its metrics with summary.json's values
            metrics = json.loads((wd / "results" / run / "summary.json").read_text())["metrics"]
            page.goto(f"{base}/#/experiments/{record['experiment_id']}/runs/{record['runs'][run]}", wait_until="load")
            page.get_by_text("rougeL", exact=True).first.wait_for(timeout=60_000)
            text = page.inner_text("body")
            assert f"\nloss\n{metrics['loss']}\n" in text, text[-3000:]
            assert f"/results/{run} (status completed)" in text  # the run folder, named in its description
        shot(page, "mlflow_run.png", tmp_path)


def test_tensorboard_shows_every_run_and_its_hparams(tiny_sweep, tmp_path):
    wd = copy_tree(tiny_sweep, tmp_path / "wd")
    port = free_port()
    cmd = [str(BIN / "tensorboard"), "--logdir", "results", "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with server(cmd, f"{base}/data/runs", wd):
        with urllib.request.urlopen(f"{base}/data/runs", timeout=30) as r:
            runs = json.load(r)
        assert set(RUNS) <= set(runs) and {f"sweeps/tiny/tensorboard/{r}" for r in RUNS} <= set(runs)
        with urllib.request.urlopen(f"{base}/data/plugin/scalars/tags", timeout=30) as r:
            tags = json.load(r)
        for run in RUNS:
            assert {"train/loss", "train/learning_rate", "eval/loss", "test/rougeL"} <= set(tags[run]), tags[run]
        with chromium_page() as page:
            page.goto(f"{base}/#timeseries", wait_until="load")
            for run in RUNS:
                page.get_by_text(run, exact=True).first.wait_for(timeout=60_000)
            shot(page, "tensorboard_curves.png", tmp_path)
            page.goto(f"{base}/#hparams", wait_until="load")
            page.get_by_text("training.learning_rate").first.wait_for(timeout=60_000)
            page.get_by_text("test/rougeL").first.wait_for(timeout=60_000)
            shot(page, "tensorboard_hparams.png", tmp_path)
