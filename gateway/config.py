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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


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


class Settings(_Strict):
    unsupported_params: Literal["reject", "drop"] = "reject"
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    limits: Limits = Limits()


class Provider(_Strict):
    dialect: Literal["openai", "anthropic", "mock"]
    base_url: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = {}
    chunk_delay_ms: float = Field(0.0, ge=0)   # mock only: artificial latency per chunk


class Price(_Strict):
    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)


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
    price: Price = Price()
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
        return {k: _interpolate(v, where + [k], env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, where + [i], env, problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        def sub(m: re.Match) -> str:
            if m.group(1) not in env:
                problems.append(f"{_path(where)}: environment variable {m.group(1)} is not set")
                return ""
            return env[m.group(1)]
        return _VAR.sub(sub, node)
    return node


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping key given twice instead of keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _cross_check(config: Config, problems: list[str]) -> None:
    seen: dict[str, str] = {}
    for name, route in config.routes.items():
        for i, alias in enumerate([name] + route.aliases):
            where = f"routes.{name}" if i == 0 else f"routes.{name}.aliases[{i - 1}]"
            if alias in seen:
                problems.append(f"{where}: name {alias!r} is already used by {seen[alias]}")
            else:
                seen[alias] = where
        for i, target in enumerate(route.targets):
            if target.provider not in config.providers:
                problems.append(f"routes.{name}.targets[{i}].provider: no provider named {target.provider!r}")
    for name, provider in config.providers.items():
        if provider.dialect != "mock" and not provider.base_url:
            problems.append(f"providers.{name}.base_url: required for dialect {provider.dialect!r}")
    limits = config.settings.limits
    for field in ("rpm", "tpm", "budget"):
        if getattr(limits, f"default_{field}") > getattr(limits, f"max_{field}"):
            problems.append(f"settings.limits.default_{field}: above settings.limits.max_{field}")


def parse_config(text: str, env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ) if env is None else env
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"(yaml) {where}{problem}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping with settings, providers and routes"])
    problems: list[str] = []
    raw = _interpolate(raw, [], env, problems)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_path(err['loc'])}: {msg}")
        raise ConfigError(sorted(set(problems), key=problems.index)) from None
    _cross_check(config, problems)
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    return parse_config(text, env)
