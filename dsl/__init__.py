"""The plan front ends: `.plan` text and JSON -> Plan IR, the checker, the printer."""

from .checker import CheckedPlan, check
from .errors import Diagnostic, Location, PlanError
from .json_loader import load_json
from .loader import load_and_check, parse_plan_text, read_plan_file
from .parser import SourceMap, parse_text
from .printer import format_plan

__all__ = [
    "CheckedPlan",
    "Diagnostic",
    "Location",
    "PlanError",
    "SourceMap",
    "check",
    "format_plan",
    "load_and_check",
    "load_json",
    "parse_plan_text",
    "parse_text",
    "read_plan_file",
]
