"""Settings: defaults < config file (TOML) < environment (``SOUNDING_*``) < CLI flags.

One pydantic model, passed down explicitly; nothing deeper in the code reads the environment.
Nested fields come from the environment with a double underscore, e.g. ``SOUNDING_LLM__MODEL``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_home() -> Path:
    """XDG-style cache/data home; ``SOUNDING_HOME`` overrides it (read by pydantic-settings)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "sounding"


class LLMSettings(BaseModel):
    #: llama: the embedded model in this process; llama-server: the same model served by sounding's own
    #: llama.cpp server with ``slots`` parallel slots (sweeps with --concurrency); http, vllm: served.
    backend: Literal["llama", "llama-server", "http", "vllm"] = "llama"
    #: A registered embedded model name, or a path to any GGUF file (llama and llama-server backends),
    #: or the served model name (http/vllm backends).
    model: str = "qwen2.5-coder-1.5b"
    base_url: str | None = None
    api_key: SecretStr | None = None
    #: How the HTTP backend asks for JSON: OpenAI ``json_schema``, llama.cpp ``json_object`` with a
    #: schema, or vLLM's ``structured_outputs`` extension (vLLM >= 0.12 silently ignores ``guided_json``).
    structured_output: Literal["json_schema", "json_object", "structured_outputs"] = "json_schema"
    #: Parameter count for the flops cost model when the model is not an embedded one (a served model).
    n_params: int | None = Field(default=None, ge=1)
    n_ctx: int = Field(default=4096, ge=256)
    n_threads: int = Field(default=2, ge=1)
    #: Questions in flight on sounding's own llama.cpp server (llama-server backend): each has a slot of
    #: its own (its own ``n_ctx`` and cached prompt); the slots' sequences are decoded as one batch.
    slots: int = Field(default=4, ge=1, le=64)
    #: Extra server slots per question for the samples of one call beyond the first (they copy the
    #: question's evaluated prompt); too few and a call with more samples waits for free slots.
    sample_slots: int = Field(default=2, ge=0, le=63)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    #: Temperature of reasoning samples (thinking; answers when several are voted).
    sample_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    seed: int = Field(default=0, ge=0)
    #: Per read of an HTTP LLM call (a silent server), and by default the total deadline of one call.
    timeout_s: float = Field(default=120.0, gt=0)
    #: Total wall-clock deadline of one HTTP LLM call, retries and backoff included (a server that drips
    #: a byte at a time never resets it); None: the same as ``timeout_s``.
    deadline_s: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=4, ge=0)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=20.0, ge=0)


class SearchSettings(BaseModel):
    backend: Literal["bm25", "dense", "hybrid", "web"] = "hybrid"
    corpus: str = "wiki-vital"
    k: int = Field(default=5, ge=1, le=200)
    passage_words: int = Field(default=160, ge=16)
    passage_overlap: int = Field(default=32, ge=0)
    searxng_url: str | None = None
    embed_batch_size: int = Field(default=64, ge=1)
    rrf_k: int = Field(default=60, ge=1)


class FetchSettings(BaseModel):
    timeout_s: float = Field(default=15.0, gt=0)
    #: The whole page, redirects included, must arrive within this (a slow drip cannot hold a run).
    total_timeout_s: float = Field(default=30.0, gt=0)
    max_bytes: int = Field(default=2_000_000, ge=1024)
    max_redirects: int = Field(default=5, ge=0)
    content_types: list[str] = ["text/html", "application/xhtml+xml", "text/plain"]
    #: Hosts (names or IPs) the SSRF guard lets through although they resolve to loopback/private space.
    allow_hosts: list[str] = []


#: The largest budget accepted in any unit: far above any real run (a 70B model's FLOPs for a million
#: tokens are 1.4e17) and far below where token counts derived from it overflow an integer.
MAX_BUDGET = 1e18


class BudgetSettings(BaseModel):
    unit: Literal["tokens", "flops", "usd", "latency"] = "tokens"
    budget: float | None = Field(default=30_000, gt=0, le=MAX_BUDGET, allow_inf_nan=False)
    max_searches: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    #: Price of one search call in token-equivalents (see budgets/cost.py for the rationale).
    search_tokens: float = Field(default=300.0, ge=0)
    fetch_tokens: float = Field(default=600.0, ge=0)
    #: Prices for the usd cost model: dollars per million tokens and per call.
    usd_prompt_per_mtok: float = 0.10
    usd_completion_per_mtok: float = 0.40
    usd_per_search: float = 0.005
    usd_per_fetch: float = 0.0
    #: Latency table file written by ``sounding budget calibrate`` (defaults to HOME/latency.json).
    latency_table: Path | None = None
    controller: Literal["fixed", "adaptive", "calibrated", "tuned"] = "adaptive"
    depth: int = Field(default=2, ge=0, le=64)
    breadth: int = Field(default=2, ge=1, le=16)
    #: Reasoning: thinking tokens before each round's answer, and answer samples voted per round.
    think: int = Field(default=0, ge=0, le=4096)
    samples: int = Field(default=1, ge=1, le=64)
    verify: bool = False
    policy_file: Path | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOUNDING_", env_nested_delimiter="__", extra="forbid")

    home: Path = Field(default_factory=default_home)
    llm: LLMSettings = LLMSettings()
    search: SearchSettings = SearchSettings()
    fetch: FetchSettings = FetchSettings()
    budget: BudgetSettings = BudgetSettings()

    #: Set on a dynamic subclass by ``load_settings``; the TOML file sits between defaults and env.
    _toml_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    # Derived locations under the one home.
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def indexes_dir(self) -> Path:
        return self.home / "indexes"

    @property
    def cassettes_dir(self) -> Path:
        return self.home / "cassettes"


class ConfigError(ValueError):
    """A config file that cannot be read or does not validate."""


def config_path(explicit: Path | None = None) -> Path | None:
    """The config file in force: ``--config`` > ``SOUNDING_CONFIG`` > ``$XDG_CONFIG_HOME/sounding/config.toml``."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file not found: {explicit}")
        return explicit
    env = os.environ.get("SOUNDING_CONFIG")
    if env:
        if not Path(env).is_file():
            raise ConfigError(f"SOUNDING_CONFIG points to a missing file: {env}")
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    default = (Path(xdg) if xdg else Path.home() / ".config") / "sounding" / "config.toml"
    return default if default.is_file() else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from every layer; ``overrides`` are the CLI flags (nested dicts allowed)."""
    path = config_path(config_file)
    if path is not None:
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    configured = type("ConfiguredSettings", (Settings,), {"_toml_file": path})
    try:
        loaded = configured(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_invalid(exc, path)) from exc
    except ValueError as exc:
        raise ConfigError(f"invalid settings (config file {path or 'none'}): {exc}") from exc
    return Settings.model_construct(**dict(loaded))


#: Setting paths a user sets with a CLI flag, to name the flag in an error rather than the field.
FLAGS = {
    "budget.budget": "--budget",
    "budget.unit": "--unit",
    "budget.depth": "--depth",
    "budget.breadth": "--breadth",
    "budget.think": "--think",
    "budget.samples": "--samples",
    "budget.max_searches": "--max-searches",
    "budget.max_tokens": "--max-tokens",
    "budget.controller": "--controller",
    "llm.model": "--model",
    "llm.seed": "--seed",
    "llm.temperature": "--temperature",
    "llm.sample_temperature": "--sample-temperature",
    "search.backend": "--backend",
    "search.corpus": "--corpus",
}


def describe_invalid(exc: ValidationError, path: Path | None) -> str:
    """One line per invalid value, naming the flag (or setting) and the value given, no pydantic dump."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        name = FLAGS.get(where, f"setting {where}")
        given = error.get("input")
        shown = f" (got {given!r})" if not isinstance(given, dict) else ""
        parts.append(f"{name}: {error['msg'][0].lower()}{error['msg'][1:]}{shown}")
    source = f" (config file {path})" if path else ""
    return "invalid settings" + source + ": " + "; ".join(parts)


def deep_overrides(**flat: Any) -> dict[str, Any]:
    """Turn CLI flags like ``llm__model="x"`` into nested overrides, dropping unset (None) flags."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        parts = key.split("__")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested
