"""Importers for plan formats people already have: LLMCompiler and ReWOO plan text.

LLMCompiler (Kim et al., 2024) numbers its tasks and refers to results as `$1`/`${1}`:

    Thought: I need both market caps.
    1. search("Microsoft market cap")
    2. search("Apple market cap")
    3. math("ratio of $1 to $2", ["$1", "$2"])
    4. join()
    <END_OF_PLAN>

ReWOO (Xu et al., 2023) pairs a `Plan:` line with an evidence variable:

    Plan: Find the capital of France.
    #E1 = Wikipedia[capital of France]
    Plan: Ask how many people live there.
    #E2 = LLM[Population of #E1?]

Both parse with lark into the Plan IR: positional arguments map to the tool's parameters
in order, a whole-argument reference becomes a reference, a reference inside text a
template, `join()` (and a ReWOO plan's last evidence) the plan's answer.

Over 400 lines because both formats share the argument mapping, reference rewriting and
located diagnostics here; split per format, each half would import the other's helpers.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput

from dsl.ir import Plan, Ref, Step

from .agent_steps import AGENT_TOOL, TASK_ARG, TOOLS_ARG, Executor, args_as_task, default_tools
from .errors import Diagnostic, Location, PlanError, did_you_mean

FORMATS = ("llmcompiler", "rewoo")

# Tool names these papers use, mapped to planfile's built-in tools.
ALIASES = {
    "search": "search",
    "google": "search",
    "bing": "search",
    "wikipedia": "search",
    "web_search": "search",
    "tavily_search": "search",
    "math": "llm",  # LLMCompiler's math tool is LLM-backed (a problem plus context)
    "calculator": "calculate",
    "wolframalpha": "calculate",
    "calculate": "calculate",
    "llm": "llm",
    "ask_llm": "llm",
    "summarize": "summarize",
}

_LLMCOMPILER = r"""
start: _NL? (_line (_NL _line)*)? _NL?
_line: thought | task | END
thought: THOUGHT
task: INT "." NAME "(" [arg ("," arg)*] ")" _TRAILING?
arg: (NAME "=")? value
?value: STRING | NUMBER | REF | array | BARE | NAME
array: "[" [value ("," value)*] "]"

THOUGHT: /Thought:[^\n]*/
END: "<END_OF_PLAN>"
REF: /\$\{?[0-9]+\}?/
STRING: /"([^"\\\n]|\\.)*"/ | /'([^'\\\n]|\\.)*'/
NUMBER.2: /-?[0-9]+(\.[0-9]+)?/
INT: /[0-9]+/
NAME.2: /[A-Za-z_][A-Za-z0-9_]*/
BARE: /[^\s,()\[\]"'$=][^,()\[\]=\n]*/
_TRAILING: /[ \t]*<END_OF_PLAN>/
_NL: /([ \t]*\r?\n)+[ \t]*/
%ignore /[ \t]+/
"""

_REWOO = r"""
start: _NL? (_line (_NL _line)*)? _NL?
_line: plan_line | evidence
plan_line: PLAN
evidence: EVIDENCE "=" NAME "[" INPUT? "]"

PLAN: /Plan:[^\n]*/
EVIDENCE: /#E[0-9]+/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
INPUT: /[^\]\n]+/
_NL: /([ \t]*\r?\n)+[ \t]*/
%ignore /[ \t]+/
"""


class _Collect(Transformer[Token, Any]):
    def start(self, items: list[Any]) -> list[Any]:
        return [item for item in items if item is not None]

    def array(self, items: list[Any]) -> list[Any]:
        return [i for i in items if i is not None]

    def arg(self, items: list[Any]) -> tuple[str | None, Any]:
        return (str(items[0]), items[1]) if len(items) == 2 else (None, items[0])

    def task(self, items: list[Any]) -> tuple[str, Token, Token, list[tuple[str | None, Any]]]:
        number, name, *args = items
        return ("task", number, name, [a for a in args if a is not None])

    def thought(self, items: list[Token]) -> tuple[str, str]:
        return ("thought", str(items[0])[len("Thought:") :].strip())

    def plan_line(self, items: list[Token]) -> tuple[str, str]:
        return ("plan", str(items[0])[len("Plan:") :].strip())

    def evidence(self, items: list[Any]) -> tuple[str, Token, Token, str]:
        variable, name, *rest = items
        return ("evidence", variable, name, str(rest[0]).strip() if rest else "")

    def END(self, token: Token) -> None:
        return None


@functools.cache
def _parser(kind: str) -> Lark:
    grammar = _LLMCOMPILER if kind == "llmcompiler" else _REWOO
    return Lark(grammar, parser="lalr", propagate_positions=True)


def _syntax_error(err: UnexpectedInput, text: str, file: str | None, kind: str) -> PlanError:
    line = getattr(err, "line", 1) or 1
    column = getattr(err, "column", 1) or 1
    example = '`1. search("query")`' if kind == "llmcompiler" else "`#E1 = Tool[input]`"
    return PlanError(
        [
            Diagnostic(
                f"not {kind} plan text here",
                Location(file, line, column, column + 1),
                hint=f"each line is a `Thought:`/`Plan:` line or a task such as {example}",
                code="syntax",
            )
        ],
        text,
    )


def _tool(name: str, tools: Mapping[str, Any], tool_map: Mapping[str, str] | None) -> str:
    if tool_map and name in tool_map:
        return tool_map[name]  # the user's `--map-tool` / `[tools.map]` comes first
    lowered = name.lower()
    if name in tools:
        return name
    if lowered in ALIASES and ALIASES[lowered] in tools:
        return ALIASES[lowered]
    for candidate in tools:
        if candidate.lower() == lowered:
            return candidate
    return name  # unknown: the checker reports it, with a did-you-mean


def _reference(text: str, pattern: re.Pattern[str], ids: Mapping[str, str]) -> Any:
    """A whole-value reference becomes a Ref; references inside text, a template."""
    whole = pattern.fullmatch(text.strip())
    if whole and whole.group(1) in ids:
        return Ref(ref=ids[whole.group(1)])

    def replace(match: re.Match[str]) -> str:
        target = ids.get(match.group(1))
        return f"{{{{ {target} }}}}" if target else match.group(0)

    return pattern.sub(replace, text)


_DOLLAR = re.compile(r"\$\{?([0-9]+)\}?")
_EVIDENCE = re.compile(r"#E([0-9]+)")


def _literal(token: Any) -> Any:
    if isinstance(token, list):
        return [_literal(t) for t in token]
    text = str(token)
    if token.type == "STRING":
        if text.startswith("'"):
            text = '"' + text[1:-1].replace('\\"', '"').replace('"', '\\"') + '"'
        return json.loads(text)
    if token.type == "NUMBER":
        return float(text) if "." in text else int(text)
    return text.strip()  # REF or a bare word


def _references_only(value: Any, ids: Mapping[str, str]) -> list[str] | None:
    """The step ids a value names when it is nothing but `$N` references, else None."""
    values = value if isinstance(value, list) else [value]
    found = []
    for item in values:
        match = _DOLLAR.fullmatch(item.strip()) if isinstance(item, str) else None
        if match is None or match.group(1) not in ids:
            return None
        found.append(ids[match.group(1)])
    return found


def _convert(value: Any, ids: Mapping[str, str]) -> Any:
    if isinstance(value, list):
        return [_convert(v, ids) for v in value]
    if isinstance(value, str):
        return _reference(value, _DOLLAR, ids)
    return value


def _items(kind: str, text: str, file: str | None) -> list[Any]:
    try:
        items: list[Any] = _Collect().transform(_parser(kind).parse(text))
    except UnexpectedInput as err:
        raise _syntax_error(err, text, file, kind) from None
    return items


def _as_agent(
    step_id: str,
    tool: str,
    args: Mapping[str, Any],
    description: str | None,
    tools: Mapping[str, Any],
    where: Location,
    notes: list[Diagnostic] | None,
) -> Step:
    """`--executor agent`: a task whose tool nobody registered becomes an agent step over
    the default tools, the call it asked for its task (a note says so)."""
    offered = default_tools(tools)
    if notes is not None:
        notes.append(
            Diagnostic(
                f"tool `{tool}` is not registered: `{step_id}` runs as an agent step over"
                f" {', '.join(offered)} (--executor agent)",
                where,
                severity="note",
                code="executor",
            )
        )
    return Step(
        id=step_id,
        tool=AGENT_TOOL,
        args={TASK_ARG: args_as_task(description or "", tool, args), TOOLS_ARG: offered},
        description=description,
        executor="agent",
    )


def _agent_executor(executor: Executor, tool: str, tools: Mapping[str, Any]) -> bool:
    return executor == "agent" and tool not in tools and AGENT_TOOL in tools


def import_llmcompiler(
    text: str,
    tools: Mapping[str, Any],
    file: str | None = None,
    tool_map: Mapping[str, str] | None = None,
    *,
    executor: Executor = "llm",
    notes: list[Diagnostic] | None = None,
) -> Plan:
    items = _items("llmcompiler", text, file)
    ids: dict[str, str] = {}
    steps: list[Step] = []
    problems: list[Diagnostic] = []
    thought: str | None = None
    join_at: int | None = None
    for item in items:
        if item[0] == "thought":
            thought = item[1]
            continue
        _, number, name, args = item
        step_id = f"step_{number}"
        if str(number) in ids:
            problems.append(
                Diagnostic(
                    f"task {number} is defined twice",
                    Location(file, number.line, number.column),
                    code="duplicate",
                )
            )
            continue
        ids[str(number)] = step_id
        if str(name) == "join":
            join_at = len(steps)
            continue
        tool = _tool(str(name), tools, tool_map)
        if _agent_executor(executor, tool, tools):
            where = Location(file, name.line, name.column, name.column + len(str(name)))
            positional = {
                key or f"arg{position + 1}": _convert(_literal(raw), ids)
                for position, (key, raw) in enumerate(args)
            }
            steps.append(_as_agent(step_id, tool, positional, thought, tools, where, notes))
            thought = None
            continue
        if tool not in tools:
            problems.append(
                Diagnostic(
                    f"task {number}: unknown tool `{tool}`",
                    Location(file, name.line, name.column, name.column + len(str(name))),
                    # A near name is a typo; anything else may run as an agent instead.
                    hint=did_you_mean(tool, [*tools, *ALIASES])
                    or "see `planfile tools`"
                    + ("; or run it as an agent step: `--executor agent`" * (AGENT_TOOL in tools)),
                    code="unknown-tool",
                )
            )
            continue
        params = [p.name for p in tools[tool].params]
        named: dict[str, Any] = {}
        context: list[str] = []
        for position, (key, raw) in enumerate(args):
            if key is None:
                literal = _literal(raw)
                extra = _references_only(literal, ids)
                # LLMCompiler passes dependencies as a trailing context list.
                if extra is not None and (isinstance(literal, list) or position >= len(params)):
                    context.extend(extra)
                    continue
                if position >= len(params):
                    problems.append(
                        Diagnostic(
                            f"task {number}: `{tool}` takes {len(params)} argument(s); this is argument {position + 1}",
                            Location(file, number.line, number.column),
                            code="import",
                        )
                    )
                    continue
                key = params[position]
            named[key] = _convert(_literal(raw), ids)
        after: tuple[str, ...] = ()
        if context:
            first = params[0] if params else None
            if (
                first is not None
                and isinstance(named.get(first), str)
                and getattr(tools[tool], "uses_model", False)
            ):
                named[first] += "\nContext:\n" + "\n".join(f"- {{{{ {c} }}}}" for c in context)
            else:
                after = tuple(dict.fromkeys(context))
        steps.append(Step(id=step_id, tool=tool, args=named, after=after, description=thought))
        thought = None
    if problems:
        raise PlanError(problems, text)
    outputs: tuple[str, ...] = ()
    if join_at is not None and steps:
        joiner_inputs = "\n".join(f"- {s.id}: {{{{ {s.id} }}}}" for s in steps)
        steps.append(
            Step(
                id="answer",
                tool="llm",
                args={"prompt": f"Combine these results into one final answer:\n{joiner_inputs}"},
                task="writing",
                description="join(): the final answer",
            )
        )
        outputs = ("answer",)
    return Plan(name="llmcompiler_plan", steps=tuple(steps), outputs=outputs)


def import_rewoo(
    text: str,
    tools: Mapping[str, Any],
    file: str | None = None,
    tool_map: Mapping[str, str] | None = None,
    *,
    executor: Executor = "llm",
    notes: list[Diagnostic] | None = None,
) -> Plan:
    items = _items("rewoo", text, file)
    ids: dict[str, str] = {}
    steps: list[Step] = []
    problems: list[Diagnostic] = []
    plan_text: str | None = None
    for item in items:
        if item[0] == "plan":
            plan_text = item[1]
            continue
        _, variable, name, raw_input = item
        number = str(variable)[2:]
        if number in ids:
            problems.append(
                Diagnostic(
                    f"{variable} is defined twice",
                    Location(file, variable.line, variable.column),
                    code="duplicate",
                )
            )
            continue
        tool = _tool(str(name), tools, tool_map)
        params = [p.name for p in getattr(tools.get(tool), "params", ())]
        value = _reference(raw_input, _EVIDENCE, ids)
        args = {params[0]: value} if params else ({"input": value} if raw_input else {})
        step_id = f"E{number}"
        if _agent_executor(executor, tool, tools):
            where = Location(file, name.line, name.column, name.column + len(str(name)))
            steps.append(_as_agent(step_id, tool, args, plan_text, tools, where, notes))
        else:
            steps.append(Step(id=step_id, tool=tool, args=args, description=plan_text))
        ids[number] = step_id
        plan_text = None
    if problems:
        raise PlanError(problems, text)
    # ReWOO's solver reads every piece of evidence: no declared outputs means the steps
    # nothing else uses are the outputs.
    return Plan(name="rewoo_plan", steps=tuple(steps))


def import_plan(
    kind: str,
    text: str,
    tools: Mapping[str, Any],
    file: str | None = None,
    tool_map: Mapping[str, str] | None = None,
    *,
    executor: Executor = "llm",
    notes: list[Diagnostic] | None = None,
) -> Plan:
    """Parse LLMCompiler or ReWOO plan text into the IR; raise PlanError. `tool_map`
    renames tools the text names (before the papers' own aliases); with
    `executor="agent"` a tool nobody registered becomes an agent step (a note in `notes`)."""
    if kind == "llmcompiler":
        return import_llmcompiler(text, tools, file, tool_map, executor=executor, notes=notes)
    if kind == "rewoo":
        return import_rewoo(text, tools, file, tool_map, executor=executor, notes=notes)
    raise ValueError(f"unknown plan format `{kind}` (formats: {', '.join(FORMATS)})")
