"""`planfile.toml`: tiers, per-model settings and prices, limits, budgets, tool settings.

```toml
model_timeout_s = 120                     # each model call's deadline (default 120; per
                                          # model: timeout_s under [models."..."])
executor = "agent"                        # JSON/imported steps with no registered tool:
                                          # agent steps (default "llm"; --executor)
[tiers]
fast = "openai/gpt-4o-mini"

[models."openai/gpt-4o-mini"]
api_base = "http://127.0.0.1:8000/v1"     # optional
api_key_env = "OPENAI_API_KEY"            # or api_key, for local servers
input_cost_per_million = 0.15             # optional: overrides litellm's price table
output_cost_per_million = 0.60
max_concurrency = 8                       # optional
rpm = 500                                 # optional: requests per minute
tpm = 200000                              # optional: tokens per minute

[budget]                                  # finite, zero or more
daily_usd = 5.0
run_usd = 0.50

[limits]
max_parallel = 16
"tool:search" = 4

[tools.http_get]
allow_hosts = ["api.example.com"]

[tools.map]                               # names models invent -> tools (JSON plans)
web_search = "search"

[search]
corpus = "docs/"

[cluster]                                 # run steps on a Dask cluster (the `cluster` extra)
address = "tcp://10.0.0.5:8786"           # or --cluster ADDRESS
connect_timeout_s = 10                    # optional
task_timeout_s = 3600                     # optional: a call's deadline when its step sets none
no_workers_warn_s = 30                    # optional: warn when a call waits this long with no workers
[cluster.resources]                       # optional placement: Dask worker resources
"tier:local" = {GPU = 1}
"tool:read_file" = {disk = 1}
```

Keys come from the environment (`api_key_env`); a literal `api_key` is for local
servers only. Neither ever appears in logs or results.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dsl.bounded_read import FileTooLarge, read_bounded
from dsl.errors import did_you_mean
from dsl.ir import MAX_TIMEOUT_S
from engine.errors import ConfigError as ConfigError  # the configuration phase of the error tree

CONFIG_FILE = "planfile.toml"
DEFAULT_MODEL_TIMEOUT_S = 120.0
MAX_CONFIG_BYTES = 1024 * 1024
# Upper bounds for counts: far above any real setting, low enough that arithmetic on
# them (semaphores, rate windows) stays cheap and exact.
MAX_COUNT = 1_000_000
MAX_RATE = 10**12
MAX_PRICE = 1e9  # dollars per million tokens


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(_Strict):
    """Per-model litellm settings and prices."""

    api_base: str | None = None
    api_key_env: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    input_cost_per_million: float | None = Field(
        default=None, ge=0, le=MAX_PRICE, allow_inf_nan=False
    )
    output_cost_per_million: float | None = Field(
        default=None, ge=0, le=MAX_PRICE, allow_inf_nan=False
    )
    max_concurrency: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    rpm: int | None = Field(default=None, ge=1, le=MAX_RATE)
    tpm: int | None = Field(default=None, ge=1, le=MAX_RATE)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_COUNT * 100)
    # This model's call deadline (overrides `model_timeout_s`).
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    structured_output: str | None = Field(
        default=None,
        description="`json_schema` (OpenAI style), `json_object_schema` (llama.cpp style), or `none`",
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="more litellm arguments")

    @field_validator("structured_output")
    @classmethod
    def _mode(cls, value: str | None) -> str | None:
        if value not in (None, "json_schema", "json_object_schema", "none"):
            raise ValueError("structured_output is json_schema, json_object_schema or none")
        return value

    def resolve_api_key(self, model: str) -> str | None:
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(
                    f"model `{model}`: environment variable {self.api_key_env} is not set "
                    f"(api_key_env in {CONFIG_FILE})"
                )
            return key
        return self.api_key


class Budget(_Strict):
    # Finite: `nan` would compare false with every cost and switch the budget off.
    daily_usd: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    run_usd: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)


class HttpSettings(_Strict):
    allow_hosts: list[str] = Field(default_factory=list)
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    max_bytes: int | None = Field(default=None, ge=1, le=2**40)


class ToolsSettings(_Strict):
    http_get: HttpSettings = Field(default_factory=HttpSettings)
    map: dict[str, str] = Field(
        default_factory=dict,
        description='tool names a model writes -> tools (`web_search = "search"`), on load',
    )


class SearchSettings(_Strict):
    corpus: str | None = None


class ClusterSettings(_Strict):
    """`[cluster]`: the Dask cluster steps execute on (engine/backends/dask.py)."""

    address: str | None = None
    connect_timeout_s: float = Field(default=10.0, gt=0, le=600, allow_inf_nan=False)
    # The deadline of one call on the cluster when its step sets no `timeout`: a lost
    # task, or one waiting for resources no worker has, is not awaited forever.
    task_timeout_s: float = Field(default=3600.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    # A call waiting while the scheduler has had no worker this long: one warning.
    no_workers_warn_s: float = Field(default=30.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    # "tool:NAME" / "tier:NAME" / "model:NAME" -> Dask worker resources its calls need.
    resources: dict[str, dict[str, float]] = Field(default_factory=dict)

    @field_validator("resources")
    @classmethod
    def _placement(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for key, needs in value.items():
            kind, sep, name = key.partition(":")
            if not sep or kind not in ("tool", "tier", "model") or not name:
                raise ValueError(f"`{key}`: use `tool:NAME`, `tier:NAME` or `model:NAME`")
            for resource, amount in needs.items():
                if not amount > 0 or amount > 1e12:  # `not >`: nan is refused too
                    raise ValueError(f"`{key}`: {resource} must be a positive amount")
        return value


class Config(_Strict):
    """The whole config file."""

    tiers: dict[str, str] = Field(default_factory=dict)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)
    limits: dict[str, int] = Field(default_factory=dict)
    tools: ToolsSettings = Field(default_factory=ToolsSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    default_tier: str = "standard"
    # Every model call's deadline, its provider retries included (litellm's own default
    # is 600 s per attempt); a model's `timeout_s` and a step's `timeout` may shorten it.
    model_timeout_s: float = Field(
        default=DEFAULT_MODEL_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False
    )
    fallback_to_local: bool = True
    # How a JSON or imported step naming no registered tool runs: an `llm` call, or an
    # `agent` over the default tools (dsl/agent_steps.py); `--executor` overrides it.
    executor: Literal["llm", "agent"] = "llm"
    source: str | None = Field(default=None, exclude=True)

    def model_settings(self, model: str) -> ModelSettings:
        return self.models.get(model) or ModelSettings()


def load_config(path: str | Path | None = None) -> Config:
    """`path`, else ./planfile.toml if present, else defaults; raise ConfigError."""
    explicit = path is not None
    file = Path(path) if path is not None else Path.cwd() / CONFIG_FILE
    if not file.exists():
        if explicit:
            raise ConfigError(f"{file}: no such config file")
        return Config()
    try:
        data = tomllib.loads(read_bounded(file, MAX_CONFIG_BYTES).decode("utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{file}: invalid TOML: {err}") from None
    except FileTooLarge:
        raise ConfigError(
            f"{file}: over the {MAX_CONFIG_BYTES // 2**20} MiB limit for a config file"
            " (or never ends)"
        ) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(f"{file}: invalid TOML: values nest too deeply") from None
    except ValueError as err:  # int() past Python's 4,300-digit limit, inside tomllib
        if "digits" not in str(err):
            raise
        raise ConfigError(f"{file}: invalid TOML: a number with more than 4,300 digits") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{file}: cannot read: {err}") from None
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            where = ".".join(str(p) for p in error["loc"])
            if error["type"] == "extra_forbidden":
                key = str(error["loc"][-1])
                section = _section_keys(error["loc"][:-1])
                hint = did_you_mean(key, section)
                problems.append(f"{file}: unknown key `{where}`" + (f" ({hint})" if hint else ""))
            else:
                problems.append(f"{file}: `{where}`: {error['msg']}")
        raise ConfigError("\n".join(problems)) from None
    for key, value in config.limits.items():
        if key != "max_parallel" and ":" not in key:
            raise ConfigError(f"{file}: limits.{key}: use `tool:NAME`, `tier:NAME` or `model:NAME`")
        if not 1 <= value <= MAX_COUNT:
            raise ConfigError(f"{file}: limits.{key} must be from 1 to {MAX_COUNT:,}")
    config.source = str(file)
    return config


def _section_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the section that holds an unknown key (for the hint)."""
    parts = [str(p) for p in loc]
    if parts[:1] == ["models"]:
        return list(ModelSettings.model_fields)
    model: type[BaseModel] = Config
    for part in parts:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [name for name in model.model_fields if name != "source"]
