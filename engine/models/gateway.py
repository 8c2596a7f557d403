"""The model gateway: every model call goes through litellm, priced, budgeted and recorded.

- Tiers map to litellm model strings: `--tier` > planfile.toml `[tiers]` > the plan's
  `tier` declarations > the embedded local model (the default when nothing is set, and
  the stand-in for a tier whose provider has no credentials, with a warning).
- Selection is a policy (`ModelSelector`): explicit model or tier > the step's task type
  > the default tier; a retry escalates one tier up; when the remaining budget cannot
  pay a call's worst case, a cheaper tier is used if the step allows it, else the run
  stops with `budget_exceeded`.
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
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from dsl.ir import Step
from dsl.repair import parse_reply_json
from stdlib_tools.registry import ToolContext

from engine.config import Config, ConfigError, ModelSettings
from engine.errors import ProviderError
from engine.faults import Fault, classify
from engine.models.ledger import BudgetExceeded, BudgetGuard, BudgetOverrun, Ledger
from engine.models.local_model import LOCAL_MODEL, PROVIDER, fit_messages, prompt_budget

TIER_ORDER = ("fast", "standard", "frontier")
TASK_TIERS = {
    "search": "fast",
    "analyze": "standard",
    "code": "frontier",
    "reasoning": "frontier",
    "writing": "standard",
}
DEFAULT_MAX_TOKENS = 1024
PROVIDER_RETRIES = 3


class ModelCallError(ProviderError):
    """A model call failed for good, with a message naming the model and the fix."""


class ModelTimeout(ModelCallError):
    """A model call passed its deadline (worth a retry: the provider may recover)."""

    transient = True


class InvalidReply(ProviderError):
    """The model's structured reply did not fit the type, even after a repair attempt.

    Worth retrying: a retry escalates to a stronger tier.
    """

    transient = True


def litellm_module() -> Any:
    """Import litellm offline-safe, once, with the local provider registered."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import litellm

    if not getattr(litellm, "_planfile_ready", False):
        from engine.models.local_model import make_provider

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        providers = [
            p for p in (litellm.custom_provider_map or []) if p.get("provider") != PROVIDER
        ]
        litellm.custom_provider_map = [
            *providers,
            {"provider": PROVIDER, "custom_handler": make_provider()},
        ]
        litellm._planfile_ready = True
    return litellm


def register_provider(name: str, handler: Any) -> None:
    """Register another in-process provider (tests, custom backends) with litellm."""
    litellm = litellm_module()
    providers = [p for p in litellm.custom_provider_map if p.get("provider") != name]
    litellm.custom_provider_map = [*providers, {"provider": name, "custom_handler": handler}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()


# --- prices -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    input_per_token: float
    output_per_token: float
    known: bool

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return input_tokens * self.input_per_token + output_tokens * self.output_per_token


class Pricing:
    """Per-token prices: the config's, else litellm's table; unknown models are 0 (warned)."""

    def __init__(self, config: Config):
        self.config = config
        self._cache: dict[str, Price] = {}

    def price(self, model: str) -> Price:
        if model not in self._cache:
            self._cache[model] = self._lookup(model)
        return self._cache[model]

    def _lookup(self, model: str) -> Price:
        settings = self.config.models.get(model)
        if (
            settings
            and settings.input_cost_per_million is not None
            and settings.output_cost_per_million is not None
        ):
            return Price(
                settings.input_cost_per_million / 1e6, settings.output_cost_per_million / 1e6, True
            )
        if model.startswith(PROVIDER + "/"):
            return Price(0.0, 0.0, True)  # the embedded model costs nothing per token
        table = litellm_module().model_cost
        bare = model.split("/", 1)[1] if "/" in model else model
        for key in (model, bare):
            entry = table.get(key)
            if entry and entry.get("input_cost_per_token") is not None:
                return Price(
                    float(entry.get("input_cost_per_token") or 0.0),
                    float(entry.get("output_cost_per_token") or 0.0),
                    True,
                )
        return Price(0.0, 0.0, False)


# --- selection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    model: str
    tier: str | None
    reason: str


class ModelSelector(Protocol):
    """Chooses the model for a step's call (user-replaceable)."""

    def choose(self, step: Step, attempt: int, afford: Callable[[str], bool]) -> Choice: ...


class TierSelector:
    """Explicit model/tier > task type > default tier; escalate on retry; downgrade for budget."""

    def __init__(
        self,
        tiers: Mapping[str, str],
        *,
        default_tier: str = "standard",
        escalate: bool = True,
        downgrade: bool = True,
    ):
        self.tiers = dict(tiers)
        self.default_tier = default_tier
        self.escalate = escalate
        self.downgrade = downgrade

    def base_tier(self, step: Step) -> str:
        if step.tier:
            return step.tier
        if step.task and step.task in TASK_TIERS:
            return TASK_TIERS[step.task]
        return self.default_tier

    def model_for(self, tier: str) -> str:
        return self.tiers.get(tier) or LOCAL_MODEL

    def choose(self, step: Step, attempt: int, afford: Callable[[str], bool]) -> Choice:
        if step.model:
            return Choice(step.model, None, "the step's model")
        tier = self.base_tier(step)
        reason = (
            "the step's tier"
            if step.tier
            else (f"task `{step.task}`" if step.task else "the default tier")
        )
        if self.escalate and attempt > 1 and tier in TIER_ORDER:
            higher = TIER_ORDER[min(len(TIER_ORDER) - 1, TIER_ORDER.index(tier) + attempt - 1)]
            if higher != tier:
                tier, reason = higher, f"escalated after {attempt - 1} failed attempt(s)"
        model = self.model_for(tier)
        if self.downgrade and not step.tier and tier in TIER_ORDER and not afford(model):
            for cheaper in reversed(TIER_ORDER[: TIER_ORDER.index(tier)]):
                candidate = self.model_for(cheaper)
                if afford(candidate):
                    return Choice(candidate, cheaper, f"downgraded from `{tier}` to fit the budget")
        return Choice(model, tier, reason)


# --- rate limits --------------------------------------------------------------------------------


class RateLimiter:
    """Per-model concurrency and requests/tokens per minute (a sliding one-minute window)."""

    def __init__(self, settings: ModelSettings):
        self.semaphore = (
            asyncio.Semaphore(settings.max_concurrency) if settings.max_concurrency else None
        )
        self.rpm = settings.rpm
        self.tpm = settings.tpm
        self.window: list[tuple[float, int]] = []
        self.lock = asyncio.Lock()

    async def admit(self, tokens: int) -> None:
        if not self.rpm and not self.tpm:
            return
        async with self.lock:
            while True:
                now = time.monotonic()
                self.window = [(t, n) for t, n in self.window if now - t < 60]
                requests_ok = not self.rpm or len(self.window) < self.rpm
                tokens_ok = (
                    not self.tpm
                    or sum(n for _, n in self.window) + tokens <= self.tpm
                    or not self.window
                )
                if requests_ok and tokens_ok:
                    self.window.append((now, tokens))
                    return
                await asyncio.sleep(max(0.05, 60 - (now - self.window[0][0])))


# --- the gateway -------------------------------------------------------------------------------


@dataclass
class Warnings:
    seen: set[str] = field(default_factory=set)
    emit: Callable[[str], None] | None = None

    def once(self, key: str, message: str) -> None:
        if key not in self.seen:
            self.seen.add(key)
            if self.emit:
                self.emit(message)


def structured_schema(adapter: TypeAdapter[Any]) -> tuple[dict[str, Any], bool]:
    """The JSON schema to request; non-object types are wrapped as {"value": ...}."""
    schema = adapter.json_schema()
    if schema.get("type") == "object" and "properties" in schema:
        return schema, False
    defs = schema.pop("$defs", None)
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {"value": schema},
        "required": ["value"],
        "additionalProperties": False,
    }
    if defs:
        wrapped["$defs"] = defs
    return wrapped, True


def parse_reply(text: str) -> Any:
    """JSON from a model reply (code fences, text around it, trailing commas, ...): the
    one repair of dsl/repair.py; ValueError when there is none, or it was cut off."""
    return parse_reply_json(text)


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
        self._rng = random.Random()

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
        request = ""
        if schema is not None:
            request = (
                "\n\nReply with only a JSON value matching this JSON schema:\n"
                f"{json.dumps(schema, separators=(',', ':'))}"
            )
        messages.append({"role": "user", "content": prompt + request})
        litellm = litellm_module()
        choice = self.select(step, ctx.attempt, 0, max_tokens or DEFAULT_MAX_TOKENS)
        model = choice.model
        settings = self.config.model_settings(model)
        limit = max_tokens or settings.max_tokens or DEFAULT_MAX_TOKENS
        # Only a budget needs the prompt's size (the worst case); counting costs 0.2 ms.
        prompt_tokens = _count_tokens(litellm, model, messages) if self.budget.active else 0
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
        try:
            return self._validate(reply, adapter, wrapped)
        except (ValueError, ValidationError) as first_error:
            # One repair attempt: show the model its reply and what was wrong with it.
            messages = [
                *messages,
                {"role": "assistant", "content": reply},
                {
                    "role": "user",
                    "content": f"That reply is not valid: {_short_error(first_error)}. Reply again with "
                    "only JSON matching the schema.",
                },
            ]
            prompt_tokens = _count_tokens(litellm, model, messages) if self.budget.active else 0
            reply = await self._call(
                ctx, model, settings, messages, limit, temperature, schema, price, prompt_tokens
            )
            try:
                return self._validate(reply, adapter, wrapped)
            except (ValueError, ValidationError) as err:
                declared = run.checked.result_types[step.id]
                raise InvalidReply(
                    f"`{model}` replied twice with data that does not fit `{declared}`: {_short_error(err)}"
                ) from None

    @staticmethod
    def _validate(reply: str, adapter: TypeAdapter[Any], wrapped: bool) -> Any:
        data = parse_reply(reply)
        if wrapped:
            if not isinstance(data, dict) or "value" not in data:
                data = {"value": data}
            data = data["value"]
        return adapter.dump_python(adapter.validate_python(data), mode="json")

    def _response_format(
        self, model: str, settings: ModelSettings, schema: dict[str, Any]
    ) -> dict[str, Any] | None:
        mode = settings.structured_output
        if mode is None:
            # llama.cpp-style servers (any api_base) and the embedded model take the schema
            # inside json_object; hosted APIs take OpenAI's json_schema.
            mode = (
                "json_object_schema"
                if (model.startswith(PROVIDER + "/") or settings.api_base)
                else "json_schema"
            )
        if mode == "none":
            return None
        if mode == "json_object_schema":
            return {"type": "json_object", "schema": schema}
        return {
            "type": "json_schema",
            "json_schema": {"name": "result", "schema": schema, "strict": False},
        }

    async def _call(
        self,
        ctx: ToolContext,
        model: str,
        settings: ModelSettings,
        messages: list[dict[str, Any]],
        max_tokens: int,
        temperature: float | None,
        schema: dict[str, Any] | None,
        price: Any,
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
    ) -> str:
        """One priced, budgeted, rate-limited, ledgered model call; returns the reply text.

        `usage` is any object with input_tokens/output_tokens/cost_usd counters (a step's
        record, or the planner's). `timeout_s` (the step's) shortens the call's deadline.
        """
        litellm = litellm_module()
        settings = self.config.model_settings(model)
        price = self.pricing.price(model)
        if prompt_tokens is None:
            prompt_tokens = _count_tokens(litellm, model, messages) if self.budget.active else 0
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
            response_format = self._response_format(model, settings, schema)
            if response_format is not None:
                kwargs["response_format"] = response_format
        if mock is not None:
            kwargs["mock_response"] = mock
        worst = price.cost(prompt_tokens, max_tokens)
        reservation = self.budget.reserve(worst, model)
        limiter = self._limiters.get(model)
        if limiter is None:
            limiter = self._limiters[model] = RateLimiter(settings)
        cost = 0.0
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
        content = response.choices[0].message.content
        return content if isinstance(content, str) else json.dumps(content)

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
                return await litellm.acompletion(**kwargs)
            except Exception as err:
                kind = classify(err)
                if kind is Fault.AUTH:
                    raise ModelCallError(
                        f"`{model}` rejected the API key: {_first_line(err)}. Set a valid key in the "
                        f'environment variable named by api_key_env under [models."{model}"] in planfile.toml'
                    ) from None
                if kind is Fault.UNKNOWN_MODEL:
                    raise ModelCallError(
                        f"unknown model `{model}`: {_first_line(err)}. Check the tier's model string "
                        "(`provider/model`, as litellm names it) in the plan, planfile.toml or --tier"
                    ) from None
                if kind is not Fault.TRANSIENT or attempt == PROVIDER_RETRIES:
                    raise
                delay = retry_after(err)
                if delay is None:
                    ceiling = self.provider_retry_base_s * 2**attempt
                    delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
                await asyncio.sleep(min(delay, 60.0))
        raise AssertionError("unreachable")


def run_adapter(run: Any, step: Step) -> TypeAdapter[Any] | None:
    """The adapter for a step's declared type when it calls for structured output."""
    declared = run.checked.result_types.get(step.id)
    if declared is None or declared.kind in ("json", "str"):
        return None
    from dsl.types import build_record_models, type_adapter

    plan = run.checked.plan
    models = build_record_models({r.name: dict(r.fields) for r in plan.types})
    target = declared.item if step.for_each is not None and declared.item is not None else declared
    if target.kind in ("json", "str"):
        return None
    return type_adapter(target, models)


def retry_after(err: BaseException) -> float | None:
    """Seconds from a Retry-After header on the provider's response, if any."""
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None) or getattr(err, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def _count_tokens(litellm: Any, model: str, messages: list[dict[str, Any]]) -> int:
    try:
        return int(litellm.token_counter(model=model, messages=messages))
    except Exception:
        return sum(len(str(m.get("content", ""))) for m in messages) // 3 + 8


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _short_error(err: BaseException) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{first['msg']}" + (f" at `{where}`" if where else "")
    return str(err)[:200]


__all__ = [
    "BudgetExceeded",
    "Choice",
    "Gateway",
    "ModelCallError",
    "ModelSelector",
    "ModelTimeout",
    "Pricing",
    "TierSelector",
    "litellm_module",
    "register_provider",
]
