"""The `decompose` strategy: MAKER-style extreme decomposition for research, read top to bottom.

    plan ──▶ split ──▶ step ──┬─▶ step (the next sub-question)  ... one per sub-question
                              └─▶ compose ──▶ END

* plan: the controller's plan (its depth is the most sub-questions; k and read as for every search);
  in harness mode a closed-book draft first (round 0 of the anytime curve).
* split: the question becomes a chain of single-fact sub-questions; a later one names an earlier
  answer as #1, #2, ... ("Who directed Inception?" -> "Where was #1 born?").
* step: one wave of sub-questions whose earlier answers are known, run side by side (``deps.workers``
  threads; each charges the same ledger): the earlier answers substituted in, one charged search for
  the sub-question, its top passages quoted, and a first-to-ahead-by-k vote over sampled short
  answers (agent/voting.py): red-flagged samples (malformed, empty, over-long, or with the ``anchor``
  dial an echo of the sub-question) are discarded and counted, never repaired.
* compose: one sub-question's winner is the answer; several are composed by one more voted step.

Every call is charged to the same ledger; a step the budget cannot pay ends the run with the best
answer so far (the closed-book draft, or no answer). The trace holds each step, its votes, its red
flags and its evidence. Dials: ``deps.vote_k`` (the lead that decides a vote),
``deps.vote_max_samples`` (the most ballots per vote) and ``mode`` (`DecomposeDials`): how the
sub-questions are scheduled, and ``anchor``: whether a split that loses the question's names, and a
ballot that only repeats its question, are red flags too.

* ``auto``: by the split's own structure: a sub-question naming no unanswered #n runs in the current
  wave (a comparison's two entities side by side), one naming #n waits for it (a chain step by step);
* ``sequential``: forced chain: one sub-question per wave, each seeing every earlier answer;
* ``parallel``: forced fan-out: the question is split into independent sub-questions (no #n), all
  answered in one wave, then composed.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict

from sounding.agent.llm_step import budgeted_json, charged_completion, parse_json_object
from sounding.agent.nodes import (
    SHORT_ANSWER_SCHEMA,
    AgentDeps,
    emit_event,
    quote,
)
from sounding.agent.probe import charged_search
from sounding.agent.state import Note, ResearchState
from sounding.agent.strategies.common import draft, final_answer, plan_node, run_side_by_side
from sounding.agent.voting import Ballot, VoteResult, first_to_ahead_by_k, red_flag
from sounding.budgets.controllers import Plan
from sounding.budgets.ledger import BudgetExceeded
from sounding.tools.llm.base import LLMError, Message, derive_seed
from sounding.tools.search.base import SearchError
from sounding.tools.text import content_words as option_words
from sounding.tools.text import name_words, normalize_answer, question_options

DECOMPOSE_PROMPTS: dict[str, dict[str, Any]] = tomllib.loads(
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


class DecomposeDials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: How sub-questions are scheduled: by their dependencies, forced one by one, or forced side by side.
    mode: Literal["auto", "sequential", "parallel"] = "auto"
    #: The red flags that hold a split and its votes to the question's names: a sub-question naming
    #: none of them, a split dropping an option the question offers, a ballot that only repeats its
    #: question. Off: only the format flags (a first measurement's splits were well-formed and lost the
    #: question's entities in 26% of their sub-questions; docs/results/strategies).
    anchor: bool = True


def prompt(step: str, **fields: Any) -> list[Message]:
    """The step's system text, its worked examples as earlier turns (the user's question with the
    step's other fields, then the assistant's answer), then the real question."""
    template = DECOMPOSE_PROMPTS[step]
    msgs: list[Message] = [{"role": "system", "content": template["system"]}]
    for example, answer in template.get("examples", []):
        msgs.append({"role": "user", "content": template["user"].format(**{**fields, "question": example})})
        msgs.append({"role": "assistant", "content": answer})
    msgs.append({"role": "user", "content": template["user"].format(**fields)})
    return msgs


#: Words too common to tie a sub-question to its question.
COMMON_WORDS = frozenset(
    "what which where when who whom whose why how does did the that this with from into than then "
    "there their they them have has had were was are is and for its also about after before".split()
)


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", normalize_answer(text)) if len(w) > 2 and w not in COMMON_WORDS}


def split_flag(
    subquestions: list[str], question: str, *, independent: bool = False, anchor: bool = False
) -> str | None:
    """Why a split must be discarded (a red flag), or None: a sub-question that names no earlier
    answer must share a content word with the question (else it is about something else: a copied
    example, an invented subject); an ``independent`` split (parallel mode) may name none.

    With ``anchor``, two more: a sub-question naming no earlier answer must name one of the question's
    names when it has any ("Who died in 2007?" for "Who wrote These Boots Are Made for Walkin' and died
    in 2007?" is a new question, not a step: ``unanchored``), and every option the question offers must
    be asked about ("Which band had more members?" drops "Letters to Cleo or Screaming Trees":
    ``dropped_option``)."""
    words = content_words(question)
    if independent and any(depends_on(sub) for sub in subquestions):
        return "dependent"
    for sub in subquestions:
        if not depends_on(sub) and not (content_words(sub) & words):
            return "off_topic"
    if not anchor:
        return None
    names = name_words(question)
    for sub in subquestions:
        if names and not depends_on(sub) and not (names & set(re.findall(r"[\w'-]+", sub.lower()))):
            return "unanchored"
    asked = set().union(*(option_words(sub) for sub in subquestions))
    if any(not (option_words(option) & asked) for option in question_options(question)):
        return "dropped_option"
    return None


def substitute(question: str, answers: list[str] | dict[int, str]) -> str:
    """``#n`` replaced by the answer of sub-question n (left as it is when there is no such answer)."""
    known = dict(enumerate(answers, 1)) if isinstance(answers, list) else answers

    def one(match: re.Match[str]) -> str:
        return known.get(int(match.group(1))) or match.group(0)

    return PLACEHOLDER.sub(one, question)


def depends_on(question: str) -> list[int]:
    """The earlier sub-questions a sub-question names (its #n): none means it could run in parallel."""
    return sorted({int(n) for n in PLACEHOLDER.findall(question)})


class DecomposeNodes:
    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self.dials = DecomposeDials.model_validate(deps.dials)

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        return emit_event(self.deps, kind, **data)

    # plan ------------------------------------------------------------------------------------------

    def plan(self, state: ResearchState) -> dict[str, Any]:
        return plan_node(self.deps, state["question"], "decompose", steps=[])

    # split -----------------------------------------------------------------------------------------

    def split(self, state: ResearchState) -> dict[str, Any]:
        plan = state["plan"]
        question = state["question"]
        if state.get("errors") or plan.depth == 0:
            return {"subquestions": []}
        n = max(1, plan.depth)
        step = "split_parallel" if self.dials.mode == "parallel" else "split"
        charges: list[dict[str, Any]] = []
        flags: list[str] = []
        subquestions: list[str] = []
        failure = None
        for attempt in range(2):  # a red-flagged split is discarded and drawn again once (sampled)
            try:
                result = budgeted_json(
                    self.deps.llm, self.deps.ledger, prompt(step, question=question, n=n), SPLIT_SCHEMA,
                    cap=48 * n, node="split", round=0,
                    seed=derive_seed(self.deps.seed, question, "split", 0) + 101 * attempt,
                    temperature=None if attempt == 0 else self.deps.reasoning_temperature,
                )  # fmt: skip
            except LLMError as exc:
                return {"errors": [{"node": "split", "kind": "llm", "message": str(exc)}], "charges": charges}
            charges += [c.model_dump() for c in result.charges]
            failure = result.failure
            raw = (result.value or {}).get("subquestions") or []
            subquestions = [str(q).strip() for q in raw if str(q).strip()][:n]
            flag = (
                split_flag(
                    subquestions, question, independent=step == "split_parallel", anchor=self.dials.anchor
                )
                if subquestions
                else None
            )
            if flag is None:
                break
            flags.append(flag)
            subquestions = []
        # a malformed or red-flagged split, or one the budget could not pay, researches the question itself
        subquestions = subquestions or [question]
        event = self._event("split", subquestions=subquestions, failure=failure, red_flags=flags)
        return {"subquestions": subquestions, "charges": charges, "events": [event]}

    def route_after_split(self, state: ResearchState) -> str:
        return "step" if state.get("subquestions") and not state.get("errors") else "compose"

    # step: one wave of sub-questions: substitute, search, read, vote --------------------------------

    def wave(self, state: ResearchState) -> list[int]:
        """The sub-questions (1-based) this step runs: every unanswered one whose #n are answered
        (auto), all of them (parallel), or the next one (sequential)."""
        subquestions = state.get("subquestions", [])
        done = {s["index"] for s in state.get("steps", [])}
        todo = [i for i in range(1, len(subquestions) + 1) if i not in done]
        if self.dials.mode == "sequential":
            return todo[:1]
        if self.dials.mode == "parallel":
            return todo
        ready = [i for i in todo if set(depends_on(subquestions[i - 1])) <= done]
        # a #n naming no earlier sub-question (or itself) can never be answered: run it as written
        return ready or todo[:1]

    def step(self, state: ResearchState) -> dict[str, Any]:
        plan = state["plan"]
        steps = list(state.get("steps", []))
        answers = {s["index"]: s["answer"] for s in steps}
        wave = self.wave(state)
        number = max((s.get("wave", 0) for s in steps), default=0) + 1
        known = ""
        if self.dials.mode == "sequential" and steps:
            known = (
                "Known so far:\n"
                + "\n".join(
                    f"- {s['question']} {s['answer']}" for s in sorted(steps, key=lambda s: s["index"])
                )
                + "\n\n"
            )

        def one(index: int) -> dict[str, Any]:
            written = state["subquestions"][index - 1]
            return self._step(plan, index, number, substitute(written, answers), written, known)

        outcomes = run_side_by_side(one, wave, self.deps.workers)
        update: dict[str, Any] = {
            "steps": sorted([*steps, *(o["record"] for o in outcomes if "record" in o)],
                            key=lambda s: s["index"]),
            "round": max([state.get("round", 0), *wave]),
        }  # fmt: skip
        for channel in ("hits", "issued", "read_ids", "notes", "charges", "events", "errors"):
            update[channel] = [x for o in outcomes for x in o.get(channel, [])]
        stops = [o["stop_reason"] for o in outcomes if o.get("stop_reason")]
        if stops:
            update["stop_reason"] = "budget" if "budget" in stops else stops[0]
        return update

    def _step(
        self, plan: Plan, index: int, wave: int, asked: str, written: str, known: str
    ) -> dict[str, Any]:
        """One sub-question: search, quote, vote. Returns the state channels it adds to."""
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
            msgs = prompt("step", question=asked, passages=passages, known=known)
            vote, charges = self._vote(msgs, plan, index, asked)
        except LLMError as exc:
            return {
                "errors": [{"node": "step", "kind": "llm", "message": str(exc)}],
                "charges": [charge.model_dump()],
            }
        evidence = supporting(chosen, vote.winner)
        record = {
            "index": index,
            "wave": wave,
            "question": asked,
            "depends_on": depends_on(written),
            "answer": vote.winner or "",
            "votes": vote.votes,
            "red_flags": vote.red_flags,
            "ballots": vote.drawn,
            "ended": vote.ended,
            "evidence": [h["doc_id"] for h in evidence],
        }
        notes = [
            Note(doc_id=h["doc_id"], title=h["title"], fact=quote(h["text"], 40), round=index)
            for h in evidence
        ]
        read = self._event("read", round=index, passages=[h["title"] for h in chosen], facts=len(evidence))
        event = self._event(
            "step", step=index, wave=wave, question=asked, answer=vote.winner, votes=vote.votes,
            red_flags=vote.red_flags, ended=vote.ended, hits=[h["title"] for h in chosen],
        )  # fmt: skip
        out: dict[str, Any] = {
            "record": record,
            "hits": records,
            "issued": [asked],
            "read_ids": [h["doc_id"] for h in chosen],
            "notes": notes,
            "charges": [charge.model_dump(), *charges],
            "events": [read, event],
        }
        if vote.winner is None:
            out["stop_reason"] = "budget" if vote.ended == "budget" else "malformed output"
        return out

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
            flag = red_flag(answer, max_words=MAX_ANSWER_WORDS, echo_of=asked if self.dials.anchor else None)
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
        citations = list(dict.fromkeys(d for s in steps for d in s["evidence"])) if answer else []
        new_drafts = []
        if answer:
            new_drafts = [draft(self.deps, len(steps), answer, citations)]
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
        final = final_answer(self.deps, state, answer, citations, errors)
        best = final["answer"]
        events.append(self._event("answer", answer=best, citations=final["citations"], degraded=bool(errors)))
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
        plan = state["plan"]
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
    """The passages that contain the step's answer (its evidence): none when no passage does."""
    if not passages or not answer:
        return []
    key = normalize_answer(answer)
    return [h for h in passages if key and key in normalize_answer(h["text"])]


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
