"""The result of a run: per-step records and the `--json` document (DESIGN's contract)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RUN_STATUSES = ("succeeded", "failed", "budget_exceeded", "cancelled")


@dataclass
class StepRecord:
    """What happened to one step; the `steps` entries of the JSON result."""

    tool: str
    status: str = "pending"
    model: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    output: Any = None
    error: str | None = None
    cache_hits: int = 0  # calls served from the step cache (not in the JSON contract)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "tool": self.tool,
            "model": self.model,
            "attempts": self.attempts,
            "started_at": _round(self.started_at),
            "finished_at": _round(self.finished_at),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "output": jsonable(self.output),
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepRecord:
        """A record back from its `to_json` form (the journal, a result document)."""
        return cls(
            tool=data["tool"],
            status=data["status"],
            model=data.get("model"),
            attempts=data.get("attempts", 0),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            input_tokens=data.get("input_tokens", 0),
            output_tokens=data.get("output_tokens", 0),
            cost_usd=data.get("cost_usd", 0.0),
            output=data.get("output"),
            error=data.get("error"),
        )


@dataclass
class RunResult:
    """A finished run: status, outputs, every step's record, cost and timing."""

    run_id: str
    plan: str
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    replans: list[dict[str, Any]] = field(default_factory=list)
    cost_usd: float = 0.0
    wall_s: float = 0.0
    critical_path_s: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    # Short: asyncio repr()s a finished main task's result when it restores SIGINT
    # handling, and the full dataclass repr of a 100k-step run takes seconds.
    def __repr__(self) -> str:
        return f"RunResult(run_id={self.run_id!r}, plan={self.plan!r}, status={self.status!r}, steps={len(self.steps)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "plan": self.plan,
            "status": self.status,
            "outputs": jsonable(self.outputs),
            "steps": {name: record.to_json() for name, record in self.steps.items()},
            "replans": self.replans,
            "cost_usd": round(self.cost_usd, 8),
            "wall_s": round(self.wall_s, 6),
            "critical_path_s": round(self.critical_path_s, 6),
        }

    def dumps(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_json(), indent=indent, ensure_ascii=False)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a step output (pydantic models dumped, odd objects as text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump(mode="json"))
    return str(value)


def observed_critical_path(
    deps: Mapping[str, tuple[str, ...]], records: Mapping[str, StepRecord]
) -> float:
    """The longest chain of actual step durations through the DAG."""
    finish: dict[str, float] = {}
    from dsl.checker import topological_order

    for step in topological_order(deps):
        record = records.get(step)
        duration = 0.0
        if record and record.started_at is not None and record.finished_at is not None:
            duration = record.finished_at - record.started_at
        finish[step] = duration + max((finish.get(d, 0.0) for d in deps[step]), default=0.0)
    return max(finish.values(), default=0.0)
