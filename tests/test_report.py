"""The HTML run report: self-contained, and checked in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.cli.main import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    plan = tmp_path / "p.plan"
    plan.write_text(
        'step a: float = calculate(expression: "6 * 7")\n'
        'step b: float = calculate(expression: "1 / 0")\n'
        'step c: float = calculate(expression: "{{ b }} + 1")\n'
        'step d: float = calculate(expression: "{{ a }} + 1")\n'
    )
    main(["run", str(plan), "--json"])
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    page = tmp_path / "report.html"
    assert main(["show", run_id, "--html", str(page)]) == 0
    return page, run_id


def test_report_is_self_contained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One file: no scripts, no external resources; every step, state and cost is in it."""
    page, run_id = make_report(tmp_path, capsys)
    text = page.read_text()
    assert "<script" not in text and not re.search(r'(src|href)="https?:', text)
    assert f"planfile run {run_id}" in text
    for step, state in (("a", "succeeded"), ("b", "failed"), ("c", "skipped"), ("d", "succeeded")):
        assert f'data-step="{step}" data-state="{state}"' in text
    assert "critical path: a → d" in text and 'id="total-cost"' in text


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_in_a_headless_browser(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Chromium loads the page; its DOM shows the coloured DAG, the timeline and the costs."""
    page, _ = make_report(tmp_path, capsys)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [str(CHROMIUM), *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert dom.count('class="node"') == 4 and dom.count('class="bar"') == 3
    assert 'fill="#c62828"' in dom and 'fill="#2e7d32"' in dom  # failed red, succeeded green
    shot = tmp_path / "report.png"
    subprocess.run(
        [str(CHROMIUM), *flags, "--window-size=1000,900", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 10_000
