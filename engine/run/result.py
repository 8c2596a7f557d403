"""The result of a run: typed outcomes, per-step records and the `--json` document.

Statuses and stop reasons are `StrEnum`s: they compare equal to, hash like and
serialise as the strings of the `--json` contract (`"succeeded"`, ...), so the journal,
the CLI's exit-code table and JSON readers see exactly the strings they always did.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dsl.checker import CheckedPlan
    from dsl.errors import Diagnostic


class StepStatus(StrEnum):
    """Where one step is: pending, running, or one of the four final states."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """The step will not run (again) in this run."""
        return self not in (StepStatus.PENDING, StepStatus.RUNNING)

    @property
    def is_open(self) -> bool:
        """Not yet final: a run that ends with open steps did not finish its plan."""
        return self in (StepStatus.PENDING, StepStatus.RUNNING)


class RunStatus(StrEnum):
    """How a run (or a replanning round) ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BUDGET_EXCEEDED = "budget_exceeded"
    CANCELLED = "cancelled"
    AWAITING_APPROVAL = "awaiting_approval"  # stopped at an `approve` step; resume later
    REPLANNING = "replanning"  # a round stopped for the replan policy (never a run's end)

    @property
    def ok(self) -> bool:
        return self == RunStatus.SUCCEEDED


class StopReason(StrEnum):
    """Why a run stopped starting steps before its plan was done."""

    BUDGET_EXCEEDED = "budget_exceeded"
    REPLAN = "replan"  # the replan policy wants to decide
    AWAITING_APPROVAL = "awaiting_approval"
    JOURNAL = "journal"  # the journal broke: work it cannot record would be lost
    CLUSTER = "cluster"  # the cluster's scheduler is gone: `planfile resume RUN` continues

    @property
    def run_status(self) -> RunStatus:
        """The status of a run that stopped for this reason."""
        return _STOP_STATUS[self]


_STOP_STATUS = {
    StopReason.BUDGET_EXCEEDED: RunStatus.BUDGET_EXCEEDED,
    StopReason.REPLAN: RunStatus.REPLANNING,
    StopReason.AWAITING_APPROVAL: RunStatus.AWAITING_APPROVAL,
    StopReason.JOURNAL: RunStatus.FAILED,
    StopReason.CLUSTER: RunStatus.FAILED,
}

RUN_STATUSES = tuple(RunStatus)


@dataclass(frozen=True, slots=True)
class Replan:
    """One decision of the replan policy that changed (or tried to change) the plan.

    `added` is None when the revision was rejected (`reason` says why); `removed` are
    the steps of the old plan that had not finished and were replaced.
    """

    after: str
    reason: str
    added: tuple[str, ...] | None = None
    removed: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.added is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "after": self.after,
            "reason": self.reason,
            "added": None if self.added is None else list(self.added),
            "removed": list(self.removed),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Replan:
        added = data.get("added")
        return cls(
            after=data["after"],
            reason=data["reason"],
            added=None if added is None else tuple(added),
            removed=tuple(data.get("removed") or ()),
        )


@dataclass(slots=True)  # slots: ~40% less memory a record, 100k of them in a big run
class StepRecord:
    """What happened to one step; the `steps` entries of the JSON result."""

    tool: str
    status: StepStatus = StepStatus.PENDING
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
    # Skipped because its own `when` was false (not because a dependency failed): such a
    # step is done for good; resume and replanning keep it. Journaled, not in `--json`.
    skipped_by_when: bool = False
    # Prompt tokens cut from the step's inputs to fit the embedded model's prompt budget
    # (engine/models/trim.py); in `--json` only when some were cut.
    prompt_tokens_trimmed: int = 0
    # Agent steps (engine/agent/loop.py): model calls made, and the inner tool calls
    # ({tool, args, output|error, started_at, finished_at}); None for other steps, whose
    # `--json` entry has neither. `agent_calls` numbers inner calls across attempts (the
    # journal's call index); not in `--json`.
    iterations: int = 0
    tool_calls: list[dict[str, Any]] | None = None
    agent_calls: int = 0
    # `llm` or `agent` for a step the loader made from a description or an unknown tool
    # (`Step.executor`, chosen by `--executor`); in `--json` only for such steps.
    executor: str | None = None
    # Which budget refused the step's model call (`BudgetExceeded.scope`: "run" or
    # "daily"), None when none did: a batch stops starting rows on "daily". Not in `--json`.
    budget_scope: str | None = None

    @property
    def is_done(self) -> bool:
        """Finished for good: succeeded, or skipped by its own `when`."""
        status = self.status
        return status == StepStatus.SUCCEEDED or (
            status == StepStatus.SKIPPED and self.skipped_by_when
        )

    def to_json(self) -> dict[str, Any]:
        # Once per step for `--json` (and `show --json`): plain outputs as they are, and
        # no helper calls for the common case (~1 µs a step less).
        output, cost = self.output, self.cost_usd
        doc = {
            "status": str(self.status),
            "tool": self.tool,
            "model": self.model,
            "attempts": self.attempts,
            "started_at": _micros(self.started_at),
            "finished_at": _micros(self.finished_at),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            # round(0.0, 8) is 0.0 (and -0.0, 0 stay as they are): a free step skips it.
            "cost_usd": round(cost, 8) if cost else cost,
            "output": output if type(output) in PLAIN_JSON else jsonable(output),
            "error": self.error,
        }
        if self.prompt_tokens_trimmed:
            doc["prompt_tokens_trimmed"] = self.prompt_tokens_trimmed
        if self.executor is not None:
            doc["executor"] = self.executor
        if self.tool_calls is not None:
            doc["iterations"] = self.iterations
            doc["tool_calls"] = [jsonable(call) for call in self.tool_calls]
        return doc

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepRecord:
        """A record back from its `to_json` form (the journal, a result document)."""
        return cls(
            tool=data["tool"],
            status=StepStatus(data["status"]),
            model=data.get("model"),
            attempts=data.get("attempts", 0),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            input_tokens=data.get("input_tokens", 0),
            output_tokens=data.get("output_tokens", 0),
            cost_usd=data.get("cost_usd", 0.0),
            output=data.get("output"),
            error=data.get("error"),
            skipped_by_when=bool(data.get("skipped_by_when", False)),
            prompt_tokens_trimmed=int(data.get("prompt_tokens_trimmed", 0)),
            executor=data.get("executor"),
            iterations=int(data.get("iterations", 0)),
            tool_calls=list(data["tool_calls"]) if data.get("tool_calls") is not None else None,
        )


@dataclass
class RunResult:
    """A finished run: status, outputs, every step's record, cost and timing."""

    run_id: str
    plan: str
    status: RunStatus
    outputs: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    replans: list[Replan] = field(default_factory=list)
    cost_usd: float = 0.0
    wall_s: float = 0.0
    critical_path_s: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    # What loading and checking the plan noted (JSON repaired, values coerced, tools
    # mapped): `diagnostic_notes` entries; in `--json` only when there are some.
    notes: list[dict[str, Any]] = field(default_factory=list)
    # Why the run stopped starting steps, when it did (a batch queues a row whose run
    # stopped because the cluster was lost, instead of writing it as failed).
    stop_reason: StopReason | None = None

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED

    # Short: asyncio repr()s a finished main task's result when it restores SIGINT
    # handling, and the full dataclass repr of a 100k-step run takes seconds.
    def __repr__(self) -> str:
        return f"RunResult(run_id={self.run_id!r}, plan={self.plan!r}, status={self.status!r}, steps={len(self.steps)})"

    def to_json(self) -> dict[str, Any]:
        doc = {
            "run_id": self.run_id,
            "plan": self.plan,
            "status": str(self.status),
            "outputs": jsonable(self.outputs),
            "steps": {name: record.to_json() for name, record in self.steps.items()},
            "replans": [replan.to_json() for replan in self.replans],
            "cost_usd": round(self.cost_usd, 8),
            "wall_s": round(self.wall_s, 6),
            "critical_path_s": round(self.critical_path_s, 6),
        }
        if self.notes:
            doc["notes"] = self.notes
        return doc

    def dumps(self, indent: int | None = 2) -> str:
        """The `--json` document as text (see `dumps_bytes`)."""
        return self.dumps_bytes(indent).decode()

    def dumps_bytes(self, indent: int | None = 2, *, ascii_only: bool = False) -> bytes:
        """The `--json` document, UTF-8. orjson writes it ~10x faster than `json` (0.4 s
        of a 10k-step run's end otherwise); `json` remains for what orjson refuses (ints
        beyond 64 bits, text UTF-8 cannot encode: a tool's lone surrogate is written as
        its `\\udXXX` escape). Bytes: the CLI writes them out as they are. `ascii_only`:
        every non-ASCII character escaped, for a stdout in another encoding."""
        document = self.to_json()
        if ascii_only:
            return json.dumps(document, indent=indent).encode()
        # orjson's indented layout is `json`'s; only some floats are spelled differently
        # (`1e-05` as `0.00001`), the same number to every JSON reader.
        if indent == 2:
            try:
                import orjson

                return orjson.dumps(document, option=orjson.OPT_INDENT_2)
            except (ImportError, TypeError):
                pass
        text = json.dumps(document, indent=indent, ensure_ascii=False)
        try:
            return text.encode()
        except UnicodeEncodeError:  # a lone surrogate: escaped, the same JSON value
            return json.dumps(document, indent=indent).encode()


def diagnostic_notes(diagnostics: Iterable[Diagnostic]) -> list[dict[str, Any]]:
    """The `notes` of a result document: what the loader and checker said about the plan.

    `{"severity": "note", "code": "repaired", "message": "repaired: trailing comma at
    line 4", "where": "plan.json:4:7"}`, and `"hint"` when there is one.
    """
    notes = []
    for diagnostic in diagnostics:
        note = {
            "severity": diagnostic.severity,
            "code": diagnostic.code,
            "message": diagnostic.message,
            "where": str(diagnostic.location),
        }
        if diagnostic.hint:
            note["hint"] = diagnostic.hint
        notes.append(note)
    return notes


def _micros(seconds: float | None) -> float | None:
    """`round(seconds, 6)`, the same float, without round()'s decimal conversion (twice
    a step for `--json`). round() rounds the exact decimal value; `n / 1e6` is the float
    nearest n millionths, so the two agree whenever n (the nearest integer to
    seconds * 1e6 as computed) is the exact value's too: when the product is not
    within its rounding error (< 1e-3 below 1e12) of a half. Anything else (halves,
    negative or huge values, ints, nan) takes round() itself."""
    if type(seconds) is float:
        scaled = seconds * 1e6
        if 0.0 < scaled < 1e12:
            n = round(scaled)
            if -0.499 < scaled - n < 0.499:
                return n / 1e6
        return round(seconds, 6)
    return None if seconds is None else round(seconds, 6)


# Types `jsonable` returns as they are: a value of one needs no copy.
PLAIN_JSON = frozenset({str, int, bool, type(None)})


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a step output (pydantic models dumped, odd objects as text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    # Plain values and text keys are taken as they are without a call each (a run's
    # outputs are 10k plain values at 10k steps, copied for the journal and `--json`).
    if isinstance(value, Mapping):
        return {
            k if type(k) is str else str(k): v if type(v) in PLAIN_JSON else jsonable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [v if type(v) in PLAIN_JSON else jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump(mode="json"))
    return str(value)


def observed_critical_path(
    checked: CheckedPlan, records: Mapping[str, StepRecord]
) -> tuple[float, list[str]]:
    """The longest chain of actual step durations through the plan: (seconds, steps).

    The plan graph's one longest-path (dsl/dag.py), weighted with observed durations.
    """
    durations = {
        step: record.finished_at - record.started_at
        for step, record in records.items()
        if record.started_at is not None and record.finished_at is not None
    }
    return checked.graph.longest_path(durations)
