"""The JSON loader's agent shapes: `"tool": "agent"` (its arguments in `args` or at the
step's top level), a description beside a `tools` list, and `--executor agent` for a step
that names no tool or a tool nobody registered. A mixin of the loader (dsl/json_loader.py),
which walks each step once; the language rules are in dsl/agent_steps.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .agent_steps import (
    AGENT_TOOL,
    AGENT_TOP_LEVEL_KEYS,
    TASK_ARG,
    TOOLS_ARG,
    Executor,
    args_as_task,
    default_tools,
)
from .coerce import describe
from .errors import Path
from .parser import SourceMap
from .shapes import TASK_ALIASES


class AgentShapes:
    """Agent steps as models write them; `_Loader` provides the state and reporting."""

    tools: Mapping[str, Any]
    tool_map: dict[str, str]
    executor: Executor
    agent_available: bool
    smap: SourceMap
    description_steps: list[dict[str, Any]]

    if TYPE_CHECKING:  # defined by the loader

        def error(self, path: Path, message: str, hint: str | None = None) -> None: ...

        def note(self, path: Path, message: str, code: str = "coerced") -> None: ...

        def tool_name(self, name: str, path: Path = ()) -> str: ...

    def agent_shaped(self, raw: dict[str, Any], call: Any, text: str | None) -> bool:
        """`"tool": "agent"`, or no tool and a `tools` list beside a description or a task."""
        if not self.agent_available or call is not None:
            return False
        named = next((raw[k] for k in ("tool", "tool_name", "action_name") if k in raw), None)
        if isinstance(named, str):
            return self.tool_map.get(named.strip(), named.strip()) == AGENT_TOOL
        if named is not None or not isinstance(raw.get(TOOLS_ARG), list | str):
            return False
        task = raw.get(TASK_ARG)
        return text is not None or (
            isinstance(task, str) and task.strip().lower() not in TASK_ALIASES
        )

    def agent_args(
        self,
        raw: dict[str, Any],
        args: dict[str, Any],
        text: str | None,
        text_key: str | None,
        step: dict[str, Any],
        path: Path,
        ir_path: Path,
        handled: set[str],
    ) -> str | None:
        """An agent step's arguments: `task`, `tools`, `max_iterations` (and
        `max_cost_usd`) from `args` or the step's top level, as models write them; the
        description is the task when none is given. Returns the text still unused."""
        for key in AGENT_TOP_LEVEL_KEYS:
            if key not in raw or (key == TASK_ARG and not isinstance(raw[key], str)):
                continue
            if key == TASK_ARG and raw[key].strip().lower() in TASK_ALIASES:
                continue  # a task type (`"task": "search"`), handled with the others
            handled.add(key)
            if key in args:
                self.error((*path, key), f"`{key}` is given twice (here and in the arguments)")
                continue
            args[key] = raw[key]
            self.smap.json_paths[(*ir_path, "args", key)] = (*path, key)
        if TASK_ARG not in args and text is not None:
            self._require_task(text, (*path, text_key or TASK_ARG))
            args[TASK_ARG] = text  # finished with the goal and earlier results in load_steps
            self.description_steps.append(step)
            self.smap.json_paths[(*ir_path, "args", TASK_ARG)] = (*path, text_key or TASK_ARG)
            text = None
        tools = args.get(TOOLS_ARG)
        where = self.smap.json_paths.get((*ir_path, "args", TOOLS_ARG), (*path, TOOLS_ARG))
        if isinstance(tools, str):
            self.note(where, f"read `{TOOLS_ARG}` {describe(tools)} as a list of one tool")
            tools = args[TOOLS_ARG] = [tools]
        if isinstance(tools, list):
            for index, name in enumerate(tools):
                self.smap.json_paths[(*ir_path, "args", TOOLS_ARG, index)] = (*where, index)
                if isinstance(name, str) and name.strip():
                    tools[index] = self.tool_name(name.strip(), (*where, index))
        return text

    def as_agent(
        self,
        step: dict[str, Any],
        text: str | None,
        args: dict[str, Any],
        path: Path,
        key: str | None,
        ir_path: Path,
    ) -> dict[str, Any]:
        """`--executor agent`: a step with no tool, or a tool nobody registered, becomes
        an agent step over the default tools, its description (and the arguments meant
        for the missing tool) its task; a note says so."""
        missing = step.get("tool")
        offered = default_tools(self.tools)
        task = text or ""
        if missing is None:
            self._require_task(task, (*path, key) if key else path)
        if missing is not None:
            task = args_as_task(task, missing, args)
        agent_args = {TASK_ARG: task, TOOLS_ARG: offered}
        step.update(tool=AGENT_TOOL, executor="agent", args=agent_args)
        self.description_steps.append(step)
        if missing is not None:
            self.smap.json_paths[(*ir_path, "args", TASK_ARG)] = (*path, key or "tool")
        why = f"tool `{missing}` is not registered" if missing else "the step names no tool"
        self.note(
            (*path, key) if key else path,
            f"{why}: it runs as an agent step over {', '.join(offered)} (--executor agent)",
            "executor",
        )
        return agent_args

    def _require_task(self, text: str, path: Path) -> None:
        """An agent step's description is its task: an empty one is an error (the goal
        added to it later would hide that the step itself says nothing)."""
        if not text.strip():
            self.error(
                path,
                "the step's description is empty: as an agent step it needs a task",
                hint='say what the step must do, e.g. "Find the rent in Austin"',
            )
