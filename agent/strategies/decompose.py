"""The `decompose` strategy: MAKER-style extreme decomposition for research, read top to bottom.

    plan ──▶ split ──▶ step ──┬─▶ step (the next sub-question)  ... one per sub-question
                              └─▶ compose ──▶ END

* plan: the controller's plan (its depth is the most sub-questions; k and read as for every search);
  in harness mode a closed-book draft first (round 0 of the anytime curve).
* split: the question becomes a chain of single-fact sub-questions; a later one names an earlier
  answer as #1, #2, ... ("Who directed Inception?" -> "Where was #1 born?").
* step: the earlier answers substituted in, one charged search for the sub-question, its top passages
  quoted, and a first-to-ahead-by-k vote over sampled short answers (agent/voting.py): red-flagged
  samples (malformed, empty, over-long) are discarded and counted, never repaired.
* compose: one sub-question's winner is the answer; several are composed by one more voted step.

Every call is charged to the same ledger; a step the budget cannot pay ends the run with the best
answer so far (the closed-book draft, or no answer). The trace holds each step, its votes, its red
flags and its evidence. Dials: ``deps.vote_k`` (the lead that decides a vote) and
``deps.vote_max_samples`` (the most ballots per vote).
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from typing import Any

from langgraph.graph import END, START, StateGraph

from sounding.agent.llm_step import budgeted_json, charged_completion, parse_json_object
from sounding.agent.nodes import (
    NO_ANSWER,
    SHORT_ANSWER_SCHEMA,
    AgentDeps,
    emit_event,
    messages,
    quote,
    spend_snapshot,
)
from sounding.agent.probe import charged_search
from sounding.agent.question import check_question
from sounding.agent.state import ResearchState
from sounding.agent.voting import Ballot, VoteResult, first_to_ahead_by_k, red_flag
from sounding.budgets.controllers import Plan
from sounding.budgets.features import Features
from sounding.budgets.ledger import BudgetExceeded
from sounding.tools.llm.base import LLMError, Message, derive_seed
from sounding.tools.search.base import SearchError
from sounding.tools.text import normalize_answer

DECOMPOSE_PROMPTS: dict[str, dict[str, str]] = tomllib.loads(
    resources.files("sounding.agent.strategies").joinpath("decompose.toml").read_text(encoding="utf-8")
)
#: A short answer is a few words; a longer ballot has lost the format (a red flag).
MAX_ANSWER_WORDS = 12
SPLIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "subquestions": {"type": "array", "items": {"type": "string", "maxLength": 160}, "minItems": 1}
    },
    "required": ["subquestions"],
}
PLACEHOLDER = re.compile(r"#(\d+)")


def prompt(step: str, **fields: Any) -> list[Message]:
    template = DECOMPOSE_PROMPTS[step]
    return [
        {"role": "system", "content": template["system"]},
        {"role": "user", "content": template["user"].format(**fields)},
    ]


def substitute(question: str, answers: list[str]) -> str:
    """``#n`` replaced by the answer of sub-question n (left as it is when there is no such answer)."""

    def one(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return answers[n - 1] if 1 <= n <= len(answers) else match.group(0)

    return PLACEHOLDER.sub(one, question)


def depends_on(question: str) -> list[int]:
    """The earlier sub-questions a sub-question names (its #n): none means it could run in parallel."""
    return sorted({int(n) for n in PLACEHOLDER.findall(question)})


class DecomposeNodes:
    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        return emit_event(self.deps, kind, **data)

    def _draft(self, round_: int, answer: str, citations: list[str]) -> dict[str, Any]:
        return {
            "round": round_,
            "answer": answer,
            "citations": citations,
            "supported": bool(citations),
            "spend": spend_snapshot(self.deps.ledger),
        }

    # plan ------------------------------------------------------------------------------------------

    def plan(self, state: ResearchState) -> dict[str, Any]:
        question = check_question(state["question"])
        plan = self.deps.controller.plan(
            Features(question=question), self.deps.ledger.budget, self.deps.ledger.cost_model
        )
        update: dict[str, Any] = {
            "round": 0, "hits": [], "issued": [], "charges": [], "drafts": [], "notes": [],
            "plan": plan.model_dump(), "steps": [],
        }  # fmt: skip
        events = [self._event("plan", plan=plan.model_dump(), strategy="decompose")]
        if self.deps.closed_book_draft:
            msgs = messages("closed_book", question=question)
            try:
                result = budgeted_json(
                    self.deps.llm, self.deps.ledger, msgs, SHORT_ANSWER_SCHEMA, cap=plan.caps.answer,
                    node="closed_book", round=0, seed=derive_seed(self.deps.seed, question, "closed_book", 0),
                )  # fmt: skip
            except LLMError as exc:
                return {
                    **update,
                    "errors": [{"node": "plan", "kind": "llm", "message": str(exc)}],
                    "events": events,
                }
            answer = str((result.value or {}).get("answer", "")).strip() or NO_ANSWER
            update["charges"] = [c.model_dump() for c in result.charges]
            update["drafts"] = [self._draft(0, answer, [])]
            events.append(
                self._event(
                    "draft", round=0, answer=answer, supported=False, citations=[], decision="continue"
                )
            )
        return {**update, "events": events}

    # split -----------------------------------------------------------------------------------------

    def split(self, state: ResearchState) -> dict[str, Any]:
        plan = Plan.model_validate(state["plan"])
        question = state["question"]
        if state.get("errors") or plan.depth == 0:
            return {"subquestions": []}
        n = max(1, plan.depth)
        try:
            result = budgeted_json(
                self.deps.llm, self.deps.ledger, prompt("split", question=question, n=n), SPLIT_SCHEMA,
                cap=48 * n, node="split", round=0, seed=derive_seed(self.deps.seed, question, "split", 0),
            )  # fmt: skip
        except LLMError as exc:
            return {"errors": [{"node": "split", "kind": "llm", "message": str(exc)}]}
        raw = (result.value or {}).get("subquestions") or []
        subquestions = [str(q).strip() for q in raw if str(q).strip()][:n] or [question]
        # a malformed split, or one the budget could not pay, still researches the question itself
        event = self._event("split", subquestions=subquestions, failure=result.failure)
        return {
            "subquestions": subquestions,
            "charges": [c.model_dump() for c in result.charges],
            "events": [event],
        }

    def route_after_split(self, state: ResearchState) -> str:
        return "step" if state.get("subquestions") and not state.get("errors") else "compose"

    # step: substitute, search, read, vote -----------------------------------------------------------

    def step(self, state: ResearchState) -> dict[str, Any]:
        plan = Plan.model_validate(state["plan"])
        steps = list(state.get("steps", []))
        index = len(steps) + 1
        asked = substitute(state["subquestions"][index - 1], [s["answer"] for s in steps])
        try:
            records, charge = charged_search(
                self.deps.search, self.deps.ledger, asked, plan.k, node="search", round=index
            )
        except BudgetExceeded:
            return {
                "stop_reason": "budget",
                "events": [self._event("step_skipped", step=index, reason="budget")],
            }
        except SearchError as exc:
            return {"errors": [{"node": "step", "kind": "search", "message": str(exc)}]}
        chosen = records[: plan.read]
        passages = "\n\n".join(
            f"Passage {i} ({h['title']}):\n{quote(h['text'])}" for i, h in enumerate(chosen, 1)
        )
        try:
            vote, charges = self._vote(prompt("step", question=asked, passages=passages), plan, index, asked)
        except LLMError as exc:
            return {
                "errors": [{"node": "step", "kind": "llm", "message": str(exc)}],
                "charges": [charge.model_dump()],
            }
        evidence = supporting(chosen, vote.winner)
        record = {
            "index": index,
            "question": asked,
            "depends_on": depends_on(state["subquestions"][index - 1]),
            "answer": vote.winner or "",
            "votes": vote.votes,
            "red_flags": vote.red_flags,
            "ballots": vote.drawn,
            "ended": vote.ended,
            "evidence": [h["doc_id"] for h in evidence],
        }
        notes = [
            {"doc_id": h["doc_id"], "title": h["title"], "fact": quote(h["text"], 40), "round": index}
            for h in evidence
        ]
        event = self._event(
            "step", step=index, question=asked, answer=vote.winner, votes=vote.votes,
            red_flags=vote.red_flags, ended=vote.ended, hits=[h["title"] for h in chosen],
        )  # fmt: skip
        update: dict[str, Any] = {
            "steps": [*steps, record],
            "hits": records,
            "issued": [asked],
            "read_ids": [h["doc_id"] for h in chosen],
            "notes": notes,
            "round": index,
            "charges": [charge.model_dump(), *charges],
            "events": [event],
        }
        if vote.winner is None:
            update["stop_reason"] = "budget" if vote.ended == "budget" else "malformed output"
        return update

    def _vote(
        self, msgs: list[Message], plan: Plan, index: int, asked: str
    ) -> tuple[VoteResult, list[dict[str, Any]]]:
        """First-to-ahead-by-k over sampled short answers; the first ballot greedy, the rest sampled."""
        charges: list[dict[str, Any]] = []

        def draw(i: int) -> Ballot | None:
            completion, charge = charged_completion(
                self.deps.llm, self.deps.ledger, msgs, cap=plan.caps.answer, node="step_vote", round=index,
                min_tokens=8, schema=SHORT_ANSWER_SCHEMA,
                temperature=0.0 if i == 0 else self.deps.reasoning_temperature,
                seed=derive_seed(self.deps.seed, asked, "step_vote", index) + i,
            )  # fmt: skip
            if completion is None or charge is None:
                return None
            charges.append(charge.model_dump())
            value, _ = parse_json_object(completion.text, ["answer"])
            answer = None if value is None else str(value.get("answer", ""))
            flag = red_flag(answer, max_words=MAX_ANSWER_WORDS)
            return Ballot(answer=answer or "", flag=flag)

        vote = first_to_ahead_by_k(draw, k=self.deps.vote_k, max_samples=self.deps.vote_max_samples)
        return vote, charges

    def route_after_step(self, state: ResearchState) -> str:
        if state.get("errors") or state.get("stop_reason"):
            return "compose"
        return "step" if len(state.get("steps", [])) < len(state.get("subquestions", [])) else "compose"

    # compose: the final answer from the steps ----------------------------------------------------------

    def compose(self, state: ResearchState) -> dict[str, Any]:
        steps = state.get("steps", [])
        errors = list(state.get("errors", []))
        answer, charges, events = self._composed(state, steps, errors)
        drafts = list(state.get("drafts", []))
        citations = list(dict.fromkeys(d for s in steps for d in s["evidence"])) if answer else []
        new_drafts = []
        if answer:
            new_drafts = [self._draft(len(steps), answer, citations)]
            events.append(
                self._event(
                    "draft",
                    round=len(steps),
                    answer=answer,
                    supported=bool(citations),
                    citations=citations,
                    decision="stop",
                )
            )
        best = answer or (drafts[-1]["answer"] if drafts else NO_ANSWER)
        hits = {h["doc_id"]: h for h in state.get("hits", [])}
        final = {
            "answer": best,
            "no_answer_reason": None if best != NO_ANSWER else ("backend" if errors else "budget"),
            "citations": citations,
            "sources": [
                {
                    "doc_id": d,
                    "title": hits[d]["title"],
                    "url": hits[d].get("url"),
                    "passage": hits[d]["text"],
                }
                for d in citations
            ],
            "citations_removed": 0,
            "improved": False,
            "degraded": bool(errors),
            "error": "; ".join(f"{e['node']}: {e['message']}" for e in errors) or None,
            "stop_reason": "error" if errors else state.get("stop_reason") or "done",
        }
        events.append(self._event("answer", answer=best, citations=citations, degraded=bool(errors)))
        return {
            "final": final,
            "drafts": new_drafts,
            "charges": charges,
            "events": events,
            "errors": errors[len(state.get("errors", [])) :],
        }

    def _composed(
        self, state: ResearchState, steps: list[dict[str, Any]], errors: list[dict[str, str]]
    ) -> tuple[str | None, list[dict[str, Any]], list[dict[str, Any]]]:
        """The answer the finished chain gives (None when it did not finish): one sub-question's winner,
        or a voted composition of several. A failed composition is added to ``errors``."""
        done = len(steps) == len(state.get("subquestions", [])) and all(s["answer"] for s in steps)
        if not done or not steps:
            return None, [], []
        if len(steps) == 1:
            return steps[0]["answer"], [], []
        if errors:
            return None, [], []
        plan = Plan.model_validate(state["plan"])
        facts = "\n".join(f"{s['index']}. {s['question']} -> {s['answer']}" for s in steps)
        try:
            msgs = prompt("compose", question=state["question"], facts=facts)
            vote, charges = self._vote(msgs, plan, len(steps) + 1, state["question"])
        except LLMError as exc:
            errors.append({"node": "compose", "kind": "llm", "message": str(exc)})
            return None, [], []
        event = self._event(
            "compose", answer=vote.winner, votes=vote.votes, red_flags=vote.red_flags, ended=vote.ended
        )
        return vote.winner, charges, [event]


def supporting(passages: list[dict[str, Any]], answer: str | None) -> list[dict[str, Any]]:
    """The passages that contain the step's answer (its evidence); the top passage when none does."""
    if not passages or not answer:
        return []
    key = normalize_answer(answer)
    found = [h for h in passages if key and key in normalize_answer(h["text"])]
    return found or passages[:1]


def build_graph(deps: AgentDeps, *, checkpointer: Any = None) -> Any:
    nodes = DecomposeNodes(deps)
    graph = StateGraph(ResearchState)
    graph.add_node("plan", nodes.plan)
    graph.add_node("split", nodes.split)
    graph.add_node("step", nodes.step)
    graph.add_node("compose", nodes.compose)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "split")
    graph.add_conditional_edges("split", nodes.route_after_split, ["step", "compose"])
    graph.add_conditional_edges("step", nodes.route_after_step, ["step", "compose"])
    graph.add_edge("compose", END)
    return graph.compile(checkpointer=checkpointer)
