"""The built-in tools: calculate, search, files, http_get, json_query (and the LLM tools).

Each is a typed function; its signature is what the checker and the planner see.
Tools that reach outside the workspace (`http_get`) are off until the user allows them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jmespath
import jmespath.exceptions

from .agent_tool import agent
from .calculator import as_float, evaluate
from .listing import list_matching
from .llm_tools import extract, llm, summarize
from .registry import ToolContext, ToolSpec, tool
from .search import CorpusIndex, format_hits
from .workspace import read_bytes, write_bytes

MAX_READ_BYTES = 10 * 1024 * 1024
MAX_WRITE_BYTES = 10 * 1024 * 1024
MAX_LIST_ENTRIES = 10_000
MAX_LIST_SECONDS = 10.0
DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "examples" / "corpus"


@tool(latency_s=0.0001)
def calculate(expression: str) -> float:
    """Evaluate arithmetic: numbers, + - * / // % **, parentheses, min max abs round sqrt.

    Args:
        expression: the arithmetic, e.g. `150000 * 0.30`
    """
    return as_float(evaluate(expression))


def _corpus(ctx: ToolContext) -> Path:
    configured = ctx.settings.get("corpus")
    return Path(configured) if configured else DEFAULT_CORPUS


@tool(latency_s=0.01)
def search(query: str, ctx: ToolContext, k: int = 3) -> str:
    """Full-text search (BM25) over the local corpus; returns passages with their sources.

    Args:
        query: words to look for
        k: how many passages to return (1-20)
    """
    if not 1 <= k <= 20:
        raise ValueError("k must be between 1 and 20")
    backend = ctx.services.get("search")
    if backend is not None:
        hits = backend.search(query, k)
    else:
        cache = ctx.settings.get("cache_dir")
        hits = CorpusIndex(_corpus(ctx), Path(cache) if cache else None).search(query, k)
    return format_hits(hits)


def _workspace(ctx: ToolContext) -> Path:
    return Path(ctx.settings.get("workspace") or ctx.workspace)


@tool(latency_s=0.001)
def read_file(path: str, ctx: ToolContext) -> str:
    """Read a UTF-8 text file from the workspace.

    Args:
        path: a path relative to the workspace root
    """
    data = read_bytes(_workspace(ctx), path, MAX_READ_BYTES)
    return data.decode("utf-8", errors="replace")


@tool(latency_s=0.001)
def write_file(path: str, content: str, ctx: ToolContext) -> str:
    """Write text to a file in the workspace (folders are created); returns the path.

    Args:
        path: a path relative to the workspace root
        content: the text to write
    """
    data = content.encode("utf-8")
    if len(data) > MAX_WRITE_BYTES:
        raise ValueError(
            f"content is {len(data)} bytes; write_file writes at most {MAX_WRITE_BYTES}"
        )
    write_bytes(_workspace(ctx), path, data)
    return path


def _deadline(ctx: ToolContext) -> float:
    """When a walk must stop: the step's timeout, else MAX_LIST_SECONDS (a thread the
    step timeout cannot stop has to stop itself)."""
    step = ctx.services.get("step")
    timeout = getattr(step, "timeout_s", None) or MAX_LIST_SECONDS
    return time.monotonic() + min(timeout, MAX_LIST_SECONDS)


@tool(latency_s=0.001)
def list_files(ctx: ToolContext, pattern: str = "**/*") -> list[str]:
    """List files in the workspace matching a glob pattern, sorted.

    Args:
        pattern: a glob relative to the workspace root, e.g. `data/*.csv`
    """
    return list_matching(_workspace(ctx), pattern, MAX_LIST_ENTRIES, _deadline(ctx))


@tool(network=True, latency_s=0.5)
async def http_get(url: str, ctx: ToolContext) -> str:
    """Fetch a URL (GET) from an allowed host; returns the body as text.

    Args:
        url: an http(s) URL whose host is on the allowlist
    """
    from .web import fetch

    return await fetch(url, ctx.settings)


@tool(latency_s=0.0001)
def json_query(data: Any, expression: str) -> Any:
    """Select from JSON data with a JMESPath expression, e.g. `items[?price < `10`].name`.

    Args:
        data: the JSON value to query
        expression: a JMESPath expression
    """
    try:
        return jmespath.search(expression, data)
    except jmespath.exceptions.JMESPathError as err:
        raise ValueError(f"bad JMESPath expression: {err}") from None


@tool(latency_s=0.0001)
def parse_json(text: str) -> Any:
    """Parse JSON text (e.g. a file's contents) into data for later steps.

    Args:
        text: JSON text
    """
    import json

    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise ValueError("JSON nests too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


TOOLS: tuple[ToolSpec, ...] = (
    calculate,
    search,
    read_file,
    write_file,
    list_files,
    http_get,
    json_query,
    parse_json,
    llm,
    summarize,
    extract,
    agent,
)
