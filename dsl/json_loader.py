"""The JSON front end: canonical JSON plans and the shapes LLMs really write -> Plan IR.

Canonical plans follow `planfile schema`. LLM-written plans drift, so the loader also
maps the common shapes onto the IR: `{"steps": [...]}`, a bare list, `{"plan": [..]}`;
ids from `id` or `step_number`; `depends_on` as numbers or names; `tool` + `tool_input`;
`description`/`prompt` steps without a tool (LLM steps on the `requiredModel` tier);
`goal`, `expectedCost`; `timeout` in milliseconds (the ExecutionPlan shape), `timeout_ms`,
`timeout_s` and duration text; OpenAI `tool_calls` (independent calls -> independent
steps); `{"step": "action", "params": {...}}` action lists. Values a model wrote as text
are coerced where lossless (dsl/coerce.py) and every change is a note; `tool_map` renames
tools a model invented. Every error names the JSON path in the original document. The
table of shapes: specs/plan-shapes.md.

Over 400 lines because one walk over the document must see every shape at once (a step's
keys decide each other's meaning); the tables are in dsl/shapes.py, value coercion in
dsl/coerce.py, JSON repair in dsl/repair.py and the agent shapes in dsl/json_agent.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from itertools import chain
from typing import Any, cast

from pydantic import ValidationError

from dsl.ir import TASK_TYPES, Plan, Step, fast_step, is_name, is_template, plain_step

from .agent_steps import AGENT_TOOL, TASK_ARG, Executor
from .coerce import NOT_COERCED, coerce, describe, duration_seconds
from .errors import Diagnostic, Location, Path, PlanError, did_you_mean, gc_paused
from .json_agent import AgentShapes
from .lone_surrogates import may_hold_surrogates, surrogate_error, surrogate_path
from .parser import SourceMap, decode_source, default_plan_name
from .repair import parse_model_json
from .shapes import (
    CANONICAL_STEP_KEYS,
    CRITERIA_KEYS,
    DEP_KEYS,
    IGNORED_STEP_KEYS,
    PLAN_KEYS,
    REQUEST_PARAMS,
    STEP_ID_KEYS,
    TASK_ALIASES,
    TEXT_KEYS,
    TIER_ALIASES,
    TIER_KEYS,
    TIMEOUT_KEYS,
    TOOL_LIST_KEYS,
    is_tool_call,
    tool_call,
)
from .types import INT
from .values import walk

MAX_JSON_DEPTH = 64

# A step with only these keys may take `load_canonical_step`; the verbatim ones are
# copied as they are (the checker and the IR validate them), as `load_step` does.
_VERBATIM_KEYS = frozenset(
    {"for_each", "model", "when", "on_error", "check", "cache", "approve", "executor"}
)
_CANONICAL_KEYS = frozenset({"id", "tool", "args", "after"}) | _VERBATIM_KEYS
_DEP_KEYS = frozenset(DEP_KEYS)
_PLAIN_KEYS = frozenset({"id", "tool", "args", "after"})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STEP_ID = re.compile(r"[A-Za-z_]\w*")
_NUMBERED_REF = re.compile(r"\$\{?(\d+)\}?|#E(\d+)\b")


class _Loader(AgentShapes):
    def __init__(
        self,
        file: str | None,
        tools: Mapping[str, Any] | None,
        tool_map: Mapping[str, str] | None = None,
        executor: Executor = "llm",
    ):
        self.file = file
        # A plain dict: the loader asks several times per step, and a registry's methods
        # are Python calls.
        self.tools: dict[str, Any] = dict(tools) if tools else {}
        self.tool_map = dict(tool_map or {})
        self.step_aliases: dict[str, str] = {}
        self.executor = executor
        # Without a catalogue (a plain IR dump) every tool is taken as named.
        self.agent_available = not self.tools or AGENT_TOOL in self.tools
        self.independent = False  # tool calls: no declared dependencies means none
        self.problems: list[Diagnostic] = []
        self.paths = _JsonPaths()
        self.smap = SourceMap(file, is_json=True, json_paths=self.paths)
        self.coercible: frozenset[str] = frozenset()  # see plain_tools
        self.llm_shaped = False
        self.description_steps: list[dict[str, Any]] = []
        self.record_names: set[Any] = set()
        self.criteria: dict[str, str] = {}  # step id -> its success criteria (article 001)

    def error(self, path: Path, message: str, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(message, Location(self.file, path=path), hint, code="json"))

    def note(self, path: Path, message: str, code: str = "coerced") -> None:
        self.smap.notes.append(
            Diagnostic(message, Location(self.file, path=path), severity="note", code=code)
        )

    # --- document level ------------------------------------------------------------
    def load(self, doc: Any) -> Plan:
        plan_fields: dict[str, tuple[str, Any]] = {}
        steps_path: Path = ()
        if isinstance(doc, dict) and isinstance(doc.get("choices"), list) and doc["choices"]:
            # A whole chat-completion response: the plan is its first message.
            message = (
                doc["choices"][0].get("message") if isinstance(doc["choices"][0], dict) else None
            )
            if isinstance(message, dict):
                self.note(
                    ("choices", 0, "message"), "read the plan from the response's message", "shape"
                )
                doc = message
        if isinstance(doc, dict) and set(doc) == {"action"} and isinstance(doc["action"], dict):
            # LangGraph's replanner `Act`: `{"action": {"steps": [...]}}`.
            self.note(("action",), "read the plan from `action`", "shape")
            doc = doc["action"]
        if isinstance(doc, dict) and "response" in doc and not {"steps", "plan"} & set(doc):
            self.error(
                ("response",),
                "this is a final answer (`response`), not a plan",
                hint='a plan gives `steps` (or `plan`): {"steps": ["...", "..."]}',
            )
            raise PlanError(self.problems)
        if isinstance(doc, dict) and "tool_calls" in doc:
            self.independent = True
        if isinstance(doc, list) and doc and all(is_tool_call(item) for item in doc):
            self.independent = True
        if isinstance(doc, list):
            self.llm_shaped = True
            raw_steps = doc
        elif isinstance(doc, dict):
            raw_steps, steps_path = None, ("steps",)
            for key, value in doc.items():
                target = PLAN_KEYS.get(key, "?")
                if target == "?":
                    self.error(
                        (key,),
                        f"unknown plan field `{key}`",
                        hint=did_you_mean(key, [k for k, v in PLAN_KEYS.items() if v])
                        or "plan fields: name, goal, inputs, tiers, types, steps, outputs",
                    )
                    continue
                if target is None:
                    continue
                if target == "steps":
                    if raw_steps is not None:
                        self.error((key,), f"steps are given twice (`{steps_path[0]}` and `{key}`)")
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
            if target == "outputs" and not (
                isinstance(value, list) and all(isinstance(o, str) for o in value)
            ):
                self.error(
                    (plan_fields["outputs"][0],),
                    "`outputs` must be a list of step names",
                    hint='for example "outputs": ["verdict"]',
                )
                continue
            out[target] = value
        if out.get("goal") is not None and not isinstance(out["goal"], str):
            self.error((plan_fields["goal"][0],), "`goal` must be a string")
        out.setdefault("name", default_plan_name(self.file))
        out["steps"] = self.load_steps(raw_steps, steps_path, out.get("goal"))
        if self.problems:
            raise PlanError(self.problems)
        for j, name in enumerate(out.get("outputs") or []):
            self.smap.json_paths[("outputs", j)] = (plan_fields["outputs"][0], j)
            # An output naming a step by the spelling its id was renamed from
            # (`"step 1"` -> `step_1`) follows the rename, as references do.
            renamed = self.step_aliases.get(name)
            if renamed is not None and renamed != name and not name.isdigit():
                out["outputs"][j] = renamed
                self.note((plan_fields["outputs"][0], j), f"output `{name}` is step `{renamed}`")
        # Steps already of their exact types skip pydantic's per-step validation; the rest
        # (and the plan around them) are validated, which reports what is wrong.
        out["steps"] = [_fast_or_raw(step) for step in out["steps"]]
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
    def load_steps(
        self, raw_steps: list[Any], base: Path, goal: Any
    ) -> list[dict[str, Any] | Step]:
        ids: list[str] = []
        aliases: dict[str, str] = {}  # any spelling an LLM may use for a step -> its id
        self.step_aliases = aliases  # the plan's `outputs` name steps by these spellings too
        odd_ids = False  # whether some id was not a plain name as written
        for index, raw in enumerate(raw_steps):
            if type(raw) is dict:
                value = raw.get("id")
                # The canonical case without the search below: an id that is a plain name.
                if type(value) is str and value.isidentifier() and value.isascii():
                    aliases[value] = value
                    ids.append(value)
                    continue
            odd_ids = True
            path = (*base, index)
            step_id = f"step_{index + 1}"
            if isinstance(raw, dict):
                key = "id" if "id" in raw else next((k for k in STEP_ID_KEYS if k in raw), None)
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
                    elif _STEP_ID.fullmatch(value):
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
            isinstance(raw, dict) and not _DEP_KEYS.isdisjoint(raw) for raw in raw_steps
        )
        steps: list[dict[str, Any] | Step] = []
        paths = self.smap.json_paths
        at_steps = base == ("steps",)  # then a step's JSON path is its IR path
        # Plain steps (below) are built as Steps at once, so nothing may change them
        # later: only where the plan declares dependencies (no chaining) and the
        # catalogue names the tools.
        plain_tools = self.plain_tools() if at_steps and declares_deps else None
        plain = self.paths.plain
        next_index, count = 0, len(raw_steps)
        while next_index < count:
            if plain_tools is not None and not self.llm_shaped:
                run = self.load_plain_steps(
                    raw_steps, next_index, ids, aliases, plain_tools, odd_ids
                )
                if run:
                    steps += run
                    next_index += len(run)
                    continue
            index = next_index
            next_index += 1
            plain.append(None)
            raw = raw_steps[index]
            ir_path = ("steps", index)
            path = ir_path if at_steps else (*base, index)
            paths[ir_path] = path
            if type(raw) is dict and raw.keys() <= _CANONICAL_KEYS:
                canonical = self.load_canonical_step(raw, index, path, ir_path, ids, aliases)
                if canonical is not None:
                    steps.append(canonical)
                    continue
            if isinstance(raw, str):
                self.llm_shaped = True
                raw = {"description": raw}
            if not isinstance(raw, dict):
                self.error(path, f"a step is an object, not {_json_kind(raw)}")
                continue
            steps.append(self.load_step(raw, index, path, ids, aliases))
        # An ordered list without any declared dependency is a sequence: chain it.
        if self.problems:
            return steps
        if not declares_deps and not self.independent:
            dicts = cast(list[dict[str, Any]], steps)  # no plain step: see plain_tools
            if not self.references_steps(dicts, ids):
                for index in range(1, len(dicts)):
                    dicts[index]["after"] = [ids[index - 1]]
        for step in self.description_steps:
            key = TASK_ARG if step["tool"] == AGENT_TOOL else "prompt"
            step["args"][key] = self.llm_prompt(step["args"][key], step, goal)
        return steps

    @staticmethod
    def references_steps(steps: list[dict[str, Any]], ids: list[str]) -> bool:
        """Whether any step's arguments name a step: a `{"ref": ...}` or a template name.

        One pass over the arguments with a set lookup per word: a search per id and step
        was quadratic (a 100,000-step plan took minutes to load).
        """
        known = set(ids)
        # Ids that are not plain words cannot be found by splitting text into words.
        odd = [i for i in known if not _STEP_ID.fullmatch(i)]
        for step in steps:
            for node in walk(step.get("args", {})):
                if isinstance(node, dict):
                    ref = node.get("ref")
                    if isinstance(ref, str) and _ref_root(ref) in known:
                        return True
                elif isinstance(node, str) and is_template(node):
                    if any(word in known for word in _STEP_ID.findall(node)):
                        return True
                    if any(re.search(rf"(?<!\w){re.escape(i)}(?!\w)", node) for i in odd):
                        return True
        return False

    def load_step(
        self,
        raw: dict[str, Any],
        index: int,
        path: Path,
        ids: list[str],
        aliases: dict[str, str],
    ) -> dict[str, Any]:
        ir_path: Path = ("steps", index)
        step: dict[str, Any] = {"id": ids[index]}
        for key in STEP_ID_KEYS:
            if key in raw:
                self.smap.json_paths[(*ir_path, "id")] = (*path, key)
                break
        text = None
        text_key = None
        for key in TEXT_KEYS:
            if key in raw and isinstance(raw[key], str):
                text, text_key = raw[key], key
                break
        handled = set(STEP_ID_KEYS) | set(TEXT_KEYS) | IGNORED_STEP_KEYS

        # Dependencies
        deps_key = next((k for k in DEP_KEYS if k in raw), None)
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
        tier_key = next((k for k in TIER_KEYS if k in raw), None)
        if tier_key is not None:
            handled.add(tier_key)
            tier = raw[tier_key]
            if isinstance(tier, str) and "|" in tier:
                self.error(
                    (*path, tier_key),
                    f"`{tier_key}` lists the choices {json.dumps(tier)}: pick one",
                    hint="a tier: fast, standard or frontier (or one the plan declares)",
                )
            elif isinstance(tier, str):
                step["tier"] = TIER_ALIASES.get(tier.lower(), tier) if tier_key != "tier" else tier
                self.smap.json_paths[(*ir_path, "tier")] = (*path, tier_key)
            elif tier is not None:
                self.error(
                    (*path, tier_key), "a tier is a name like `fast`, `standard`, `frontier`"
                )
        call = tool_call(raw)
        if call is not None:
            handled.update(("type", "function", "name", "input"))
        result_type = raw.get("type")
        if "type" in raw and call is None:
            handled.add("type")
            choices = result_type.split("|") if isinstance(result_type, str) else []
            if len(choices) > 1 and all(c.strip().lower() in TASK_ALIASES for c in choices):
                self.error(
                    (*path, "type"),
                    f"`type` lists the choices {json.dumps(result_type)}: pick one",
                    hint=f"task types: {', '.join(TASK_TYPES)}",
                )
            elif (
                isinstance(result_type, str)
                and result_type.lower() in TASK_ALIASES
                and result_type not in self.record_names
            ):
                step["task"] = TASK_ALIASES[result_type.lower()]
                self.smap.json_paths[(*ir_path, "task")] = (*path, "type")
            elif result_type is not None:
                step["type"] = result_type
                self.smap.json_paths[(*ir_path, "type")] = (*path, "type")
        agent_shaped = self.agent_shaped(raw, call, text)
        agent_task = (
            agent_shaped
            and isinstance(raw.get(TASK_ARG), str)
            and raw[TASK_ARG].strip().lower() not in TASK_ALIASES
        )
        if "task" in raw and not agent_task:
            handled.add("task")
            task = raw["task"]
            if isinstance(task, str) and task.lower() in TASK_ALIASES:
                step["task"] = TASK_ALIASES[task.lower()]
                self.smap.json_paths[(*ir_path, "task")] = (*path, "task")
            elif task is not None:
                self.error(
                    (*path, "task"),
                    f"unknown task type {json.dumps(task)[:40]}",
                    hint=f"task types: {', '.join(TASK_TYPES)}",
                )

        # Tool and arguments
        tool = raw.get("tool", raw.get("tool_name", raw.get("action_name")))
        tool_key: str | None = next(
            (k for k in ("tool", "tool_name", "action_name") if k in raw), None
        )
        # `{"step": "fetch_market_data", "params": {...}}`: the step names its action.
        action_step = (
            tool_key is None
            and call is None
            and text is None
            and isinstance(raw.get("step"), str)
            and _NAME.fullmatch(raw["step"]) is not None
        )
        if action_step:
            tool, tool_key = raw["step"], "step"
        if agent_shaped and tool_key is None:
            tool = AGENT_TOOL  # a task (or description) and a `tools` list: an agent step
        listed_key = next((k for k in TOOL_LIST_KEYS if k in raw), None)
        if agent_shaped:
            listed_key = None  # `tools` is the agent's (see agent_args)
        if listed_key is not None and tool_key is None and call is None:
            handled.add(listed_key)
            listed = raw[listed_key]
            listed = [listed] if isinstance(listed, str) else listed
            if not isinstance(listed, list) or len(listed) > 1:
                self.error(
                    (*path, listed_key),
                    f"a step calls one tool; `{listed_key}` lists {describe(raw[listed_key])}",
                    hint="split the step into one step per tool"
                    + (
                        ', or make it an agent step: "tools": [...] beside its description'
                        if self.agent_available and isinstance(raw[listed_key], list)
                        else ""
                    ),
                )
            elif listed:
                tool, tool_key = listed[0], listed_key
        criteria_key = next((k for k in CRITERIA_KEYS if k in raw), None)
        if criteria_key is not None:
            handled.add(criteria_key)
            if isinstance(raw[criteria_key], str) and raw[criteria_key].strip():
                self.criteria[ids[index]] = raw[criteria_key].strip()
        if tool_key is not None:
            handled.add(tool_key)
        args_key: str | None = next(
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
        if call is not None:
            tool, tool_key, raw_args, args_key, path = (
                call[0],
                call[1],
                call[2],
                call[3],
                call[4](path),
            )
        if action_step and raw_args is None:
            # `{"step": "search_academic_databases", "query": "...", "limit": 10}`
            loose = {k: v for k, v in raw.items() if k not in handled and k not in TIMEOUT_KEYS}
            loose = {k: v for k, v in loose.items() if k not in CANONICAL_STEP_KEYS}
            if loose:
                raw_args, args_key = loose, None
                handled.update(loose)
        if isinstance(tool, str) and tool.strip():
            name = self.tool_name(tool.strip(), (*path, tool_key or "tool"))
            step["tool"] = name
            self.smap.json_paths[(*ir_path, "tool")] = (*path, tool_key or "tool")
            args = self.load_args(raw_args, args_key, name, path, ir_path, aliases)
            if name == AGENT_TOOL:
                text = self.agent_args(raw, args, text, text_key, step, path, ir_path, handled)
            elif self.executor == "agent" and self.agent_available and name not in self.tools:
                task = _numbered_refs(text, aliases) if text is not None else None
                args = self.as_agent(step, task, args, path, tool_key or "tool", ir_path)
                text = None
            if not args and raw_args is None and text is not None and name == "llm":
                # An LLM step in all but name: prompted with the goal and earlier results.
                args = {"prompt": _numbered_refs(text, aliases)}
                step["args"] = args
                self.description_steps.append(step)
                self.smap.json_paths[(*ir_path, "args", "prompt")] = (*path, text_key or "prompt")
                text = None
            elif not args and raw_args is None and text is not None:
                args = self.text_as_input(name, text, (*path, text_key or "description"), ir_path)
            if (
                text is not None
                and text_key != "description"
                and name in ("llm",)
                and "prompt" not in args
            ):
                args["prompt"] = text
            if text is not None and (text_key == "description" or "prompt" in args):
                step["description"] = text
            self.coerce_args(name, args, ir_path)
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
            if self.executor == "agent" and self.agent_available:
                self.as_agent(step, _numbered_refs(text, aliases), {}, path, text_key, ir_path)
                if text_key is not None:
                    self.smap.json_paths[(*ir_path, "args", TASK_ARG)] = (*path, text_key)
            else:
                step["tool"] = "llm"
                step["executor"] = "llm"
                # The prompt is finished once dependencies are known (see load_steps).
                step["args"] = {"prompt": _numbered_refs(text, aliases)}
                self.description_steps.append(step)
                if text_key is not None:
                    self.smap.json_paths[(*ir_path, "args", "prompt")] = (*path, text_key)
            if raw_args is not None:
                self.error((*path, args_key or "args"), "arguments without a `tool`")

        # Remaining canonical fields
        self.load_timeout(raw, step, path, ir_path, handled)
        for key, value in raw.items():
            if key in handled:
                continue
            if key == "retry":
                number = coerce(value, INT) if isinstance(value, str) else NOT_COERCED
                if number is not NOT_COERCED:
                    self.note((*path, key), f"coerced {describe(value)} to int {number}")
                    value = number
            if key in CANONICAL_STEP_KEYS:
                step[key] = value
                self.smap.json_paths[(*ir_path, key)] = (*path, key)
                continue
            self.error(
                (*path, key),
                f"unknown step field `{key}`",
                hint=did_you_mean(
                    key,
                    sorted(
                        CANONICAL_STEP_KEYS | set(DEP_KEYS) | set(TIMEOUT_KEYS) | {"tool_input"}
                    ),
                )
                or "see `planfile schema`",
            )
        self.smap.json_paths[ir_path] = path
        return step

    def load_plain_steps(
        self,
        raw_steps: list[Any],
        start: int,
        ids: list[str],
        aliases: dict[str, str],
        plain_tools: frozenset[str],
        odd_ids: bool,
    ) -> list[Step]:
        """The plain canonical steps from `start` on, up to the first that is not one, as
        Steps (each recorded in `_JsonPaths.plain`). A plain step (`id`, `tool`, `args`,
        `after`; steps at `steps`) is built in one pass: what `load_canonical_step` +
        `fast_step` make of it, without a dict to build and walk again or a source-map
        entry per field; a step that is not one is left untouched for the general path."""
        built: list[Step] = []
        alias = aliases.get
        coercible = self.coercible
        for index in range(start, len(raw_steps)):
            raw = raw_steps[index]
            if type(raw) is not dict or not raw.keys() <= _PLAIN_KEYS:
                break
            step_id = ids[index]
            tool = raw.get("tool")
            if (
                raw.get("id") is not step_id  # not the first pass's plain name
                or not step_id.isascii()
                or type(tool) is not str
                or tool not in plain_tools
            ):
                break
            after = None
            deps = raw.get("after")
            if deps is not None:
                if type(deps) is not list:
                    break
                try:  # a name not an id (a number, an unknown step) is None: general path
                    after = tuple(map(alias, deps))
                except TypeError:  # a list or an object in `after`
                    break
                if None in after or (odd_ids and not _names(after)):
                    break
            elif "after" in raw:  # `after: null`: the general path reads it
                break
            args = raw.get("args")
            if args is not None and type(args) is not dict:
                break
            step = plain_step(step_id, tool, after, args)  # type: ignore[arg-type]
            if step is None:
                break
            if args and tool in coercible:
                # Models write numbers as text: what `load_args` + `coerce_args` do.
                coerced = dict(args)
                notes = len(self.smap.notes)
                if self.coerce_args(tool, coerced, ("steps", index)):
                    step = plain_step(step_id, tool, after, coerced)  # type: ignore[arg-type]
                    if step is None:  # a coerced value needs pydantic: the general path,
                        del self.smap.notes[notes:]  # which coerces (and notes) again
                        break
            built.append(step)
        self.paths.plain += built
        return built

    def load_canonical_step(
        self,
        raw: dict[str, Any],
        index: int,
        path: Path,
        ir_path: Path,
        ids: list[str],
        aliases: dict[str, str],
    ) -> dict[str, Any] | None:
        """A step already in the canonical shape, without the walk over every shape:
        what `load_step` would make of it, or None (before any side effect) when it
        needs that walk (an odd id, a dependency to resolve or report, a tool to rename).
        A 10k-step plan is mostly such steps; the walk cost ~30 µs a step, and this path
        does only what the step holds (no tuple unpacking, no call for absent fields)."""
        tool = raw.get("tool")
        step_id = ids[index]
        tools = self.tools
        if (
            raw.get("id") != step_id
            or type(tool) is not str
            or not tool
            or tool in self.tool_map
            or (tool not in tools if tools else tool != tool.strip())
            or tool == AGENT_TOOL
        ):
            return None
        after = None
        if "after" in raw:
            deps = raw["after"]
            if type(deps) is not list:
                return None
            after = [aliases.get(dep) if type(dep) is str else None for dep in deps]
            if None in after:
                return None
        paths = self.smap.json_paths
        same = path is ir_path  # a JSON path equal to the IR path: one tuple for both
        step: dict[str, Any] = {"id": step_id}
        key: Path = ("steps", index, "id")
        paths[key] = key if same else (*path, "id")
        if after is not None:
            for j in range(len(after)):
                key = ("steps", index, "after", j)
                paths[key] = key if same else (*path, "after", j)
            step["after"] = after
        step["tool"] = tool
        key = ("steps", index, "tool")
        paths[key] = key if same else (*path, "tool")
        raw_args = raw.get("args")
        if raw_args is None or (type(raw_args) is dict and not raw_args):
            args: dict[str, Any] = {}  # what load_args makes of them, without the call
        else:
            args = self.load_args(raw_args, "args", tool, path, ir_path, aliases)
            self.coerce_args(tool, args, ir_path)
        step["args"] = args
        if len(raw) > 2 + (after is not None) + ("args" in raw):  # verbatim fields
            for key_name, value in raw.items():
                if key_name in _VERBATIM_KEYS:
                    step[key_name] = value
                    paths[(*ir_path, key_name)] = (*path, key_name)
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
        if step["id"] in self.criteria:
            parts.append(f"Done when: {_escape_template(self.criteria[step['id']])}")
        return "\n".join(parts)

    def load_timeout(
        self,
        raw: dict[str, Any],
        step: dict[str, Any],
        path: Path,
        ir_path: Path,
        handled: set[str],
    ) -> None:
        """`timeout_s`, `timeout` (ms), `timeout_ms`, duration text -> `timeout_s`."""
        keys = [k for k in TIMEOUT_KEYS if k in raw]
        handled.update(keys)
        if not keys:
            return
        if len(keys) > 1:
            self.error((*path, keys[1]), f"`{keys[1]}` repeats `{keys[0]}`: give one timeout")
            return
        key = keys[0]
        value, unit = raw[key], TIMEOUT_KEYS[key]
        if value is None:
            return
        seconds = duration_seconds(value, unit)
        if seconds is None or seconds <= 0:
            self.error(
                (*path, key),
                f"`{key}` must be a positive duration, not {describe(value)}",
                hint=f'a number of {"milliseconds" if unit == "ms" else "seconds"} or text like "30s"',
            )
            return
        step["timeout_s"] = seconds
        self.smap.json_paths[(*ir_path, "timeout_s")] = (*path, key)
        if key != "timeout_s" or not isinstance(value, int | float):
            bare = not isinstance(value, str) or duration_seconds(value, "s") == _number(value)
            how = ("milliseconds" if unit == "ms" else "seconds") if bare else "a duration"
            self.note(
                (*path, key), f"`{key}` {describe(value)} read as {how}: timeout_s {seconds:g}"
            )

    def text_as_input(self, tool: str, text: str, path: Path, ir_path: Path) -> dict[str, Any]:
        """A tool step with a description and no arguments: when the tool takes exactly
        one required text parameter that asks for a request (a query, a question), the
        description is that request; text to work on (`summarize`'s `text`) is not guessed."""
        spec = self.tools.get(tool)
        params = getattr(spec, "params", ()) if spec is not None else ()
        required = [p for p in params if p.required]
        if len(required) != 1 or required[0].type.kind != "str":
            return {}
        if required[0].name not in REQUEST_PARAMS:
            return {}
        name = required[0].name
        self.smap.json_paths[(*ir_path, "args", name)] = path
        self.note(
            path,
            f"`{path[-1]}` used as `{name}` of `{tool}` (the step gives no arguments)",
            "shape",
        )
        return {name: text}

    def coerce_args(self, tool: str, args: dict[str, Any], ir_path: Path) -> bool:
        """Convert values a model wrote as text to the declared parameter types, losslessly;
        whether any was."""
        changed = False
        spec = self.tools.get(tool)
        for param in getattr(spec, "params", ()) if spec is not None else ():
            value = args.get(param.name)
            if value is None or (isinstance(value, dict) and set(value) == {"ref"}):
                continue
            if isinstance(value, str) and is_template(value):
                continue  # a template's type is the checker's business
            if param.type.kind == "json" or (param.type.kind == "str" and isinstance(value, str)):
                continue
            converted = coerce(value, param.type.required())
            if converted is NOT_COERCED or (converted == value and type(converted) is type(value)):
                continue
            args[param.name] = converted
            changed = True
            where = self.smap.json_paths.get(
                (*ir_path, "args", param.name), (*ir_path, "args", param.name)
            )
            self.note(
                where,
                f"coerced {describe(value)} to {param.type.required()} {describe(converted)}"
                f" for `{param.name}` of `{tool}`",
            )
        return changed

    def plain_tools(self) -> frozenset[str] | None:
        """The tools a plain step may name as it is (a registered name, not renamed, not
        `agent`), and (in `coercible`) those whose arguments `coerce_args` may convert;
        None without a catalogue (every name is then taken as written, and checked)."""
        if not self.tools:
            return None
        self.coercible = frozenset(
            name
            for name, spec in self.tools.items()
            if any(p.type.kind != "json" for p in getattr(spec, "params", ()))
        )
        return frozenset(
            name
            for name in self.tools
            if type(name) is str
            and is_name(name)
            and name not in self.tool_map
            and name != AGENT_TOOL
        )

    def tool_name(self, name: str, path: Path = ()) -> str:
        if name in self.tool_map:
            mapped = self.tool_map[name]
            self.note(path, f"tool `{name}` mapped to `{mapped}`", "mapped")
            return mapped
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
        return {first: _convert_refs(raw_args, aliases)}


def _fast_or_raw(step: dict[str, Any] | Step) -> Step | dict[str, Any]:
    if isinstance(step, Step):  # a plain step, built already
        return step
    built = fast_step(step)
    return step if built is None else built


def _names(ids: tuple[str | None, ...]) -> bool:
    """Whether every one is a step name (NAME_PATTERN)."""
    return all(name is not None and is_name(name) for name in ids)


class _JsonPaths(dict[Path, Path]):
    """IR path -> JSON path, as `SourceMap.json_paths`. A plain step (`load_steps`; its
    JSON path is its IR path) has no entry per field: its id, tool, each `after` item and
    each argument read as recorded to themselves, as the entries the general path
    writes would (~0.5 µs a step less, at 10,000 steps)."""

    def __init__(self) -> None:
        super().__init__()
        self.plain: list[Step | None] = []  # by step index: the plain step built there

    def _plain(self, path: Path) -> bool:
        if len(path) < 2 or path[0] != "steps":
            return False
        index = path[1]
        if type(index) is not int or not 0 <= index < len(self.plain):
            return False
        step = self.plain[index]
        if step is None:
            return False
        if len(path) == 2:
            return True
        field = path[2]
        if field == "id" or field == "tool":
            return len(path) == 3
        if len(path) != 4:
            return False
        if field == "after":
            item = path[3]
            return isinstance(item, int) and 0 <= item < len(step.after)
        return field == "args" and path[3] in step.args

    def __contains__(self, path: object) -> bool:
        return dict.__contains__(self, path) or (type(path) is tuple and self._plain(path))

    def __missing__(self, path: Path) -> Path:
        if self._plain(path):
            return path
        raise KeyError(path)

    def get(self, path: Path, default: Any = None) -> Any:
        if dict.__contains__(self, path):
            return dict.__getitem__(self, path)
        return path if self._plain(path) else default


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


def _ref_root(ref: str) -> str:
    """The step a reference names: `a` of `a`, `a.field` or `a[0]`."""
    return re.split(r"[.\[]", ref, maxsplit=1)[0]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


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


# Python refuses to print ints past 4,300 digits; no plan value needs more than 4,000.
MAX_INT_BITS = 13_000


_JSON_KINDS = frozenset({dict, list, str, int, float, bool, type(None)})


def _depth(value: Any) -> tuple[int, bool]:
    """Nesting depth of a JSON value, and whether it holds an int too long to print.

    Iteratively, one level at a time, in C where it can be: the set of a level's types
    says whether to look for ints and which containers to open (a 10k-step plan has
    ~60k values; a test per value cost ~1 µs a step). Values that are not plain JSON
    (a caller's dict subclass, a tuple) take `_depth_general`."""
    depth = 0
    level = [value]
    huge = False
    while True:
        kinds = set(map(type, level))
        if not kinds <= _JSON_KINDS:
            return _depth_general(value)
        if int in kinds and not huge:
            huge = any(type(item) is int and item.bit_length() > MAX_INT_BITS for item in level)
        dicts, lists = dict in kinds, list in kinds
        if not (dicts or lists):
            return depth, huge
        if depth >= MAX_JSON_DEPTH:
            return depth + 1, huge
        depth += 1
        if not lists:
            level = [*chain.from_iterable([item.values() for item in level if type(item) is dict])]
        elif not dicts:
            level = [*chain.from_iterable([item for item in level if type(item) is list])]
        else:
            level = [
                *chain.from_iterable(
                    [
                        item.values() if type(item) is dict else item
                        for item in level
                        if type(item) is dict or type(item) is list
                    ]
                )
            ]


def _depth_general(value: Any) -> tuple[int, bool]:
    """`_depth` for any value: containers by isinstance (subclasses too)."""
    depth = 0
    level = [value]
    huge = False
    while True:
        huge = huge or any(type(item) is int and item.bit_length() > MAX_INT_BITS for item in level)
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers or depth >= MAX_JSON_DEPTH:
            return depth + bool(containers), huge
        depth += 1
        level = [
            child
            for item in containers
            for child in (item.values() if isinstance(item, dict) else item)
        ]


def _huge_int_path(value: Any) -> Path:
    """Where the first too-long int is (only looked for once `_depth` found one)."""
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, current = stack.pop()
        if type(current) is int and current.bit_length() > MAX_INT_BITS:
            return path
        if isinstance(current, dict):
            stack.extend(((*path, key), child) for key, child in current.items())
        elif isinstance(current, list):
            stack.extend(((*path, index), child) for index, child in enumerate(current))
    return ()


def load_json(
    doc: Any,
    file: str | None = None,
    tools: Mapping[str, Any] | None = None,
    *,
    tool_map: Mapping[str, str] | None = None,
    notes: list[Diagnostic] | None = None,
    executor: Executor = "llm",
) -> tuple[Plan, SourceMap]:
    """A parsed JSON document (canonical or LLM-shaped) -> Plan IR and source map.
    `executor="agent"` loads steps with no tool, or a tool nobody registered, as agent
    steps over the default tools (dsl/agent_steps.py); `llm` (the default) makes a step
    with no tool an `llm` step and leaves unknown tools to the checker."""
    depth, huge = _depth(doc)
    if depth > MAX_JSON_DEPTH:
        raise PlanError(
            [
                Diagnostic(
                    f"JSON nests more than {MAX_JSON_DEPTH} levels deep",
                    Location(file, path=()),
                    code="json",
                )
            ]
        )
    if huge:
        raise PlanError(
            [
                Diagnostic(
                    "a number with more than 4,000 digits",
                    Location(file, path=_huge_int_path(doc)),
                    "write it as text, or use a smaller number",
                    code="json",
                )
            ]
        )
    loader = _Loader(file, tools, tool_map, executor)
    loader.smap.notes.extend(notes or ())
    with gc_paused():
        try:
            return loader.load(doc), loader.smap
        except PlanError as err:
            # Repairs and coercions explain errors too: keep them beside the errors.
            raise PlanError([*loader.smap.notes, *err.diagnostics], err.source) from None


def load_json_bytes(
    data: bytes,
    file: str | None = None,
    tools: Mapping[str, Any] | None = None,
    *,
    tool_map: Mapping[str, str] | None = None,
    executor: Executor = "llm",
) -> tuple[Plan, SourceMap]:
    """JSON bytes as a model wrote them (repaired if need be, see dsl/repair.py) -> IR."""
    return load_json_text(
        decode_source(data, file), file, tools, tool_map=tool_map, executor=executor
    )


def load_json_text(
    text: str,
    file: str | None = None,
    tools: Mapping[str, Any] | None = None,
    *,
    tool_map: Mapping[str, str] | None = None,
    executor: Executor = "llm",
) -> tuple[Plan, SourceMap]:
    """JSON text as a model wrote it -> IR: repaired (each repair a note), then loaded.
    An error carries the text, so it renders with the lines it points at."""
    try:
        with gc_paused():  # the parsed document: tens of thousands of objects, no cycles
            doc, notes = parse_model_json(text, file)
            if may_hold_surrogates(text):  # rare: then find the value, by its JSON path
                bad = surrogate_path(doc)
                if bad is not None:
                    raise surrogate_error(Location(file, path=bad))
            return load_json(doc, file, tools, tool_map=tool_map, notes=notes, executor=executor)
    except PlanError as err:
        err.source = text
        raise
