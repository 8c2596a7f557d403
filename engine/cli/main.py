"""The `planfile` entry point: parse, dispatch to a command, map its outcome to an exit code.

Exit codes (specs/cli.md): 0 success, 1 the run failed, 2 the plan, its inputs, the
config, a tools file or the command line is invalid, 3 a budget was exhausted, 130
interrupted. Every error meant for a user is a `PlanfileError` that knows its exit
code and renders itself; `main` catches it here, once. Anything else is a bug in
planfile: one line saying so, and the traceback only with `--debug`.

The command modules are imported when their command runs, so a command loads only
what it uses (`check` never imports the engine, litellm or the live display).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from engine.cli.options import build_parser

# command -> (module under engine.cli, function)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("plan_cmds", "cmd_check"),
    "fmt": ("plan_cmds", "cmd_fmt"),
    "graph": ("plan_cmds", "cmd_graph"),
    "schema": ("plan_cmds", "cmd_schema"),
    "tools": ("plan_cmds", "cmd_tools"),
    "run": ("run_cmds", "cmd_run"),
    "resume": ("run_cmds", "cmd_resume"),
    "plan": ("agent_cmds", "cmd_plan"),
    "ask": ("agent_cmds", "cmd_ask"),
    "batch": ("batch_cmds", "cmd_batch"),
    "eval-planner": ("eval_cmds", "cmd_eval_planner"),
    "bench": ("bench_cmds", "cmd_bench"),
    "runs": ("journal_cmds", "cmd_runs"),
    "show": ("journal_cmds", "cmd_show"),
    "approve": ("journal_cmds", "cmd_decide"),
    "reject": ("journal_cmds", "cmd_decide"),
}

# Errors writing the output itself, not planfile's: reported in one line.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF})

# Commands that read plans and write text, nothing that must be finalised at exit.
PLAN_COMMANDS = frozenset({"check", "fmt", "graph", "schema", "tools"})


def command(name: str) -> Callable[[Any], int]:
    module, function = COMMANDS[name]
    return getattr(importlib.import_module(f"engine.cli.{module}"), function)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; `argv` None (the `planfile` program) reads `sys.argv`."""
    code, name = _main(argv)
    if argv is None and name in PLAN_COMMANDS:
        # Python's last collection at exit walks every live object (a 10k-step plan's IR:
        # ~0.1 s, a third of a one-step `check`). Frozen objects are not walked; these
        # commands hold no file or thread whose finaliser that collection would run.
        import gc

        gc.freeze()
    # As the program (not called with arguments, as tests and embedders do), end now if
    # a worker thread is stuck past its step's deadline, instead of waiting for it at
    # exit. The module is loaded only by commands that ran an event loop.
    loop = sys.modules.get("engine.cli.loop")
    if argv is None and loop is not None:
        loop.exit_now_if_threads_linger(code)
    return code


def _main(argv: Sequence[str] | None) -> tuple[int, str | None]:
    """The exit code, and the command that ran (None: none did)."""
    # Started with stdout or stderr closed (`planfile check p.plan >&-`), Python has None
    # there: what would be written is discarded, as a closed descriptor would.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0), or a bad flag (2, already reported)
        return (done.code if isinstance(done.code, int) else 2), None
    if args.command is None:
        parser.print_help()
        return 2, None  # ExitCode.INVALID
    return _dispatch(args), args.command


def _dispatch(args: Any) -> int:
    debug = bool(args.debug)
    try:
        # Inside the try: importing the command (and the plan front end) may fail too.
        from dsl.errors import ExitCode, PlanfileError

        try:
            return int(command(args.command)(args))
        except PlanfileError as err:
            if debug:
                _print_traceback()
            print(err.render(), file=sys.stderr)
            return int(err.exit_code)
        except KeyboardInterrupt:
            print("planfile: interrupted", file=sys.stderr)
            return ExitCode.INTERRUPTED
        except SystemExit as done:
            # Only user code raises it here (a --tools file as it loads, a tool as it
            # runs); passing it on would exit silently with a code that means something
            # else in planfile's scheme (3 is "budget exhausted").
            if debug:
                _print_traceback()
            print(
                f"planfile: error: a tools file or a tool called sys.exit({done.code!r})\n"
                "  hint: tools report failure by raising an exception; rerun with --debug "
                "to see where",
                file=sys.stderr,
            )
            return ExitCode.FAILED
    except BrokenPipeError:
        # Output piped to a command that stopped reading (`| head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        if err.errno not in _OUTPUT_ERRNOS:
            return _internal_error(err, debug)
        # Output the system refused (a full disk, /dev/full, a closed descriptor): say so
        # once; the output that was lost is not retried at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"planfile: error: cannot write the output: {err.strerror}", file=sys.stderr)
        return 1  # ExitCode.FAILED
    except Exception as err:
        return _internal_error(err, debug)


def _internal_error(err: BaseException, debug: bool) -> int:
    if debug:
        _print_traceback()
    print(
        f"planfile: internal error: {type(err).__name__}: {_first_line(err)}\n"
        "  hint: this is a bug in planfile; rerun with --debug for the traceback "
        "and report it",
        file=sys.stderr,
    )
    return 1  # ExitCode.FAILED


def _print_traceback() -> None:
    import traceback  # here, not at the top: only --debug needs it (start-up)

    traceback.print_exc()


def _first_line(err: BaseException) -> str:
    try:
        text = str(err)
    except Exception:  # a broken __str__ must not hide the report
        text = ""
    return text.splitlines()[0][:300] if text else "(no message)"


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
