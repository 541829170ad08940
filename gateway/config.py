"""routes.yaml: the pydantic schema, `${VAR}` interpolation, and loading.

Every problem is reported with its YAML path (`routes.r1.targets[0].provider`),
all of them at once, so `gateway check` can list them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.dialects import DIALECTS


class Secret(str):
    """A string whose repr never shows it, so it cannot leak into a log line."""

    def __repr__(self) -> str:
        return "Secret('***')"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    default_rpm: int = Field(100, ge=1)
    default_tpm: int = Field(10_000, ge=1)
    default_budget: float = Field(100.0, ge=0)
    max_rpm: int = Field(1_000, ge=1)
    max_tpm: int = Field(100_000, ge=1)
    max_budget: float = Field(1_000.0, ge=0)


class TracingSettings(_Strict):
    """OpenTelemetry traces over OTLP/HTTP (SPEC 12): on when `otlp_endpoint` (or the environment's
    OTEL_EXPORTER_OTLP_ENDPOINT) is set; read at start."""

    # the collector's base URL (`/v1/traces` is added) or its whole traces URL; kept out of reprs
    otlp_endpoint: str | None = Field(None, min_length=1, repr=False)
    service_name: str = Field("llm-gateway", min_length=1)
    # the share of traces this gateway starts that are kept; a client's sampled traceparent decides its own
    sample_ratio: float = Field(1.0, ge=0, le=1)

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
            raise ValueError("must be an http:// or https:// URL (an OTLP/HTTP collector)")
        return value


class Settings(_Strict):
    unsupported_params: Literal["reject", "drop"] = "reject"
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # the largest upstream answer: a non-stream body, or all the bytes of one streamed attempt; past it, 502
    max_upstream_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    limits: Limits = Limits()
    # the keys and the ledger: a SQLite file or `postgresql://...`; `--db` / GATEWAY_DB win over it.
    # Read at start (a reload does not move the ledger).
    db: str | None = Field(None, min_length=1, repr=False)   # a PostgreSQL URL may carry a password
    # where the per-key windows and budgets live: `memory` (this process) or `redis://...` (shared);
    # `--limits` / GATEWAY_LIMITS win over it. `limiter_fallback`: what to do while Redis is away.
    limiter: str = Field("memory", repr=False)          # a Redis URL may carry a password
    limiter_fallback: Literal["refuse", "memory"] = "refuse"
    tracing: TracingSettings = TracingSettings()   # OpenTelemetry traces (SPEC 12); read at start
    # days a stored response (POST /v1/responses, SPEC 10.2) is kept for previous_response_id and GET
    responses_days: int = Field(30, ge=1)

    @field_validator("limiter")
    @classmethod
    def _limiter_url(cls, value: str) -> str:
        from gateway.limiter import check_limiter_url
        return check_limiter_url(value)


class Provider(_Strict):
    dialect: str          # a name of the dialect registry (gateway.dialects)
    base_url: str | None = None
    api_key: str | None = Field(None, repr=False)      # secrets: kept out of any repr that reaches a log
    headers: dict[str, str] = Field({}, repr=False)
    chunk_delay_ms: float = Field(0.0, ge=0)   # mock only: artificial latency per chunk

    @field_validator("dialect")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in DIALECTS:
            raise ValueError(f"unknown dialect {value!r}: one of {', '.join(sorted(DIALECTS))}")
        return value


class Price(_Strict):
    """USD per 1M tokens (SPEC section 11). Prompt tokens read from the provider's cache bill at
    `cached_input`, tokens written to it at `cache_write`; either defaults to `input`."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)

    def cost(self, prompt: int, completion: int, cached: int = 0, cache_write: int = 0) -> float:
        """cost_usd: the uncached prompt at `input`, cache reads and writes at theirs, output at `output`."""
        cached_in = self.input if self.cached_input is None else self.cached_input
        write = self.input if self.cache_write is None else self.cache_write
        fresh = max(prompt - cached - cache_write, 0)
        return (fresh * self.input + cached * cached_in + cache_write * write + completion * self.output) / 1_000_000

    def worst(self, prompt: int, completion: int) -> float:
        """The most `prompt` and `completion` tokens can cost, whatever part of the prompt the cache reads or
        writes (a cache write bills above `input` at Anthropic): what a budget reserves."""
        per_prompt = max(self.input, self.cached_input or 0.0, self.cache_write or 0.0)
        return (prompt * per_prompt + completion * self.output) / 1_000_000


class Thinking(_Strict):
    """How a target thinks: `native`, `{model: NAME}` or `{params: {...}}`."""

    native: bool = False
    model: str | None = None
    params: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, value: Any) -> Any:
        if value == "native":
            return {"native": True}
        if isinstance(value, dict) and len(value) == 1 and set(value) <= {"model", "params"}:
            return value
        raise ValueError("must be 'native', {model: NAME} or {params: {...}}")


class Target(_Strict):
    provider: str
    model: str
    price: Price | None = None     # None: the packaged price table's, if it knows the model (gateway/prices.py)
    weight: float = Field(1.0, gt=0)
    thinking: Thinking | None = None


class Route(_Strict):
    aliases: list[str] = []
    retries: int = Field(3, ge=0, le=10)
    timeout: float = Field(60.0, gt=0)
    strategy: Literal["fallback", "round_robin", "weighted", "least_latency", "cheapest"] = "fallback"
    targets: list[Target] = Field(min_length=1)


class Config(_Strict):
    settings: Settings = Settings()
    providers: dict[str, Provider] = {}
    routes: dict[str, Route] = {}

    def route_names(self) -> dict[str, str]:
        """Every name a client may send (canonical or alias) -> canonical name."""
        names = {name: name for name in self.routes}
        for name, route in self.routes.items():
            for alias in route.aliases:
                names[alias] = name
        return names


@dataclass
class ConfigError(Exception):
    problems: list[str]

    def __str__(self) -> str:
        return "; ".join(self.problems)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _path(parts: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _interpolate(node: Any, where: list[Any], env: dict[str, str], problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, [*where, k], env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, [*where, i], env, problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                problems.append(f"{_path(where)}: environment variable {m.group(1)} is not set")
                return ""
            return env[m.group(1)]
        return _VAR.sub(sub, node)
    return node


def _duplicate_keys(node: yaml.Node, where: list[Any], problems: list[str], open_: set[int]) -> None:
    """Every mapping key given twice, named by its path (a plain loader would keep the last silently)."""
    if id(node) in open_:
        problems.append(f"{_path(where)}: a YAML alias that contains itself")
        return
    open_.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            line = key_node.start_mark.line + 1
            if key in first:
                problems.append(f"{_path([*where, key])}: duplicate key (line {line}; first at line {first[key]})")
            else:
                first[key] = line
            _duplicate_keys(value_node, [*where, key], problems, open_)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, [*where, i], problems, open_)
    open_.discard(id(node))


def _load_yaml(text: str, problems: list[str]) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _duplicate_keys(node, [], problems, set())
        if problems:
            return None   # a self-containing alias cannot be built; duplicates are already fatal
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"(yaml) {where}{problem}"]) from None
    finally:
        loader.dispose()


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _cross_check(raw: dict[str, Any], problems: list[str]) -> None:
    """Names and references across the file, read from the raw mapping so they are found even when
    other parts of the file are invalid (every problem is listed at once)."""
    providers, routes = _mapping(raw.get("providers")), _mapping(raw.get("routes"))
    seen: dict[Any, str] = {name: f"routes.{name}" for name in routes}
    for name, route in routes.items():
        route = _mapping(route)
        aliases = route.get("aliases")
        for i, alias in enumerate(aliases if isinstance(aliases, list) else ()):
            if not isinstance(alias, str):
                continue
            where = f"routes.{name}.aliases[{i}]"
            if alias in seen:
                problems.append(f"{where}: name {alias!r} is already used by {seen[alias]}")
            else:
                seen[alias] = where
        targets = route.get("targets")
        for i, target in enumerate(targets if isinstance(targets, list) else ()):
            provider = _mapping(target).get("provider")
            if isinstance(provider, str) and provider not in providers:
                problems.append(f"routes.{name}.targets[{i}].provider: no provider named {provider!r}")
    for name, provider in providers.items():
        provider = _mapping(provider)
        where = f"providers.{name}.base_url"
        dialect = DIALECTS.get(provider.get("dialect"))   # type: ignore[arg-type]
        if dialect is not None and dialect.needs_base_url and not provider.get("base_url") \
                and not any(p.startswith(f"{where}: ") for p in problems):   # an unset ${VAR} said it already
            problems.append(f"{where}: required for dialect {provider['dialect']!r}")


def _limits_check(config: Config, problems: list[str]) -> None:
    limits = config.settings.limits
    for field in ("rpm", "tpm", "budget"):
        if getattr(limits, f"default_{field}") > getattr(limits, f"max_{field}"):
            problems.append(f"settings.limits.default_{field}: above settings.limits.max_{field}")


def parse_config(text: str, env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ) if env is None else env
    problems: list[str] = []
    raw = _load_yaml(text, problems)
    if problems:
        raise ConfigError(problems)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping with settings, providers and routes"])
    raw = _interpolate(raw, [], env, problems)
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_path(err['loc'])}: {msg}")
    _cross_check(raw, problems)
    if config is not None:
        _limits_check(config, problems)
    if problems or config is None:
        raise ConfigError(sorted(set(problems), key=problems.index))
    return config


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    return parse_config(text, env)
