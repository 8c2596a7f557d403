"""A tool's odd text (a lone surrogate) and a stdout that is not UTF-8 do not crash a run:
the journal keeps the value, `--json` writes the same JSON value (escaped where a stream
cannot write it), and the text summary shows the escape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.errors import escape_controls
from engine.store.journal import _dumps

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
