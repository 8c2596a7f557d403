"""A tool's odd text (a lone surrogate) and a stdout that is not UTF-8 do not crash a run:
the journal, the step cache and the audit log keep the value (every line written),
`--json` writes the same JSON value (escaped where a stream cannot write it), and the
text summary shows the escape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.errors import escape_controls
from engine.observe.audit_lines import encode_line
from engine.store.journal import _dumps
from engine.store.step_cache import StepCache

TOOLS = '''
from stdlib_tools import tool

@tool
def odd() -> dict:
    """Text no UTF-8 stream can write."""
    return {"s": "\\ud800 é€😀", "k\\udfff": 1}
'''
PLAN = {"name": "p", "steps": [{"id": "a", "tool": "odd"}]}


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    (tmp_path / "odd_tools.py").write_text(TOOLS)
    (tmp_path / "p.json").write_text(json.dumps(PLAN))
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", "p.json", "--tools", "odd_tools.py", *args],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PLANFILE_HOME": str(tmp_path / "home"), **env},
    )


text_with_surrogates = st.text(alphabet=st.characters(codec=None, categories=None), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        text_with_surrogates,
        lambda inner: (
            st.dictionaries(text_with_surrogates, inner, max_size=3) | st.lists(inner, max_size=3)
        ),
        max_leaves=6,
    )
)
def test_journal_encoding_round_trips_any_text(value: object) -> None:
    assert json.loads(_dumps(value)) == value


@given(text_with_surrogates)
def test_escaped_text_is_writable_as_utf8(text: str) -> None:
    escape_controls(text).encode("utf-8")
    escape_controls(text, multiline=True).encode("utf-8")


def test_json_output_keeps_a_lone_surrogate_as_its_escape(tmp_path: Path) -> None:
    done = _run(tmp_path, "--json")
    assert done.returncode == 0, done.stderr.decode()
    doc = json.loads(done.stdout)
    assert doc["steps"]["a"]["output"] == {"s": "\ud800 é€😀", "k\udfff": 1}


def test_json_output_on_a_latin1_stdout_is_the_same_value(tmp_path: Path) -> None:
    done = _run(tmp_path, "--json", PYTHONIOENCODING="latin-1")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.isascii()
    assert json.loads(done.stdout)["steps"]["a"]["output"]["s"] == "\ud800 é€😀"


def test_text_summary_shows_the_escape(tmp_path: Path) -> None:
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert b"\\ud800" in done.stdout
    assert b"internal error" not in done.stderr


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["error", "step", "reason"]),
        st.one_of(text_with_surrogates, st.integers(-(2**80), 2**80)),
        max_size=3,
    )
)
def test_every_audit_line_is_written_and_parses(values: dict[str, object]) -> None:
    line = encode_line({"ts": "t", "event": "step_failed", **values})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"ts": "t", "event": "step_failed", **values}


def test_a_failure_with_odd_text_keeps_its_audit_line(tmp_path: Path) -> None:
    (tmp_path / "boom_tools.py").write_text(
        "from stdlib_tools import tool\n\n@tool\ndef boom() -> int:\n"
        '    """Fail."""\n    raise ValueError("boom \\ud800")\n'
    )
    (tmp_path / "p.json").write_text(
        json.dumps({"name": "p", "steps": [{"id": "a", "tool": "boom"}]})
    )
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", "p.json", "--json", "--tools", "boom_tools.py"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PLANFILE_HOME": str(home)},
    )
    assert done.returncode == 1, done.stderr.decode()
    assert json.loads(done.stdout)["steps"]["a"]["error"] == "ValueError: boom \ud800"
    (log,) = (home / "audit").glob("*.jsonl")
    events = [json.loads(line) for line in log.read_bytes().splitlines()]
    failed = [e for e in events if e["event"] == "step_failed"]
    assert failed and failed[0]["error"] == "ValueError: boom \ud800"
    assert events[-1]["event"] == "run_finished"


def test_step_cache_keeps_odd_text(tmp_path: Path) -> None:
    cache = StepCache(tmp_path / "cache.sqlite")
    value = {"s": "\ud800 é", "k\udfff": [1, "😀"]}
    key = StepCache.key("t", {"x": "\udc00"}, None, None)
    cache.put(key, value)
    assert cache.get(key) == value
