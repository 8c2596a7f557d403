"""What runs on a Dask worker: one tool call, one raw model call, the user's tool files.

The coordinator (engine/backends/dask.py) submits these functions by reference, so a
worker needs planfile installed (the same version) and nothing else: a tool travels as
a reference (module, name) resolved here once per worker process; the tools of a
`--tools FILE.py` arrive by the `UserTools` worker plugin, which loads each file under
the module name the coordinator gave it, so the references resolve the same way.

An exception that would not survive the trip back (litellm's need constructor
arguments pickle does not give them) is sent as a `RemoteFault`: its class names, its
message, its HTTP status and Retry-After, which is all `engine.faults.classify` and the
gateway's retry read, so a remote failure is retried exactly like a local one.
"""

from __future__ import annotations

import builtins
import importlib
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from engine.run.backend import call_async, call_sync

# (module, attribute) -> the tool's function, once per worker process.
_RESOLVED: dict[tuple[str, str], Callable[..., Any]] = {}

ToolRef = tuple[str, str] | Callable[..., Any]


def resolve(ref: ToolRef) -> Callable[..., Any]:
    """The function a tool reference names (a function travels as itself)."""
    if not isinstance(ref, tuple):
        return ref
    fn = _RESOLVED.get(ref)
    if fn is None:
        value = getattr(importlib.import_module(ref[0]), ref[1])
        fn = _RESOLVED[ref] = getattr(value, "fn", value)  # a ToolSpec, or the function
    return fn


async def run_async_tool(name: str, ref: ToolRef, kwargs: dict[str, Any]) -> Any:
    """An async tool, on the worker's event loop (Dask runs coroutine tasks there)."""
    try:
        return await call_async(name, resolve(ref)(**kwargs))
    except Exception as err:
        raise portable(err) from None


def run_sync_tool(name: str, ref: ToolRef, kwargs: dict[str, Any]) -> Any:
    """A sync tool, in one of the worker's threads."""
    try:
        return call_sync(name, resolve(ref), kwargs)
    except Exception as err:
        raise portable(err) from None


async def run_completion(kwargs: dict[str, Any]) -> Any:
    """The gateway's raw provider call: litellm.acompletion, set up as planfile sets it
    up (offline price table, the embedded local model registered)."""
    from engine.models.provider import litellm_module

    try:
        return await litellm_module().acompletion(**kwargs)
    except Exception as err:
        raise portable(err) from None


class RemoteFault(Exception):
    """An exception of a worker that pickle cannot carry, as classify needs it."""

    def __init__(
        self, names: tuple[str, ...], message: str, status_code: Any, retry_after: Any
    ) -> None:
        super().__init__(names, message, status_code, retry_after)
        self.names = names
        self.message = message
        self.status_code = status_code
        self.headers = {"retry-after": retry_after} if retry_after is not None else None

    def __str__(self) -> str:
        return self.message

    def rebuild(self) -> Exception:
        """An exception whose class names (its MRO) are the original's."""
        err = _fault_class(self.names)(self.message)
        err.status_code = self.status_code  # type: ignore[attr-defined]
        err.headers = self.headers  # type: ignore[attr-defined]
        return err


def portable(err: Exception) -> Exception:
    """`err` if it survives pickling with what the coordinator reads of it (its fault
    class, Retry-After, message), else its `RemoteFault`. Whether a provider's exception
    pickles depends on litellm's and httpx's internals (a response's stream, say), so
    the copy is checked, not assumed."""
    from engine.faults import classify
    from engine.models.provider import retry_after

    try:
        copy = pickle.loads(pickle.dumps(err))
        if (
            classify(copy) is classify(err)
            and retry_after(copy) == retry_after(err)
            and str(copy) == str(err)
        ):
            return err
    except Exception:
        pass  # it does not travel: send what the coordinator reads of it instead
    names = tuple(cls.__name__ for cls in type(err).__mro__)
    status = getattr(err, "status_code", None)
    return RemoteFault(
        names, str(err), status if isinstance(status, int) else None, retry_after(err)
    )


_FAULT_CLASSES: dict[tuple[str, ...], type[Exception]] = {}


def _fault_class(names: tuple[str, ...]) -> type[Exception]:
    """A chain of empty classes named `names` (most derived first), rooted in the first
    builtin exception of the original's MRO (TimeoutError stays a TimeoutError)."""
    cls = _FAULT_CLASSES.get(names)
    if cls is None:
        root: type[Exception] = Exception
        own: list[str] = []
        for name in names:
            found = getattr(builtins, name, None)
            if isinstance(found, type) and issubclass(found, Exception):
                root = found
                break
            own.append(name)
        cls = root
        for name in reversed(own):
            cls = types.new_class(name, (cls,))
        _FAULT_CLASSES[names] = cls
    return cls


class UserTools(WorkerPlugin):
    """Loads one user tool file on every worker, now and on each worker that joins later.

    The file is executed as the module the coordinator's registry loaded it as (the
    name its tools' references carry), from the source text shipped with the plugin:
    workers need not see the coordinator's files.
    """

    def __init__(self, module_name: str, path: str, source: str) -> None:
        self.module_name = module_name
        self.path = path
        self.source = source
        self.name = f"planfile-tools-{module_name}"

    def setup(self, worker: Any = None) -> None:
        module = types.ModuleType(self.module_name)
        module.__file__ = self.path  # tracebacks name the user's file
        sys.modules[self.module_name] = module
        exec(compile(self.source, self.path, "exec"), module.__dict__)  # the user's tools
        for key in [k for k in _RESOLVED if k[0] == self.module_name]:
            del _RESOLVED[key]
