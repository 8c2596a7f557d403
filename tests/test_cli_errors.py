"""One error tree: every bad input is a located message and an exit code, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dsl.errors import (
    Diagnostic,
    ExitCode,
    InputError,
    Location,
    PlanError,
    PlanfileError,
    ToolError,
)
from engine import errors, faults
from engine.cli import plan_cmds
from engine.cli.main import main

from .conftest import EXAMPLES, ROOT

ONE_STEP = 'plan t\nstep a: float = calculate(expression: "1")\noutput a\n'
WITH_INPUT = 'plan t\ninput n: int\nstep a: float = calculate(expression: "{{ n }}")\noutput a\n'


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def _write(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


# (what, how to build the command line in a scratch folder, expected exit, expected in stderr)
CASES: list[tuple[str, Callable[[Path], list[str]], int, list[str]]] = [
    (
        "bad plan",
        lambda t: ["check", _write(t, "p.plan", 'step a = calculate(expression: "1"\n')],
        2,
        ["p.plan:1:", "error:"],
    ),
    (
        "unknown filter",
        lambda t: [
            "check",
            _write(
                t,
                "p.plan",
                'input xs: list[float]\nstep a = calculate(expression: "{{ xs|summ }}")',
            ),
        ],
        2,
        ["p.plan:2:", "summ"],
    ),
    (
        "mistyped --input, located at the declaration",
        lambda t: ["run", _write(t, "p.plan", WITH_INPUT), "-i", "n=abc"],
        2,
        ["p.plan:2:7: error: input `n` must be `int`"],
    ),
    (
        "missing --input",
        lambda t: ["run", _write(t, "p.plan", WITH_INPUT)],
        2,
        ["p.plan:2:7: error: input `n` (int) is required", "hint: pass --input n="],
    ),
    (
        "undeclared --input",
        lambda t: ["run", _write(t, "p.plan", WITH_INPUT), "-i", "n=1", "-i", "m=2"],
        2,
        ["--input: error: unknown input `m`"],
    ),
    (
        "--input integer over 4,300 digits",
        lambda t: ["run", _write(t, "p.plan", WITH_INPUT), "-i", "n=" + "9" * 5000],
        2,
        ["--input: error: input `n`"],
    ),
    (
        "--input nested 60,000 deep",
        lambda t: [
            "run",
            _write(t, "p.plan", WITH_INPUT),
            "-i",
            "n=" + "[" * 60_000 + "]" * 60_000,
        ],
        2,
        ["--input: error: input `n`", "nests too deeply"],
    ),
    (
        "--input number too large for a float (would be infinity)",
        lambda t: ["run", _write(t, "p.plan", WITH_INPUT), "-i", "n=1e999"],
        2,
        ["--input: error: input `n`: `1e999` is too large for a number"],
    ),
    (
        "malformed --input",
        lambda t: ["run", _write(t, "p.plan", WITH_INPUT), "-i", "n"],
        2,
        ["--input: error: --input takes NAME=VALUE"],
    ),
    (
        "bad config",
        lambda t: ["run", _write(t, "p.plan", ONE_STEP), "--config", _write(t, "c.toml", "[x\n")],
        2,
        ["c.toml", "invalid TOML"],
    ),
    (
        "bad tools file",
        lambda t: [
            "check",
            _write(t, "p.plan", ONE_STEP),
            "--tools",
            _write(t, "t.py", "import nosuch_mod_x\n"),
        ],
        2,
        ["t.py:1", "nosuch_mod_x"],
    ),
    ("unknown run id (show)", lambda t: ["show", "nosuchrun"], 2, ["no run `nosuchrun`"]),
    ("unknown run id (resume)", lambda t: ["resume", "nosuchrun"], 2, ["no run `nosuchrun`"]),
    (
        "unknown run id (approve)",
        lambda t: ["approve", "nosuchrun", "a"],
        2,
        ["no run `nosuchrun`"],
    ),
    (
        "unknown replan policy",
        lambda t: ["run", _write(t, "p.plan", ONE_STEP), "--replan", "sometimes"],
        2,
        ["unknown replan policy `sometimes`"],
    ),
    ("runs --limit too large", lambda t: ["runs", "--limit", "9" * 20], 2, ["--limit"]),
    ("--max-parallel over 4,300 digits", lambda t: ["runs", "--limit", "9" * 5000], 2, ["--limit"]),
    (
        "negative budget",
        lambda t: ["run", _write(t, "p.plan", ONE_STEP), "--budget", "-1"],
        2,
        ["--budget"],
    ),
    (
        "bad --limit",
        lambda t: ["run", _write(t, "p.plan", ONE_STEP), "--limit", "tool:search=" + "9" * 5000],
        2,
        ["--limit takes KIND:NAME=N"],
    ),
    ("graph without a plan", lambda t: ["graph"], 2, ["give a PLAN file, or --run RUN"]),
    (
        "fmt of several plans, printing",
        lambda t: ["fmt", _write(t, "a.plan", ONE_STEP), _write(t, "b.plan", ONE_STEP)],
        2,
        ["give one PLAN to print, or several with --write or --check"],
    ),
    (
        "JSON outputs that are not a list",
        lambda t: [
            "check",
            _write(
                t,
                "p.json",
                '{"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "1"}}],'
                ' "outputs": 5}',
            ),
        ],
        2,
        ["p.json:outputs: error: `outputs` must be a list of step names"],
    ),
    (
        "infinite expected cost in a JSON plan",
        lambda t: [
            "check",
            _write(
                t,
                "p.json",
                '{"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "1"}}],'
                ' "expectedCost": 1e999}',
            ),
        ],
        2,
        # Refused as JSON is read (1e999 would load as inf), located at the number.
        ["p.json:1:92: error: a number too large for a float"],
    ),
    (
        "JSON timeout over a week",
        lambda t: [
            "check",
            _write(
                t,
                "p.json",
                '{"steps": [{"id": "a", "tool": "calculate", "args": {"expression": "1"},'
                ' "timeout": 1e300}]}',
            ),
        ],
        2,
        ["p.json:steps[0].timeout: error: Input should be less than or equal to 604800"],
    ),
    (
        ".plan timeout over a week",
        lambda t: [
            "check",
            _write(t, "p.plan", ONE_STEP.replace("output a", "    timeout 9" + "9" * 40 + "s")),
        ],
        2,
        ["p.plan:3:13: error: timeout must be more than zero and at most a week (168h)"],
    ),
    (
        "retry over 4,300 digits",
        lambda t: [
            "check",
            _write(t, "p.plan", ONE_STEP.replace("output a", "    retry " + "9" * 5000)),
        ],
        2,
        ["p.plan:3:11: error: retry count must be between 0 and 100"],
    ),
    # Issue 11, found by a hostile-user test: each of these hung or crashed.
    (
        "endless plan file (read no more than the limit)",
        lambda t: ["check", "/dev/zero"],
        2,
        ["/dev/zero: error: plan is over the 8 MiB limit (or never ends)"],
    ),
    (
        "endless config file",
        lambda t: ["run", _write(t, "p.plan", ONE_STEP), "--config", "/dev/zero"],
        2,
        ["/dev/zero: over the 1 MiB limit for a config file"],
    ),
    (
        "config TOML nested 100,000 deep",
        lambda t: [
            "run",
            _write(t, "p.plan", ONE_STEP),
            "--config",
            _write(t, "c.toml", "a = " + "[" * 100_000 + "]" * 100_000 + "\n"),
        ],
        2,
        ["c.toml: invalid TOML: values nest too deeply"],
    ),
    (
        "config integer over 4,300 digits",
        lambda t: [
            "run",
            _write(t, "p.plan", ONE_STEP),
            "--config",
            _write(t, "c.toml", "[limits]\nmax_parallel = " + "9" * 5000 + "\n"),
        ],
        2,
        ["c.toml: invalid TOML: a number with more than 4,300 digits"],
    ),
    (
        "config count out of range",
        lambda t: [
            "run",
            _write(t, "p.plan", ONE_STEP),
            "--config",
            _write(t, "c.toml", "[limits]\nmax_parallel = " + "9" * 4000 + "\n"),
        ],
        2,
        ["c.toml: limits.max_parallel must be from 1 to 1,000,000"],
    ),
    (
        "config price not finite",
        lambda t: [
            "run",
            _write(t, "p.plan", ONE_STEP),
            "--config",
            _write(t, "c.toml", '[models."m"]\ninput_cost_per_million = inf\n'),
        ],
        2,
        ["c.toml: `models.m.input_cost_per_million`: Input should be a finite number"],
    ),
    (
        "tools file that is a device",
        lambda t: ["check", _write(t, "p.plan", ONE_STEP), "--tools", "/dev/zero"],
        2,
        ["/dev/zero: not a regular file"],
    ),
    (
        "tools file calling sys.exit(0) while it loads",
        lambda t: [
            "check",
            _write(t, "p.plan", ONE_STEP),
            "--tools",
            _write(t, "t.py", "import sys\nsys.exit(0)\n"),
        ],
        2,
        ["t.py:2: called sys.exit(0) while loading"],
    ),
    (
        "--input inf for a float",
        lambda t: ["run", _write(t, "p.plan", WITH_INPUT.replace("int", "float")), "-i", "n=inf"],
        2,
        ["p.plan:2:7: error: input `n` must be `float`: Input should be a finite number"],
    ),
    (
        "--input nan for a float",
        lambda t: ["run", _write(t, "p.plan", WITH_INPUT.replace("int", "float")), "-i", "n=nan"],
        2,
        ["p.plan:2:7: error: input `n` must be `float`: Input should be a finite number"],
    ),
    (
        "JSON plan integer over 4,300 digits, located at the number",
        lambda t: [
            "check",
            _write(
                t,
                "p.json",
                '{"steps": [\n {"id": "a", "tool": "calculate",'
                ' "args": {"expression": "1", "x": ' + "9" * 5000 + "}}]}",
            ),
        ],
        2,
        ["p.json:2:68: error: a number with more than 4,300 digits"],
    ),
    (
        "JSON plan NaN, located",
        lambda t: [
            "check",
            _write(
                t,
                "p.json",
                '{"steps": [\n {"id": "a", "tool": "calculate",'
                ' "args": {"expression": "1", "x": NaN}}]}',
            ),
        ],
        2,
        ["p.json:2:68: error: invalid JSON: NaN is not a JSON number"],
    ),
]


@pytest.mark.parametrize(("what", "argv", "code", "says"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error_with_its_exit_code(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    what: str,
    argv: Callable[[Path], list[str]],
    code: int,
    says: list[str],
) -> None:
    """Bad plans, inputs, configs, tools files, run ids and flags: no traceback, no bug report."""
    got, err = run_cli(capsys, *argv(tmp_path))
    assert got == code, err
    assert "Traceback" not in err and "internal error" not in err, err
    for text in says:
        assert text in err, err


def test_unknown_step_to_approve_is_an_approval_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`approve RUN STEP` with a step the run does not have: exit 2 and a did-you-mean."""
    plan = _write(tmp_path, "p.plan", ONE_STEP)
    code, out = main(["run", plan, "--json"]), capsys.readouterr().out
    assert code == 0
    run_id = json.loads(out)["run_id"]
    code, err = run_cli(capsys, "approve", run_id, "b")
    assert code == 2 and f"run {run_id} has no step `b`" in err and "Traceback" not in err


STUCK_TOOL = """
import time
from stdlib_tools.registry import tool

@tool
def stuck(seconds: float) -> str:
    \"\"\"A sync tool that ignores cancellation.\"\"\"
    time.sleep(seconds)
    return "done"
"""


@pytest.mark.parametrize(
    "step",
    [
        "step a: str = stuck(seconds: 60)",
        # One C call the sandbox's step budget cannot interrupt (or refuses outright).
        'step a: str = json_query(data: "{{ (\'x\' * 1000000)|wordwrap(1) }}", expression: "@")',
    ],
    ids=["sync tool", "template render"],
)
def test_a_thread_stuck_past_its_timeout_does_not_hold_the_process(
    tmp_path: Path, step: str
) -> None:
    """The step times out after 1 s; `planfile run` prints its summary and exits then,
    not when the worker thread (which Python cannot stop) finally returns."""
    tools = _write(tmp_path, "stuck.py", STUCK_TOOL)
    plan = _write(tmp_path, "p.plan", f"plan t\n{step}\n    timeout 1s\noutput a\n")
    env = {**os.environ, "PLANFILE_HOME": str(tmp_path / "home")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", plan, "--tools", tools],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "a:" in result.stderr and "run " in result.stderr and "Traceback" not in result.stderr
    assert took < 20, f"exited {took:.1f}s after start"


def _raising(error: BaseException) -> Callable[[object], int]:
    def command(args: object) -> int:
        raise error

    return command


TREE: list[tuple[BaseException, int]] = [
    (PlanError([Diagnostic("bad plan", Location("p.plan", 1, 1))]), 2),
    (InputError([Diagnostic("bad input", Location("p.plan", 2, 7))]), 2),
    (errors.UsageError("bad flag"), 2),
    (errors.ConfigError("bad config"), 2),
    (errors.RunSetupError("bad set-up"), 2),
    (errors.JournalError("bad journal"), 2),
    (errors.ApprovalError("no such step"), 2),
    (errors.ProviderError("bad key"), 1),
    (errors.RunError("a step failed"), 1),
    (ToolError("outside the workspace"), 1),
    (errors.BudgetExceeded("run", 0.5, 0.1, "openai/gpt-4o"), 3),
]


@pytest.mark.parametrize(("error", "code"), TREE, ids=[type(e).__name__ for e, _ in TREE])
def test_each_phase_maps_to_its_exit_code(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    code: int,
) -> None:
    """main catches PlanfileError once; the class says the exit code; the hint is shown."""
    monkeypatch.setattr(plan_cmds, "cmd_schema", _raising(error))
    got, err = run_cli(capsys, "schema")
    assert got == code and "Traceback" not in err and "internal error" not in err
    assert isinstance(error, PlanfileError) and error.render() and error.render() in err


def test_budget_error_carries_a_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        plan_cmds, "cmd_schema", _raising(errors.BudgetExceeded("run", 0.5, 0.1, "m/x"))
    )
    code, err = run_cli(capsys, "schema")
    assert code == ExitCode.BUDGET and "hint: raise the budget" in err


def test_a_bug_is_internal_error_with_a_debug_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything not in the tree is a bug: one line, a hint to rerun with --debug (traceback)."""
    monkeypatch.setattr(plan_cmds, "cmd_schema", _raising(KeyError("oops")))
    code, err = run_cli(capsys, "schema")
    assert code == 1 and "internal error: KeyError" in err and "--debug" in err
    assert "Traceback" not in err
    code, err = run_cli(capsys, "--debug", "schema")
    assert code == 1 and "Traceback" in err


def test_every_exception_class_is_in_the_tree() -> None:
    """The errors planfile raises for bad input all derive from PlanfileError."""
    from dsl.templates import TemplateProblem
    from dsl.types import TypeSyntaxError
    from engine.models.gateway import ModelCallError
    from engine.models.ledger import BudgetExceeded
    from engine.models.local_model import LocalModelMissing
    from engine.models.structured import InvalidReply
    from engine.run.executor import CheckFailed, RetryableError, StepError
    from engine.store.journal import JournalError, JournalLocked
    from stdlib_tools.calculator import CalculationError
    from stdlib_tools.registry import ToolDefinitionError, ToolLoadError
    from stdlib_tools.web import NetworkNotAllowed
    from stdlib_tools.workspace import WorkspaceError

    classes = [
        TemplateProblem, TypeSyntaxError, InvalidReply, ModelCallError, BudgetExceeded,
        LocalModelMissing, CheckFailed, RetryableError, StepError, JournalError, JournalLocked,
        CalculationError, ToolDefinitionError, ToolLoadError, NetworkNotAllowed, WorkspaceError,
        errors.ConfigError, InputError, PlanError, errors.UsageError,
    ]  # fmt: skip
    assert all(issubclass(cls, PlanfileError) for cls in classes)
    # What callers caught before the tree still catches them.
    assert issubclass(errors.ConfigError, ValueError) and issubclass(InputError, ValueError)
    assert issubclass(WorkspaceError, PermissionError) and issubclass(JournalError, RuntimeError)
    assert BudgetExceeded is errors.BudgetExceeded


class RateLimitError(Exception):
    """Named like litellm's: the classifier goes by class name."""


class AuthenticationError(Exception):
    pass


class NotFoundError(Exception):
    pass


def test_one_fault_classifier_for_tools_and_models() -> None:
    """Tools (executor) and models (gateway) share one classification."""
    from engine.models import gateway
    from engine.run import executor

    assert gateway.classify is faults.classify and executor.worth_retrying is faults.worth_retrying
    F = faults.Fault
    assert faults.classify(RateLimitError()) is F.TRANSIENT
    assert faults.classify(TimeoutError()) is F.TRANSIENT
    assert faults.classify(faults.TransientError("busy")) is F.TRANSIENT
    assert faults.classify(AuthenticationError()) is F.AUTH
    assert faults.classify(NotFoundError()) is F.UNKNOWN_MODEL
    assert faults.classify(ValueError("bad")) is F.PERMANENT
    assert faults.classify(errors.BudgetExceeded("run", 1, 0, "m")) is F.PERMANENT
    assert faults.classify(RuntimeError("flaky")) is F.UNKNOWN
    # A step retries unknown faults (it has a retry budget); a provider call does not.
    assert faults.worth_retrying(RuntimeError()) and not faults.worth_retrying(ValueError())


def test_check_loads_no_engine_model_or_display_code() -> None:
    """`planfile check` imports neither litellm, the engine, rich, asyncio nor json_repair."""
    code = (
        "import sys\nfrom engine.cli import main\n"
        f"rc = main(['check', '-q', {str(EXAMPLES / 'cost_of_living.plan')!r}])\n"
        "heavy = [m for m in ('litellm', 'rich', 'asyncio', 'json_repair', 'engine.api',"
        " 'engine.models', 'engine.store', 'engine.config', 'networkx') if m in sys.modules]\n"
        "assert not heavy, heavy\nsys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_parser_tables_are_cached_on_disk(tmp_path: Path) -> None:
    """The LALR tables are written once under the user's cache folder, then loaded;
    a corrupt cache file costs a rebuild, never an error."""
    code = (
        "from dsl.parser import parse_text\n"
        "plan, _ = parse_text('step a = calculate(expression: \"1\")', 'p.plan')\n"
        "assert plan.steps[0].id == 'a'\n"
    )
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    first = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    files = list((tmp_path / "planfile").glob("plan-*.lark"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert again.returncode == 0 and files[0].stat().st_mtime_ns == mtime  # read, not rewritten
    files[0].write_bytes(b"not a pickle")
    broken = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert broken.returncode == 0, broken.stderr


def test_fmt_write_replaces_the_plan_whole_and_keeps_its_link(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fmt -w` writes through a temp file and a rename: a symlinked plan stays a link,
    the file keeps its mode, and a write that fails is a located error that leaves the
    plan as it was."""
    messy = 'plan t\n# why\nstep a: float = calculate(expression:"1")\noutput a\n'
    real = Path(_write(tmp_path, "real.plan", messy))
    real.chmod(0o640)
    link = tmp_path / "link.plan"
    link.symlink_to(real.name)
    assert run_cli(capsys, "fmt", "-w", str(link))[0] == 0
    assert link.is_symlink() and (real.stat().st_mode & 0o777) == 0o640
    assert "# why" in real.read_text() and real.read_text() != messy
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"real.plan", "link.plan"}  # no temp file left behind

    real.write_text(messy)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", full_disk)
    code, err = run_cli(capsys, "fmt", "-w", str(real))
    assert code == 2 and f"{real}: error: cannot write: No space left on device" in err
    assert real.read_text() == messy and {p.name for p in tmp_path.iterdir()} == left


def test_fmt_writes_and_checks_several_plans(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`fmt -w *.plan` rewrites each plan; one with errors is reported (exit 2) and the
    others are still rewritten; `fmt --check *.plan` then passes."""
    messy = 'plan t\n# keep me\nstep a: float = calculate(expression:"1")\noutput a\n'
    plans = [_write(tmp_path, f"{name}.plan", messy) for name in ("a", "b")]
    bad = _write(tmp_path, "bad.plan", "step a = (\n")
    code, err = run_cli(capsys, "fmt", "--check", *plans)
    assert code == 1 and err.count("not canonically formatted") == 2
    code, err = run_cli(capsys, "fmt", "-w", plans[0], bad, plans[1])
    assert code == 2 and "bad.plan:1:10: error:" in err
    rewritten = [Path(p).read_text() for p in plans]
    assert all(text != messy and "# keep me" in text for text in rewritten)
    assert run_cli(capsys, "fmt", "--check", *plans)[0] == 0


@pytest.mark.parametrize(
    ("command", "tools", "expected", "says"),
    [
        (
            "check",
            "import sys\nsys.exit(0)\n",
            ExitCode.INVALID,
            "called sys.exit(0) while loading",
        ),
        (
            "run",
            STUCK_TOOL.replace("time.sleep(seconds)", "raise SystemExit(3)"),
            ExitCode.FAILED,
            "called sys.exit(3)",
        ),
    ],
    ids=["as the tools file loads", "as a tool runs"],
)
def test_sys_exit_in_user_code_is_not_planfile_s_exit_code(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: str,
    tools: str,
    expected: int,
    says: str,
) -> None:
    """A tools file or tool calling sys.exit neither exits 0 silently nor with 3
    ("budget exhausted"): it is an error that says what happened."""
    plan = _write(tmp_path, "p.plan", "step a: str = stuck(seconds: 1)\noutput a\n")
    code, err = run_cli(capsys, command, plan, "--tools", _write(tmp_path, "t.py", tools))
    assert code == expected, err
    assert says in err
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["check", "run"])
def test_output_the_system_refuses_is_one_line_not_a_traceback(
    command: str, tmp_path: Path
) -> None:
    """stdout on a full disk (/dev/full) or closed: one line saying so, no traceback."""
    plan = tmp_path / "p.plan"
    plan.write_text('plan p\nstep a: float = calculate(expression: "2 + 3")\noutput a\n')
    env = {**os.environ, "PLANFILE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "engine.cli", command, str(plan)]
    with open("/dev/full", "w") as full:
        refused = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, env=env)
    assert refused.returncode == 1
    assert "cannot write the output: No space left on device" in refused.stderr
    assert "Traceback" not in refused.stderr and "internal error" not in refused.stderr
    closed = subprocess.run(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: os.close(1),  # the child's own stdout
    )
    assert closed.returncode == 0, closed.stderr
    assert "Traceback" not in closed.stderr
