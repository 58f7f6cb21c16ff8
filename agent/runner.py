"""Run one question through the graph: recursion limit from the plan, checkpoints, a typed result."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from langgraph.errors import GraphRecursionError
from pydantic import BaseModel

from sounding.agent.nodes import NO_ANSWER, AgentDeps, spend_snapshot
from sounding.agent.question import MAX_QUESTION_CHARS, QuestionError, check_question
from sounding.agent.state import Note
from sounding.agent.strategies.routing import Route, route, routed_deps, routes
from sounding.budgets.controllers import Plan
from sounding.budgets.ledger import Charge
from sounding.tools.llm.base import LLMError
from sounding.tools.search.base import SearchError

__all__ = [
    "MAX_QUESTION_CHARS",
    "AgentDeps",
    "QuestionError",
    "ResearchResult",
    "check_question",
    "run_research",
]


class Source(BaseModel):
    doc_id: str
    title: str
    url: str | None = None
    passage: str


class ResearchResult(BaseModel):
    question: str
    answer: str
    citations: list[str]
    sources: list[Source]
    drafts: list[dict[str, Any]]
    plan: dict[str, Any] | None
    #: What the controller's probe measured before planning (``budgets/features.py``), if it probed.
    features: dict[str, Any] | None = None
    spend: dict[str, Any]
    ledger: dict[str, Any]
    degraded: bool
    error: str | None
    #: "short" (a few words) or "report" (cited paragraphs: ``answer`` is their Markdown).
    format: str = "short"
    #: A report's sections, sentences, citations and citation check (``agent/report.py``).
    report: dict[str, Any] | None = None
    #: Why the answer is the no-answer text: "budget", "malformed" (output never parsed) or "backend".
    no_answer_reason: str | None = None
    stop_reason: str | None
    citations_removed: int
    queries: list[str]
    read_doc_ids: list[str]
    #: What the run read; citations number these from 1.
    notes: list[Note] = []
    retrieved_titles: list[str]
    events: list[dict[str, Any]]
    #: Every spend of the run, as the ledger charged it.
    charges: list[Charge]
    wall_seconds: float
    thread_id: str


class CheckpointError(ValueError):
    """A checkpoint file that is not an SQLite database (or cannot be created), or a thread in it that
    cannot be resumed."""


def check_resumable(state: dict[str, Any], thread_id: str) -> None:
    """An unfinished thread checkpointed before notes were typed holds them as dicts, which today's
    nodes cannot read: refused with a clear error (its finished threads still read back)."""
    if any(isinstance(note, dict) for note in state.get("notes", [])):
        raise CheckpointError(
            f"thread {thread_id} was checkpointed by an earlier sounding (its notes are untyped) and "
            "cannot be resumed by this one: start it again under a new thread id"
        )


#: The tables LangGraph's SqliteSaver creates: a checkpoint file holding anything else is someone else's.
CHECKPOINT_TABLES = frozenset({"checkpoints", "writes"})
#: The typed values of the graph state a checkpoint holds (by module and name): LangGraph revives only
#: the types a saver allows (others warn today and are blocked under LANGGRAPH_STRICT_MSGPACK).
CHECKPOINT_TYPES: tuple[type, ...] = (Plan, Note)


def sqlite_checkpointer(path: Path) -> Any:
    """LangGraph's SQLite checkpointer on a file, so a run can be resumed by its thread id. Checked
    before the run spends anything: a file that is not SQLite, not a regular file (``/dev/null``), or an
    SQLite database of something else (its tables would be added to) is refused, never written."""
    import sqlite3

    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite import SqliteSaver

    if path.exists() and not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(str(path), check_same_thread=False)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except (OSError, sqlite3.Error) as exc:
        raise CheckpointError(f"checkpoint file {path} is not a usable SQLite database: {exc}") from exc
    foreign = tables - CHECKPOINT_TABLES
    if foreign:
        connection.close()
        raise CheckpointError(
            f"checkpoint file {path} is an SQLite database of something else (tables: "
            f"{', '.join(sorted(foreign)[:5])}); give a new file or one written by sounding ask --checkpoint"
        )
    return SqliteSaver(connection, serde=JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES))


class InterruptedRun(KeyboardInterrupt):
    """Ctrl-C during a run, carrying what the run had made by then (its best draft is the answer)."""

    def __init__(self, result: ResearchResult) -> None:
        super().__init__("interrupted")
        self.result = result


def run_research(
    question: str,
    deps: AgentDeps,
    *,
    thread_id: str | None = None,
    checkpointer: Any = None,
    strategy: str = "iterative",
) -> ResearchResult:
    """Answer one question under the ledger's budget with the named strategy's graph. Never raises for
    backend failures: the result is marked degraded instead. With a checkpointer and the ``thread_id``
    of an interrupted run, resumes it."""
    from sounding.agent.strategies import graph_for

    question = check_question(question)
    thread_id = thread_id or uuid.uuid4().hex
    begin: dict[str, Any] = {"question": question}
    if routes(deps, question):  # a policy across strategies: probe, choose, then that strategy's graph
        try:
            deps, strategy, begin = _routed(question, deps, thread_id, checkpointer)
        except (LLMError, SearchError) as exc:
            failed = {"errors": [{"node": "route", "kind": "backend", "message": str(exc)}]}
            return result_from_state(question, failed, deps, thread_id, 0.0)
    graph = graph_for(strategy, deps, checkpointer=checkpointer)
    # the plan is made inside the graph; the limit covers the deepest plan this controller can make
    deepest = Plan(controller=deps.controller.name, depth=deps.controller.max_depth, breadth=1)
    config: dict[str, Any] = {
        "configurable": {"thread_id": thread_id},
        "recursion_limit": deepest.recursion_limit,
    }
    start = time.perf_counter()
    state: dict[str, Any] | None = None
    resume = False
    if checkpointer is not None:
        snapshot = graph.get_state(config)
        if snapshot.values:
            resume = bool(snapshot.next)
            state = dict(snapshot.values)
            if resume:
                check_resumable(state, thread_id)
            deps.ledger.restore([Charge.model_validate(c) for c in state.get("charges", [])])
    finished = state is not None and not resume  # a finished thread is returned without spending anything
    latest: dict[str, Any] = {}
    try:
        if not finished:
            for values in graph.stream(None if resume else begin, config, stream_mode="values"):
                latest = values  # the state after every step, so a cut-off run keeps its best draft
            state = latest
    except KeyboardInterrupt as exc:  # the caller decides; it gets the best draft made so far with it
        state = {**(state or {}), **latest}
        result = result_from_state(question, state, deps, thread_id, time.perf_counter() - start)
        raise InterruptedRun(result.model_copy(update={"stop_reason": "interrupted"})) from exc
    except GraphRecursionError as exc:  # a safety net: budgets and controllers end runs long before this
        state = {**(state or {}), **latest}
        state["errors"] = [*state.get("errors", []), {"node": "graph", "kind": "graph", "message": str(exc)}]
    assert state is not None
    return result_from_state(question, state, deps, thread_id, time.perf_counter() - start)


def _routed(
    question: str, deps: AgentDeps, thread_id: str, checkpointer: Any
) -> tuple[AgentDeps, str, dict[str, Any]]:
    """The chosen strategy, its dependencies and the state its graph starts from; a resumed thread
    keeps the route stored in its state (no second probe)."""
    from sounding.agent.strategies import graph_for

    begin: dict[str, Any] = {"question": question}
    chosen = None
    if checkpointer is not None:  # every strategy's graph shares the state's channels: any can read it
        stored = graph_for("iterative", deps, checkpointer=checkpointer).get_state(
            {"configurable": {"thread_id": thread_id}}
        )
        if stored.values.get("route"):
            chosen = Route.model_validate(stored.values["route"])
    if chosen is None:
        chosen, start = route(deps, question)
        begin |= start
    return routed_deps(deps, chosen), chosen.strategy, begin


def result_from_state(
    question: str, state: dict[str, Any], deps: AgentDeps, thread_id: str, seconds: float
) -> ResearchResult:
    final = state.get("final") or {}
    drafts = state.get("drafts", [])
    errors = state.get("errors", [])
    answer = final.get("answer") or (drafts[-1]["answer"] if drafts else NO_ANSWER)
    plan: Plan | None = state.get("plan")
    return ResearchResult(
        question=question,
        answer=answer,
        citations=final.get("citations", []),
        sources=[Source(**s) for s in final.get("sources", [])],
        drafts=drafts,
        plan=plan.model_dump() if plan else None,
        features=state.get("features"),
        format=plan.format if plan else "short",
        report=final.get("report"),
        spend=spend_snapshot(deps.ledger),
        ledger=deps.ledger.summary(),
        degraded=bool(errors),
        no_answer_reason=final.get("no_answer_reason"),
        error=final.get("error") or ("; ".join(e["message"] for e in errors) or None),
        stop_reason=final.get("stop_reason") or state.get("stop_reason"),
        citations_removed=final.get("citations_removed", 0)
        + sum(d.get("citations_removed", 0) for d in drafts),
        queries=state.get("issued", []),
        read_doc_ids=state.get("read_ids", []),
        notes=state.get("notes", []),
        retrieved_titles=sorted({h["title"] for h in state.get("hits", [])}),
        events=state.get("events", []),
        charges=list(deps.ledger.charges),
        wall_seconds=seconds,
        thread_id=thread_id,
    )
