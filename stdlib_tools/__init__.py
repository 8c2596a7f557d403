"""planfile's tools: the `@tool` decorator, the registry, and the built-in tools."""

from .registry import Param, ToolContext, ToolLoadError, ToolRegistry, ToolSpec, tool

__all__ = ["Param", "ToolContext", "ToolLoadError", "ToolRegistry", "ToolSpec", "tool"]
