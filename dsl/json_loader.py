"""The JSON front end: canonical JSON plans and the shapes LLMs really write -> Plan IR.

Canonical plans follow `planfile schema`. LLM-written plans drift, so the loader also
maps the common shapes onto the IR: `{"steps": [...]}`, a bare list, `{"plan": [..]}`;
ids from `id` or `step_number`; `depends_on` as numbers or names; `tool` + `tool_input`;
`description`/`prompt` steps without a tool (LLM steps on the `requiredModel` tier);
`goal`, `expectedCost`. Every error names the JSON path in the original document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from dsl.ir import TASK_TYPES, Plan, is_template

from .errors import Diagnostic, Location, Path, PlanError, did_you_mean, gc_paused
from .parser import SourceMap, decode_source, default_plan_name

MAX_JSON_DEPTH = 64

_PLAN_KEYS = {
    "name": "name",
    "plan_name": "name",
    "title": "name",
    "goal": "goal",
    "objective": "goal",
    "task": "goal",
    "question": "goal",
    "inputs": "inputs",
    "tiers": "tiers",
    "types": "types",
    "steps": "steps",
    "plan": "steps",
    "outputs": "outputs",
    "output": "outputs",
    "expected_cost_usd": "expected_cost_usd",
    "expectedCost": "expected_cost_usd",
    "expected_cost": "expected_cost_usd",
    "estimated_cost": "expected_cost_usd",
    "$schema": None,
    "reasoning": None,
    "thought": None,
    "thoughts": None,
}

_STEP_ID_KEYS = ("id", "step_number", "step_id", "stepNumber", "step", "number")
_DEP_KEYS = ("after", "depends_on", "dependencies", "dependsOn", "deps", "requires")
_TEXT_KEYS = ("prompt", "description", "instruction", "instructions", "action", "query_text")
_TIER_KEYS = ("tier", "requiredModel", "required_model", "model_tier", "modelTier")
_CANONICAL_STEP_KEYS = {
    "id",
    "tool",
    "args",
    "type",
    "for_each",
    "after",
    "tier",
    "model",
    "task",
    "retry",
    "timeout_s",
    "when",
    "on_error",
    "check",
    "description",
    "cache",
    "approve",
}
_IGNORED_STEP_KEYS = {
    "reasoning",
    "thought",
    "rationale",
    "expected_output",
    "expectedOutput",
    "expected_cost",
    "expectedCost",
    "estimated_tokens",
    "status",
    "output",
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBERED_REF = re.compile(r"\$\{?(\d+)\}?|#E(\d+)\b")
_TASK_ALIASES = {
    "search": "search",
    "research": "search",
    "lookup": "search",
    "retrieval": "search",
    "analyze": "analyze",
    "analysis": "analyze",
    "analyse": "analyze",
    "code": "code",
    "coding": "code",
    "reasoning": "reasoning",
    "reason": "reasoning",
    "math": "reasoning",
    "writing": "writing",
    "write": "writing",
    "summarize": "writing",
}
_TIER_ALIASES = {
    "fast": "fast",
    "cheap": "fast",
    "small": "fast",
    "mini": "fast",
    "standard": "standard",
    "medium": "standard",
    "default": "standard",
    "frontier": "frontier",
    "strong": "frontier",
    "large": "frontier",
    "planner": "frontier",
}


class _Loader:
    def __init__(self, file: str | None, tools: Mapping[str, Any] | None):
        self.file = file
        self.tools = tools or {}
        self.problems: list[Diagnostic] = []
        self.smap = SourceMap(file, is_json=True)
        self.llm_shaped = False
        self.description_steps: list[dict[str, Any]] = []
        self.record_names: set[Any] = set()

    def error(self, path: Path, message: str, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(message, Location(self.file, path=path), hint, code="json"))

    # --- document level ------------------------------------------------------------
    def load(self, doc: Any) -> Plan:
        plan_fields: dict[str, tuple[str, Any]] = {}
        steps_path: Path = ()
        if isinstance(doc, list):
            self.llm_shaped = True
            raw_steps = doc
        elif isinstance(doc, dict):
            raw_steps, steps_path = None, ("steps",)
            for key, value in doc.items():
                target = _PLAN_KEYS.get(key, "?")
                if target == "?":
                    self.error(
                        (key,),
                        f"unknown plan field `{key}`",
                        hint=did_you_mean(key, [k for k, v in _PLAN_KEYS.items() if v])
                        or "plan fields: name, goal, inputs, tiers, types, steps, outputs",
                    )
                    continue
                if target is None:
                    continue
                if target == "steps":
                    if raw_steps is not None:
                        self.error((key,), "steps are given twice (`steps` and `plan`)")
                        continue
                    raw_steps, steps_path = value, (key,)
                    if key == "plan":
                        self.llm_shaped = True
                    continue
                if target in plan_fields:
                    self.error((key,), f"`{key}` repeats `{target}`")
                    continue
                plan_fields[target] = (key, value)
            if raw_steps is None:
                self.error((), "a plan needs `steps`", hint='e.g. {"steps": [{"id": "a", ...}]}')
                raw_steps = []
        else:
            self.error((), f"a JSON plan is an object or a list, not {_json_kind(doc)}")
            raise PlanError(self.problems)
        if not isinstance(raw_steps, list):
            self.error(steps_path, f"`steps` must be a list, not {_json_kind(raw_steps)}")
            raise PlanError(self.problems)

        types = plan_fields.get("types", (None, None))[1]
        if isinstance(types, list):
            self.record_names = {t.get("name") for t in types if isinstance(t, dict)}
        out: dict[str, Any] = {}
        for target, (key, value) in plan_fields.items():
            self.smap.json_paths[(target,)] = (key,)
            if (
                target == "name"
                and isinstance(value, str)
                and not re.fullmatch(r"[A-Za-z_]\w*", value)
            ):
                value = default_plan_name(value)
            if target == "expected_cost_usd" and isinstance(value, str):
                value = _money(value)
            if target == "outputs" and isinstance(value, str):
                value = [value]
            out[target] = value
        if out.get("goal") is not None and not isinstance(out["goal"], str):
            self.error((plan_fields["goal"][0],), "`goal` must be a string")
        out.setdefault("name", default_plan_name(self.file))
        out["steps"] = self.load_steps(raw_steps, steps_path, out.get("goal"))
        if self.problems:
            raise PlanError(self.problems)
        for j in range(len(out.get("outputs") or [])):
            self.smap.json_paths[("outputs", j)] = (plan_fields["outputs"][0], j)
        try:
            return Plan.model_validate(out)
        except ValidationError as err:
            raise PlanError(
                [
                    self.smap.diagnostic(tuple(e["loc"]), _message(e), code="json")
                    for e in err.errors()
                ]
            ) from None

    # --- steps ---------------------------------------------------------------------------
    def load_steps(self, raw_steps: list[Any], base: Path, goal: Any) -> list[dict[str, Any]]:
        ids: list[str] = []
        aliases: dict[str, str] = {}  # any spelling an LLM may use for a step -> its id
        for index, raw in enumerate(raw_steps):
            path = (*base, index)
            step_id = f"step_{index + 1}"
            if isinstance(raw, dict):
                key = next((k for k in _STEP_ID_KEYS if k in raw), None)
                if key is not None:
                    value = raw[key]
                    if key != "id":
                        self.llm_shaped = True
                    if isinstance(value, bool) or not isinstance(value, int | str):
                        self.error((*path, key), "a step id is a name or a number")
                    elif isinstance(value, int):
                        step_id = f"step_{value}"
                        aliases[str(value)] = step_id
                        self.llm_shaped = True
                    elif re.fullmatch(r"[A-Za-z_]\w*", value):
                        step_id = value
                    else:
                        step_id = default_plan_name(value.strip()) if value.strip() else step_id
                        if value.strip().isdigit():
                            step_id = f"step_{value.strip()}"
                        aliases[value] = step_id
                        self.llm_shaped = True
            aliases[step_id] = step_id
            ids.append(step_id)
        if len(set(ids)) == len(ids):
            # Numbers LLMs use for steps: their position, unless a step id claims the number.
            for index, step_id in enumerate(ids):
                aliases.setdefault(str(index + 1), step_id)
        declares_deps = any(
            isinstance(raw, dict) and any(k in raw for k in _DEP_KEYS) for raw in raw_steps
        )
        steps: list[dict[str, Any]] = []
        for index, raw in enumerate(raw_steps):
            path = (*base, index)
            self.smap.json_paths[("steps", index)] = path
            if isinstance(raw, str):
                self.llm_shaped = True
                raw = {"description": raw}
            if not isinstance(raw, dict):
                self.error(path, f"a step is an object, not {_json_kind(raw)}")
                continue
            steps.append(self.load_step(raw, index, path, ids, aliases, goal))
        # An ordered list without any declared dependency is a sequence: chain it.
        if self.problems:
            return steps
        if not declares_deps and not self.references_steps(steps, ids):
            for index in range(1, len(steps)):
                steps[index]["after"] = [ids[index - 1]]
        for step in self.description_steps:
            step["args"]["prompt"] = self.llm_prompt(step["args"]["prompt"], step, goal)
        return steps

    @staticmethod
    def references_steps(steps: list[dict[str, Any]], ids: list[str]) -> bool:
        known = set(ids)
        text = json.dumps([s.get("args", {}) for s in steps])
        if any(f'"ref": "{i}' in text for i in known):
            return True
        for step in steps:
            for value in _strings(step.get("args", {})):
                if is_template(value) and any(
                    re.search(rf"\b{re.escape(i)}\b", value) for i in known
                ):
                    return True
        return False

    def load_step(
        self,
        raw: dict[str, Any],
        index: int,
        path: Path,
        ids: list[str],
        aliases: dict[str, str],
        goal: Any,
    ) -> dict[str, Any]:
        ir_path: Path = ("steps", index)
        step: dict[str, Any] = {"id": ids[index]}
        for key in _STEP_ID_KEYS:
            if key in raw:
                self.smap.json_paths[(*ir_path, "id")] = (*path, key)
                break
        text = None
        text_key = None
        for key in _TEXT_KEYS:
            if key in raw and isinstance(raw[key], str):
                text, text_key = raw[key], key
                break
        handled = set(_STEP_ID_KEYS) | set(_TEXT_KEYS) | _IGNORED_STEP_KEYS

        # Dependencies
        deps_key = next((k for k in _DEP_KEYS if k in raw), None)
        if deps_key is not None:
            handled.add(deps_key)
            deps = raw[deps_key]
            if deps is None:
                deps = []
            if isinstance(deps, int | str) and not isinstance(deps, bool):
                deps = [deps]
            if not isinstance(deps, list):
                self.error((*path, deps_key), "dependencies are a list of step ids or numbers")
                deps = []
            after: list[str] = []
            for j, dep in enumerate(deps):
                target = None
                if isinstance(dep, int | str) and not isinstance(dep, bool):
                    target = aliases.get(str(dep))
                    if target is None and isinstance(dep, str) and _NAME.fullmatch(dep):
                        target = dep  # an unknown name: the checker reports it with a hint
                if target is None:
                    self.error(
                        (*path, deps_key, j),
                        f"depends on unknown step {json.dumps(dep)}",
                        hint=did_you_mean(str(dep), ids) or f"steps: {', '.join(ids[:10])}",
                    )
                    continue
                self.smap.json_paths[(*ir_path, "after", len(after))] = (*path, deps_key, j)
                after.append(target)
            if deps_key != "after":
                self.llm_shaped = True
            step["after"] = after

        # Tier and task type (LLM shapes)
        tier_key = next((k for k in _TIER_KEYS if k in raw), None)
        if tier_key is not None:
            handled.add(tier_key)
            tier = raw[tier_key]
            if isinstance(tier, str):
                step["tier"] = _TIER_ALIASES.get(tier.lower(), tier) if tier_key != "tier" else tier
                self.smap.json_paths[(*ir_path, "tier")] = (*path, tier_key)
            elif tier is not None:
                self.error(
                    (*path, tier_key), "a tier is a name like `fast`, `standard`, `frontier`"
                )
        result_type = raw.get("type")
        if "type" in raw:
            handled.add("type")
            if (
                isinstance(result_type, str)
                and result_type.lower() in _TASK_ALIASES
                and result_type not in self.record_names
            ):
                step["task"] = _TASK_ALIASES[result_type.lower()]
                self.smap.json_paths[(*ir_path, "task")] = (*path, "type")
            elif result_type is not None:
                step["type"] = result_type
                self.smap.json_paths[(*ir_path, "type")] = (*path, "type")
        if "task" in raw:
            handled.add("task")
            task = raw["task"]
            if isinstance(task, str) and task.lower() in _TASK_ALIASES:
                step["task"] = _TASK_ALIASES[task.lower()]
                self.smap.json_paths[(*ir_path, "task")] = (*path, "task")
            elif task is not None:
                self.error(
                    (*path, "task"),
                    f"unknown task type {json.dumps(task)[:40]}",
                    hint=f"task types: {', '.join(TASK_TYPES)}",
                )

        # Tool and arguments
        tool = raw.get("tool", raw.get("tool_name", raw.get("action_name")))
        tool_key = next((k for k in ("tool", "tool_name", "action_name") if k in raw), None)
        if tool_key is not None:
            handled.add(tool_key)
        args_key = next(
            (
                k
                for k in (
                    "args",
                    "arguments",
                    "tool_input",
                    "input",
                    "inputs",
                    "parameters",
                    "params",
                )
                if k in raw
            ),
            None,
        )
        raw_args = raw.get(args_key) if args_key else None
        if args_key is not None:
            handled.add(args_key)
        if isinstance(tool, str) and tool.strip():
            name = self.tool_name(tool.strip())
            step["tool"] = name
            self.smap.json_paths[(*ir_path, "tool")] = (*path, tool_key or "tool")
            args = self.load_args(raw_args, args_key, name, path, ir_path, aliases)
            if (
                text is not None
                and text_key != "description"
                and name in ("llm",)
                and "prompt" not in args
            ):
                args["prompt"] = text
            if text is not None and (text_key == "description" or "prompt" in args):
                step["description"] = text
            step["args"] = args
        elif (
            tool is not None
            and tool_key is not None
            and not (isinstance(tool, str) and not tool.strip())
        ):
            self.error((*path, tool_key), f"`{tool_key}` must be a tool name")
        else:
            # No tool: an LLM step on the requested tier, prompted with its text.
            if text is None:
                self.error(
                    path,
                    "a step needs a `tool` (with `args`) or a `description`/`prompt` for an LLM",
                    hint="see `planfile schema` and `planfile tools`",
                )
                return step
            self.llm_shaped = True
            step["tool"] = "llm"
            # The prompt is finished once dependencies are known (see load_steps).
            step["args"] = {"prompt": _numbered_refs(text, aliases)}
            self.description_steps.append(step)
            if text_key is not None:
                self.smap.json_paths[(*ir_path, "args", "prompt")] = (*path, text_key)
            if raw_args is not None:
                self.error((*path, args_key or "args"), "arguments without a `tool`")

        # Remaining canonical fields
        for key, value in raw.items():
            if key in handled:
                continue
            if key in _CANONICAL_STEP_KEYS:
                step[key] = value
                self.smap.json_paths[(*ir_path, key)] = (*path, key)
                continue
            self.error(
                (*path, key),
                f"unknown step field `{key}`",
                hint=did_you_mean(
                    key, sorted(_CANONICAL_STEP_KEYS | set(_DEP_KEYS) | {"tool_input"})
                )
                or "see `planfile schema`",
            )
        self.smap.json_paths[ir_path] = path
        return step

    def llm_prompt(self, text: str, step: dict[str, Any], goal: Any) -> str:
        """A prompt for a description-only step: the goal, the task, and its inputs."""
        parts = []
        if isinstance(goal, str) and goal:
            parts.append(f"Overall goal: {_escape_template(goal)}")
        parts.append(f"Your task: {text}")
        mentioned = set(re.findall(r"\{\{\s*([A-Za-z_]\w*)", text))
        deps = [dep for dep in step.get("after") or [] if dep not in mentioned]
        if deps:
            parts.append("Results of earlier steps:")
            parts.extend(f"- {dep}: {{{{ {dep} }}}}" for dep in deps)
        return "\n".join(parts)

    def tool_name(self, name: str) -> str:
        if not self.tools or name in self.tools:
            return name
        lowered = {t.lower(): t for t in self.tools}
        simplified = re.sub(r"[^a-z0-9_]", "_", name.lower())
        for candidate in (name.lower(), simplified, simplified.removesuffix("_tool")):
            if candidate in lowered:
                return lowered[candidate]
        if _NAME.fullmatch(name):
            return name  # unknown: the checker reports it with a did-you-mean
        return simplified if _NAME.fullmatch(simplified) else "unknown_tool"

    def load_args(
        self,
        raw_args: Any,
        args_key: str | None,
        tool: str,
        path: Path,
        ir_path: Path,
        aliases: dict[str, str],
    ) -> dict[str, Any]:
        if raw_args is None:
            return {}
        key = args_key or "args"
        if isinstance(raw_args, dict):
            args = {}
            for name, value in raw_args.items():
                self.smap.json_paths[(*ir_path, "args", name)] = (*path, key, name)
                args[name] = (
                    _convert_refs(value, aliases) if self.llm_shaped or key != "args" else value
                )
            return args
        # `tool_input` as one value: it goes to the tool's first parameter.
        spec = self.tools.get(tool)
        params = getattr(spec, "params", ()) if spec is not None else ()
        if not params:
            if spec is None:
                return {"input": raw_args}
            self.error((*path, key), f"tool `{tool}` takes no arguments")
            return {}
        first = params[0].name
        self.smap.json_paths[(*ir_path, "args", first)] = (*path, key)
        value = _convert_refs(raw_args, aliases)
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and params[0].type.kind == "str"
        ):
            value = str(value)
        return {first: value}


def _escape_template(text: str) -> str:
    return (
        text.replace("{{", "{{ '{{' }}").replace("{%", "{{ '{%' }}") if is_template(text) else text
    )


def _numbered_refs(text: str, aliases: Mapping[str, str]) -> str:
    """`$1`, `${1}`, `#E1` -> `{{ step_1 }}` where they name a step."""

    def replace(match: re.Match[str]) -> str:
        number = match.group(1) or match.group(2)
        target = aliases.get(number)
        return f"{{{{ {target} }}}}" if target else match.group(0)

    return _NUMBERED_REF.sub(replace, text)


def _convert_refs(value: Any, aliases: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\{?(\d+)\}?|#E(\d+)", value.strip())
        if whole:
            target = aliases.get(whole.group(1) or whole.group(2))
            if target:
                return {"ref": target}
        return _numbered_refs(value, aliases)
    if isinstance(value, list):
        return [_convert_refs(v, aliases) for v in value]
    if isinstance(value, dict):
        if set(value) == {"ref"}:
            return value
        return {k: _convert_refs(v, aliases) for k, v in value.items()}
    return value


def _strings(value: Any) -> list[str]:
    out: list[str] = []
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            out.append(current)
        elif isinstance(current, list):
            stack.extend(current)
        elif isinstance(current, dict):
            stack.extend(current.values())
    return out


def _money(text: str) -> Any:
    cleaned = text.strip().lstrip("$").replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        return text


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _message(error: Any) -> str:
    message = str(error["msg"])
    if error["type"] == "string_pattern_mismatch":
        return f"{json.dumps(error['input'])[:40]} is not a valid name (letters, digits, `_`)"
    if error["type"] == "extra_forbidden":
        return f"unknown field `{error['loc'][-1]}`"
    if error["type"] == "missing":
        return f"`{error['loc'][-1]}` is required"
    return message


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, iteratively."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            children = current.values() if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json_text(source: str, file: str | None = None) -> Any:
    """JSON text -> a Python value, or a located PlanError."""
    try:
        doc = json.loads(source, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise PlanError(
            [
                Diagnostic(
                    f"invalid JSON: {err.msg}", Location(file, err.lineno, err.colno), code="syntax"
                )
            ],
            source,
        ) from None
    except ValueError as err:
        raise PlanError(
            [Diagnostic(f"invalid JSON: {err}", Location(file, 1, 1), code="syntax")]
        ) from None
    except RecursionError:
        raise PlanError(
            [
                Diagnostic(
                    f"JSON nests more than {MAX_JSON_DEPTH} levels deep",
                    Location(file, 1, 1),
                    code="syntax",
                )
            ]
        ) from None
    return doc


def load_json(
    doc: Any, file: str | None = None, tools: Mapping[str, Any] | None = None
) -> tuple[Plan, SourceMap]:
    """A parsed JSON document (canonical or LLM-shaped) -> Plan IR and source map."""
    if _depth(doc) > MAX_JSON_DEPTH:
        raise PlanError(
            [
                Diagnostic(
                    f"JSON nests more than {MAX_JSON_DEPTH} levels deep",
                    Location(file, path=()),
                    code="json",
                )
            ]
        )
    loader = _Loader(file, tools)
    with gc_paused():
        return loader.load(doc), loader.smap


def load_json_bytes(
    data: bytes, file: str | None = None, tools: Mapping[str, Any] | None = None
) -> tuple[Plan, SourceMap]:
    text = decode_source(data, file)
    return load_json(parse_json_text(text, file), file, tools)
