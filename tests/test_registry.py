"""The tool registry: typed signatures from Python functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stdlib_tools import ToolContext, ToolRegistry, tool
from stdlib_tools.registry import ToolDefinitionError


def test_signature_comes_from_annotations() -> None:
    """Parameters, defaults, optionals and the return type become plan types."""

    @tool
    def rank(
        items: list[str], ctx: ToolContext, top: int = 3, label: str | None = None
    ) -> dict[str, float]:
        """Rank items.

        Args:
            items: what to rank
        """
        return {}

    assert (
        rank.signature()
        == "rank(items: list[str], top: int = 3, label: str? = null) -> dict[str, float]"
    )
    assert rank.context_param == "ctx"
    assert rank.description == "Rank items."
    assert rank.params[0].description == "what to rank"


def test_async_and_options() -> None:
    """Async functions and decorator options are recorded; the object stays callable."""

    @tool(name="fetch_it", network=True)
    async def fetch(url: str) -> Any:
        return url

    assert fetch.is_async and fetch.network and fetch.name == "fetch_it"

    @tool
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5


def test_unannotated_parameter_is_refused() -> None:
    """A tool needs typed parameters."""
    with pytest.raises(ToolDefinitionError, match="needs a type annotation"):

        @tool
        def bad(x) -> str:  # type: ignore[no-untyped-def]
            return ""


def test_duplicate_names_are_refused() -> None:
    """Two tools cannot share a name in one registry."""

    @tool
    def calculate(expression: str) -> float:
        return 0.0

    registry = ToolRegistry.standard()
    with pytest.raises(ToolDefinitionError, match="defined twice"):
        registry.add(calculate)


def test_a_tools_file_redefining_a_standard_tool_names_its_line(tmp_path: Path) -> None:
    """A `--tools` file whose function shadows a standard tool gets its file and line and
    the fix, not the internal module name it was imported under."""
    from stdlib_tools.registry import ToolLoadError

    path = tmp_path / "mine.py"
    path.write_text(
        'from stdlib_tools import tool\n\n\n@tool\ndef agent(x: str) -> str:\n    """Mine."""\n'
        "    return x\n"
    )
    with pytest.raises(ToolLoadError) as info:
        ToolRegistry.standard().load_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: tool `agent` is already a standard tool")
    assert "planfile_user_tools" not in message and "@tool(name=...)" in message
