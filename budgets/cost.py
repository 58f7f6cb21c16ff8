"""Cost models: every event (prompt tokens, completion tokens, search calls, page fetches) priced in one unit.

* ``tokens``: token-equivalents. A token costs 1 whether read or written; a search call costs
  ``search_tokens`` (default 300). Rationale: a search is not free even on a local index (the agent
  must write a query and the results must be read, the reading being charged as prompt tokens), and
  300 tokens is about what one round-trip of query writing costs a small model, so one extra search
  is priced like one short extra reasoning step. A page fetch costs ``fetch_tokens`` (default 600).
* ``flops``: 2·N FLOPs per processed token for an N-parameter model (Kaplan et al. 2020; Snell et
  al. 2024 count test-time compute the same way), N from the model registry; a search call costs
  ``search_flops`` (default: 2·22.7M·32 for MiniLM query encoding plus 2·384 per passage scanned).
* ``usd``: a price table (dollars per million prompt/completion tokens, per search, per fetch).
* ``latency``: seconds per event, calibrated on the deployment by ``sounding budget calibrate``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from sounding.settings import BudgetSettings

UNITS = ("tokens", "flops", "usd", "latency")
MINILM_PARAMS = 22_700_000


class Usage(BaseModel):
    """Quantities of each event; what a step reserves and what it really used."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    searches: int = 0
    fetches: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f: getattr(self, f) + getattr(other, f) for f in Usage.model_fields})

    def __sub__(self, other: Usage) -> Usage:
        return Usage(**{f: getattr(self, f) - getattr(other, f) for f in Usage.model_fields})

    def clip(self, ceiling: Usage) -> Usage:
        return Usage(**{f: min(getattr(self, f), getattr(ceiling, f)) for f in Usage.model_fields})

    def exceeds(self, other: Usage) -> bool:
        return any(getattr(self, f) > getattr(other, f) for f in Usage.model_fields)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class CostModel(Protocol):
    @property
    def unit(self) -> str: ...

    def price(self, usage: Usage) -> float: ...


@dataclass(frozen=True)
class LinearCost:
    """Every built-in model is linear in the event counts; they differ in their per-event prices."""

    unit: str
    per_prompt_token: float
    per_completion_token: float
    per_search: float
    per_fetch: float

    def price(self, usage: Usage) -> float:
        return (
            usage.prompt_tokens * self.per_prompt_token
            + usage.completion_tokens * self.per_completion_token
            + usage.searches * self.per_search
            + usage.fetches * self.per_fetch
        )


class LatencyTable(BaseModel):
    """Seconds per event, measured by ``sounding budget calibrate`` on the deployment in use."""

    seconds_per_prompt_token: float
    seconds_per_completion_token: float
    seconds_per_search: float
    seconds_per_fetch: float = 0.5
    measured_on: str = ""
    llm: str = ""
    search: str = ""


# Used only when no calibration file exists: this machine's measured figures for the 1.5B default
# (2 cores: ~90 prompt tokens/s, ~31 completion tokens/s; hybrid search ~25 ms).
DEFAULT_LATENCY = LatencyTable(
    seconds_per_prompt_token=1 / 90,
    seconds_per_completion_token=1 / 31,
    seconds_per_search=0.025,
    measured_on="default (uncalibrated)",
)


def search_flops(n_passages: int = 10_000) -> float:
    return 2 * MINILM_PARAMS * 32 + 2 * 384 * n_passages


def load_latency_table(path: Path | None) -> LatencyTable:
    if path is None or not path.is_file():
        return DEFAULT_LATENCY
    try:
        return LatencyTable.model_validate(json.loads(path.read_text()))
    except ValueError as exc:
        raise ValueError(f"latency table {path} is invalid: {exc}") from exc


def make_cost_model(
    unit: str,
    cfg: BudgetSettings,
    *,
    n_params: int | None,
    latency: LatencyTable | None = None,
    n_passages: int = 10_000,
) -> LinearCost:
    if unit == "tokens":
        return LinearCost("tokens", 1.0, 1.0, cfg.search_tokens, cfg.fetch_tokens)
    if unit == "flops":
        if not n_params:
            raise ValueError(
                "the flops cost model needs the model's parameter count (unknown for this model)"
            )
        per_token = 2.0 * n_params
        return LinearCost(
            "flops", per_token, per_token, search_flops(n_passages), per_token * cfg.fetch_tokens
        )
    if unit == "usd":
        return LinearCost(
            "usd",
            cfg.usd_prompt_per_mtok / 1e6,
            cfg.usd_completion_per_mtok / 1e6,
            cfg.usd_per_search,
            cfg.usd_per_fetch,
        )
    if unit == "latency":
        t = latency or DEFAULT_LATENCY
        return LinearCost(
            "latency",
            t.seconds_per_prompt_token,
            t.seconds_per_completion_token,
            t.seconds_per_search,
            t.seconds_per_fetch,
        )
    raise ValueError(f"unknown cost unit {unit!r}: use one of {', '.join(UNITS)}")


def make_cost_models(
    cfg: BudgetSettings,
    *,
    n_params: int | None,
    latency: LatencyTable | None = None,
    n_passages: int = 10_000,
) -> dict[str, LinearCost]:
    """Every unit that can be priced here (flops needs a parameter count), for reporting spend."""
    models = {}
    for unit in UNITS:
        if unit == "flops" and not n_params:
            continue
        models[unit] = make_cost_model(unit, cfg, n_params=n_params, latency=latency, n_passages=n_passages)
    return models
