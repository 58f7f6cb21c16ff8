"""The graph's state: the plan and the notes as typed models, the rest plain dicts and lists. A
checkpointer stores typed values by name, so a saver must allow them (``agent/runner.py:
CHECKPOINT_TYPES``).

Channels written by parallel branches (search fan-out) carry an ``operator.add`` reducer.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, ConfigDict

from sounding.budgets.controllers import Plan


class Note(BaseModel):
    """What a run read: a fact extracted from one passage (a report's: whole sentences quoted from
    it). Citations number a run's notes from 1, in the order they were read."""

    model_config = ConfigDict(frozen=True)

    doc_id: str
    title: str
    fact: str
    #: The round that read it (decompose: the step).
    round: int = 0


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
    notes: Annotated[list[Note], operator.add]
    drafts: Annotated[list[dict[str, Any]], operator.add]  # anytime answers, one per round
    charges: Annotated[list[dict[str, Any]], operator.add]  # budgets.ledger.Charge, dumped
    errors: Annotated[list[dict[str, str]], operator.add]  # {node, kind, message}
    events: Annotated[list[dict[str, Any]], operator.add]  # the trace
    decision: str
    stop_reason: str | None
    final: dict[str, Any] | None
