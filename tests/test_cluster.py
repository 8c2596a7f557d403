"""Steps on a real Dask cluster: a `dask scheduler` and `dask worker` processes on
127.0.0.1 (tests/dask_cluster.py), plans run through the CLI and the Engine, user tools
on the workers, placement by worker resources, a worker killed mid-step, the scheduler
unreachable at start and lost mid-run (then `planfile resume`). Every process a test
starts is stopped by its fixture, which fails if one outlives it."""

from __future__ import annotations

import asyncio
import gc
import http.server
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("distributed")

from engine.api import Engine
from engine.backends.dask import DaskBackend
from engine.cli.main import main
from engine.config import Config, ModelSettings
from stdlib_tools import ToolRegistry

from .conftest import ROOT
from .dask_cluster import Cluster

TOOLS = '''
"""Tools that say which process ran them."""
import asyncio
import os
import time
from pathlib import Path

from stdlib_tools import ToolContext, tool


@tool
def where(tag: str) -> str:
    """The process that ran this call (sync: a worker thread)."""
    return f"{tag}:{os.getpid()}"


@tool
async def awhere(tag: str) -> str:
    """The process that ran this call (async: a worker's event loop)."""
    await asyncio.sleep(0.01)
    return f"{tag}:{os.getpid()}"


@tool
def facts(ctx: ToolContext) -> dict:
    """What a tool's context holds on a worker."""
    return {"run": ctx.run_id, "step": ctx.step_id, "services": sorted(ctx.services),
            "pid": os.getpid()}


@tool
def slow(tag: str, seconds: float, marker: str) -> str:
    """Record each start (tag.pid in `marker`), then take `seconds`."""
    Path(marker, f"{tag}.{os.getpid()}.{time.monotonic_ns()}").write_text("")
    time.sleep(seconds)
    return f"{tag}:{os.getpid()}"
'''


def _pid(value: str) -> int:
    return int(value.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def tools_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster-tools") / "cluster_tools.py"
    path.write_text(TOOLS)
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A scheduler, a worker with a GPU resource and one without."""
    running = Cluster(tmp_path_factory.mktemp("dask"), {"gpu": {"GPU": 1}, "cpu": {}})
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster a test may break (kill a worker, the scheduler); not started yet."""
    running = Cluster(tmp_path / "dask", {"a": {}, "b": {}})
    (tmp_path / "dask").mkdir()
    try:
        yield running
    finally:
        running.stop()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_runs_user_tools_on_the_workers(
    cluster: Cluster, tools_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`planfile run --cluster`: sync and async user tools run in the worker processes
    (the tools file reached them), results come back and are journaled here."""
    plan = tmp_path / "p.plan"
    plan.write_text(
        'input tags: list[str] = ["a", "b", "c", "d", "e", "f"]\n'
        "step s = for t in tags: where(tag: t)\n"
        "step x = for t in tags: awhere(tag: t)\n"
        "output s, x\n"
    )
    code, out, err = run_cli(
        capsys, "run", str(plan), "--tools", str(tools_file), "--cluster", cluster.address, "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    workers = {cluster.pid("gpu"), cluster.pid("cpu")}
    pids = {_pid(v) for v in [*doc["outputs"]["s"], *doc["outputs"]["x"]]}
    assert pids <= workers and os.getpid() not in pids
    assert [v.split(":")[0] for v in doc["outputs"]["s"]] == ["a", "b", "c", "d", "e", "f"]
    code, out, _ = run_cli(capsys, "show", doc["run_id"], "--json")
    assert code == 0 and json.loads(out)["steps"]["s"]["status"] == "succeeded"


def test_batch_runs_its_rows_on_the_cluster(
    cluster: Cluster, tools_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`planfile batch --cluster`: every row's steps run on the workers; one result
    line per row, written by the coordinator."""
    plan = tmp_path / "p.plan"
    plan.write_text("input tag: str\nstep w = where(tag: tag)\noutput w\n")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"tag": f"r{i}"}) + "\n" for i in range(5)))
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(
        capsys,
        *("batch", str(plan), "--inputs", str(rows), "-o", str(out), "-q"),
        *("--tools", str(tools_file), "--cluster", cluster.address),
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["row"] for line in lines) == [1, 2, 3, 4, 5]
    values = [line["outputs"]["w"] for line in lines]
    assert {v.split(":")[0] for v in values} == {f"r{i}" for i in range(5)}
    assert {_pid(v) for v in values} <= {cluster.pid("gpu"), cluster.pid("cpu")}


def test_engine_on_cluster_context_copy_and_stdlib(cluster: Cluster, tools_file: Path) -> None:
    """Engine(backend=DaskBackend): a stdlib tool runs there too, and a tool's context
    on a worker has the run's facts but none of the coordinator's services."""
    tools = ToolRegistry.standard()
    tools.load_file(tools_file)
    with Engine(tools=tools, backend=DaskBackend(cluster.address)) as engine:
        result = engine.run_sync(
            'step c = calculate(expression: "6 * 7")\nstep f = facts()\noutput c, f'
        )
    assert result.status == "succeeded", result.steps
    assert result.outputs["c"] == 42
    facts = result.outputs["f"]
    assert (facts["run"], facts["step"], facts["services"]) == (result.run_id, "f", [])
    assert facts["pid"] in {cluster.pid("gpu"), cluster.pid("cpu")}


def test_a_tools_file_gone_before_the_run_is_a_clear_setup_error(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The `--tools` file is read again to load it on the workers: gone by then, the run
    stops before any step with the file and the reason, not an internal error."""
    from engine.errors import RunSetupError

    path = tmp_path / "gone_tools.py"
    path.write_text(TOOLS)
    tools = ToolRegistry.standard()
    tools.load_file(path)
    path.unlink()
    gone = r"gone_tools\.py: cannot read it.*No such file"
    with (
        Engine(tools=tools, backend=DaskBackend(cluster.address)) as engine,
        pytest.raises(RunSetupError, match=gone),
    ):
        engine.run_sync("step f = facts()\noutput f")


def test_placement_by_worker_resources(
    cluster: Cluster, tools_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[cluster.resources] "tool:where" = {GPU = 1}`: every call of `where` runs on the
    worker that offers a GPU; other tools run anywhere."""
    config = tmp_path / "planfile.toml"
    config.write_text(
        f'[cluster]\naddress = "{cluster.address}"\n'
        '[cluster.resources]\n"tool:where" = {GPU = 1}\n'
    )
    plan = tmp_path / "p.plan"
    plan.write_text(
        'input tags: list[str] = ["a", "b", "c", "d", "e", "f", "g", "h"]\n'
        "step s = for t in tags: where(tag: t)\noutput s\n"
    )
    code, out, err = run_cli(
        capsys, "run", str(plan), "--tools", str(tools_file), "--config", str(config), "--json"
    )
    assert code == 0, err
    assert {_pid(v) for v in json.loads(out)["outputs"]["s"]} == {cluster.pid("gpu")}


@pytest.mark.slow  # a worker imports litellm for its first model call: seconds
def test_model_calls_run_on_workers_and_are_priced_here(cluster: Cluster) -> None:
    """The raw provider call runs on a worker; the price, the step's tokens and cost
    are the coordinator's (litellm's mock reply: 10 tokens in, 20 out)."""
    backend = DaskBackend(cluster.address)
    config = Config(models={"openai/gpt-4o-mini": ModelSettings(api_key="sk-test")})
    with Engine(backend=backend, config=config, settings={"mock_response": "hello"}) as engine:
        result = engine.run_sync('step a = llm(model: "openai/gpt-4o-mini", prompt: "hi")')
        prefixes = backend.client.run_on_scheduler(
            lambda dask_scheduler: sorted(dask_scheduler.task_prefixes)
        )
    assert result.outputs == {"a": "hello"}
    assert result.steps["a"].cost_usd == pytest.approx(10 * 0.15e-6 + 20 * 0.60e-6)
    assert "planfile-model" in prefixes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_scheduler_unreachable_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No scheduler at the address: exit 2 before any step, naming the address and the
    fix, within the connect timeout; no traceback."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    config = tmp_path / "planfile.toml"
    config.write_text("[cluster]\nconnect_timeout_s = 1\n")
    plan = tmp_path / "p.plan"
    plan.write_text('step c = calculate(expression: "1 + 1")')
    started = time.monotonic()
    code, _, err = run_cli(capsys, "run", str(plan), "--cluster", address, "--config", str(config))
    assert code == 2
    assert address in err and "dask scheduler" in err and "Traceback" not in err
    assert time.monotonic() - started < 15


class _Talker(socketserver.BaseRequestHandler):
    """A service that answers every connection with bytes at once (like an HTTP proxy):
    the client's first frame length read from them is absurd (a huge allocation)."""

    def handle(self) -> None:
        self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)
        self.request.recv(1024)


class _Silent(http.server.BaseHTTPRequestHandler):
    """An HTTP server: waits for a request line the Dask client never sends."""

    def log_message(self, *args: object) -> None:  # no lines on the test's stderr
        pass


@pytest.mark.parametrize("handler", [_Silent, _Talker], ids=["http-server", "talker"])
def test_a_service_that_is_not_dask_fails_within_the_connect_timeout(
    handler: type[socketserver.BaseRequestHandler],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--cluster pointed at a non-Dask service: exit 2 within the connect timeout (not
    a hang, not a MemoryError), the address and the fix, no traceback at all."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"tcp://127.0.0.1:{server.server_address[1]}"
        config = tmp_path / "planfile.toml"
        config.write_text("[cluster]\nconnect_timeout_s = 2\n")
        plan = tmp_path / "p.plan"
        plan.write_text('step c = calculate(expression: "1 + 1")')
        started = time.monotonic()
        code, _, err = run_cli(
            capsys, "run", str(plan), "--cluster", address, "--config", str(config)
        )
        elapsed = time.monotonic() - started
        gc.collect()  # a half-made Client's __del__ would print now
        err += capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()
    assert code == 2, err
    assert address in err and "dask scheduler" in err
    assert "Traceback" not in err and "Exception ignored" not in err and "internal" not in err
    assert elapsed < 2 + 4


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("garbage", "missing port"),
        ("tcp://[::1", "ipv6"),
        ("tcp://127.0.0.1:0", "not a Dask scheduler address"),
        ("ucx://127.0.0.1:8786", "ucx:// is not supported"),
        ("tls://127.0.0.1:8786", "tls:// needs Dask's TLS settings"),
    ],
)
def test_a_malformed_cluster_address_fails_at_once(
    address: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed address (or tls:// without TLS settings) is refused before any
    connection: at once, naming the flag and the fix; no traceback."""
    plan = tmp_path / "p.plan"
    plan.write_text('step c = calculate(expression: "1 + 1")')
    started = time.monotonic()
    code, _, err = run_cli(capsys, "run", str(plan), "--cluster", address)
    gc.collect()
    err += capsys.readouterr().err
    assert code == 2, err
    assert f"--cluster {address!r}" in err and says in err and "hint:" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert time.monotonic() - started < 3


@pytest.mark.slow
def test_all_workers_gone_warns_once_and_the_call_keeps_its_deadline(
    own_cluster: Cluster, tools_file: Path, tmp_path: Path
) -> None:
    """Every worker dies mid-call: one "no workers" warning after `no_workers_warn_s`,
    and the call still ends at its step's deadline (not task_timeout_s)."""
    own_cluster.start()
    marker = tmp_path / "starts"
    marker.mkdir()
    tools = ToolRegistry.standard()
    tools.load_file(tools_file)
    warnings: list[str] = []
    backend = DaskBackend(own_cluster.address, no_workers_warn_s=1)
    backend.on_warning = warnings.append
    plan = f'step s = slow(tag: "s", seconds: 30, marker: "{marker}") timeout 8s'

    async def scenario() -> Any:
        with Engine(tools=tools, backend=backend) as engine:
            run = asyncio.create_task(engine.run(plan))
            await asyncio.to_thread(
                _wait_for, lambda: list(marker.glob("s.*")), 30, "step s to start"
            )
            for worker in own_cluster.workers.values():
                own_cluster.kill(worker)
            return await asyncio.wait_for(run, 30)

    started = time.monotonic()
    result = asyncio.run(scenario())
    assert result.status == "failed"
    assert result.steps["s"].error == "timed out after 8s"
    assert time.monotonic() - started < 20
    assert len(warnings) == 1, warnings
    assert "no workers" in warnings[0] and own_cluster.address in warnings[0]


def test_bad_placement_key_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A placement key that is not tool:/tier:/model: is refused with the fix."""
    config = tmp_path / "planfile.toml"
    config.write_text('[cluster.resources]\n"gpu" = {GPU = 1}\n')
    plan = tmp_path / "p.plan"
    plan.write_text('step c = calculate(expression: "1 + 1")')
    code, _, err = run_cli(capsys, "run", str(plan), "--config", str(config))
    assert code == 2 and "tool:NAME" in err


def test_step_timeout_bounds_a_call_on_the_cluster(
    cluster: Cluster, tools_file: Path, tmp_path: Path
) -> None:
    """A step's `timeout` bounds its call on a worker: the step fails at the timeout,
    located, and the run does not wait for the worker."""
    tools = ToolRegistry.standard()
    tools.load_file(tools_file)
    started = time.monotonic()
    with Engine(tools=tools, backend=DaskBackend(cluster.address)) as engine:
        result = engine.run_sync(
            f'step s = slow(tag: "t", seconds: 8, marker: "{tmp_path}") timeout 1s'
        )
    assert result.status == "failed"
    assert result.steps["s"].error == "timed out after 1s"
    assert time.monotonic() - started < 6


def _wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_worker_killed_mid_step_runs_it_elsewhere(
    own_cluster: Cluster, tools_file: Path, tmp_path: Path
) -> None:
    """SIGKILL the worker running a step: Dask runs the call again on the other worker;
    the step succeeds, and the step that had finished is not run again."""
    own_cluster.start()
    marker = tmp_path / "starts"
    marker.mkdir()
    tools = ToolRegistry.standard()
    tools.load_file(tools_file)
    plan = (
        f'step first = slow(tag: "first", seconds: 0, marker: "{marker}")\n'
        f'step s = slow(tag: "s", seconds: 3, marker: "{marker}") after first\n'
        "output first, s\n"
    )

    async def scenario() -> tuple[Any, str]:
        with Engine(tools=tools, backend=DaskBackend(own_cluster.address)) as engine:
            run = asyncio.create_task(engine.run(plan))
            await asyncio.to_thread(
                _wait_for, lambda: list(marker.glob("s.*")), 30, "step s to start"
            )
            started_on = int(next(marker.glob("s.*")).name.split(".")[1])
            victim = next(n for n in ("a", "b") if own_cluster.pid(n) == started_on)
            own_cluster.kill(own_cluster.workers[victim])
            return await asyncio.wait_for(run, 60), victim

    result, victim = asyncio.run(scenario())
    assert result.status == "succeeded", result.steps
    survivor = "b" if victim == "a" else "a"
    assert _pid(result.outputs["s"]) == own_cluster.pid(survivor)
    assert len(list(marker.glob("first.*"))) == 1  # finished: not run again
    assert {int(p.name.split(".")[1]) for p in marker.glob("s.*")} == {
        own_cluster.pid("a"),
        own_cluster.pid("b"),
    }


@pytest.mark.slow
def test_killed_worker_after_allowed_failures_is_retried_by_the_step(
    tmp_path: Path, tools_file: Path
) -> None:
    """With `allowed-failures = 0`, Dask gives up on a call at its worker's first death
    (KilledWorker): the step sees `WorkerLost`, and its `retry 1` runs it again, on
    the surviving worker."""
    (tmp_path / "dask").mkdir()
    running = Cluster(
        tmp_path / "dask",
        {"a": {}, "b": {}},
        scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"},
    )
    try:
        running.start()
        marker = tmp_path / "starts"
        marker.mkdir()
        tools = ToolRegistry.standard()
        tools.load_file(tools_file)
        events: list[object] = []

        async def scenario() -> object:
            with Engine(tools=tools, backend=DaskBackend(running.address)) as engine:
                plan = f'step s = slow(tag: "s", seconds: 3, marker: "{marker}") retry 1'
                run = asyncio.create_task(engine.run(plan, on_event=events.append))
                await asyncio.to_thread(
                    _wait_for, lambda: list(marker.glob("s.*")), 30, "step s to start"
                )
                started_on = int(next(marker.glob("s.*")).name.split(".")[1])
                victim = next(n for n in ("a", "b") if running.pid(n) == started_on)
                running.kill(running.workers[victim])
                return await asyncio.wait_for(run, 60)

        result: Any = asyncio.run(scenario())
        assert result.status == "succeeded", result.steps
        assert result.steps["s"].attempts == 2
        retried = [e for e in events if type(e).__name__ == "StepRetrying"]
        assert len(retried) == 1 and "workers running it died" in retried[0].error  # type: ignore[attr-defined]
    finally:
        running.stop()


@pytest.mark.slow
def test_scheduler_lost_mid_run_stops_the_run_and_resume_continues(
    own_cluster: Cluster, tools_file: Path, tmp_path: Path
) -> None:
    """The scheduler dies while a step runs: the run stops (failed, the reason said,
    exit 1); with a cluster back, `planfile resume RUN` finishes it without running the
    finished step again."""
    own_cluster.workers_spec = {"a": {}}
    own_cluster.start()
    marker = tmp_path / "starts"
    marker.mkdir()
    plan = tmp_path / "p.plan"
    plan.write_text(
        f'step first = slow(tag: "first", seconds: 0, marker: "{marker}")\n'
        f'step s = slow(tag: "s", seconds: 2, marker: "{marker}") after first\n'
        "output first, s\n"
    )
    # Read from the working folder: the lost client gives up reconnecting after 3 s.
    (tmp_path / "planfile.toml").write_text("[cluster]\nconnect_timeout_s = 3\n")
    cli = [sys.executable, "-m", "engine.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [*cli, "run", str(plan), "--tools", str(tools_file), "--cluster", own_cluster.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**env, "PLANFILE_HOME": os.environ["PLANFILE_HOME"]},
    )
    try:
        _wait_for(lambda: list(marker.glob("s.*")), 60, "step s to start")
        assert own_cluster.scheduler is not None
        own_cluster.kill(own_cluster.scheduler)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "lost the Dask scheduler" in err and "planfile resume" in err
    assert "Traceback" not in err
    run_id = _run_id(err + out)

    # A new cluster (a new address), and the run continues there.
    own_cluster.kill(own_cluster.workers["a"])
    own_cluster.start()
    done = subprocess.run(
        [*cli, "resume", run_id, "--tools", str(tools_file), "--cluster", own_cluster.address],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "PLANFILE_HOME": os.environ["PLANFILE_HOME"]},
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert len(list(marker.glob("first.*"))) == 1
    assert len(list(marker.glob("s.*"))) == 2


def _run_id(text: str) -> str:
    for word in text.replace("`", " ").split():
        if len(word) == 12 and all(c in "0123456789abcdef" for c in word):
            return word
    raise AssertionError(f"no run id in: {text[-500:]}")


# --- the parts that need no cluster -----------------------------------------------------


def test_placement_model_key_wins_and_unmapped_tier_is_the_embedded_model() -> None:
    """`model:NAME` wins over a tier mapped to NAME; a tier mapped to no model places
    the embedded model's calls (what that tier runs on)."""
    from engine.backends.placement import Placement

    placement = Placement(
        {
            "tier:fast": {"A": 1},
            "model:openai/x": {"B": 1},
            "tier:local": {"GPU": 1},
            "tool:read_file": {"disk": 1},
        }
    )
    found = placement.for_models({"fast": "openai/x", "big": "openai/y"}, "embedded/model")
    assert found == {"openai/x": {"B": 1}, "embedded/model": {"GPU": 1}}
    assert placement.tool("read_file") == {"disk": 1} and placement.tool("search") is None


@given(
    key=st.text(min_size=1, max_size=20),
    amount=st.floats(allow_nan=True, allow_infinity=True),
)
def test_placement_config_refuses_bad_keys_and_amounts(key: str, amount: float) -> None:
    """`[cluster.resources]`: only `tool:`/`tier:`/`model:` keys with a name, and
    positive finite amounts, are accepted; anything else is a located config error."""
    from pydantic import ValidationError

    from engine.config import ClusterSettings

    kind, sep, name = key.partition(":")
    good_key = bool(sep) and kind in ("tool", "tier", "model") and bool(name)
    good_amount = 0 < amount <= 1e12
    try:
        ClusterSettings(resources={key: {"GPU": amount}})
    except ValidationError:
        assert not (good_key and good_amount)
    else:
        assert good_key and good_amount


def test_a_provider_error_from_a_worker_is_classified_like_a_local_one() -> None:
    """litellm's exceptions do not survive pickling; a worker sends them as a
    RemoteFault whose rebuilt exception the fault classifier and the gateway's
    Retry-After reading treat as the original."""
    import pickle

    import httpx

    from engine.backends.worker import RemoteFault, portable
    from engine.faults import Fault, classify
    from engine.models.provider import litellm_module, retry_after

    litellm = litellm_module()
    response = httpx.Response(
        429, headers={"retry-after": "7"}, request=httpx.Request("POST", "http://x")
    )
    original = litellm.RateLimitError("slow down", "openai", "gpt-x", response=response)

    def arrive(err: Exception) -> Exception:
        """What the coordinator gets back for `err` raised on a worker."""
        received = pickle.loads(pickle.dumps(portable(err)))
        return received.rebuild() if isinstance(received, RemoteFault) else received

    # Whether litellm's error pickles whole depends on its internals; either way what
    # arrives is classified, and its Retry-After read, like the original.
    received = arrive(original)
    assert classify(received) is classify(original) is Fault.TRANSIENT
    assert retry_after(received) == 7.0 and "slow down" in str(received)
    auth = arrive(litellm.AuthenticationError("bad key", "openai", "gpt-x"))
    assert classify(auth) is Fault.AUTH

    class Unpicklable(Exception):  # a local class: pickling it fails
        pass

    sent = portable(Unpicklable("lost"))
    assert isinstance(sent, RemoteFault)
    assert "lost" in str(pickle.loads(pickle.dumps(sent)).rebuild())
    plain = ValueError("a tool's own error")
    assert portable(plain) is plain  # picklable errors travel as themselves


def test_a_closed_comm_while_the_client_still_says_running_is_a_lost_cluster() -> None:
    """distributed raises CommClosedError from a call whose scheduler just died, before
    the client's status changes: that stops the run (resumable, a batch row queued), it
    is not the step's own failure."""
    from types import SimpleNamespace

    from distributed.comm.core import CommClosedError

    from engine.backends.dask import ClusterLost, DaskBackend

    backend = DaskBackend.__new__(DaskBackend)  # no scheduler to probe: only the mapping
    backend.address = "tcp://127.0.0.1:8786"
    backend.client = SimpleNamespace(status="running")
    located = backend._located(CommClosedError("in <TCP (closed)>: Stream is closed"))
    assert isinstance(located, ClusterLost)
    assert "lost the Dask scheduler at tcp://127.0.0.1:8786" in str(located)
    plain = OSError("disk full on the worker")
    assert backend._located(plain) is plain  # a tool's own OSError stays the step's
