"""An agent step's records (issue 13, items 4 and 5): every inner call journaled, audited,
shown and reported; a run killed mid-loop resumes by replaying the finished calls."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import Engine, load_plan
from engine.config import Config, ModelSettings
from engine.models.ledger import Ledger
from engine.observe.display import PlainLog
from engine.run.events import AgentToolCalled
from engine.run.result import StepRecord, StepStatus
from engine.store import agent_calls
from engine.store.journal import SCHEMA_VERSION, Journal

from .agent_record_tools import append_line, slow
from .conftest import ROOT
from .loopback_openai import Call, LoopbackServer, Reply, Rule, Script, serve
from .scripted_provider import Reply as ScriptedReply
from .scripted_provider import registered

TOOLS_FILE = Path(__file__).parent / "agent_record_tools.py"
PLAN = (
    'step facts: str = agent(task: "Append a line, then wait", tools: [append_line, slow], '
    "max_iterations: 5, tier: fast)\n"
)
SECRET = "sk-loopback-secret-4242"


def _script(seconds: float) -> Script:
    """Three turns: append a line (with a secret in it), wait, answer."""
    return Script(
        rules=(
            Rule(
                model="scripted",
                turns=(
                    Reply(tool_calls=(Call("append_line", {"text": f"hello {SECRET}"}),)),
                    Reply(tool_calls=(Call("slow", {"seconds": seconds}),)),
                    Reply(content="done"),
                ),
            ),
        )
    )


class _Cli:
    """`planfile` subprocesses on one PLANFILE_HOME, workspace and loopback server."""

    def __init__(self, tmp: Path, server: LoopbackServer):
        self.home = tmp / "home"
        self.workspace = tmp / "ws"
        self.workspace.mkdir()
        self.plan = tmp / "agent.plan"
        self.plan.write_text(PLAN)
        config = tmp / "planfile.toml"
        config.write_text(server.config_toml())
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PLANFILE_HOME": str(self.home),
            "LOOPBACK_API_KEY": SECRET,  # a secret by name: the audit log redacts it
        }
        self.common = [
            "--tools",
            str(TOOLS_FILE),
            "--workspace",
            str(self.workspace),
            "--config",
            str(config),
        ]

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "engine.cli", *args]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, cwd=ROOT, env=self.env, timeout=120
        )

    @property
    def journal(self) -> Journal:
        return Journal(self.home / "journal.sqlite")


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[tuple[_Cli, LoopbackServer]]:
    with serve(_script(0.05)) as server:
        yield _Cli(tmp_path, server), server


@pytest.mark.slow
def test_an_agent_steps_calls_are_journaled_audited_shown_and_reported(
    cli: tuple[_Cli, LoopbackServer], tmp_path: Path
) -> None:
    """`run --json` and `show --json` agree (iterations and tool_calls included); the
    journal has a row per inner call with its idempotency key; `show` and the HTML
    report list the tool calls; the audit log has a line per call, secrets redacted."""
    run, server = cli
    done = run("run", str(run.plan), *run.common, "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    run_id = document["run_id"]
    facts = document["steps"]["facts"]
    assert facts["iterations"] == 3 and [c["tool"] for c in facts["tool_calls"]] == [
        "append_line",
        "slow",
    ]

    shown = run("show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == document

    calls = run.journal.agent_calls(run_id)["facts"]
    assert [(c["kind"], c["index"], c["iteration"]) for c in calls] == [
        ("model", 0, 1),
        ("tool", 1, 1),
        ("model", 2, 2),
        ("tool", 3, 2),
        ("model", 4, 3),
    ]
    assert [c["key"] for c in calls if c["kind"] == "tool"] == [
        f"{run_id}:facts:1:1",
        f"{run_id}:facts:1:3",
    ]
    assert calls[0]["reply"]["tool_calls"][0]["name"] == "append_line"
    assert sum(c["cost_usd"] for c in calls if c["kind"] == "model") == pytest.approx(
        facts["cost_usd"]
    )

    text = run("show", run_id).stdout
    assert "3 model call(s), 2 tool call(s)" in text
    assert "1. append_line(" in text and "-> appended hello" in text
    assert "2. slow(" in text and "waited 0.05s" in text

    page = tmp_path / "report.html"
    assert run("show", run_id, "--html", str(page), *run.common[:2]).returncode == 0
    html = page.read_text()
    assert "Agent steps" in html and "3 model call(s), 2 tool call(s)" in html
    assert "append_line" in html and "waited 0.05s" in html

    lines = [
        json.loads(line)
        for line in (run.home / "audit" / f"{run_id}.jsonl").read_text().splitlines()
    ]
    models = [line for line in lines if line["event"] == "agent_model_called"]
    tools = [line for line in lines if line["event"] == "agent_tool_called"]
    assert [m["tool_calls"] for m in models] == [["append_line"], ["slow"], []]
    assert [t["key"] for t in tools] == [f"{run_id}:facts:1:1", f"{run_id}:facts:1:3"]
    assert all(t["step"] == "facts" and t["error"] is None for t in tools)
    raw = (run.home / "audit" / f"{run_id}.jsonl").read_text()
    assert SECRET not in raw and "hello [redacted]" in raw
    assert len(server.requests) == 3


def _wait_for(
    condition: Any, what: str, proc: subprocess.Popen[str], timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _paid(home: Path) -> tuple[int, float]:
    """Model calls in the ledger (one run in this home) and their cost."""
    if not (home / "ledger.sqlite").exists():
        return 0, 0.0
    ledger = sqlite3.connect(home / "ledger.sqlite", timeout=10)
    try:
        count, cost = ledger.execute("SELECT COUNT(*), SUM(cost_usd) FROM calls").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return 0, 0.0
    finally:
        ledger.close()
    return int(count), float(cost or 0.0)


@pytest.mark.slow
def test_a_run_killed_mid_loop_resumes_without_repeating_calls(tmp_path: Path) -> None:
    """SIGKILL `planfile run` while an agent step waits in its second tool call, after
    its first tool call (a side effect) is journaled: `planfile resume` replays the two
    model replies and the first tool's result from the journal; the tool ran once, no
    model call is made (nor ledgered) twice, and the step finishes."""
    with serve(_script(60)) as server:
        run = _Cli(tmp_path, server)
        proc = subprocess.Popen(
            run.command("run", str(run.plan), *run.common, "--json"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=run.env,
        )
        try:
            journal_file = run.home / "journal.sqlite"
            _wait_for(journal_file.exists, "the journal exists", proc)
            journal = run.journal

            def journaled() -> list[dict[str, Any]]:
                rows = journal.runs()
                return journal.agent_calls(rows[0].run_id).get("facts", []) if rows else []

            # The first tool call is journaled, and the second model reply (the model
            # asked for `slow`, which now waits a minute); the ledger commits its rows
            # within 0.25 s (a kill before that would lose the second call's row).
            _wait_for(
                lambda: (
                    [c["kind"] for c in journaled()] == ["model", "tool", "model"]
                    and (run.workspace / "slow.started").exists()
                ),
                "the first tool call to be journaled",
                proc,
            )
            _wait_for(lambda: _paid(run.home)[0] == 2, "the ledger to commit", proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        (row,) = journal.runs()
        assert row.status == "interrupted"
        assert len(server.requests) == 2
        shown = run("show", row.run_id).stdout
        assert "2 model call(s), 1 tool call(s) journaled" in shown
        assert "1. append_line(" in shown
        page = tmp_path / "interrupted.html"
        assert run("show", row.run_id, "--html", str(page), *run.common[:2]).returncode == 0
        assert "not finished; 2 model call(s), 1 tool call(s) journaled" in page.read_text()
        assert "appended hello" in page.read_text()

        (run.workspace / "fast").touch()  # the slow tool (which never finished) runs again, quickly
        resumed = run("resume", row.run_id, *run.common, "--json")
        assert resumed.returncode == 0, resumed.stderr
        document = json.loads(resumed.stdout)
        facts = document["steps"]["facts"]
        assert document["status"] == "succeeded" and facts["output"] == "done"

    appended = (run.workspace / "appended.log").read_text().splitlines()
    assert len(appended) == 1  # the side effect happened once
    assert appended[0].endswith(f"{row.run_id}:facts:1:1")
    # Model calls: turns 0 and 1 in the killed process, only turn 2 after the resume.
    turns = [sum(m["role"] == "assistant" for m in r["messages"]) for r in server.requests]
    assert turns == [0, 1, 2]
    assert facts["iterations"] == 3
    assert [c["tool"] for c in facts["tool_calls"]] == ["append_line", "slow"]
    assert facts["tool_calls"][0]["output"] == f"appended hello {SECRET}"
    # The ledger holds each model call once; the step's cost counts the replayed ones too.
    calls, paid = _paid(run.home)
    assert calls == 3
    assert paid == pytest.approx(facts["cost_usd"])
    assert json.loads(run("show", row.run_id, "--json").stdout) == document


# --- in-process: replay rules, the journal's table, the live display -------------------
PROVIDER = registered()
FAST = {"fast": "pftest/fast"}
PRICED = {"pftest/fast": ModelSettings(input_cost_per_million=1000.0, output_cost_per_million=0.0)}


def _tool_call(name: str, **arguments: Any) -> ScriptedReply:
    return ScriptedReply(
        None,
        input_tokens=1000,
        output_tokens=0,
        tool_calls=[{"name": name, "arguments": arguments}],
    )


def test_a_run_stopped_by_its_budget_mid_loop_resumes_by_replaying(tmp_path: Path) -> None:
    """The budget stops an agent step before its third model call; resumed with more
    budget, the step replays its two model calls and its tool call (neither paid nor run
    again) and finishes."""
    PROVIDER.reset()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "fast").touch()
    plan = load_plan(PLAN, tools=[append_line, slow])
    PROVIDER.add(
        "fast",
        _tool_call("append_line", text="once"),
        _tool_call("slow", seconds=0),
        ScriptedReply("done", input_tokens=1000, output_tokens=0),
    )

    def engine(budget: float) -> Engine:
        return Engine(
            tools=[append_line, slow],
            config=Config(tiers=FAST, models=PRICED),
            budget_usd=budget,
            ledger=Ledger(tmp_path / "ledger.sqlite"),
            journal=Journal(tmp_path / "journal.sqlite"),
            settings={"workspace": str(workspace)},
        )

    # Each call costs $1 (1000 tokens) and reserves its counted prompt (~200 tokens,
    # ~$0.2) first: $2.10 makes two calls, and refuses the third.
    first = asyncio.run(engine(2.1).run(plan))
    assert first.status == "budget_exceeded", first.steps["facts"].error
    assert len(PROVIDER.calls) == 2, first.steps["facts"].error
    done = asyncio.run(engine(10.0).resume(first.run_id))
    assert done.status == "succeeded" and done.outputs["facts"] == "done"
    assert len(PROVIDER.calls) == 3  # only the third model call was made
    assert (workspace / "appended.log").read_text().count("once") == 1
    record = done.steps["facts"]
    assert record.iterations == 3 and [c["tool"] for c in record.tool_calls or []] == [
        "append_line",
        "slow",
    ]
    assert Ledger(tmp_path / "ledger.sqlite").spent_by_run(first.run_id) == pytest.approx(
        record.cost_usd
    )


def _call(kind: str, index: int, iteration: int, attempt: int) -> dict[str, Any]:
    return {"kind": kind, "index": index, "iteration": iteration, "attempt": attempt}


@st.composite
def _attempts(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Journaled calls of several attempts (index numbering goes on across attempts;
    parallel tool calls written in any order); and the last attempt's, in index order."""
    index = 0
    written: list[dict[str, Any]] = []
    last: list[dict[str, Any]] = []
    for attempt in range(1, draw(st.integers(1, 3)) + 1):
        last = []
        for iteration in range(1, draw(st.integers(1, 4)) + 1):
            model = _call("model", index, iteration, attempt)
            index += 1
            tools = [
                _call("tool", index + n, iteration, attempt) for n in range(draw(st.integers(0, 3)))
            ]
            index += len(tools)
            written += [model, *draw(st.permutations(tools))]
            last += [model, *tools]
    return written, last


@given(_attempts())
def test_the_last_attempts_calls_are_replayed_in_call_order(
    case: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    written, last = case
    assert agent_calls.last_attempt(written) == last


def test_calls_made_after_a_resume_continue_the_attempt_they_replayed() -> None:
    """Attempt 2 was killed after two calls; the resumed process (whose attempts count
    from 1 again) replayed them and made two more, then was killed too: a second resume
    replays all four, as one attempt, and nothing of attempt 1."""
    written = [
        _call("model", 0, 1, 1),  # attempt 1 failed
        _call("model", 1, 1, 2),
        _call("tool", 2, 1, 2),
        _call("model", 3, 2, 1),  # the resumed process, going on from index 3
        _call("tool", 4, 2, 1),
    ]
    replay = agent_calls.last_attempt(written)
    assert [c["index"] for c in replay] == [1, 2, 3, 4]
    assert {c["attempt"] for c in replay} == {2}
    assert written[3]["attempt"] == 1  # the journal's rows are not changed


def test_failed_steps_run_afresh_unless_the_budget_stopped_the_run() -> None:
    calls = {
        "a": [_call("model", 0, 1, 1)],
        "b": [_call("model", 0, 1, 1)],
        "c": [_call("model", 0, 1, 1)],
    }
    records = {
        "a": StepRecord(tool="agent", status=StepStatus.FAILED),
        "b": StepRecord(tool="agent", status=StepStatus.CANCELLED),
        "c": StepRecord(tool="agent", status=StepStatus.SUCCEEDED),
    }
    assert set(agent_calls.replayable(calls, records, budget_stopped=False)) == {"b"}
    assert set(agent_calls.replayable(calls, records, budget_stopped=True)) == {"a", "b"}
    # A step killed mid-loop has no record at all.
    assert set(agent_calls.replayable({"d": calls["a"]}, {}, budget_stopped=False)) == {"d"}


def test_agent_calls_are_written_within_the_flush_interval(tmp_path: Path) -> None:
    """A call reported mid-step is in the file ~50 ms later, read by another process's
    Journal, long before its step ends (what makes a SIGKILL lose nothing finished)."""
    path = tmp_path / "journal.sqlite"

    async def scenario() -> list[dict[str, Any]]:
        journal = Journal(path)
        log = journal.run_started("r1", "{}", "p", {}, None, {"facts": StepRecord(tool="agent")})
        log.agent_call(
            "facts", {**_call("tool", 1, 1, 1), "key": "r1:facts:1:1", "output": {"x": 1}}
        )
        await asyncio.sleep(Journal.FLUSH_EVERY_S * 3)
        seen = Journal(path).agent_calls("r1")["facts"]
        journal.detach(log)
        return seen

    (seen,) = [asyncio.run(scenario())]
    assert seen == [{**_call("tool", 1, 1, 1), "key": "r1:facts:1:1", "output": {"x": 1}}]
    row = (
        sqlite3.connect(path)
        .execute("SELECT call_key, kind, call_index FROM agent_calls")
        .fetchone()
    )
    assert row == ("r1:facts:1:1", "tool", 1)


def test_a_version_2_journal_gains_the_agent_calls_table(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, plan TEXT, status TEXT, started_at TEXT,
            finished_at TEXT, cost_usd REAL DEFAULT 0, plan_json TEXT, inputs_json TEXT,
            source TEXT, result_json TEXT, plan_hash TEXT, summary_json TEXT);
        CREATE TABLE step_log (run_id TEXT, written_at TEXT, records_json TEXT);
        PRAGMA user_version = 2;
        """
    )
    old.close()
    journal = Journal(path)
    assert journal.agent_calls("none") == {}
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


def test_the_plain_log_has_a_line_per_inner_tool_call() -> None:
    import io

    stream = io.StringIO()
    log = PlainLog(stream)
    log(AgentToolCalled("r", 1.5, "facts", 2, "search", {"query": "rent"}, ["a", "b"], None, 0.25))
    log(
        AgentToolCalled(
            "r",
            1.7,
            "facts",
            2,
            "calculate",
            {"expression": "1/0"},
            None,
            "division by zero",
            0.01,
            True,
        )
    )
    log.flush()
    first, second = stream.getvalue().splitlines()
    assert "tool    facts: search(" in first and '"query": "rent"' in first and "(0.25s)" in first
    assert "calculate(" in second and "error: division by zero" in second and "replayed" in second
