"""The tool registry: `@tool` turns a typed Python function into a plan tool.

A tool's signature is its schema: parameter names, plan types (from the annotations),
defaults and the return type drive the checker, the planner's tool catalogue and the
run-time validation of arguments. A parameter annotated `ToolContext` is not part of
the plan-facing signature; the engine passes the run's context there.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from dsl.errors import PlanfileError
from dsl.types import Type, from_python


@dataclass
class ToolContext:
    """What a running tool may know about its run; passed to a `ToolContext` parameter."""

    run_id: str = ""
    step_id: str = ""
    attempt: int = 1
    workspace: Path = field(default_factory=Path.cwd)
    settings: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    services: Mapping[str, Any] = field(default_factory=dict)
    call: int | None = None  # an agent step's inner call: its index in the step

    @property
    def idempotency_key(self) -> str:
        """Stable across retries of one attempt number: `run:step:attempt`, and
        `:index` for an agent step's inner call."""
        if self.call is not None:
            return f"{self.run_id}:{self.step_id}:{self.attempt}:{self.call}"
        return f"{self.run_id}:{self.step_id}:{self.attempt}"


@dataclass(frozen=True)
class Param:
    name: str
    type: Type
    required: bool
    default: Any = None
    description: str | None = None


class ToolDefinitionError(PlanfileError, ValueError):
    """A function cannot be a tool (missing annotations, bad names, ...)."""


@dataclass(frozen=True, eq=False)
class ToolSpec:
    """A registered tool: the function and its plan-facing signature."""

    name: str
    fn: Callable[..., Any]
    description: str
    params: tuple[Param, ...]
    returns: Type
    is_async: bool
    context_param: str | None = None
    uses_model: bool = False
    network: bool = False
    latency_s: float = 0.005
    args_model: type[BaseModel] | None = None
    source: str = "stdlib"
    needs_approval: bool = False  # every call waits for a person's approval
    # A sync tool that is pure and takes microseconds: called on the event loop, not in
    # the thread pool (see engine.run.backend `LocalCalls.call`). Ignored for async tools.
    inline: bool = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def param(self, name: str) -> Param | None:
        for param in self.params:
            if param.name == name:
                return param
        return None

    def signature(self) -> str:
        """`search(query: str, k: int = 5) -> list[json]`, as the catalogue prints it."""
        parts = []
        for param in self.params:
            text = f"{param.name}: {param.type}"
            if not param.required:
                text += f" = {_literal(param.default)}"
            parts.append(text)
        return f"{self.name}({', '.join(parts)}) -> {self.returns}"


def _literal(value: Any) -> str:
    from dsl.printer import format_value

    try:
        return format_value(value)
    except (TypeError, ValueError):
        return repr(value)


def _first_line(doc: str | None) -> str:
    if not doc:
        return ""
    return inspect.cleandoc(doc).split("\n\n", 1)[0].replace("\n", " ").strip()


def _param_docs(doc: str | None) -> dict[str, str]:
    """`name: text` lines under an `Args:` heading (Google style)."""
    found: dict[str, str] = {}
    if not doc:
        return found
    in_args = False
    for line in inspect.cleandoc(doc).splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            if not stripped:
                continue
            if not line.startswith((" ", "\t")):
                in_args = False
                continue
            name, sep, text = stripped.partition(":")
            if sep and name.isidentifier():
                found[name] = text.strip()
    return found


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    uses_model: bool = False,
    network: bool = False,
    latency_s: float = 0.005,
    source: str = "stdlib",
    needs_approval: bool = False,
    inline: bool = False,
) -> ToolSpec:
    """Build a ToolSpec from a typed function; raise ToolDefinitionError."""
    tool_name = name or fn.__name__
    if not tool_name.isidentifier() or tool_name in ("true", "false", "null"):
        raise ToolDefinitionError(f"`{tool_name}` cannot name a tool")
    try:
        hints = typing.get_type_hints(fn, include_extras=False)
    except Exception as err:  # a NameError in a forward annotation, typically
        raise ToolDefinitionError(f"tool `{tool_name}`: cannot read annotations: {err}") from err
    signature = inspect.signature(fn)
    docs = _param_docs(fn.__doc__)
    params: list[Param] = []
    context_param: str | None = None
    model_fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool `{tool_name}`: *args/**kwargs cannot be typed")
        annotation = hints.get(param.name, inspect.Parameter.empty)
        if annotation is ToolContext:
            context_param = param.name
            continue
        if annotation is inspect.Parameter.empty:
            raise ToolDefinitionError(
                f"tool `{tool_name}`: parameter `{param.name}` needs a type annotation"
            )
        required = param.default is inspect.Parameter.empty
        default = None if required else param.default
        params.append(
            Param(param.name, from_python(annotation), required, default, docs.get(param.name))
        )
        model_fields[param.name] = (annotation, ... if required else param.default)
    returns = from_python(hints.get("return", Any))
    args_model = create_model(
        f"{tool_name}_args",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **model_fields,
    )
    return ToolSpec(
        name=tool_name,
        fn=fn,
        description=description or _first_line(fn.__doc__),
        params=tuple(params),
        returns=returns,
        is_async=inspect.iscoroutinefunction(fn),
        context_param=context_param,
        uses_model=uses_model,
        network=network,
        latency_s=latency_s,
        args_model=args_model,
        source=source,
        needs_approval=needs_approval,
        inline=inline,
    )


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    uses_model: bool = False,
    network: bool = False,
    latency_s: float = 0.005,
    needs_approval: bool = False,
    inline: bool = False,
) -> Any:
    """Decorator: `@tool` or `@tool(name=..., network=True)` makes a function a tool.

    The decorated object is still callable like the function. `inline=True` declares a
    sync tool pure and quick (microseconds, no I/O): it then runs on the event loop
    instead of the thread pool, which saves the ~50 µs hop per call.
    """

    def wrap(func: Callable[..., Any]) -> ToolSpec:
        module = getattr(func, "__module__", "") or ""
        return make_tool(
            func,
            name=name,
            description=description,
            uses_model=uses_model,
            network=network,
            latency_s=latency_s,
            source="stdlib" if module.startswith("stdlib_tools") else module,
            needs_approval=needs_approval,
            inline=inline,
        )

    return wrap(fn) if fn is not None else wrap


class ToolLoadError(PlanfileError):
    """A user tool file could not be loaded; the message names the file and line."""

    phase = "tool loading"


class ToolRegistry(Mapping[str, ToolSpec]):
    """Tools by name. `ToolRegistry.standard()` holds the stdlib tools."""

    def __init__(self, tools: Iterable[ToolSpec] = ()):
        self._tools: dict[str, ToolSpec] = {}
        for spec in tools:
            self.add(spec)

    def __getitem__(self, name: str) -> ToolSpec:
        return self._tools[name]

    # The dict's own `get` and `in`: Mapping's versions go through `__getitem__` and a
    # try/except, and a run asks several times per step.
    def get(self, name: str, default: Any = None) -> Any:
        return self._tools.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def add(self, spec: ToolSpec, *, replace: bool = False) -> None:
        if spec.name in self._tools and not replace and self._tools[spec.name] is not spec:
            raise ToolDefinitionError(
                f"tool `{spec.name}` is defined twice ({self._tools[spec.name].source}"
                f" and {spec.source})"
            )
        self._tools[spec.name] = spec

    @classmethod
    def standard(cls) -> ToolRegistry:
        from . import stdlib

        return cls(stdlib.TOOLS)

    def load_file(self, path: str | Path) -> list[ToolSpec]:
        """Import a Python file and register every `@tool` it defines (user tools)."""
        file = Path(path)
        if not file.is_file():  # a device or FIFO too: importing one would never end
            what = "not a regular file" if file.exists() else "no such tools file"
            raise ToolLoadError(f"{file}: {what}")
        module_name = f"planfile_user_tools_{abs(hash(str(file.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise ToolLoadError(f"{file}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except SyntaxError as err:
            raise ToolLoadError(
                f"{file}:{err.lineno}:{err.offset}: syntax error: {err.msg}"
            ) from None
        except ToolDefinitionError as err:
            raise ToolLoadError(f"{file}: {err}") from None
        except (Exception, SystemExit) as err:  # sys.exit() while loading is a bad file too
            tb = err.__traceback__
            line = 0
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == spec.origin:  # made absolute by importlib
                    line = tb.tb_lineno
                tb = tb.tb_next
            if isinstance(err, SystemExit):
                raise ToolLoadError(
                    f"{file}:{line}: called sys.exit({err.code!r}) while loading"
                ) from None
            raise ToolLoadError(f"{file}:{line}: {type(err).__name__}: {err}") from None
        found = [value for value in vars(module).values() if isinstance(value, ToolSpec)]
        if not found:
            raise ToolLoadError(f"{file}: defines no tools (decorate functions with @tool)")
        for tool_spec in found:
            existing = self._tools.get(tool_spec.name)
            if existing is not None and existing is not tool_spec:
                code = getattr(tool_spec.fn, "__code__", None)
                at = f":{code.co_firstlineno}" if code is not None else ""
                where = (
                    "a standard tool"
                    if existing.source == "stdlib"
                    else "defined by another --tools file"
                )
                raise ToolLoadError(
                    f"{file}{at}: tool `{tool_spec.name}` is already {where}; rename the "
                    "function (or give it another name with @tool(name=...))"
                )
            self.add(tool_spec)
        return found
