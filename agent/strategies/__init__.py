"""Strategies: ways to turn one budget into an answer. Each is a LangGraph graph over the same
dependencies (LLM, search, ledger, controller), registered here by name; a run spec names one, with
its dials.

Adding a strategy (docs/architecture.md, "How to add a strategy"): write its graph in its own module
(``build_graph(deps, *, checkpointer=None)``, its nodes charging the same ledger and recording anytime
drafts), its dials as a pydantic model (read from ``deps.dials``), its prompts in a TOML file beside
it, then add one entry to ``STRATEGIES``.

On the command line a strategy with dials is written ``name:dial=value:dial=value``
(``tree:width=3:value=agreement``); a sweep takes several, comma-separated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from sounding.agent.graph import build_graph as iterative_graph
from sounding.agent.nodes import AgentDeps
from sounding.agent.strategies.decompose import DecomposeDials
from sounding.agent.strategies.decompose import build_graph as decompose_graph
from sounding.agent.strategies.tree import BestOfNDials, TreeDials, build_best_of_n_graph, build_tree_graph


class NoDials(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Strategy:
    name: str
    #: What the strategy spends compute on, in one line (listed by the CLI's help).
    summary: str
    build_graph: Callable[..., Any]
    #: Its dials (validated from ``deps.dials`` and from ``name:dial=value`` on the command line).
    dials: type[BaseModel] = NoDials
    #: Its own prompt file beside its module (hashed into the run spec), if any.
    prompts: str | None = None
    #: Whether its draft of round r is what a run of depth r would have answered, so a sweep reads
    #: every smaller depth off one run (true of loops that only add rounds; not of decompose, whose
    #: split depends on its depth).
    anytime_depths: bool = True


STRATEGIES: dict[str, Strategy] = {
    "iterative": Strategy(
        "iterative",
        "rounds of query -> search -> read -> reflect (depth, breadth), thinking and voted answers",
        iterative_graph,
    ),
    "decompose": Strategy(
        "decompose",
        "single-fact sub-questions (chained, or in parallel when independent), each searched, read and "
        "answered by a first-to-ahead-by-k vote",
        decompose_graph,
        dials=DecomposeDials,
        prompts="decompose.toml",
        anytime_depths=False,
    ),
    "tree": Strategy(
        "tree",
        "beam search over research trajectories: every round each kept state expands into `width` "
        "queries, each child is searched and answered, a value function keeps the best `beam`",
        build_tree_graph,
        dials=TreeDials,
        prompts="tree.toml",
    ),
    "best_of_n": Strategy(
        "best_of_n",
        "n independent research trajectories (sampled queries), the answer chosen by the same value "
        "functions as tree, at the same compute per round",
        build_best_of_n_graph,
        dials=BestOfNDials,
        prompts="tree.toml",
    ),
}


class UnknownStrategyError(ValueError):
    """A strategy name, or one of its dials, that is not registered or not valid."""


def strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(f"unknown strategy {name!r}: use {', '.join(STRATEGIES)}") from None


def graph_for(name: str, deps: AgentDeps, *, checkpointer: Any = None) -> Any:
    return strategy(name).build_graph(deps, checkpointer=checkpointer)


class StrategyVariant(BaseModel):
    """One strategy with its dials: what a run spec names (``name``, ``dials``)."""

    name: str
    dials: dict[str, Any] = {}

    @property
    def label(self) -> str:
        return ":".join([self.name, *(f"{k}={v}" for k, v in sorted(self.dials.items()))])


def dials_for(name: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """The strategy's full dials (defaults filled in, checked), sorted by name: what a spec stores."""
    model = strategy(name).dials
    try:
        dials = model.model_validate(given or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'dials'}: {e['msg']}" for e in exc.errors()
        )
        known = ", ".join(model.model_fields) or "none"
        raise UnknownStrategyError(f"bad dials for {name}: {problems} (its dials: {known})") from None
    return dict(sorted(dials.model_dump().items()))


def parse_variant(text: str) -> StrategyVariant:
    """``name`` or ``name:dial=value:...`` -> the variant, its dials checked and completed."""
    name, *parts = [p.strip() for p in text.strip().split(":")]
    strategy(name)
    given: dict[str, Any] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise UnknownStrategyError(f"bad dial {part!r} in {text!r}: write name:dial=value")
        given[key.strip()] = value.strip()
    return StrategyVariant(name=name, dials=dials_for(name, given))


def parse_variants(text: str) -> list[StrategyVariant]:
    """A comma-separated list of variants, each once."""
    variants = [parse_variant(t) for t in text.split(",") if t.strip()]
    if not variants:
        raise UnknownStrategyError("no strategy given")
    labels = [v.label for v in variants]
    if len(set(labels)) != len(labels):
        raise UnknownStrategyError(f"a strategy is listed twice in {text!r}")
    return variants


def strategy_prompts_hash(name: str) -> str | None:
    """sha256 of the strategy's own prompt file (None for strategies that use research.toml only)."""
    file = strategy(name).prompts
    if file is None:
        return None
    text = resources.files("sounding.agent.strategies").joinpath(file).read_text(encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()[:16]
