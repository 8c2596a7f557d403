"""The command line: exit codes, outputs, and no tracebacks for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import main

from .conftest import EXAMPLES, ROOT


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """Every shipped example checks clean."""
    files = sorted(str(p) for p in EXAMPLES.glob("*.plan"))
    assert len(files) >= 5
    code, out, err = run_cli(capsys, "check", *files)
    assert code == 0, err
    assert out.count(": ok") == len(files)


def test_check_reports_errors_with_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Errors go to stderr as file:line:col with a caret; exit code 2."""
    bad = tmp_path / "bad.plan"
    bad.write_text('plan bad\nstep a: str = serch(query: "x")\n')
    code, _, err = run_cli(capsys, "check", str(bad))
    assert code == 2
    assert f"{bad}:2:15: error: unknown tool `serch`" in err
    assert "^^^^^" in err and "did you mean `search`?" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("binary.plan", b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8"),
        ("empty.json", b"", "invalid JSON"),
        (
            "cycle.plan",
            b'step a: str = search(query: "{{ b }}")\nstep b: str = search(query: "{{ a }}")',
            "dependency cycle: a -> b -> a",
        ),
        ("wrong.json", b'{"steps": {"a": 1}}', "`steps` must be a list"),
        ("dir.plan", None, "is a folder"),
        ("missing.plan", "absent", "no such file"),
    ],
)
def test_bad_input_exits_2_without_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, content: object, expected: str
) -> None:
    """Malformed, binary, cyclic, wrong-shaped, missing: exit 2 and a located message."""
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    code, _, err = run_cli(capsys, "check", str(path))
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


def test_huge_file_is_refused_quickly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A 50 MB file is refused by size before parsing."""
    path = tmp_path / "huge.plan"
    with path.open("wb") as handle:
        handle.write(b"# " + b"x" * (50 * 1024 * 1024) + b"\n")
    code, _, err = run_cli(capsys, "check", str(path))
    assert code == 2 and "the limit is" in err


def test_graph_formats(capsys: pytest.CaptureFixture[str]) -> None:
    """graph prints mermaid, dot and json with the critical path."""
    plan = str(EXAMPLES / "cost_of_living.plan")
    code, out, _ = run_cli(capsys, "graph", plan)
    assert code == 0 and out.startswith("flowchart TD") and "housing --> left" in out
    code, out, _ = run_cli(capsys, "graph", plan, "--format", "dot")
    assert code == 0 and '"housing" -> "left";' in out
    code, out, _ = run_cli(capsys, "graph", plan, "--format", "json")
    data = json.loads(out)
    assert data["critical_path"]["steps"][-1] == "verdict"
    assert {"from": "housing", "to": "left"} in data["edges"]


def test_fmt_converts_json_and_checks_formatting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """fmt prints JSON plans as .plan text; --check flags unformatted files."""
    doc = tmp_path / "p.json"
    doc.write_text(json.dumps({"steps": [{"id": "a", "tool": "search", "tool_input": "x"}]}))
    code, out, _ = run_cli(capsys, "fmt", str(doc))
    assert code == 0 and 'step a = search(query: "x")' in out
    messy = tmp_path / "m.plan"
    messy.write_text('step   a=search(query:"x")')
    assert run_cli(capsys, "fmt", "--check", str(messy))[0] == 1
    assert run_cli(capsys, "fmt", "-w", str(messy))[0] == 0
    assert run_cli(capsys, "fmt", "--check", str(messy))[0] == 0


def test_schema_and_tools(capsys: pytest.CaptureFixture[str]) -> None:
    """schema prints the JSON Schema; tools lists typed signatures."""
    code, out, _ = run_cli(capsys, "schema")
    assert code == 0 and json.loads(out)["title"] == "planfile plan"
    code, out, _ = run_cli(capsys, "tools")
    assert code == 0 and "calculate(expression: str) -> float" in out
    code, out, _ = run_cli(capsys, "tools", "--json")
    assert {t["name"] for t in json.loads(out)} >= {"calculate", "search", "read_file", "llm"}


def test_user_tools_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--tools FILE.py adds typed user tools to check and tools."""
    tools = tmp_path / "mytools.py"
    tools.write_text(
        "from stdlib_tools import tool\n\n"
        "@tool\ndef shout(text: str, times: int = 1) -> str:\n"
        '    """Upper-case text."""\n'
        "    return text.upper() * times\n"
    )
    plan = tmp_path / "p.plan"
    plan.write_text('step a: str = shout(text: "hi", times: 2)\n')
    assert run_cli(capsys, "check", "--tools", str(tools), str(plan))[0] == 0
    code, out, _ = run_cli(capsys, "tools", "--tools", str(tools))
    assert "shout(text: str, times: int = 1) -> str" in out
    code, _, err = run_cli(capsys, "check", str(plan))
    assert code == 2 and "unknown tool `shout`" in err


def test_broken_tools_file_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A tools file with a syntax error names the file and line."""
    tools = tmp_path / "broken.py"
    tools.write_text("def x(:\n")
    code, _, err = run_cli(capsys, "tools", "--tools", str(tools))
    assert code == 2 and f"{tools}:1" in err and "Traceback" not in err


def test_console_script_starts_without_litellm() -> None:
    """`planfile check` does not import litellm (fast start-up)."""
    code = (
        "import sys\nfrom engine.cli.main import main\n"
        f"rc = main(['check', '-q', {str(EXAMPLES / 'cost_of_living.plan')!r}])\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\nsys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown commands and flags exit 2 (main returns the code; `planfile` exits with it)."""
    assert main(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
    assert main([]) == 2


def test_shared_option_blocks_keep_each_commands_defaults() -> None:
    """`run` does not replan unless asked; `ask` replans on failure (one declaration each)."""
    from engine.cli.options import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "p.plan"]).replan == "never"
    assert parser.parse_args(["ask", "a goal"]).replan == "on-failure"
    assert parser.parse_args(["run", "p.plan"]).max_parallel == 16
