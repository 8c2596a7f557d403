"""How long each step of a plan would take and what its model calls would cost, unrun.

Durations start from the engine's own estimates (engine/run/latency.py: a tool's
`latency_s`, and per tier for steps that call a model: fast 1 s, standard 3 s, frontier
6 s); `--latency KEY=SECONDS[±JITTER]` replaces them, and `--from-run` replays what a
journaled run measured. An `agent` step is a few model calls with a tool call between
each two. Tokens are estimated from the prompt text the plan holds (about 4 characters
a token) plus fixed allowances for what only a run knows; prices come from the config
or litellm's table (engine/models/pricing.py).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dsl.agent_steps import AGENT_TOOL
from dsl.ir import Ref, Step, is_template
from dsl.values import walk
from engine.errors import UsageError
from engine.models.selection import TIER_ORDER, base_tier
from engine.run.latency import LatencyModel

# An agent step (`tool: agent`) is estimated as this many model calls (at most its
# `max_iterations`), with one call of its tools between each two.
AGENT_MODEL_CALLS = 3
CHARS_PER_TOKEN = 4
PROMPT_OVERHEAD_TOKENS = 200  # system message, instructions, an output schema
TOKENS_PER_VALUE = 500  # a step result or input the prompt interpolates: size unknown
DEFAULT_OUTPUT_TOKENS = 400
AGENT_TOOL_RESULT_TOKENS = 300  # each inner tool result the next model call reads

_LATENCY = re.compile(
    r"^\s*(?P<key>[A-Za-z_][\w:.\-/]*)\s*=\s*(?P<s>[0-9.eE+]+)\s*"
    r"(?:(?:±|\+-|\+/-)\s*(?P<j>[0-9.eE+]+)\s*(?P<pct>%)?)?\s*$"
)


@dataclass(frozen=True)
class Latency:
    """A duration: `seconds`, drawn uniformly within ±`jitter` (a fraction when relative)."""

    seconds: float
    jitter: float = 0.0
    relative: bool = False

    def spread(self) -> float:
        return self.seconds * self.jitter if self.relative else self.jitter

    def draw(self, rng: random.Random | None) -> float:
        spread = self.spread()
        if rng is None or spread <= 0:
            return self.seconds
        return max(0.0, self.seconds + rng.uniform(-spread, spread))

    def scaled(self, factor: float, plus: float = 0.0) -> Latency:
        jitter = self.jitter if self.relative else self.jitter * factor
        return Latency(self.seconds * factor + plus, jitter, self.relative)

    def __str__(self) -> str:
        if self.spread() <= 0:
            return f"{self.seconds:g}s"
        jitter = f"{self.jitter * 100:g}%" if self.relative else f"{self.jitter:g}s"
        return f"{self.seconds:g}s±{jitter}"


# The largest latency --latency takes: beyond it sums and percentiles lose meaning (1e308
# printed a 300-digit critical path and overflowed to inf).
MAX_LATENCY_S = 1e6


def parse_latency(text: str) -> tuple[str, Latency]:
    """`KEY=SECONDS[±JITTER]` (JITTER in seconds, or `N%`; `+-` for `±`) -> (key, latency)."""
    match = _LATENCY.match(text)
    problem = None
    if match is None:
        problem = "expected KEY=SECONDS or KEY=SECONDS±JITTER"
    else:
        try:
            seconds = float(match["s"])
            jitter = float(match["j"]) if match["j"] else 0.0
        except ValueError:
            seconds, jitter = math.nan, 0.0
        if not math.isfinite(seconds) or seconds < 0 or not math.isfinite(jitter) or jitter < 0:
            problem = "seconds and jitter must be finite numbers, zero or more"
        elif seconds > MAX_LATENCY_S or (not match["pct"] and jitter > MAX_LATENCY_S):
            problem = f"seconds and jitter are at most {MAX_LATENCY_S:g} (about 11 days)"
        elif match["pct"] and jitter > 100:
            problem = "a relative jitter is at most 100%"
    if problem is not None or match is None:
        raise UsageError(
            f"--latency `{text:.60}`: {problem} (e.g. search=0.4, tier:frontier=6±1.5, llm=2±25%)"
        )
    relative = bool(match["pct"])
    return match["key"], Latency(seconds, jitter / 100 if relative else jitter, relative)


def resolve_keys(
    overrides: Mapping[str, Latency], tools: Mapping[str, Any], tiers: Sequence[str]
) -> dict[tuple[str, str], Latency]:
    """Each `--latency` key as ("tool", NAME) or ("tier", NAME); an unknown name is an error.

    `tool:NAME` and `tier:NAME` say which; a bare name is a tool if one has that name,
    else a tier.
    """
    known_tiers = set(TIER_ORDER) | set(tiers)
    resolved: dict[tuple[str, str], Latency] = {}
    for key, latency in overrides.items():
        kind, sep, name = key.partition(":")
        if not sep:
            kind, name = ("tool" if key in tools else "tier"), key
        if (kind == "tool" and name in tools) or (kind == "tier" and name in known_tiers):
            resolved[(kind, name)] = latency
            continue
        raise UsageError(
            f"--latency {key}: no tool or tier of that name",
            hint=f"tiers: {', '.join(sorted(known_tiers))}; tools: `planfile tools` lists them",
        )
    return resolved


@dataclass(frozen=True)
class StepEstimate:
    """What one call of a step is expected to take and use."""

    latency: Latency
    tier: str | None  # the tier (or `model:NAME`) its model calls use; None: no model
    model_calls: int
    input_tokens: int
    output_tokens: int


class Estimator:
    """Per-step estimates for one plan: the engine's defaults, `--latency` overrides."""

    def __init__(
        self,
        tools: Mapping[str, Any],
        overrides: Mapping[tuple[str, str], Latency] | None = None,
        *,
        default_tier: str = "standard",
    ):
        self.tools = tools
        self.overrides = dict(overrides or {})
        self.default_tier = default_tier
        self.base = LatencyModel.from_tools(tools)
        self._plain: dict[str, StepEstimate] = {}

    def _tool(self, name: str) -> Latency:
        override = self.overrides.get(("tool", name))
        if override is not None:
            return override
        return Latency(self.base.estimate_key(("tool", name)))

    def _tier(self, tier: str) -> Latency:
        override = self.overrides.get(("tier", tier))
        if override is not None:
            return override
        return Latency(self.base.estimate_key(("tier", tier)))

    def estimate(self, step: Step) -> StepEstimate:
        spec = self.tools.get(step.tool)
        if spec is None or not getattr(spec, "uses_model", False):
            known = self._plain.get(step.tool)  # one per tool: 100k steps share a few
            if known is None:
                known = self._plain[step.tool] = StepEstimate(self._tool(step.tool), None, 0, 0, 0)
            return known
        tier = base_tier(step, self.default_tier)
        label = f"model:{step.model}" if step.model else tier
        input_tokens = _prompt_tokens(step.args)
        output_tokens = _output_tokens(step)
        per_call = self.overrides.get(("tool", step.tool)) or self._tier(tier)
        if step.tool != AGENT_TOOL:
            return StepEstimate(per_call, label, 1, input_tokens, output_tokens)
        limit = step.args.get("max_iterations")
        calls = (
            min(AGENT_MODEL_CALLS, limit)
            if isinstance(limit, int) and limit > 0
            else AGENT_MODEL_CALLS
        )
        inner = step.args.get("tools")
        names = [t for t in inner if isinstance(t, str)] if isinstance(inner, list) else []
        tool_s = sum(self._tool(name).seconds for name in names) / len(names) if names else 0.01
        # Each model call re-reads the conversation so far: the prompt plus the tool
        # results before it.
        reads = sum(input_tokens + i * AGENT_TOOL_RESULT_TOKENS for i in range(calls))
        return StepEstimate(
            per_call.scaled(calls, plus=(calls - 1) * tool_s),
            label,
            calls,
            reads,
            output_tokens * calls,
        )


def _prompt_tokens(args: Mapping[str, Any]) -> int:
    chars = 0
    values = 0
    for value in walk(args):
        if isinstance(value, Ref):
            values += 1
        elif isinstance(value, str):
            chars += len(value)
            if is_template(value):
                values += value.count("{{")
    return PROMPT_OVERHEAD_TOKENS + chars // CHARS_PER_TOKEN + values * TOKENS_PER_VALUE


def _output_tokens(step: Step) -> int:
    max_tokens = step.args.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        return max_tokens
    words = step.args.get("words")
    if step.tool == "summarize" and isinstance(words, int) and words > 0:
        return max(64, words * 3) // 2  # its cap is 3 tokens a word; replies use about half
    return DEFAULT_OUTPUT_TOKENS
