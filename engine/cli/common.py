"""What the commands share: the registry, the config, flag values, and `engine_from_args`.

Every command that needs an `Engine` gets it from `engine_from_args`, the one place
that turns command-line options into engine settings. Heavy modules are imported
inside the functions that need them, so that `check`, `fmt` and `graph` never load
the engine, litellm or the live display.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsl.errors import Diagnostic, ExitCode, InputError, Location, escape_controls
from dsl.strict_json import NotJSONNumber, typed_input
from engine.cli.options import DEFAULT_MAX_PARALLEL
from engine.errors import UsageError

if TYPE_CHECKING:
    from dsl.agent_steps import Executor
    from dsl.checker import CheckedPlan
    from engine.api import Engine
    from engine.config import Config
    from stdlib_tools import ToolRegistry


def exit_for_status(status: str) -> int:
    """A finished run's exit code: 0 succeeded, 3 budget, 130 cancelled, else 1."""
    return {
        "succeeded": ExitCode.OK,
        "budget_exceeded": ExitCode.BUDGET,
        "cancelled": ExitCode.INTERRUPTED,
    }.get(str(getattr(status, "value", status)), ExitCode.FAILED)


def warn(message: str) -> None:
    print(message, file=sys.stderr)


def write_file(path: str, text: str, flag: str) -> None:
    """Write the file a flag names (`--html FILE`); a path that cannot take it is a
    UsageError naming the flag and the reason, not a traceback."""
    if not path.strip():
        raise UsageError(f"{flag} needs a file name, not an empty one")
    target = Path(path)
    if target.is_dir():
        raise UsageError(
            f"{flag} {path}: that is a directory",
            hint=f"give a file name, e.g. {target / 'report.html'}",
        )
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot write it: {err.strerror or err}") from None


def registry(files: Sequence[str]) -> ToolRegistry:
    """The stdlib tools plus those of each `--tools FILE.py`."""
    from stdlib_tools import ToolRegistry

    tools = ToolRegistry.standard()
    for file in files:
        tools.load_file(file)
    return tools


def load_config(path: str | None) -> Config:
    from engine.config import load_config

    return load_config(path)


def config_if_present() -> Config | None:
    """./planfile.toml for commands that only read plans (`check`, `fmt`): None when
    there is none, without importing the config models (start-up)."""
    # The name is engine.config.CONFIG_FILE, spelled out to keep that import lazy.
    return load_config(None) if (Path.cwd() / "planfile.toml").exists() else None


def tool_map(pairs: Sequence[str], config: Config | None = None) -> dict[str, str]:
    """`[tools.map]` of the config, then each `--map-tool NAME=TOOL` (the flag wins)."""
    mapping = dict(config.tools.map) if config is not None else {}
    for pair in pairs:
        name, sep, target = pair.partition("=")
        if not sep or not name.strip() or not target.strip().isidentifier():
            raise UsageError(
                f"--map-tool takes NAME=TOOL (e.g. web_search=search), not `{pair:.60}`"
            )
        mapping[name.strip()] = target.strip()
    return mapping


def executor_choice(args: argparse.Namespace, config: Config | None = None) -> Executor:
    """`--executor`, else `executor` in planfile.toml, else `llm`: how a JSON or imported
    step that names no registered tool runs (dsl/agent_steps.py)."""
    chosen: Executor | None = getattr(args, "executor", None)
    if chosen is not None:
        return chosen
    return config.executor if config is not None else "llm"


def load_run_plan(
    args: argparse.Namespace,
    config: Config,
    tiers: Mapping[str, str],
    plan: str | None = None,
    *,
    show_warnings: bool = True,
) -> tuple[CheckedPlan, ToolRegistry]:
    """`load_checked` with the run options every running command shares (`--tools`,
    `--format`, `--map-tool`, `--executor`, the config's tiers); warnings to stderr."""
    checked, tools = load_checked(
        plan if plan is not None else args.plan,
        args.tools,
        tiers=[*tiers, *config.tiers],
        source_format=args.source_format,
        tool_names=tool_map(args.map_tool, config),
        executor=executor_choice(args, config),
    )
    if show_warnings:
        for warning in checked.warnings:
            print(warning.render(checked.source), file=sys.stderr)
    return checked, tools


def load_checked(
    file: str,
    tool_files: Sequence[str],
    tiers: Sequence[str] = (),
    source_format: str | None = None,
    tool_names: Mapping[str, str] | None = None,
    executor: Executor = "llm",
) -> tuple[CheckedPlan, ToolRegistry]:
    """Read, parse and check one plan file (PlanError with every diagnostic otherwise);
    `tool_names` renames the tools a JSON plan names (see `tool_map`), `executor` runs
    its steps that name no registered tool (see `executor_choice`)."""
    from dsl import read_plan_file
    from dsl.checker import check

    tools = registry(tool_files)
    plan, smap, text = read_plan_file(
        file, tools, source_format, tool_map=tool_names, executor=executor
    )
    return check(plan, tools, smap, source=text, tiers=tiers), tools


def _input_error(message: str, hint: str | None = None) -> InputError:
    return InputError([Diagnostic(message, Location("--input"), hint=hint)])


def parse_inputs(pairs: Sequence[str], checked: CheckedPlan) -> dict[str, Any]:
    """`--input k=v` pairs, typed by the plan: text as is, anything else as JSON."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise _input_error(f"--input takes NAME=VALUE, not `{pair:.60}`")
        try:
            values[name] = typed_input(raw, checked.input_types.get(name))
        except RecursionError:
            raise _input_error(f"input `{name}`: the value nests too deeply") from None
        except NotJSONNumber as err:
            raise _input_error(f"input `{name}`: {err}") from None
        except ValueError:  # the one other ValueError json raises: an over-long integer
            raise _input_error(
                f"input `{name}`: the value is too large to read",
                hint="integers may have at most 4,300 digits",
            ) from None
    return values


def parse_tiers(pairs: Sequence[str]) -> dict[str, str]:
    tiers: dict[str, str] = {}
    for pair in pairs:
        name, sep, model = pair.partition("=")
        if not sep or not name.strip().isidentifier() or not model.strip():
            raise UsageError(
                f"--tier takes NAME=MODEL (e.g. fast=openai/gpt-4o-mini), not `{pair:.60}`"
            )
        tiers[name.strip()] = model.strip()
    return tiers


def parse_limits(pairs: Sequence[str]) -> dict[str, int]:
    limits: dict[str, int] = {}
    for pair in pairs:
        key, sep, raw = pair.rpartition("=")
        # Digits only, and few of them: int() of a huge string is slow and may raise.
        if not sep or ":" not in key or not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
            raise UsageError(
                f"--limit takes KIND:NAME=N with N from 1 to 999999999 (e.g. tool:search=2), "
                f"not `{pair:.60}`"
            )
        limits[key] = int(raw)
    return limits


def tool_settings(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """What the tools may do, from planfile.toml and the flags a command has."""
    http = config.tools.http_get
    settings: dict[str, Any] = {
        "http_allowlist": [*http.allow_hosts, *getattr(args, "allow_host", [])],
        "http_timeout_s": http.timeout_s,
        "http_max_bytes": http.max_bytes,
    }
    if config.search.corpus:
        settings["corpus"] = config.search.corpus
    for flag in ("workspace", "corpus"):
        value = getattr(args, flag, None)
        if value:
            if not Path(value).is_dir():
                raise UsageError(f"--{flag} {value}: not a folder")
            settings[flag] = str(Path(value).resolve())
    return settings


def journal() -> Any:
    from engine.store.journal import Journal

    return Journal()


def engine_from_args(
    args: argparse.Namespace,
    config: Config,
    tools: ToolRegistry,
    *,
    runs_steps: bool = True,
) -> Engine:
    """The one `Engine` a command uses, from its options (those it lacks keep defaults).

    `runs_steps=False` (the `plan` command) leaves out what only running steps needs:
    tool settings, the step cache, the approver.
    """
    from engine.api import Engine

    options: dict[str, Any] = {}
    if runs_steps:
        from engine.store.step_cache import StepCache

        limits = {k: v for k, v in config.limits.items() if k != "max_parallel"}
        limits.update(parse_limits(getattr(args, "limit", ())))
        max_parallel = getattr(args, "max_parallel", DEFAULT_MAX_PARALLEL)
        if "max_parallel" in config.limits and max_parallel == DEFAULT_MAX_PARALLEL:
            max_parallel = config.limits["max_parallel"]
        options.update(
            max_parallel=max_parallel,
            limits=limits,
            settings=tool_settings(config, args),
            step_cache=StepCache(),
            approver=terminal_approver(),
            approve_all=getattr(args, "approve_all", False),
            cache_all=getattr(args, "cache", False),
        )
        options["backend"] = cluster_backend(args, config)
    audit = getattr(args, "audit", None)
    return Engine(
        tools=tools,
        config=config,
        tiers=parse_tiers(getattr(args, "tier", ())),
        budget_usd=getattr(args, "budget", None),
        on_warning=warn,
        journal=journal(),
        audit=Path(audit) if audit else True,
        **options,
    )


def cluster_backend(args: argparse.Namespace, config: Config) -> Any:
    """The Dask backend of `--cluster ADDRESS` or `[cluster] address`, connected now (a
    clear error if unreachable, before any step); None: steps run in this process."""
    address = getattr(args, "cluster", None) or config.cluster.address
    if not address:
        return None
    from engine.backends.dask import DaskBackend, quiet_distributed_logs

    backend = DaskBackend.from_settings(config.cluster, address)
    backend.on_warning = warn  # "no workers" while a call waits
    # The backend reports a lost cluster itself (the step's error, with the fix).
    quiet_distributed_logs()
    return backend


def terminal_approver() -> Any:
    """Ask at the terminal when there is one; otherwise the run waits (approve/reject later)."""
    if not sys.stdin.isatty():
        return None

    async def ask(run_id: str, step: str, arguments: Mapping[str, Any]) -> bool:
        import asyncio

        # JSON leaves DEL and C1 controls raw: model-written, so escaped for the terminal.
        shown = escape_controls(json.dumps(arguments, default=str, ensure_ascii=False)[:400])
        prompt = f"\nstep `{step}` of run {run_id} wants to run with {shown}\napprove? [y/N] "
        answer = await asyncio.to_thread(_ask_line, prompt)
        return answer.strip().lower() in ("y", "yes")

    return ask


def _ask_line(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()
