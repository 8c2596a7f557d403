"""The model gateway: every model call goes through litellm, priced, budgeted and recorded.

The `Gateway` and its call path; the policies it applies live beside it:
selection.py (which model: tiers, task types, escalation on retry, downgrade for budget),
pricing.py (prices), rate_limits.py, structured.py (typed replies), provider.py (litellm),
ledger.py (budgets and the cost ledger), local_model.py + trim.py (the embedded model).

- Tiers map to litellm model strings: `--tier` > planfile.toml `[tiers]` > the plan's
  `tier` declarations > the embedded local model (the default when nothing is set, and
  the stand-in for a tier whose provider has no credentials, with a warning).
- Cost comes from the provider's reported usage, priced from the config, else litellm's
  price table; a model with no known price is priced at 0 and warned about.
- Every call has a deadline (per model `timeout_s`, else `model_timeout_s` in
  planfile.toml, default 120 s; shortened to the step's `timeout`), passed to litellm
  and enforced here around the call and its provider retries (`ModelTimeout`).
- A call whose real cost takes the spending past a budget is recorded at that cost and
  raises `BudgetOverrun` (engine/models/ledger.py): the run stops, `budget_exceeded`.
- A step whose declared type is a record, list or number gets structured output: the
  type's JSON schema goes to the model, the reply is validated by pydantic, and an
  invalid reply is retried once with the validation error.

Over 400 lines: the call path (deadline, budget reservation, rate limit, provider call,
pricing, ledger, record) is one sequence that must be read as one; the policies it
applies already live in the modules named above.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dsl.errors import PlanfileError
from dsl.ir import Step
from engine.config import Config, ConfigError, ModelSettings
from engine.errors import ProviderError
from engine.faults import Fault, classify
from engine.models.ledger import BudgetGuard, BudgetOverrun, Ledger
from engine.models.local_model import LOCAL_MODEL, PROVIDER, fit_messages, prompt_budget
from engine.models.pricing import Price, Pricing
from engine.models.provider import count_tokens, first_line, litellm_module, retry_after
from engine.models.rate_limits import RateLimiter
from engine.models.selection import Choice, ModelSelector, TierSelector
from engine.models.structured import (
    InvalidReply,
    response_format,
    run_adapter,
    schema_request,
    structured_schema,
    validate_or_repair,
)
from engine.run.executor import RetryPolicy
from stdlib_tools.registry import ToolContext

DEFAULT_MAX_TOKENS = 1024
PROVIDER_RETRIES = 3
MAX_PROVIDER_WAIT_S = 60.0


class ModelCallError(ProviderError):
    """A model call failed for good, with a message naming the model and the fix."""


class ProviderFailed(ModelCallError):
    """A provider call failed with a fault a later retry may get past (a lost connection,
    a 5xx, a crash inside a custom provider): the step's own retries may try again."""

    transient = True
    plain_message = True  # a step's error shows the message alone (engine.run.executor)


# Lines of a provider's error text that are no message: a Python traceback (litellm puts
# a custom provider's whole traceback into the message) and litellm's help banner.
_NOISE = re.compile(
    r"^(Traceback \(most recent call last\)|File \"|Give Feedback|LiteLLM\.Info|"
    r"\S*github\.com/BerriAI)"
)
_LITELLM_PREFIX = re.compile(r"^litellm\.\w+:\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def provider_message(err: BaseException) -> str:
    """The first meaningful line of a provider's error (no traceback, no bug-report
    banner, no terminal colours), at most 300 characters; else the error's class name."""
    for raw in _ANSI.sub("", str(err)).splitlines():
        line = raw.strip()
        if line and not _NOISE.match(line):
            # litellm prefixes its class name ("litellm.APIConnectionError: ..."), which
            # the caller names already.
            return _LITELLM_PREFIX.sub("", line)[:300] or type(err).__name__
    return type(err).__name__


class ModelTimeout(ModelCallError):
    """A model call passed its deadline (worth a retry: the provider may recover)."""

    transient = True


@dataclass
class Warnings:
    """Warnings shown once per run (a missing price or key is said once, not per call)."""

    seen: set[str] = field(default_factory=set)
    emit: Callable[[str], None] | None = None

    def once(self, key: str, message: str) -> None:
        if key not in self.seen:
            self.seen.add(key)
            if self.emit:
                self.emit(message)


@dataclass(slots=True)
class Reply:
    """One model call's assistant message and what it cost (`Gateway.respond`).

    `tool_calls`: `{"id", "name", "arguments"}` each, `arguments` the JSON text the
    model wrote (not parsed here: a malformed one is the agent loop's to report)."""

    content: Any
    tool_calls: list[dict[str, Any]]
    input_tokens: int
    output_tokens: int
    cost_usd: float


def _tool_call(call: Any) -> dict[str, Any]:
    function = getattr(call, "function", None)
    arguments = getattr(function, "arguments", None)
    return {
        "id": getattr(call, "id", None) or "",
        "name": getattr(function, "name", None) or "",
        "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
    }


class Gateway:
    """Implements the LLM tools' `ModelGateway` over litellm for one run."""

    def __init__(
        self,
        config: Config,
        tiers: Mapping[str, str],
        *,
        selector: ModelSelector | None = None,
        budget: BudgetGuard | None = None,
        ledger: Ledger | None = None,
        warn: Callable[[str], None] | None = None,
        fallback_to_local: bool = True,
        provider_retry_base_s: float = 1.0,
    ):
        self.config = config
        self.tiers = dict(tiers)
        self.selector = selector or TierSelector(self.tiers, default_tier=config.default_tier)
        self.pricing = Pricing(config)
        self.budget = budget or BudgetGuard(None, None, None)
        self.ledger = ledger
        self.warnings = Warnings(emit=warn)
        self.fallback_to_local = fallback_to_local
        self.provider_retry_base_s = provider_retry_base_s
        self._limiters: dict[str, RateLimiter] = {}
        self._usable: dict[str, str] = {}
        self._backoff = RetryPolicy(base_s=provider_retry_base_s, cap_s=MAX_PROVIDER_WAIT_S)
        self._rng = random.Random()
        # The raw provider call (litellm.acompletion's kwargs -> response) when it runs
        # elsewhere: a cluster backend's worker (engine/run/backend.py, `model_caller`).
        self.provider_call: Callable[[dict[str, Any]], Awaitable[Any]] | None = None

    # --- model choice ------------------------------------------------------------------
    def usable(self, model: str) -> str:
        """The model to call: the local one when the chosen one has no credentials."""
        cached = self._usable.get(model)
        if cached is None:
            cached = self._usable[model] = self._usable_uncached(model)
        return cached

    def _usable_uncached(self, model: str) -> str:
        if model.startswith(PROVIDER + "/") or not self.fallback_to_local:
            return model
        settings = self.config.models.get(model)
        if settings and (settings.api_base or settings.api_key or settings.api_key_env):
            return model
        try:
            env = litellm_module().validate_environment(model=model)
        except Exception:
            return model
        if env.get("keys_in_environment", True):
            return model
        missing = ", ".join(env.get("missing_keys") or [])
        self.warnings.once(
            f"local:{model}",
            f"warning: `{model}` has no credentials ({missing} not set); using the embedded local "
            f"model `{LOCAL_MODEL}` instead. Set the key, or map the tier with --tier NAME=MODEL",
        )
        return LOCAL_MODEL

    def select(
        self, step: Step, attempt: int, prompt_tokens: int = 0, max_tokens: int = DEFAULT_MAX_TOKENS
    ) -> Choice:
        def afford(model: str) -> bool:
            remaining = self.budget.remaining()
            if remaining is None:
                return True
            return (
                self.pricing.price(self.usable(model)).cost(prompt_tokens, max_tokens) <= remaining
            )

        choice = self.selector.choose(step, attempt, afford)
        return Choice(self.usable(choice.model), choice.tier, choice.reason)

    # --- the call ----------------------------------------------------------------------------
    async def complete(
        self,
        ctx: ToolContext,
        prompt: str,
        *,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        structured: bool = True,
    ) -> Any:
        step: Step = ctx.services["step"]
        record = ctx.services["record"]
        run = ctx.services["run"]
        adapter = run_adapter(run, step) if structured else None
        schema, wrapped = structured_schema(adapter) if adapter is not None else (None, False)
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        request = schema_request(schema) if schema is not None else ""
        messages.append({"role": "user", "content": prompt + request})
        litellm = litellm_module()
        choice = self.select(step, ctx.attempt, 0, max_tokens or DEFAULT_MAX_TOKENS)
        model = choice.model
        settings = self.config.model_settings(model)
        limit = max_tokens or settings.max_tokens or DEFAULT_MAX_TOKENS
        # Only a budget needs the prompt's size (the worst case); counting costs 0.2 ms.
        prompt_tokens = count_tokens(litellm, model, messages) if self.budget.active else 0
        if self.budget.active:
            # Re-select now that the prompt's size is known (budget-aware downgrade).
            choice = self.select(step, ctx.attempt, prompt_tokens, limit)
            model = choice.model
            settings = self.config.model_settings(model)
        record.model = model
        if model == LOCAL_MODEL:
            # The embedded model reads prompts slowly: long step inputs are cut to its budget.
            template = step.args.get("prompt", step.args.get("text"))
            messages, cut = await asyncio.to_thread(
                fit_messages,
                messages,
                prompt,
                request,
                template if isinstance(template, str) else None,
            )
            if cut:
                record.prompt_tokens_trimmed += cut
                self.warnings.once(
                    f"trim:{step.id}",
                    f"warning: step `{step.id}`: {cut} prompt tokens cut from its inputs to fit the "
                    f"embedded model's budget of {prompt_budget()} (PLANFILE_LOCAL_PROMPT_TOKENS)",
                )
        price = self.pricing.price(model)
        if not price.known:
            self.warnings.once(
                f"price:{model}",
                f"warning: no price known for `{model}`; its calls are counted as $0. Set "
                f'input_cost_per_million/output_cost_per_million under [models."{model}"] in planfile.toml',
            )
        reply = await self._call(
            ctx, model, settings, messages, limit, temperature, schema, price, prompt_tokens
        )
        if adapter is None:
            return reply

        async def repair(asked: list[dict[str, Any]]) -> str:
            tokens = count_tokens(litellm, model, asked) if self.budget.active else 0
            return await self._call(
                ctx, model, settings, asked, limit, temperature, schema, price, tokens
            )

        declared = run.checked.result_types[step.id]
        return await validate_or_repair(
            reply,
            messages,
            adapter,
            wrapped,
            repair,
            model,
            declared,
        )

    async def _call(
        self,
        ctx: ToolContext,
        model: str,
        settings: ModelSettings,
        messages: list[dict[str, Any]],
        max_tokens: int,
        temperature: float | None,
        schema: dict[str, Any] | None,
        price: Price,
        prompt_tokens: int,
    ) -> str:
        return await self.call(
            model,
            messages,
            usage=ctx.services["record"],
            run_id=ctx.services["run"].run_id,
            step_id=ctx.step_id,
            max_tokens=max_tokens,
            temperature=temperature,
            schema=schema,
            prompt_tokens=prompt_tokens,
            mock=ctx.settings.get("mock_response"),
            timeout_s=ctx.services["step"].timeout_s,
        )

    async def call(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        usage: Any,
        run_id: str,
        step_id: str,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float | None = None,
        schema: dict[str, Any] | None = None,
        prompt_tokens: int | None = None,
        mock: str | None = None,
        timeout_s: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """One priced, budgeted, rate-limited, ledgered model call; returns the reply text.

        `usage` is any object with input_tokens/output_tokens/cost_usd counters (a step's
        record, or the planner's). `timeout_s` (the step's) shortens the call's deadline.
        """
        reply = await self.respond(
            model,
            messages,
            usage=usage,
            run_id=run_id,
            step_id=step_id,
            max_tokens=max_tokens,
            temperature=temperature,
            schema=schema,
            prompt_tokens=prompt_tokens,
            mock=mock,
            timeout_s=timeout_s,
            extra=extra,
        )
        content = reply.content
        return content if isinstance(content, str) else json.dumps(content)

    async def respond(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        usage: Any,
        run_id: str,
        step_id: str,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float | None = None,
        schema: dict[str, Any] | None = None,
        prompt_tokens: int | None = None,
        mock: str | None = None,
        timeout_s: float | None = None,
        tools: list[dict[str, Any]] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Reply:
        """`call`, returning the whole assistant message: its text and, when `tools`
        (OpenAI function specs, passed to litellm as `tools`) were offered, the tool
        calls it asks for, with the call's tokens and cost."""
        litellm = litellm_module()
        settings = self.config.model_settings(model)
        price = self.pricing.price(model)
        if prompt_tokens is None:
            prompt_tokens = count_tokens(litellm, model, messages) if self.budget.active else 0
        record = usage
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            **settings.extra,
        }
        if temperature is not None:
            kwargs["temperature"] = temperature
        if settings.api_base:
            kwargs["api_base"] = settings.api_base
        try:
            key = settings.resolve_api_key(model)
        except ConfigError as err:
            raise ModelCallError(str(err)) from None
        if key:
            kwargs["api_key"] = key
        deadline = min(settings.timeout_s or self.config.model_timeout_s, timeout_s or float("inf"))
        kwargs["timeout"] = deadline  # litellm's own default is 600 s per attempt
        if schema is not None:
            fmt = response_format(model, settings, schema)
            if fmt is not None:
                kwargs["response_format"] = fmt
        if mock is not None:
            kwargs["mock_response"] = mock
        if tools:
            kwargs["tools"] = tools
            # Only function tools are passed: litellm's MCP-gateway check on `tools`
            # imports the optional `mcp` package (absent: the call fails) on every call.
            kwargs["_skip_mcp_handler"] = True
        if extra:
            # Request fields only some providers take (llama.cpp's `grammar`, a `seed`);
            # the caller decides they fit the model.
            kwargs.update(extra)
        worst = price.cost(prompt_tokens, max_tokens)
        reservation = self.budget.reserve(worst, model)
        limiter = self._limiters.get(model)
        if limiter is None:
            limiter = self._limiters[model] = RateLimiter(settings)
        cost = 0.0
        input_tokens = output_tokens = 0
        try:
            await limiter.admit(prompt_tokens + max_tokens)
            if limiter.semaphore is not None:
                async with limiter.semaphore:
                    response = await self._within(deadline, litellm, kwargs, model)
            else:
                response = await self._within(deadline, litellm, kwargs, model)
            usage = getattr(response, "usage", None)
            input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            cost = price.cost(input_tokens, output_tokens)
            record.input_tokens += input_tokens
            record.output_tokens += output_tokens
            record.cost_usd += cost
            if self.ledger is not None:
                self.ledger.record(run_id, step_id, model, input_tokens, output_tokens, cost)
        finally:
            self.budget.settle(reservation, cost)
        # The provider may bill past the worst case reserved (more tokens than
        # max_tokens): the call stays recorded at its real cost, and the run stops.
        passed = self.budget.passed() if self.budget.active else None
        if passed is not None:
            raise BudgetOverrun(passed[0], passed[1], passed[2], model, cost)
        message = response.choices[0].message
        calls = getattr(message, "tool_calls", None) if tools else None
        return Reply(
            message.content,
            [_tool_call(call) for call in calls] if calls else [],
            input_tokens,
            output_tokens,
            cost,
        )

    async def _within(
        self, deadline: float, litellm: Any, kwargs: dict[str, Any], model: str
    ) -> Any:
        """The call and its provider retries, cut off at `deadline` seconds in all (a
        provider that hangs, or ignores litellm's timeout, holds nothing longer)."""
        try:
            async with asyncio.timeout(deadline):
                return await self._with_retries(litellm, kwargs, model)
        except TimeoutError:
            raise ModelTimeout(
                f"`{model}` did not answer within {deadline:g} s",
                hint=f'raise timeout_s under [models."{model}"] or model_timeout_s in '
                "planfile.toml (or the step's timeout)",
            ) from None

    async def _with_retries(self, litellm: Any, kwargs: dict[str, Any], model: str) -> Any:
        for attempt in range(PROVIDER_RETRIES + 1):
            try:
                if self.provider_call is not None:
                    return await self.provider_call(kwargs)
                return await litellm.acompletion(**kwargs)
            except Exception as err:
                kind = classify(err)
                if kind is Fault.AUTH:
                    raise ModelCallError(
                        f"`{model}` rejected the API key: {first_line(err)}. Set a valid key in the "
                        f'environment variable named by api_key_env under [models."{model}"] in planfile.toml'
                    ) from None
                if kind is Fault.UNKNOWN_MODEL:
                    raise ModelCallError(
                        f"unknown model `{model}`: {first_line(err)}. Check the tier's model string "
                        "(`provider/model`, as litellm names it) in the plan, planfile.toml or --tier"
                    ) from None
                if kind is not Fault.TRANSIENT or attempt == PROVIDER_RETRIES:
                    if isinstance(err, PlanfileError):
                        raise  # already a message for the user
                    failed = ModelCallError if kind is Fault.PERMANENT else ProviderFailed
                    raise failed(
                        f"`{model}` failed: {type(err).__name__}: {provider_message(err)}"
                    ) from err
                delay = retry_after(err)
                if delay is None:
                    delay = self._backoff.delay(attempt + 1, self._rng)
                await asyncio.sleep(min(delay, MAX_PROVIDER_WAIT_S))
        raise AssertionError("unreachable")


__all__ = [
    "Gateway",
    "InvalidReply",
    "ModelCallError",
    "ModelTimeout",
    "ProviderFailed",
    "Reply",
    "provider_message",
]
