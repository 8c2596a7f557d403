"""The agent step's loop: a model calls the step's tools until it answers or a cap ends it.

`AgentLoop` is the engine's `agent` service (stdlib_tools/agent_tool.py calls it). One
run of the loop, for one attempt of one step:

- every model call goes through the run's model gateway (`Gateway.respond`): the
  step's tier or model, escalation on retry, budget reservation, rate limits and one
  ledger entry per call, so the step's `cost_usd` is the exact sum of its calls;
- the step's `tools` are offered as OpenAI function specs (litellm's `tools`); the
  model's `tool_calls` run through `StepRunner.call_tool`, concurrently when one reply
  asks for several, with arguments validated as for plain steps. A call of a tool not
  offered, bad arguments or a tool's error go back to the model as that call's result
  (`error: ...`); the step goes on;
- caps: `max_iterations` model calls, `max_cost_usd` spent by the step (no model call
  starts once it is reached), and the run budget (`BudgetExceeded`, as for any call).
  A cap ends the step with `AgentCapReached`, which names it, and `retry`, `on_error`
  and replanning handle it like any failure: `max_iterations` is transient (a retry
  runs the loop afresh, on a stronger tier where the step escalates), `max_cost_usd` is
  not (a retry would spend the same again);
- the final answer has the step's declared type: a record, list or number is parsed
  and validated as structured output, with one repair call when it does not fit. The
  repair call offers no tools and is not an iteration (a malformed answer on the last
  iteration is still repaired, so a step makes at most `max_iterations` + 1 model calls
  and `iterations` counts them all), but it does not start once `max_cost_usd` is
  reached, and the run budget applies to it as to any call.

Each finished inner call is recorded: an `AgentModelCalled`/`AgentToolCalled` event,
`RunContext.on_agent_call(step_id, call)` (the journal) and the step record
(`iterations`, `tool_calls`). A call dict:

    {"kind": "model" | "tool", "index": n, "iteration": i, "attempt": a,
     "started_at": s, "finished_at": f, ...}

`index` is 0-based per step over both kinds, in the order the calls were made (it goes
on across attempts: `StepRecord.agent_calls`), `iteration` the model call it belongs to
(1-based), `attempt` the step's attempt, times in run seconds. A model call adds
`"model"`, `"reply": {"content": str | None, "tool_calls": [{"id", "name",
"arguments"}]}`, `"input_tokens"`, `"output_tokens"`, `"cost_usd"`; a tool call adds
`"key"` (its idempotency key: `run:step:attempt:index`), `"tool"`, `"args"` and
`"output"` or `"error"`.

Resume: before calling anything the loop asks `RunContext.agent_replay(step_id)` for
the step's journaled calls and replays those of their last attempt by index: recorded
replies and tool results are used instead of calling again; their tokens and cost are
added to the record but not ledgered or budgeted again (they were when made).

(Over 400 lines: one attempt's state, its counts, record, replay and messages, is
shared by the model call, the tool calls and the final answer; the tool catalogue and
result text live in offer.py.)
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
from pydantic import TypeAdapter

from dsl.agent_steps import DEFAULT_MAX_ITERATIONS
from dsl.ir import Step
from engine.agent.offer import function_spec, offered_tools, tool_result_text
from engine.errors import BudgetExceeded
from engine.models.gateway import DEFAULT_MAX_TOKENS, Gateway, Reply
from engine.models.structured import run_adapter, structured_schema, validate_or_repair
from engine.run.events import AgentModelCalled, AgentToolCalled
from engine.run.executor import RunContext, StepError, StepRunner, describe_error, tool_arguments
from engine.run.result import StepRecord, jsonable
from stdlib_tools.registry import ToolContext


class AgentCapReached(StepError):
    """An agent step hit `max_iterations` or `max_cost_usd` before it had an answer."""


class IterationCapReached(AgentCapReached):
    """`max_iterations` ran out: a retry (escalated where the step says so) may finish."""

    transient = True


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@functools.cache
def _system_template() -> jinja2.Template:
    text = (
        resources.files("engine.agent")
        .joinpath("prompts", "agent_system.md.j2")
        .read_text(encoding="utf-8")
    )
    return jinja2.Environment(autoescape=False).from_string(text)


class AgentLoop:
    """The engine's `agent` service (stdlib_tools.agent_tool.AgentService)."""

    async def run(
        self,
        ctx: ToolContext,
        task: str,
        *,
        tools: list[str],
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
        max_cost_usd: float | None = None,
    ) -> Any:
        gateway = ctx.services.get("models")
        if gateway is None:
            raise RuntimeError("no model gateway: agent steps run inside the planfile engine")
        loop = _Loop(ctx, gateway, tools, max_iterations, max_cost_usd)
        return await loop.run(task)


@dataclass
class _Counts:
    model_calls: int = 0
    tool_calls: int = 0
    spent: float = 0.0  # this attempt's model cost, replayed calls included


class _Loop:
    """One attempt of one agent step."""

    def __init__(
        self,
        ctx: ToolContext,
        gateway: Gateway,
        tools: list[str],
        max_iterations: int,
        max_cost_usd: float | None,
    ):
        self.ctx = ctx
        self.gateway = gateway
        self.run_ctx: RunContext = ctx.services["run"]
        self.runner: StepRunner = ctx.services["runner"]
        self.step: Step = ctx.services["step"]
        self.record: StepRecord = ctx.services["record"]
        self.max_iterations = max_iterations
        self.max_cost_usd = max_cost_usd
        self.offered = offered_tools(tools, self.run_ctx.tools)
        self.specs = [function_spec(spec) for spec in self.offered.values()]
        self.counts = _Counts()
        self.adapter: TypeAdapter[Any] | None = run_adapter(self.run_ctx, self.step)
        self.schema: dict[str, Any] | None = None
        self.wrapped = False
        if self.adapter is not None:
            self.schema, self.wrapped = structured_schema(self.adapter)
        choice = gateway.select(self.step, ctx.attempt)
        self.model = choice.model
        settings = gateway.config.model_settings(self.model)
        self.max_tokens = settings.max_tokens or DEFAULT_MAX_TOKENS
        self.mock = ctx.settings.get("mock_response")
        if self.record.tool_calls is None:
            self.record.tool_calls = []
        self.tool_calls: list[dict[str, Any]] = self.record.tool_calls
        self.replay = self._replayed()
        self._rules: str | None = None

    # --- resume ----------------------------------------------------------------------
    def _replayed(self) -> dict[int, dict[str, Any]]:
        """The journaled calls of the step's interrupted attempt, by index (only the first
        time the step runs in this process; a fan-out's items share a record: none)."""
        fetch = self.run_ctx.agent_replay
        if fetch is None or self.record.agent_calls or self.step.for_each is not None:
            return {}
        calls = fetch(self.step.id)
        if not calls:
            return {}
        last = max(int(call.get("attempt", 1)) for call in calls)
        mine = [call for call in calls if int(call.get("attempt", 1)) == last]
        self.record.agent_calls = min(int(call["index"]) for call in mine)
        return {int(call["index"]): call for call in mine}

    def _next_index(self) -> int:
        index = self.record.agent_calls
        self.record.agent_calls = index + 1
        return index

    # --- the loop ----------------------------------------------------------------------
    async def run(self, task: str) -> Any:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": ""},
            {"role": "user", "content": task},
        ]
        iteration = 0
        while True:
            self._check_caps(iteration)
            iteration += 1
            messages[0] = {"role": "system", "content": self._system(iteration)}
            # A typed step offers its answer's schema beside the tools on every call: a
            # model that constrains its output (the embedded one) then answers in shape
            # the first time instead of needing the repair call.
            reply = await self._model(messages, iteration, self.specs, schema=self.schema)
            assistant: dict[str, Any] = {"role": "assistant", "content": reply.content}
            if not reply.tool_calls:
                return await self._answer(messages, reply, iteration)
            if iteration >= self.max_iterations:
                self._check_caps(iteration)  # the model asked for tools it cannot read
            assistant["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for call in reply.tool_calls
            ]
            messages.append(assistant)
            indexed = [(self._next_index(), call) for call in reply.tool_calls]
            if len(indexed) == 1:
                results = [await self._tool(*indexed[0], iteration)]
            else:
                # Parallel tool calls run concurrently; each is awaited to its end (a
                # budget stop in one is re-raised after the others finished).
                gathered = await asyncio.gather(
                    *(self._tool(index, call, iteration) for index, call in indexed),
                    return_exceptions=True,
                )
                results = []
                for item in gathered:
                    if isinstance(item, BaseException):
                        raise item
                    results.append(item)
            # The record and the model see the calls in the order the model asked.
            for (_, call), (entry, text) in zip(indexed, results, strict=True):
                self.tool_calls.append(entry)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": text})

    def _done(self) -> str:
        counts = self.counts
        return f"after {_count(counts.model_calls, 'model call')} and {_count(counts.tool_calls, 'tool call')}"

    def _check_caps(self, iteration: int) -> None:
        if iteration >= self.max_iterations:
            raise IterationCapReached(
                f"max_iterations ({self.max_iterations}) reached {self._done()}"
            )
        self._check_cost()

    def _check_cost(self) -> None:
        spent = self.counts.spent
        if self.max_cost_usd is not None and spent >= self.max_cost_usd:
            raise AgentCapReached(
                f"max_cost_usd (${self.max_cost_usd:g}) reached {self._done()} (${spent:.6f} spent)"
            )

    def _system(self, iteration: int) -> str:
        """The system message of one iteration: the fixed rules (rendered once per loop)
        and the limits as they stand now."""
        if self._rules is None:
            schema = json.dumps(self.schema, separators=(",", ":")) if self.schema else None
            self._rules = _system_template().render(schema=schema)
        left = self.max_iterations - iteration + 1
        text = f"{self._rules}\n\nLimits: {left} model call{'' if left == 1 else 's'} left, this one included"
        text += ": answer now, without tools." if left == 1 else "."
        if self.max_cost_usd is not None:
            text += (
                f" This step may spend ${max(self.max_cost_usd - self.counts.spent, 0.0):.6f} more."
            )
        if self.gateway.budget.active:
            run_left = self.gateway.budget.remaining()
            if run_left is not None:
                text += f" The run's budget has ${max(run_left, 0.0):.6f} left."
        return text

    async def _answer(self, messages: list[dict[str, Any]], reply: Reply, iteration: int) -> Any:
        """The final answer in the step's declared type, with one repair call if it does
        not fit (see the module docstring: not an iteration, but within `max_cost_usd`)."""
        if self.adapter is None:
            return reply.content if isinstance(reply.content, str) else ""

        async def repair(asked: list[dict[str, Any]]) -> str:
            self._check_cost()
            # No tools: the model can only answer, and the call is recorded under the
            # iteration whose answer it repairs.
            repaired = await self._model(asked, iteration, [], schema=self.schema)
            return repaired.content or ""

        declared = self.run_ctx.checked.result_types[self.step.id]
        return await validate_or_repair(
            reply.content or "",
            messages,
            self.adapter,
            self.wrapped,
            repair,
            self.model,
            declared,
        )

    # --- one model call ------------------------------------------------------------------
    async def _model(
        self,
        messages: list[dict[str, Any]],
        iteration: int,
        tools: list[dict[str, Any]],
        schema: dict[str, Any] | None = None,
    ) -> Reply:
        run, record, counts = self.run_ctx, self.record, self.counts
        index = self._next_index()
        recorded = self.replay.get(index)
        if recorded is not None and recorded.get("kind") == "model":
            reply = _recorded_reply(recorded)
            # Made and ledgered before the resume: counted, not charged again.
            record.input_tokens += reply.input_tokens
            record.output_tokens += reply.output_tokens
            record.cost_usd += reply.cost_usd
            replayed = True
            model = str(recorded.get("model") or self.model)
        else:
            started = run.now()
            reply = await self.gateway.respond(
                self.model,
                messages,
                usage=record,
                run_id=run.run_id,
                step_id=self.step.id,
                max_tokens=self.max_tokens,
                schema=schema,
                mock=self.mock,
                timeout_s=self.step.timeout_s,
                tools=tools,
            )
            replayed = False
            model = self.model
            if run.on_agent_call is not None:
                run.on_agent_call(
                    self.step.id,
                    {
                        "kind": "model",
                        "index": index,
                        "iteration": iteration,
                        "attempt": self.ctx.attempt,
                        "started_at": started,
                        "finished_at": run.now(),
                        "model": model,
                        "reply": {"content": reply.content, "tool_calls": reply.tool_calls},
                        "input_tokens": reply.input_tokens,
                        "output_tokens": reply.output_tokens,
                        "cost_usd": reply.cost_usd,
                    },
                )
        record.model = model
        record.iterations += 1
        counts.model_calls += 1
        counts.spent += reply.cost_usd
        if run.events.active:
            run.events.emit(
                AgentModelCalled(
                    run.run_id,
                    run.now(),
                    self.step.id,
                    iteration,
                    model,
                    tuple(call["name"] for call in reply.tool_calls),
                    reply.input_tokens,
                    reply.output_tokens,
                    reply.cost_usd,
                    replayed,
                )
            )
        return reply

    # --- one tool call -------------------------------------------------------------------
    async def _tool(
        self, index: int, call: dict[str, Any], iteration: int
    ) -> tuple[dict[str, Any], str]:
        """Run (or replay) one tool call: its record entry, and the text the model reads."""
        run = self.run_ctx
        name = call["name"]
        recorded = self.replay.get(index)
        replayed = (
            recorded is not None and recorded.get("kind") == "tool" and recorded.get("tool") == name
        )
        output: Any = None
        error: str | None = None
        if replayed:
            assert recorded is not None
            args = recorded.get("args")
            started = finished = run.now()
            error = recorded.get("error")
            output = recorded.get("output")
        else:
            started = run.now()
            args, output, error = await self._execute(index, name, call["arguments"])
            finished = run.now()
        self.counts.tool_calls += 1
        entry: dict[str, Any] = {"tool": name, "args": args}
        if error is None:
            entry["output"] = output
        else:
            entry["error"] = error
        entry["started_at"] = started
        entry["finished_at"] = finished
        if not replayed and run.on_agent_call is not None:
            run.on_agent_call(
                self.step.id,
                {
                    "kind": "tool",
                    "index": index,
                    "iteration": iteration,
                    "attempt": self.ctx.attempt,
                    "key": f"{run.run_id}:{self.step.id}:{self.ctx.attempt}:{index}",
                    **entry,
                },
            )
        if run.events.active:
            run.events.emit(
                AgentToolCalled(
                    run.run_id,
                    run.now(),
                    self.step.id,
                    iteration,
                    name,
                    args,
                    output,
                    error,
                    finished - started,
                    replayed,
                )
            )
        return entry, f"error: {error}" if error is not None else tool_result_text(output)

    async def _execute(self, index: int, name: str, arguments: str) -> tuple[Any, Any, str | None]:
        """(args, output, error) of one live call; a bad call is an error, not a raise."""
        spec = self.offered.get(name)
        try:
            raw = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as err:
            return arguments, None, f"the arguments are not JSON ({err.msg}); send a JSON object"
        if spec is None:
            allowed = ", ".join(f"`{tool}`" for tool in self.offered) or "none"
            return raw, None, f"there is no tool `{name}` here; the tools you may call: {allowed}"
        if not isinstance(raw, dict):
            return raw, None, "the arguments must be a JSON object of parameter names"
        try:
            kwargs = tool_arguments(spec, raw)
            usage = None
            if spec.context_param is not None:
                context = self.runner.tool_context(self.step, self.ctx.attempt, self.model)
                context.call = index
                if spec.uses_model:
                    context.services, usage = self._model_tool_services(context, name)
                kwargs[spec.context_param] = context
            try:
                output = await self.runner.call_tool(spec, kwargs, None)
            finally:
                if usage is not None:
                    self._add_usage(usage)
        except (asyncio.CancelledError, BudgetExceeded):
            raise
        except Exception as err:
            return raw, None, describe_error(err)
        return raw, jsonable(output), None

    def _model_tool_services(
        self, context: ToolContext, name: str
    ) -> tuple[dict[str, Any], StepRecord]:
        """An inner `llm`-like tool's services: its own usage counters (added to the step's
        after the call, and to this loop's spending) and a step id with no declared type
        (the agent step's type is for the final answer, not for what a tool returns)."""
        usage = StepRecord(name)
        inner = self.step.model_copy(update={"id": f"{self.step.id}.{name}"})
        return {**context.services, "record": usage, "step": inner}, usage

    def _add_usage(self, usage: StepRecord) -> None:
        self.record.input_tokens += usage.input_tokens
        self.record.output_tokens += usage.output_tokens
        self.record.cost_usd += usage.cost_usd
        self.record.prompt_tokens_trimmed += usage.prompt_tokens_trimmed
        self.counts.spent += usage.cost_usd


def _recorded_reply(call: Mapping[str, Any]) -> Reply:
    reply = call.get("reply") or {}
    return Reply(
        reply.get("content"),
        list(reply.get("tool_calls") or []),
        int(call.get("input_tokens", 0)),
        int(call.get("output_tokens", 0)),
        float(call.get("cost_usd", 0.0)),
    )


AGENT_LOOP = AgentLoop()

__all__ = ["AGENT_LOOP", "AgentCapReached", "AgentLoop", "IterationCapReached"]
