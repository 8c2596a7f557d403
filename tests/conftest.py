"""Shared fixtures: offline settings, the standard tool registry, a scratch PLANFILE_HOME."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server on loopback, serving the embedded
    model as `smollm2` (tests/test_local_model.py, tests/test_evaluate.py)."""
    import httpx

    from engine.models.local_model import available, gguf_path

    if not available():
        pytest.skip("embedded model not installed (see README)")
    pytest.importorskip("llama_cpp.server")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--model_alias",
            "smollm2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("llama_cpp.server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
