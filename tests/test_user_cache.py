"""Rebuildable caches (parser tables, converted model weights) follow one folder rule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsl.user_cache import cache_home
from engine.store.home import data_home

from .conftest import ROOT


def test_cache_home_follows_planfile_home_then_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """$PLANFILE_HOME/cache, else $XDG_CACHE_HOME/planfile, else ~/.cache/planfile."""
    monkeypatch.setenv("PLANFILE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == data_home() / "cache" == tmp_path / "home" / "cache"
    monkeypatch.delenv("PLANFILE_HOME")
    assert cache_home() == tmp_path / "xdg" / "planfile"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache_home() == tmp_path / "user" / ".cache" / "planfile"


def test_with_planfile_home_set_nothing_is_written_to_the_home_folder(tmp_path: Path) -> None:
    """A `planfile check` with PLANFILE_HOME set keeps its parser tables under it."""
    plan = tmp_path / "p.plan"
    plan.write_text('step a = calculate(expression: "1")')
    user = tmp_path / "user"
    user.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(user),
        "PLANFILE_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "check", str(plan)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "home" / "cache").glob("plan-*.lark"))
    assert list(user.rglob("*")) == []
