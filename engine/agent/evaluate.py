"""Scoring a planner on a goal set: plans that check, tool choice, node/edge F1, cost, latency.

Each goal (text, expected tools, optionally a reference plan and a split) is planned once by the
planner under test, with a deadline, and scored against them:

- plan checks, on the first try and after the repairs;
- tool choice: precision, recall and F1 of the set of tools the plan calls against the
  expected set;
- node and edge F1 against the reference plan, as TaskBench defines them (Shen et al.,
  2023, microsoft/JARVIS taskbench/evaluate.py): nodes are the tool names of the steps,
  edges the (producer's tool, consumer's tool) pairs of the dependency graph. Counted
  as multisets here (TaskBench's per-sample sets count a tool used twice once), so a
  plan that searches twice where the reference searches once loses precision;
- steps per plan, planning cost and latency (median and p90);
- copies: plans with a run of COPY_WORDS words that is in the planner's example pool
  (engine/agent/prompts/*.json) but not in the goal, such as an example's goal text
  pasted into a step: text that does not fit the goal.

The steps scored are those the planner wrote: the joiner step that planning adds to a
plan ending in non-model steps (`add_joiner`) is left out, or every plan would seem to
call `llm`. A plan that does not check scores 0 on every F1. Aggregates are micro
(summed counts over the goals, as TaskBench reports) for node/edge F1, and the mean of
the per-goal values for tool choice.

The scoring functions are pure; `evaluate` runs a planner over the goals; goal files are
read by engine/agent/goal_file.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from dsl.checker import CheckedPlan, check
from dsl.errors import PlanfileError
from dsl.ir import Plan, Step
from dsl.json_loader import load_json
from dsl.values import walk
from engine.agent.planner import Attempt, Planned, Usage, add_joiner
from engine.errors import BudgetExceeded
from engine.stats import percentile


@dataclass(frozen=True)
class Shape:
    """What a plan is scored on: its steps' tools (in order) and its dependency edges."""

    nodes: tuple[str, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()

    @property
    def tools(self) -> frozenset[str]:
        return frozenset(self.nodes)


@dataclass(frozen=True)
class Goal:
    id: str
    goal: str
    tools: frozenset[str]
    split: str
    reference: Shape | None = None


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1, with the counts they come from (for micro averages)."""

    precision: float
    recall: float
    f1: float
    hits: int
    predicted: int
    expected: int


def from_counts(hits: int, predicted: int, expected: int) -> PRF:
    """P/R/F1 from counts. Nothing predicted and nothing expected is a perfect match."""
    if predicted == 0 and expected == 0:
        return PRF(1.0, 1.0, 1.0, 0, 0, 0)
    precision = hits / predicted if predicted else 0.0
    recall = hits / expected if expected else 0.0
    f1 = 2 * hits / (predicted + expected)  # = 2PR/(P+R), exact in [0, 1]
    return PRF(precision, recall, f1, hits, predicted, expected)


def prf(predicted: Iterable[Hashable], expected: Iterable[Hashable]) -> PRF:
    """Multiset precision/recall/F1: an item counts as often as it occurs in both."""
    have, want = Counter(predicted), Counter(expected)
    hits = sum((have & want).values())
    return from_counts(hits, sum(have.values()), sum(want.values()))


def micro(scores: Iterable[PRF]) -> PRF:
    """One P/R/F1 from the summed counts of many (TaskBench's micro average)."""
    hits = predicted = expected = 0
    for score in scores:
        hits, predicted, expected = (
            hits + score.hits,
            predicted + score.predicted,
            expected + score.expected,
        )
    return from_counts(hits, predicted, expected)


def written_steps(plan: Plan, tools: Mapping[str, Any]) -> tuple[Step, ...]:
    """The steps the planner wrote: without the joiner `add_joiner` appended, if any.

    The joiner is recognised by rebuilding it: the last step is the joiner when joining
    the steps before it gives that same step back.
    """
    if len(plan.steps) < 2 or plan.outputs != (plan.steps[-1].id,):
        return plan.steps
    last = plan.steps[-1]
    rest = plan.model_copy(update={"steps": plan.steps[:-1], "outputs": ()})
    rebuilt = add_joiner(rest, tools).steps[-1]
    same = (rebuilt.id, rebuilt.tool, rebuilt.tier, rebuilt.description) == (
        last.id,
        last.tool,
        last.tier,
        last.description,
    )
    return plan.steps[:-1] if same else plan.steps


def shape_of(checked: CheckedPlan, tools: Mapping[str, Any] | None = None) -> Shape:
    """A checked plan's nodes and edges; with `tools`, the joiner step is left out."""
    steps = written_steps(checked.plan, tools) if tools is not None else checked.plan.steps
    tool_of = {s.id: s.tool for s in steps}
    edges = tuple(
        (tool_of[dep], tool_of[s.id])
        for s in steps
        for dep in checked.deps.get(s.id, ())
        if dep in tool_of
    )
    return Shape(tuple(s.tool for s in steps), edges)


COPY_WORDS = 4
Shingles = frozenset[tuple[str, ...]]


def _words(text: str) -> list[str]:
    # Step ids (`s1`) are left out: positional ids are not text taken from an example.
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if not re.fullmatch(r"s\d+", w)]


def shingles(texts: Iterable[str], n: int = COPY_WORDS) -> Shingles:
    """Every run of `n` consecutive words of each text."""
    found: set[tuple[str, ...]] = set()
    for text in texts:
        words = _words(text)
        found.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return frozenset(found)


def copied_phrase(texts: Iterable[str], examples: Shingles, goal: str) -> str | None:
    """The first run of words in `texts` found in the examples and not in the goal."""
    own = shingles([goal])
    for text in texts:
        for run in sorted(shingles([text]) - own):
            if run in examples:
                return " ".join(run)
    return None


def _strings(value: Any) -> list[str]:
    return [item for item in walk(value) if isinstance(item, str)]


def step_texts(steps: Iterable[Step]) -> list[str]:
    """The text a planner wrote into steps: argument strings and descriptions."""
    return [t for s in steps for t in [*_strings(s.args), s.description or ""] if t]


def prompt_examples() -> Shingles:
    """The word runs of every string in the planner's example files (its whole pool)."""
    folder = resources.files("engine.agent").joinpath("prompts")
    texts: list[str] = []
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            texts += _strings(json.loads(entry.read_text(encoding="utf-8")))
    return shingles(texts)


@dataclass
class GoalResult:
    """One goal's outcome and scores (None where there is nothing to score against)."""

    id: str
    split: str
    goal: str
    checks: bool
    first_try: bool
    attempts: int
    steps: int
    seconds: float
    cost_usd: float
    input_tokens: int
    output_tokens: int
    tools: PRF
    nodes: PRF | None
    edges: PRF | None
    plan_tools: list[str] = field(default_factory=list)
    copied: str | None = None  # text from an example that is not in the goal (the first)
    error: str | None = None
    plan: dict[str, Any] | None = None  # the plan that checked, as JSON (for reading)
    attempt_errors: list[list[str]] = field(default_factory=list)  # the first few per attempt

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def score(goal: Goal, shape: Shape | None) -> tuple[PRF, PRF | None, PRF | None]:
    """Tool choice, node F1 and edge F1 of a plan's shape (None: no plan that checks)."""
    got = shape or Shape()
    tools = prf(got.tools, goal.tools)
    if goal.reference is None:
        return tools, None, None
    return tools, prf(got.nodes, goal.reference.nodes), prf(got.edges, goal.reference.edges)


def result_of(
    goal: Goal,
    planned: Planned | None,
    seconds: float,
    tools: Mapping[str, Any],
    error: str | None = None,
    examples: Shingles = frozenset(),
) -> GoalResult:
    checked = planned.checked if planned is not None else None
    shape = shape_of(checked, tools) if checked is not None else None
    written = written_steps(checked.plan, tools) if checked is not None else ()
    tool_score, nodes, edges = score(goal, shape)
    usage = planned.usage if planned is not None else Usage()
    attempts = len(planned.attempts) if planned is not None else 0
    return GoalResult(
        id=goal.id,
        split=goal.split,
        goal=goal.goal,
        checks=checked is not None,
        first_try=checked is not None and attempts == 1,
        attempts=attempts,
        steps=len(shape.nodes) if shape else 0,
        seconds=seconds,
        cost_usd=usage.cost_usd,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        tools=tool_score,
        nodes=nodes,
        edges=edges,
        plan_tools=list(shape.nodes) if shape else [],
        copied=copied_phrase(step_texts(written), examples, goal.goal) if examples else None,
        error=error,
        plan=checked.plan.model_dump(mode="json", exclude_defaults=True) if checked else None,
        attempt_errors=[a.errors[:5] for a in planned.attempts] if planned is not None else [],
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(results: Sequence[GoalResult]) -> dict[str, Any]:
    """The aggregate figures of a set of goal results (one split, or all)."""
    n = len(results)
    checked = [r for r in results if r.checks]
    nodes = [r.nodes for r in results if r.nodes is not None]
    edges = [r.edges for r in results if r.edges is not None]
    seconds = [r.seconds for r in results]
    costs = [r.cost_usd for r in results]
    return {
        "goals": n,
        "checks_first_try": sum(r.first_try for r in results),
        "checks": len(checked),
        "checks_share": len(checked) / n if n else None,
        "first_try_share": sum(r.first_try for r in results) / n if n else None,
        "tool_precision": _mean([r.tools.precision for r in results]),
        "tool_recall": _mean([r.tools.recall for r in results]),
        "tool_f1": _mean([r.tools.f1 for r in results]),
        "node_f1": micro(nodes).f1 if nodes else None,
        "edge_f1": micro(edges).f1 if edges else None,
        "steps_mean": _mean([float(r.steps) for r in checked]),
        "copied": sum(r.copied is not None for r in results),
        "seconds_median": percentile(seconds, 50),
        "seconds_p90": percentile(seconds, 90),
        "cost_usd_total": sum(costs),
        "cost_usd_median": percentile(costs, 50),
        "cost_usd_p90": percentile(costs, 90),
        "errors": sum(r.error is not None for r in results),
    }


def by_split(results: Sequence[GoalResult]) -> dict[str, dict[str, Any]]:
    """Aggregates per split, in the order splits first appear, then `all` if several."""
    splits: dict[str, list[GoalResult]] = {}
    for result in results:
        splits.setdefault(result.split, []).append(result)
    table = {name: summarize(rows) for name, rows in splits.items()}
    if len(splits) > 1:
        table["all"] = summarize(results)
    return table


PlanFn = Callable[[str], Awaitable[Planned]]


async def evaluate(
    plan: PlanFn,
    goals: Sequence[Goal],
    tools: Mapping[str, Any],
    *,
    timeout_s: float,
    on_result: Callable[[GoalResult], None] | None = None,
    examples: Shingles = frozenset(),
) -> tuple[list[GoalResult], str | None]:
    """Plan each goal (at most `timeout_s` each) and score it; goals run one at a time
    so latencies are not inflated by each other. Returns the results and why the
    evaluation stopped early (a budget ran out), if it did."""
    results: list[GoalResult] = []
    for goal in goals:
        started = time.perf_counter()
        planned: Planned | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(timeout_s):
                planned = await plan(goal.goal)
        except TimeoutError:
            error = f"planning took longer than {timeout_s:g} s (--timeout)"
        except BudgetExceeded as err:
            return results, err.message
        except PlanfileError as err:  # a provider error: this goal fails, the rest run
            error = err.message
        seconds = time.perf_counter() - started
        result = result_of(goal, planned, seconds, tools, error, examples)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results, None


def llm_only(goal: str, tools: Mapping[str, Any]) -> Planned:
    """The baseline plan: one `llm` step given the goal (template syntax defused)."""
    prompt = goal.replace("{{", "{ {").replace("{%", "{ %").replace("{#", "{ #")
    doc = {"goal": prompt, "steps": [{"id": "s1", "tool": "llm", "args": {"prompt": prompt}}]}
    plan, smap = load_json(doc, "llm-only", tools)
    reply = json.dumps(doc)
    return Planned(goal, check(plan, tools, smap), [Attempt(1, reply)], Usage(model="llm-only"))


__all__ = [
    "PRF",
    "Goal",
    "GoalResult",
    "Shape",
    "by_split",
    "copied_phrase",
    "evaluate",
    "from_counts",
    "llm_only",
    "micro",
    "percentile",
    "prf",
    "prompt_examples",
    "score",
    "shape_of",
    "shingles",
    "step_texts",
    "summarize",
    "written_steps",
]
