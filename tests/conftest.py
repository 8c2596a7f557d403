"""Shared fixtures: offline settings, the standard tool registry, a scratch PLANFILE_HOME."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from stdlib_tools import ToolRegistry

settings.register_profile(
    "planfile", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150
)
settings.load_profile("planfile")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def planfile_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path_factory.mktemp("planfile-home")
    monkeypatch.setenv("PLANFILE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def registry() -> ToolRegistry:
    return ToolRegistry.standard()
