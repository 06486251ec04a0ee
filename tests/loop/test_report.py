"""The HTML run report: self-contained, and it renders in headless Chromium (a screenshot, not a parse)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.loop.test_loop_resume import _registry, _write_config


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    from medgr2.loop import run

    tmp = tmp_path_factory.mktemp("report")
    return run(_write_config(tmp, cycles=1), registry=_registry())


def test_report_is_self_contained(fake_run):
    html = fake_run.report.read_text()
    for section in ("Ledger", "Reward model", "cycle-001", "Funnel", "Accepted", "Rejected", "Evaluation", "Config"):
        assert section in html, section
    assert "<svg" in html
    # self-contained: nothing is fetched when it is opened offline
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    assert "src=\"/" not in html and "<link" not in html and "<script src" not in html


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def test_report_renders_in_headless_chromium(fake_run, tmp_path):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is missing in CI: .ci/run installs it (make system-deps)")
        pytest.skip("chromium not installed (apt-get install chromium, or make system-deps)")
    shot = tmp_path / "report.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2000", f"--screenshot={shot}",
           fake_run.report.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 10_000
    from PIL import Image

    img = Image.open(shot).convert("L")
    assert img.size == (1200, 2000)
    hist = img.histogram()
    dark = sum(hist[:128]) / (img.size[0] * img.size[1])
    assert 0.001 < dark < 0.5, f"the page looks blank or broken (dark share {dark:.4f})"
