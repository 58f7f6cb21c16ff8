"""Strategies: ways to turn one budget into an answer. Each is a LangGraph graph over the same
dependencies (LLM, search, ledger, controller), registered here by name; a run spec names one.

Adding a strategy: write its graph in its own module (``build_graph(deps, *, checkpointer=None)``, its
nodes charging the same ledger and recording anytime drafts), then add one line to ``STRATEGIES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sounding.agent.graph import build_graph as iterative_graph
from sounding.agent.nodes import AgentDeps
from sounding.agent.strategies.decompose import build_graph as decompose_graph


@dataclass(frozen=True)
class Strategy:
    name: str
    #: What the strategy spends compute on, in one line (listed by the CLI's help).
    summary: str
    build_graph: Callable[..., Any]


STRATEGIES: dict[str, Strategy] = {
    "iterative": Strategy(
        "iterative",
        "rounds of query -> search -> read -> reflect (depth, breadth), thinking and voted answers",
        iterative_graph,
    ),
    "decompose": Strategy(
        "decompose",
        "a chain of single-fact sub-questions, each searched, read and answered by a first-to-ahead-by-k vote",
        decompose_graph,
    ),
}


class UnknownStrategyError(ValueError):
    """A strategy name that is not registered."""


def strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(f"unknown strategy {name!r}: use {', '.join(STRATEGIES)}") from None


def graph_for(name: str, deps: AgentDeps, *, checkpointer: Any = None) -> Any:
    return strategy(name).build_graph(deps, checkpointer=checkpointer)
