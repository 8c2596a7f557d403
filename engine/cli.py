"""The `planfile` command line: check, run, graph, fmt, schema, tools.

Exit codes: 0 success, 1 the run failed, 2 the plan or command line is invalid,
3 a budget was exhausted, 130 interrupted. Errors are one readable message on
stderr; a Python traceback only with `--debug`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_BUDGET = 3
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command-line problem: exit 2 with the message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"planfile: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID)


def _add_tools_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="FILE.py",
        help="load user tools (functions decorated with @tool) from a Python file",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="planfile",
        description="A declarative workflow engine for plan-and-execute LLM agents.",
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = sub.add_parser("check", help="validate and type-check plans (exit 0, or 2 with errors)")
    check.add_argument("plans", nargs="+", metavar="PLAN")
    check.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    _add_tools_option(check)

    graph = sub.add_parser("graph", help="print a plan's DAG (mermaid, dot or json)")
    graph.add_argument("plan", metavar="PLAN")
    graph.add_argument("--format", choices=["mermaid", "dot", "json"], default="mermaid")
    _add_tools_option(graph)

    fmt = sub.add_parser("fmt", help="print a plan as canonical .plan text (JSON plans too)")
    fmt.add_argument("plan", metavar="PLAN")
    fmt.add_argument("--write", "-w", action="store_true", help="rewrite a .plan file in place")
    fmt.add_argument(
        "--check",
        dest="check_only",
        action="store_true",
        help="exit 1 if the file is not canonically formatted",
    )
    _add_tools_option(fmt)

    sub.add_parser("schema", help="print the JSON Schema of a JSON plan")

    tools = sub.add_parser("tools", help="print the tool catalogue with typed signatures")
    tools.add_argument("--json", action="store_true", help="machine-readable catalogue")
    _add_tools_option(tools)
    return parser


def _registry(files: Sequence[str]) -> Any:
    from stdlib_tools import ToolRegistry

    registry = ToolRegistry.standard()
    for file in files:
        registry.load_file(file)
    return registry


def _print_diagnostics(err: Any) -> None:
    print(err.render(), file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    from dsl import PlanError, read_plan_file
    from dsl.checker import check

    registry = _registry(args.tools)
    status = EXIT_OK
    for file in args.plans:
        try:
            plan, smap, text = read_plan_file(file, registry)
            checked = check(plan, registry, smap, source=text)
        except PlanError as err:
            _print_diagnostics(err)
            errors = len(err.errors)
            print(f"{file}: {errors} error{'s' if errors != 1 else ''}", file=sys.stderr)
            status = EXIT_INVALID
            continue
        for warning in checked.warnings:
            print(warning.render(text), file=sys.stderr)
        if not args.quiet:
            steps = len(checked.plan.steps)
            note = (
                f", {len(checked.warnings)} warning{'s' if len(checked.warnings) != 1 else ''}"
                if checked.warnings
                else ""
            )
            print(f"{file}: ok ({steps} step{'s' if steps != 1 else ''}{note})")
    return status


def _load_checked(file: str, tool_files: Sequence[str]) -> tuple[Any, Any]:
    from dsl import read_plan_file
    from dsl.checker import check

    registry = _registry(tool_files)
    plan, smap, text = read_plan_file(file, registry)
    return check(plan, registry, smap, source=text), registry


def cmd_graph(args: argparse.Namespace) -> int:
    from engine.graph import LatencyModel, to_dot, to_json, to_mermaid

    checked, registry = _load_checked(args.plan, args.tools)
    if args.format == "mermaid":
        sys.stdout.write(to_mermaid(checked))
    elif args.format == "dot":
        sys.stdout.write(to_dot(checked))
    else:
        latency = LatencyModel.from_tools(registry)
        durations = {s.id: latency.estimate(checked, s.id, registry) for s in checked.plan.steps}
        print(json.dumps(to_json(checked, durations), indent=2))
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace) -> int:
    from dsl import read_plan_file
    from dsl.printer import format_plan

    registry = _registry(args.tools)
    plan, _, text = read_plan_file(args.plan, registry)
    formatted = format_plan(plan)
    if args.check_only:
        if formatted != text:
            print(
                f"{args.plan}: not canonically formatted (run `planfile fmt -w`)", file=sys.stderr
            )
            return EXIT_FAILED
        return EXIT_OK
    if args.write:
        if args.plan.lower().endswith(".json"):
            raise UsageError("--write rewrites .plan files; redirect the output to convert JSON")
        if formatted != text:
            Path(args.plan).write_text(formatted, encoding="utf-8")
        return EXIT_OK
    sys.stdout.write(formatted)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from engine.ir import plan_json_schema

    print(json.dumps(plan_json_schema(), indent=2))
    return EXIT_OK


def cmd_tools(args: argparse.Namespace) -> int:
    registry = _registry(args.tools)
    if args.json:
        catalogue = [
            {
                "name": spec.name,
                "signature": spec.signature(),
                "description": spec.description,
                "params": [
                    {
                        "name": p.name,
                        "type": str(p.type),
                        "required": p.required,
                        "default": p.default,
                        "description": p.description,
                    }
                    for p in spec.params
                ],
                "returns": str(spec.returns),
                "uses_model": spec.uses_model,
                "network": spec.network,
                "source": spec.source,
            }
            for spec in registry.values()
        ]
        print(json.dumps(catalogue, indent=2, default=str))
        return EXIT_OK
    for spec in registry.values():
        notes = []
        if spec.uses_model:
            notes.append("calls a model")
        if spec.network:
            notes.append("network: off unless allowed")
        if spec.source != "stdlib":
            notes.append(f"from {spec.source}")
        print(spec.signature() + (f"    [{'; '.join(notes)}]" if notes else ""))
        print(f"    {spec.description}")
        for param in spec.params:
            if param.description:
                print(f"      {param.name}: {param.description}")
    return EXIT_OK


COMMANDS = {
    "check": cmd_check,
    "graph": cmd_graph,
    "fmt": cmd_fmt,
    "schema": cmd_schema,
    "tools": cmd_tools,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INVALID
    from dsl.errors import PlanError
    from stdlib_tools.registry import ToolLoadError

    try:
        return COMMANDS[args.command](args)
    except PlanError as err:
        _print_diagnostics(err)
        return EXIT_INVALID
    except (UsageError, ToolLoadError) as err:
        print(f"planfile: error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("planfile: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped to a command that stopped reading (`| head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as err:
        if args.debug:
            traceback.print_exc()
        else:
            print(
                f"planfile: internal error: {type(err).__name__}: {err} (run with --debug for details)",
                file=sys.stderr,
            )
        return EXIT_FAILED


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
