"""Plan- and model-controlled text on a terminal, tools that call sys.exit, non-finite floats.

Issue 11's hostile-user findings that are not one command line and one message (those
are rows of tests/test_cli_errors.py's CASES).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dsl.errors import Diagnostic, Location, escape_controls
from engine.cli.main import main

# A step result that retitles the window, turns the text red, and fakes a log line.
HOSTILE = "\\u001b]0;pwned\\u0007\\u001b[31mRED\\r\\nfake: line\\u009b2J\\u007f"
INJECTING_PLAN = (
    f'plan t\nstep r: json = json_query(data: "{HOSTILE}", expression: "@")\noutput r\n'
)

EXITING_TOOLS = '''
import sys
from stdlib_tools.registry import tool

@tool
def quit_sync(x: str) -> str:
    """Calls sys.exit(3)."""
    sys.exit(3)

@tool
async def quit_async(x: str) -> str:
    """Raises SystemExit(4)."""
    raise SystemExit(4)

@tool
def give(x: str) -> float:
    """float(x): inf and nan too."""
    return float(x)

@tool
def give_list(x: str) -> list[float]:
    """[1.0, float(x)]."""
    return [1.0, float(x)]
'''


def _raw_controls(text: str) -> list[str]:
    """Control characters a terminal would act on (newlines and tabs are layout)."""
    return [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0]


def test_step_results_reach_the_terminal_escaped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The live log, the run summary and `show` print ESC, BEL, CR, C1 and DEL as escapes."""
    plan = tmp_path / "p.plan"
    plan.write_text(INJECTING_PLAN)
    assert main(["run", str(plan)]) == 0
    run = capsys.readouterr()
    run_id = re.search(r"^run (\w+) succeeded", run.err, re.M)[1]  # type: ignore[index]
    assert main(["show", run_id]) == 0
    show = capsys.readouterr()
    for text in (run.out, run.err, show.out, show.err):
        assert _raw_controls(text) == [], text
    assert "\\x1b]0;pwned\\x07\\x1b[31mRED" in run.err  # the live log line
    assert "\\x1b]0;pwned\\x07\\x1b[31mRED\\x0d\n" in run.out  # the summary keeps its lines
    assert "\\x9b2J\\x7f" in show.out


def test_json_output_stays_exact(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`--json` is data, not display: the value comes back exactly."""
    plan = tmp_path / "p.plan"
    plan.write_text(INJECTING_PLAN)
    assert main(["run", str(plan), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["outputs"]["r"] == "\x1b]0;pwned\x07\x1b[31mRED\r\nfake: line\x9b2J\x7f"


def test_check_escapes_the_source_line_and_keeps_the_caret_under_the_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan = tmp_path / "p.plan"
    plan.write_bytes(b'plan t\nstep a = calculate(expression: "1" \x1b[31mRED)\n')
    assert main(["check", str(plan)]) == 2
    err = capsys.readouterr().err
    assert _raw_controls(err) == [], err
    line, caret = next(
        (line, after)
        for line, after in zip(err.splitlines(), err.splitlines()[1:], strict=False)
        if line.lstrip().startswith("2 |")
    )
    assert line[caret.index("^") :].startswith("\\x1b")
    assert caret.count("^") == len("\\x1b")


def test_diagnostic_caret_counts_escaped_characters() -> None:
    """Escaping widens a control character to four: the caret moves with the text."""
    source = "a\x07b\x1bc = bad\n"
    shown = Diagnostic("no", Location("f", 1, 7, end_column=10)).render(source).splitlines()
    assert shown[1] == "    1 | a\\x07b\\x1bc = bad"
    assert shown[2][shown[1].index("=") :] == "^^^"
    # Lines are the parser's lines ("\n" only): \x1c or \u2028 do not end one.
    two = Diagnostic("no", Location("f", 2, 1)).render("x\x1cy\nsecond\n").splitlines()
    assert two[1] == "    2 | second"


def test_escape_controls_keeps_layout_only_when_asked() -> None:
    assert escape_controls("a\tb\nc\r\x1b\x85") == "a\\x09b\\x0ac\\x0d\\x1b\\x85"
    assert escape_controls("a\tb\nc\r\x1b", multiline=True) == "a\tb\nc\\x0d\\x1b"
    assert escape_controls("plain é ü 中") == "plain é ü 中"


def _run_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, plan: str) -> tuple[int, dict]:
    (tmp_path / "t.py").write_text(EXITING_TOOLS)
    (tmp_path / "p.plan").write_text(plan)
    code = main(["run", str(tmp_path / "p.plan"), "--tools", str(tmp_path / "t.py"), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_tool_calling_sys_exit_fails_its_step_not_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """sys.exit in a sync tool (pool thread or inline) or an async one is the step's
    ToolError; the run goes on per the step's policy instead of ending "cancelled"."""
    code, result = _run_json(
        capsys,
        tmp_path,
        "plan t\n"
        'step a: str = quit_sync(x: "1") on_error skip\n'
        'step b: str = quit_async(x: "1") on_error skip\n'
        'step c: str = quit_async(x: "1") on_error skip\n    timeout 5s\n'
        'step d: float = calculate(expression: "1")\n'
        "output d\n",
    )
    assert code == 0 and result["status"] == "succeeded", result
    steps = result["steps"]
    assert steps["a"]["error"] == "tool `quit_sync` called sys.exit(3)"
    assert steps["b"]["error"] == "tool `quit_async` called sys.exit(4)"
    assert steps["c"]["error"] == "tool `quit_async` called sys.exit(4)"
    assert steps["d"]["status"] == "succeeded"


@pytest.mark.parametrize(
    ("plan", "step", "says"),
    [
        ('step a: float = give(x: "inf")', "a", "Input should be a finite number"),
        ('step a: float = give(x: "-inf")', "a", "Input should be a finite number"),
        ('step a: float = give(x: "nan")', "a", "Input should be a finite number"),
        ('step a: list[float] = give_list(x: "nan")', "a", "at `1`: Input should be a finite"),
    ],
)
def test_non_finite_float_results_fail_their_step(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, plan: str, step: str, says: str
) -> None:
    """nan and inf compare false with everything: a later step must never see them."""
    code, result = _run_json(
        capsys,
        tmp_path,
        f'plan t\n{plan}\nstep b: float = calculate(expression: "{{{{ a }}}}")\noutput b\n',
    )
    assert code == 1 and result["steps"][step]["status"] == "failed", result
    assert says in result["steps"][step]["error"]
    assert result["steps"]["b"]["status"] == "skipped"


def test_the_approval_prompt_escapes_model_written_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JSON leaves DEL and C1 raw; the terminal prompt shows them as escapes."""
    import asyncio

    from engine.cli import common

    prompts: list[str] = []
    monkeypatch.setattr(common.sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(common, "_ask_line", lambda prompt: prompts.append(prompt) or "y")
    ask = common.terminal_approver()
    assert ask is not None
    assert asyncio.run(ask("r1", "send", {"body": "hi\x9b2J\x7f\x1b[31m"})) is True
    assert _raw_controls(prompts[0]) == [] and "\\x9b2J\\x7f" in prompts[0]
