"""What every non-iterative strategy's graph shares: the plan node (the controller's plan, and in
harness mode the closed-book draft that is round 0 of the anytime curve), anytime drafts, the final
answer, and running independent branches side by side."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sounding.agent.llm_step import budgeted_json
from sounding.agent.nodes import (
    NO_ANSWER,
    SHORT_ANSWER_SCHEMA,
    AgentDeps,
    emit_event,
    messages,
    spend_snapshot,
)
from sounding.agent.question import check_question
from sounding.budgets.features import Features
from sounding.tools.llm.base import LLMError, derive_seed

T = TypeVar("T")
R = TypeVar("R")


def run_side_by_side(fn: Callable[[T], R], items: list[T], workers: int) -> list[R]:
    """``fn`` over ``items`` in order, on up to ``workers`` threads (a batching server answers them
    together; an in-process model takes them one at a time). Results keep the items' order; every
    branch charges the same ledger, whose reservations are atomic, so spend never passes the budget."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def draft(deps: AgentDeps, round_: int, answer: str, citations: list[str], **extra: Any) -> dict[str, Any]:
    """One anytime draft: the answer a run stopped after ``round_`` would give, and its spend then."""
    return {
        "round": round_,
        "answer": answer,
        "citations": citations,
        "supported": bool(citations),
        "spend": spend_snapshot(deps.ledger),
        **extra,
    }


def plan_node(deps: AgentDeps, question: str, strategy: str, **state: Any) -> dict[str, Any]:
    """The controller's plan for the question and, in harness mode, the closed-book draft (round 0)."""
    question = check_question(question)
    plan = deps.controller.plan(Features(question=question), deps.ledger.budget, deps.ledger.cost_model)
    update: dict[str, Any] = {
        "round": 0, "hits": [], "issued": [], "charges": [], "drafts": [], "notes": [],
        "plan": plan, **state,
    }  # fmt: skip
    events = [emit_event(deps, "plan", plan=plan.model_dump(), strategy=strategy)]
    if not deps.closed_book_draft:
        return {**update, "events": events}
    try:
        result = budgeted_json(
            deps.llm, deps.ledger, messages("closed_book", question=question), SHORT_ANSWER_SCHEMA,
            cap=plan.caps.answer, node="closed_book", round=0,
            seed=derive_seed(deps.seed, question, "closed_book", 0),
        )  # fmt: skip
    except LLMError as exc:
        return {**update, "errors": [{"node": "plan", "kind": "llm", "message": str(exc)}], "events": events}
    answer = str((result.value or {}).get("answer", "")).strip() or NO_ANSWER
    update["charges"] = [c.model_dump() for c in result.charges]
    update["drafts"] = [draft(deps, 0, answer, [])]
    events.append(
        emit_event(deps, "draft", round=0, answer=answer, supported=False, citations=[], decision="continue")
    )
    return {**update, "events": events}


def final_answer(
    deps: AgentDeps,
    state: Mapping[str, Any],
    answer: str | None,
    citations: list[str],
    errors: list[dict[str, str]],
) -> dict[str, Any]:
    """The run's ``final`` record: ``answer`` (else the last draft, else no answer) and its sources."""
    drafts = [d for d in state.get("drafts", []) if str(d["answer"]).strip()]
    best = answer or (drafts[-1]["answer"] if drafts else NO_ANSWER)
    citations = citations if answer else (drafts[-1]["citations"] if drafts else [])
    hits = {h["doc_id"]: h for h in state.get("hits", [])}
    return {
        "answer": best,
        "no_answer_reason": None if best != NO_ANSWER else ("backend" if errors else "budget"),
        "citations": citations,
        "sources": [
            {"doc_id": d, "title": hits[d]["title"], "url": hits[d].get("url"), "passage": hits[d]["text"]}
            for d in citations
            if d in hits
        ],
        "citations_removed": 0,
        "improved": False,
        "degraded": bool(errors),
        "error": "; ".join(f"{e['node']}: {e['message']}" for e in errors) or None,
        "stop_reason": "error" if errors else state.get("stop_reason") or "done",
    }
