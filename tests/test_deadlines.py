"""Deadlines wherever a step can wait (issue 11, item 9): model calls, `http_get`, and sync
tools that cannot be cancelled."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litellm import CustomLLM

from engine import Engine, load_plan
from engine.config import Config, ConfigError, ModelSettings, load_config
from engine.models.provider import register_provider
from stdlib_tools import tool
from stdlib_tools.web import HttpTimeout, fetch


class Hanging(CustomLLM):
    """A provider that never answers (and ignores litellm's timeout); notes the timeout
    litellm was given."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[Any] = []

    async def acompletion(self, model: str, messages: list, **kwargs: Any) -> Any:  # type: ignore[override]
        self.timeouts.append(kwargs.get("timeout"))
        await asyncio.sleep(3600)


HANGING = Hanging()
register_provider("pfhang", HANGING)


def hanging_run(plan: str, **config: Any) -> tuple[Any, float]:
    engine = Engine(config=Config(tiers={"standard": "pfhang/m"}, **config))
    started = time.perf_counter()
    try:
        result = engine.run_sync(load_plan(plan, tiers=["standard"]))
    finally:
        engine.close()
    return result, time.perf_counter() - started


def test_a_hanging_provider_is_cut_off_at_the_model_deadline() -> None:
    """litellm's default is 600 s per attempt; planfile's deadline bounds the whole call."""
    HANGING.timeouts.clear()
    result, took = hanging_run(
        'step a = llm(tier: standard, prompt: "x", max_tokens: 10)', model_timeout_s=2
    )
    assert result.status == "failed"
    assert "did not answer within 2 s" in result.steps["a"].error
    assert took < 8
    assert HANGING.timeouts == [2]  # litellm is told, too


def test_a_model_timeout_and_the_step_timeout_shorten_the_deadline() -> None:
    HANGING.timeouts.clear()
    result, took = hanging_run(
        'step a = llm(tier: standard, prompt: "x", max_tokens: 10)',
        models={"pfhang/m": ModelSettings(timeout_s=1.5)},
    )
    assert "within 1.5 s" in result.steps["a"].error and took < 8
    HANGING.timeouts.clear()
    result, took = hanging_run(
        'step a = llm(tier: standard, prompt: "x", max_tokens: 10) timeout 2s', model_timeout_s=60
    )
    assert result.status == "failed" and took < 8
    assert HANGING.timeouts == [2.0]


def test_the_default_model_deadline_is_finite() -> None:
    assert 0 < Config().model_timeout_s <= 300


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_model_timeouts_in_the_config_are_checked(tmp_path: Path, value: str) -> None:
    path = tmp_path / "planfile.toml"
    path.write_text(f"model_timeout_s = {value}\n")
    with pytest.raises(ConfigError, match="model_timeout_s"):
        load_config(path)
    path.write_text(f'[models."a/b"]\ntimeout_s = {value}\n')
    with pytest.raises(ConfigError, match="timeout_s"):
        load_config(path)


# --- http_get: a total deadline ----------------------------------------------------------


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """A loopback HTTP server that sends its body one byte per second (for 60 s)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(4096)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\nContent-Type: text/plain\r\n\r\n"
            )
            for _ in range(60):
                if stop.wait(1.0):
                    return
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/slow"
    stop.set()
    server.close()


def test_http_get_stops_at_its_total_deadline(trickling_server: str) -> None:
    """httpx's timeouts are per read: a byte a second never trips them. The tool's
    timeout is a deadline for the whole request."""
    settings = {"http_allowlist": ["127.0.0.1"], "http_timeout_s": 1.5}
    started = time.perf_counter()
    with pytest.raises(HttpTimeout, match=r"did not finish within 1\.5 s"):
        asyncio.run(fetch(trickling_server, settings))
    assert time.perf_counter() - started < 4


def test_http_get_in_a_plan_fails_its_step_at_the_deadline(trickling_server: str) -> None:
    engine = Engine(settings={"http_allowlist": ["127.0.0.1"], "http_timeout_s": 1.0})
    started = time.perf_counter()
    result = engine.run_sync(load_plan(f'step page = http_get(url: "{trickling_server}")'))
    engine.close()
    assert result.status == "failed" and "within 1 s" in (result.steps["page"].error or "")
    assert time.perf_counter() - started < 4


# --- sync tools that ignore cancellation -----------------------------------------------------

RELEASE = threading.Event()
LATE: list[str] = []


@tool
def stubborn(label: str) -> str:
    """A sync tool that ignores cancellation: it returns only when released."""
    RELEASE.wait(10)
    LATE.append(label)
    return label


def test_a_sync_tool_past_its_timeout_fails_the_step_and_its_late_result_is_dropped() -> None:
    """A thread cannot be stopped: the step fails at its timeout, the run ends without
    waiting for the thread, and what the thread returns later changes nothing."""
    RELEASE.clear()
    LATE.clear()
    engine = Engine(tools=[stubborn])
    started = time.perf_counter()
    result = engine.run_sync(
        load_plan(
            'step a: str = stubborn(label: "late") timeout 300ms\n'
            'step b: int = json_query(data: "{{ a }}", expression: "length(@)")',
            tools=[stubborn],
        )
    )
    took = time.perf_counter() - started
    assert took < 3  # not held for the thread's 10 s
    assert result.status == "failed" and "timed out after 0.3s" in (result.steps["a"].error or "")
    assert result.steps["b"].status == "skipped"
    RELEASE.set()  # the thread finishes now...
    deadline = time.monotonic() + 5
    while not LATE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert LATE == ["late"]
    assert result.steps["a"].status == "failed" and result.steps["a"].output is None  # ...dropped
    engine.close()
