"""The graph's state: plain dicts and lists, and the plan as its typed model. A checkpointer stores the
plan by name, so a saver must allow it (``agent/runner.py: CHECKPOINT_TYPES``).

Channels written by parallel branches (search fan-out) carry an ``operator.add`` reducer.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from sounding.budgets.controllers import Plan


class ResearchState(TypedDict, total=False):
    question: str
    plan: Plan  # the controller's plan (a report's: widened to its outline; reflect may revise it)
    features: dict[str, Any]
    subquestions: list[str]  # from the optional decomposition in `plan` (a report: its outline)
    route: dict[str, Any]  # a policy across strategies: the strategy, dials and plan it chose
    branches: list[dict[str, Any]]  # the tree and best_of_n strategies' kept branches (tree.Branch)
    steps: list[dict[str, Any]]  # the decompose strategy's solved sub-questions, with votes and evidence
    title: str  # a report's title, from its outline
    thin: list[str]  # a report's sub-questions searched again for want of a relevant note (set once)
    report: dict[str, Any]  # agent.report.Report, dumped: written, then checked
    round: int
    queries: list[str]  # this round's new queries
    next_query: str | None  # suggested by reflect for the next round
    issued: Annotated[list[str], operator.add]
    hits: Annotated[
        list[dict[str, Any]], operator.add
    ]  # {round, query, rank, doc_id, title, text, url, score}
    read_ids: Annotated[list[str], operator.add]
    notes: Annotated[list[dict[str, Any]], operator.add]  # {doc_id, title, fact, round}
    drafts: Annotated[list[dict[str, Any]], operator.add]  # anytime answers, one per round
    charges: Annotated[list[dict[str, Any]], operator.add]  # budgets.ledger.Charge, dumped
    errors: Annotated[list[dict[str, str]], operator.add]  # {node, kind, message}
    events: Annotated[list[dict[str, Any]], operator.add]  # the trace
    decision: str
    stop_reason: str | None
    final: dict[str, Any] | None
