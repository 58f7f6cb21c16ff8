"""A short answer's nodes: plain functions ``state -> partial update`` bound to their dependencies.

plan -> queries -> search (one branch per query, in parallel via Send) -> read -> reflect -> (queries | answer)

Every LLM call goes through `budgeted_json` and every search through the ledger, so the budget is
enforced step by step; a step that cannot be afforded routes to `answer` with what the run has.
Backend failures end the run degraded with the best answer so far, never with a traceback. A report's
nodes extend these (agent/report_nodes.py); agent/graph.py wires both loops.
"""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

from langgraph.types import Send

from sounding.agent.llm_step import StepResult, budgeted_json
from sounding.agent.probe import DECOMPOSE_SCHEMA, charged_search, run_probe
from sounding.agent.question import check_question
from sounding.agent.reasoning import Reasoner, Reasoning
from sounding.agent.report import Composer, Unsupported
from sounding.agent.state import Note, ResearchState
from sounding.budgets.controllers import (
    Controller,
    Decision,
    Plan,
    RoundReport,
    round_usage,
)
from sounding.budgets.cost import Usage
from sounding.budgets.features import Features
from sounding.budgets.ledger import BudgetExceeded, Ledger
from sounding.tools.llm.base import LLM, LLMError, Message, derive_seed
from sounding.tools.relevance import Relatedness
from sounding.tools.search.base import SearchBackend, SearchError
from sounding.tools.search.fusion import DEFAULT_K, fuse

PROMPTS: dict[str, dict[str, str]] = tomllib.loads(
    resources.files("sounding.agent").joinpath("prompts/research.toml").read_text(encoding="utf-8")
)
NO_ANSWER = "No answer could be found within the budget."
NO_ANSWER_MALFORMED = "No answer: the model's output did not parse on any try."
PASSAGE_WORDS = 110  # words of each passage shown to the extractor: keeps prompts small for 0.5B-1.5B models

EventSink = Callable[[dict[str, Any]], None]


@dataclass
class AgentDeps:
    """Everything the nodes call. Built once per run; never stored in the (checkpointed) state."""

    llm: LLM
    search: SearchBackend
    ledger: Ledger
    controller: Controller
    on_event: EventSink = field(default=lambda event: None)
    #: Record a closed-book draft as round 0 (the harness's depth-0 point of the anytime curve).
    closed_book_draft: bool = False
    #: Let the answer node rewrite the last draft; the harness turns this off so that a depth-d run's
    #: final answer equals the round-d anytime draft of a deeper run.
    improve_final: bool = True
    #: The run's seed: every call draws with a seed derived from it, the question, the step and the
    #: round (and the sample), so the same seed repeats a run and another seed varies its sampling.
    seed: int = 0
    #: Temperature of reasoning samples (thinking, and answers when several are voted).
    reasoning_temperature: float = 0.7
    #: Extra thinking caps to read off each reasoning step (the harness's grid), below the plan's.
    think_caps: list[int] = field(default_factory=list)
    #: k of the reciprocal-rank fusion that orders a round's unread hits (``search.rrf_k``).
    rrf_k: int = DEFAULT_K
    #: The decompose strategy's votes: the lead that decides one, and the most ballots it may draw.
    vote_k: int = 2
    vote_max_samples: int = 8
    #: The strategy's own dials (agent/strategies: each strategy validates its part).
    dials: dict[str, Any] = field(default_factory=dict)
    #: How many of a strategy's independent branches run at once (threads sharing the ledger): more
    #: than one pays off with a batching server; an in-process model answers one call at a time.
    workers: int = 1
    #: "short" answers, cited "report"s, or "auto": the question's wording decides (`answer_format`).
    answer_format: str = "short"
    #: What a report does with a sentence its cited notes do not support: "mark" it or "drop" it.
    unsupported: Unsupported = "mark"
    #: How a report writes a section: one call from all its notes, or one claim per note
    #: (agent/report.py: ``Composer``).
    composer: Composer = "paragraph"
    #: How a report judges what bears on a section: embeddings (tools/relevance.py), or shared words
    #: when None.
    relatedness: Relatedness | None = None


# --- helpers -------------------------------------------------------------------------------------


def messages(step: str, **fields: Any) -> list[Message]:
    prompt = PROMPTS[step]
    return [
        {"role": "system", "content": prompt["system"]},
        {"role": "user", "content": prompt["user"].format(**fields)},
    ]


def normalise_query(query: str) -> str:
    return " ".join(sorted(set(re.findall(r"\w+", query.lower()))))


_SQL = re.compile(r"\b(select|from|where|and|or|like|limit|table)\b", re.IGNORECASE)


def clean_query(query: str) -> str:
    """Plain keywords: drop quotes, operators and field syntax a small model may emit anyway."""
    text = re.sub(r"[A-Za-z_]+\s*[:=]", " ", query)  # field:value / column = value
    if re.search(r"\bselect\b", text, re.IGNORECASE):
        text = _SQL.sub(" ", text)
    words = re.findall(r"[\w'’.-]+", text)
    return " ".join(w.strip(".'") for w in words if w.strip(".'"))[:80].strip()


def spend_snapshot(ledger: Ledger) -> dict[str, Any]:
    spent = ledger.spent
    return {
        "searches": spent.searches,
        "tokens": spent.tokens,
        "prompt_tokens": spent.prompt_tokens,
        "completion_tokens": spent.completion_tokens,
        "cost": {unit: round(ledger.spent_in(unit), 12) for unit in ledger.report_models},
    }


def emit_event(deps: AgentDeps, kind: str, **data: Any) -> dict[str, Any]:
    """One trace event, stamped with the time and the spend so far, sent to the live view and returned
    for the state's ``events`` channel (every strategy's nodes record events this way)."""
    event = {"kind": kind, "t": time.time(), **data, "spend": spend_snapshot(deps.ledger)}
    deps.on_event(event)
    return event


def quote(text: str, words: int = PASSAGE_WORDS) -> str:
    tokens = text.split()
    body = " ".join(tokens[:words]) + (" ..." if len(tokens) > words else "")
    return "> " + body


def number_notes(notes: list[Note]) -> str:
    return "\n".join(f"[{i}] ({n.title}) {n.fact}" for i, n in enumerate(notes, 1)) or "(none)"


def fresh_run() -> dict[str, Any]:
    """The state a run starts from at its plan node (a resumed thread's checkpoint replaces it)."""
    return {"round": 0, "hits": [], "issued": [], "charges": [], "drafts": [], "events": []}


def charges_of(result: StepResult) -> list[dict[str, Any]]:
    return [c.model_dump() for c in result.charges]


def admit_query(
    candidate: str, seen: set[str], fresh: list[str], suppressed: list[str], *, report: bool
) -> bool:
    """Add a cleaned query to ``fresh`` unless its normalised word set was issued (for a report:
    unless its words are all in an earlier query's, which finds the same passages); else record it
    as suppressed. Whether it was added."""
    query = clean_query(candidate)
    key = normalise_query(query)
    subsumed = report and any(set(key.split()) <= set(k.split()) for k in seen)
    if query and key and key not in seen and not subsumed:
        seen.add(key)
        fresh.append(query)
        return True
    if query:
        suppressed.append(query)
    return False


def queries_update(
    round_: int, fresh: list[str], charges: list[dict[str, Any]], event: dict[str, Any]
) -> dict[str, Any]:
    """The state update of a queries step: the round's new queries (also added to those issued)."""
    return {
        "round": round_,
        "queries": fresh,
        "issued": fresh,
        "charges": charges,
        "events": [event],
        "next_query": None,
    }


# --- schemas -------------------------------------------------------------------------------------


def queries_schema(n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "queries": {
                "type": "array",
                "items": {"type": "string", "maxLength": 60},
                "minItems": 1,
                "maxItems": n,
            }
        },
        "required": ["queries"],
    }


def extract_schema(n_passages: int, max_facts: int) -> dict[str, Any]:
    fact = {
        "type": "object",
        "properties": {
            "passage": {"type": "integer", "minimum": 1, "maximum": n_passages},
            "fact": {"type": "string", "maxLength": 200},
        },
        "required": ["passage", "fact"],
    }
    return {
        "type": "object",
        "properties": {"facts": {"type": "array", "items": fact, "maxItems": max_facts}},
        "required": ["facts"],
    }


REFLECT_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 80},
        "notes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 4},
        "supported": {"type": "boolean"},
        "next_query": {"type": "string", "maxLength": 60},
    },
    "required": ["answer", "notes", "supported", "next_query"],
}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 80},
        "notes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 4},
    },
    "required": ["answer", "notes"],
}
SHORT_ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 80}},
    "required": ["answer"],
}


# --- nodes ---------------------------------------------------------------------------------------


class ResearchNodes:
    """A short answer's nodes. The report's (`agent/report_nodes.py: ReportNodes`) extend them; each
    class routes by the graph names of its own loop (``NAMES``)."""

    NAMES: ClassVar[dict[str, str]] = {
        "queries": "queries", "search": "search", "read": "read", "reflect": "reflect", "end": "answer"
    }  # fmt: skip
    #: Whether a query whose words are all in an earlier query's counts as a repeat (`admit_query`).
    SUBSUMED_QUERIES_REPEAT: ClassVar[bool] = False

    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        return emit_event(self.deps, kind, **data)

    def _json(self, msgs: list[Message], schema: dict[str, Any], **step: Any) -> StepResult:
        """One budgeted, schema-constrained LLM call of this run (see `budgeted_json`), seeded from the
        run seed, the prompt (which holds the question) and the step."""
        seed = derive_seed(self.deps.seed, msgs[-1]["content"], step["node"], step["round"])
        return budgeted_json(self.deps.llm, self.deps.ledger, msgs, schema, seed=seed, **step)

    def _reason(
        self, question: str, notes: list[Note] | None, plan: Plan, round_: int
    ) -> tuple[Reasoning, list[dict[str, Any]]]:
        """The round's reasoning step at the plan's (think, samples), plus the harness's extra caps."""
        reasoner = Reasoner(
            self.deps.llm,
            self.deps.ledger,
            PROMPTS,
            seed=self.deps.seed,
            temperature=self.deps.reasoning_temperature,
            answer_cap=plan.caps.answer,
        )
        reasoning = reasoner.step(
            question,
            number_notes(notes) if notes else None,
            think=plan.think,
            samples=plan.samples,
            round=round_,
            caps=[*self.deps.think_caps, plan.think],
            verify=plan.verify,
        )
        return reasoning, [c.model_dump() for c in reasoner.charges]

    def _reasoning_event(self, reasoning: Reasoning) -> dict[str, Any]:
        first = reasoning.drawn[0].thinking if reasoning.drawn else ""
        return self._event(
            "reasoning",
            round=reasoning.round,
            think=reasoning.think,
            samples=reasoning.samples,
            thinking=first,
            votes=reasoning.vote.votes,
            abstained=reasoning.vote.abstained,
            verified=reasoning.vote.verified,
            answer=reasoning.vote.answer,
        )

    def _fail(self, node: str, exc: Exception) -> dict[str, Any]:
        kind = "llm" if isinstance(exc, LLMError) else "search"
        error = {"node": node, "kind": kind, "message": str(exc)}
        # only reducer channels: parallel search branches may fail in the same step
        return {"errors": [error], "events": [self._event("error", node=node, failed=kind, message=str(exc))]}

    def _search(
        self, query: str, k: int, node: str, round: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One charged search; returns (hit records, charges). Raises BudgetExceeded / SearchError."""
        records, charge = charged_search(self.deps.search, self.deps.ledger, query, k, node=node, round=round)
        return records, [charge.model_dump()]

    # plan: probe (if the controller wants one), then the controller's plan -------------------------

    def plan(self, state: ResearchState) -> dict[str, Any]:
        question = check_question(state["question"])  # Studio's input reaches the graph unchecked
        controller, ledger = self.deps.controller, self.deps.ledger
        features = Features(question=question)
        update = fresh_run()
        try:
            if controller.needs_probe:
                probe = run_probe(
                    question,
                    self.deps.llm,
                    self.deps.search,
                    ledger,
                    PROMPTS,
                    groups=controller.probe_groups,
                    seed=self.deps.seed,
                    samples=controller.probe_samples,
                )
                features = probe.features
                update["hits"] += probe.hits
                update["issued"] += [question] if probe.hits else []
                update["charges"] += [c.model_dump() for c in probe.charges]
            plan = controller.plan(features, ledger.budget, ledger.cost_model)
            if plan.decompose and plan.depth > 0:
                result = self._json(
                    messages("decompose", question=question, n=3),
                    DECOMPOSE_SCHEMA,
                    cap=plan.caps.query,
                    node="decompose",
                    round=0,
                )
                update["charges"] += charges_of(result)
                subs = [
                    str(s).strip() for s in (result.value or {}).get("subquestions", []) if str(s).strip()
                ]
                update["subquestions"] = subs[:3]
            if self.deps.closed_book_draft:
                result = self._json(
                    messages("closed_book", question=question),
                    SHORT_ANSWER_SCHEMA,
                    cap=plan.caps.answer,
                    node="closed_book",
                    round=0,
                )
                update["charges"] += charges_of(result)
                answer = str((result.value or {}).get("answer", "")).strip()
                draft: dict[str, Any] = {
                    "round": 0,
                    "answer": answer or NO_ANSWER,
                    "citations": [],
                    "supported": False,
                }
                if plan.reasons:  # the closed-book answer reasons too: the "thinking alone" axis
                    reasoning, charges = self._reason(question, None, plan, 0)
                    update["charges"] += charges
                    update["events"] += [self._reasoning_event(reasoning)]
                    draft |= {
                        "greedy": draft["answer"],
                        "answer": reasoning.vote.answer or NO_ANSWER,
                        "reasoning": reasoning.model_dump(),
                    }
                update["drafts"] += [{**draft, "spend": spend_snapshot(ledger)}]
        except (LLMError, SearchError) as exc:
            plan = controller.plan(features, ledger.budget, ledger.cost_model)
            failed = self._fail("plan", exc)
            return {
                **update,
                **failed,
                "plan": plan,
                "features": features.model_dump(),
                "events": update["events"] + failed["events"],
            }
        update["plan"] = plan
        update["features"] = features.model_dump()
        update["events"] += [
            self._event(
                "plan",
                plan=plan.model_dump(),
                difficulty=plan.difficulty,
                probe_answers=features.probe_answers,
                margin=features.margin,
                subquestions=update.get("subquestions", []),
            )
        ]
        return update

    def route_after_plan(self, state: ResearchState) -> str:
        if state["plan"].depth == 0 or state.get("errors"):
            return self.NAMES["end"]
        return self.NAMES["queries"]

    # queries: this round's keyword queries ---------------------------------------------------------

    def queries(self, state: ResearchState) -> dict[str, Any]:
        return self._round_queries(state, state["plan"], state.get("round", 0) + 1)

    def first_queries(self, state: ResearchState) -> list[str]:
        """The first round's own queries: the question itself (a strong first keyword query; a no-op if
        the probe ran it) and the first hop of a decomposed question."""
        return [state["question"], *state.get("subquestions", [])[:1]]

    def _round_queries(self, state: ResearchState, plan: Plan, round_: int) -> dict[str, Any]:
        question = state["question"]
        issued = list(state.get("issued", []))
        seen = {normalise_query(q) for q in issued}
        fresh: list[str] = []
        suppressed: list[str] = []

        def add(candidate: str) -> None:
            admit_query(candidate, seen, fresh, suppressed, report=self.SUBSUMED_QUERIES_REPEAT)

        if round_ == 1:
            for query in self.first_queries(state):
                add(query)
        if state.get("next_query"):
            add(str(state["next_query"]))
        want = plan.breadth - len(fresh) if round_ > 1 or not issued else plan.breadth - 1 - len(fresh)
        charges: list[dict[str, Any]] = []
        if want > 0:
            known = ""
            if state.get("notes"):
                known = "Known so far:\n" + "\n".join(f"- {n.fact}" for n in state["notes"][-6:]) + "\n"
            msgs = messages(
                "queries",
                question=question,
                known=known,
                issued="; ".join(issued + fresh) or "(nothing yet)",
                n=want,
            )
            try:
                result = self._json(
                    msgs,
                    queries_schema(want),
                    cap=plan.caps.query,
                    node="queries",
                    round=round_,
                )
            except LLMError as exc:
                return {**self._fail("queries", exc), "round": round_, "queries": []}
            charges = charges_of(result)
            for candidate in (result.value or {}).get("queries", [])[:want]:
                add(str(candidate))
        suppressed = (
            suppressed[1:] if round_ == 1 and issued else suppressed
        )  # the probe's own query is no repeat
        event = self._event("queries", round=round_, queries=fresh, suppressed=suppressed)
        return queries_update(round_, fresh, charges, event)

    def route_after_queries(self, state: ResearchState) -> list[Send] | str:
        if state.get("errors"):
            return self.NAMES["end"]
        if not state.get("queries"):
            return self.NAMES["read"]
        k, round_ = state["plan"].k, state["round"]
        return [Send(self.NAMES["search"], {"query": q, "round": round_, "k": k}) for q in state["queries"]]

    # search: one branch per query, run in parallel -----------------------------------------------

    def search(self, payload: dict[str, Any]) -> dict[str, Any]:
        query, round_, k = payload["query"], payload["round"], payload["k"]
        try:
            records, charges = self._search(query, k, "search", round_)
        except BudgetExceeded:
            return {"events": [self._event("search_skipped", round=round_, query=query, reason="budget")]}
        except SearchError as exc:
            return self._fail("search", exc)
        event = self._event("search", round=round_, query=query, hits=[r["title"] for r in records])
        return {"hits": records, "charges": charges, "events": [event]}

    # read: rerank the round's hits, read the best passages, extract facts into notes -------------

    def read(self, state: ResearchState) -> dict[str, Any]:
        if state.get("errors"):
            return {}
        plan = state["plan"]
        round_ = state["round"]
        chosen = unread_passages(state, round_, self.deps.rrf_k)[: plan.read]
        if not chosen:
            return {"events": [self._event("read", round=round_, passages=[], facts=0)]}
        try:
            result, chosen = self._extract_affordable(state, plan, chosen, round_)
        except LLMError as exc:
            return self._fail("read", exc)
        if result is None or result.failure == "budget" or not chosen:
            return {
                "stop_reason": "budget",
                "events": [self._event("read_skipped", round=round_, reason="budget")],
                "charges": charges_of(result) if result else [],
            }
        notes = notes_from_facts(result, chosen, round_)
        event = self._event("read", round=round_, passages=[h["title"] for h in chosen], facts=len(notes))
        return {
            "notes": notes,
            "read_ids": [h["doc_id"] for h in chosen],
            "charges": charges_of(result),
            "events": [event],
        }

    def _extract_affordable(
        self, state: ResearchState, plan: Plan, chosen: list[dict[str, Any]], round_: int
    ) -> tuple[StepResult | None, list[dict[str, Any]]]:
        """Extract facts from the chosen passages, shrinking the step (fewer passages) until affordable."""
        result: StepResult | None = None
        while chosen:
            passages = "\n\n".join(
                f"Passage {i} ({h['title']}):\n{quote(h['text'])}" for i, h in enumerate(chosen, 1)
            )
            max_facts = 2 * len(chosen)
            msgs = messages("extract", question=state["question"], passages=passages, max_facts=max_facts)
            result = self._json(
                msgs,
                extract_schema(len(chosen), max_facts),
                cap=plan.caps.extract,
                node="read",
                round=round_,
                min_tokens=24,
            )
            if result.failure != "budget":
                break
            chosen = chosen[:-1]
        return result, chosen

    # reflect: draft answer, support, next query; the controller decides what comes next ----------

    def reflect(self, state: ResearchState) -> dict[str, Any]:
        if state.get("errors"):
            return {"decision": Decision.STOP.value}
        plan = state["plan"]
        round_ = state["round"]
        notes = state.get("notes", [])
        msgs = messages("reflect", question=state["question"], notes=number_notes(notes))
        try:
            result = self._json(
                msgs,
                REFLECT_SCHEMA,
                cap=plan.caps.reflect,
                node="reflect",
                round=round_,
                min_tokens=16,
            )
        except LLMError as exc:
            return self._fail("reflect", exc)
        if result.value is None:
            reason = "budget" if result.failure == "budget" else "malformed output"
            return {
                "decision": Decision.STOP.value,
                "stop_reason": reason,
                "charges": charges_of(result),
                "events": [self._event("reflect_skipped", round=round_, reason=reason)],
            }
        value = result.value
        cited, removed = cite(value.get("notes", []), notes)
        draft = {
            "round": round_,
            "answer": str(value.get("answer", "")).strip() or NO_ANSWER,
            "citations": cited,
            "supported": bool(value.get("supported")),
            "citations_removed": removed,
        }
        charges = charges_of(result)
        events = []
        if plan.reasons:
            # the greedy reflection steers the search (next query, support); the round's answer is the
            # reasoning step's vote, so every (think, samples) setting follows the same search path
            try:
                reasoning, reasoning_charges = self._reason(state["question"], notes, plan, round_)
            except LLMError as exc:
                return self._fail("reflect", exc)
            charges += reasoning_charges
            events.append(self._reasoning_event(reasoning))
            voted, voted_removed = cite(reasoning.vote.notes, notes)
            draft |= {
                "greedy": draft["answer"],
                "answer": reasoning.vote.answer or NO_ANSWER,
                "citations": voted,
                "citations_removed": voted_removed,
                "reasoning": reasoning.model_dump(),
            }
        draft["spend"] = spend_snapshot(self.deps.ledger)
        drafts = [*state.get("drafts", []), draft]
        new_evidence = sum(1 for n in notes if n.round == round_)
        report = RoundReport(
            round=round_,
            drafts=[d["answer"] for d in drafts if d["round"] > 0],
            supported=draft["supported"],
            new_evidence=new_evidence,
        )
        decision, new_plan = self.deps.controller.after_round(report, plan)
        stop_reason = {Decision.STOP: "depth" if round_ >= plan.depth else "controller"}.get(decision)
        if decision != Decision.STOP and not self.deps.ledger.can_afford(
            round_usage(new_plan, round_ + 1) - Usage(searches=new_plan.breadth - 1)
        ):
            decision, stop_reason = Decision.STOP, "budget"
        event = self._event(
            "draft",
            round=round_,
            answer=draft["answer"],
            supported=draft["supported"],
            citations=cited,
            decision=decision.value,
        )
        return {
            "drafts": [draft],
            "decision": decision.value,
            "stop_reason": stop_reason,
            "plan": new_plan,
            "next_query": str(value.get("next_query", "")).strip() or None,
            "charges": charges,
            "events": [*events, event],
        }

    def route_after_reflect(self, state: ResearchState) -> str:
        if state.get("decision") != Decision.STOP.value:
            return self.NAMES["queries"]
        return self.NAMES["end"]

    # answer: the final answer with citations and sources -------------------------------------------

    def answer(self, state: ResearchState) -> dict[str, Any]:
        plan = state["plan"]
        notes = state.get("notes", [])
        drafts = [d for d in state.get("drafts", []) if d["round"] > 0] or state.get("drafts", [])
        last = drafts[-1] if drafts else None
        out = FinalAnswer(
            answer=last["answer"] if last else NO_ANSWER,
            citations=list(last["citations"]) if last else [],
            errors=list(state.get("errors", [])),
            malformed=state.get("stop_reason") == "malformed output",
        )
        llm_failed = any(e["kind"] == "llm" for e in out.errors)
        if not llm_failed and last is None and plan.reasons:
            self._answer_from_memory(state, plan, out)
        elif not llm_failed and (last is None or (self.deps.improve_final and notes and not plan.reasons)):
            self._improve_answer(state, plan, notes, last, out)
        kept, sources = self._retrieved_citations(state, out)
        no_answer_reason = out.settle_no_answer()
        final = {
            "answer": out.answer,
            "no_answer_reason": no_answer_reason,
            "citations": kept,
            "sources": sources,
            "citations_removed": out.removed,
            "improved": out.improved,
            "degraded": bool(out.errors),
            "error": "; ".join(f"{e['node']}: {e['message']}" for e in out.errors) or None,
            "stop_reason": out.stop_reason(
                state.get("stop_reason") or ("depth" if plan.depth == 0 else "done")
            ),
        }
        event = self._event("answer", answer=out.answer, citations=kept, degraded=final["degraded"])
        return {
            "final": final,
            "charges": out.charges,
            "events": [*out.events, event],
            "errors": out.errors[len(state.get("errors", [])) :],
        }

    def _answer_from_memory(self, state: ResearchState, plan: Plan, out: FinalAnswer) -> None:
        """A closed-book plan that reasons: think / sample / vote once, from memory."""
        try:
            reasoning, out.charges = self._reason(state["question"], None, plan, state.get("round", 0))
        except LLMError as exc:
            out.errors.append({"node": "answer", "kind": "llm", "message": str(exc)})
            return
        out.events.append(self._reasoning_event(reasoning))
        out.answer = reasoning.vote.answer or NO_ANSWER
        out.improved = reasoning.vote.answer is not None
        out.malformed = out.malformed or (reasoning.vote.answer is None and reasoning.failure is None)

    def _improve_answer(
        self,
        state: ResearchState,
        plan: Plan,
        notes: list[Note],
        last: dict[str, Any] | None,
        out: FinalAnswer,
    ) -> None:
        """One last answer call over every note (or from memory, with none); the draft stays if it fails."""
        if notes:
            msgs = messages(
                "answer",
                question=state["question"],
                notes=number_notes(notes),
                draft=last["answer"] if last else "(none)",
            )
            schema = ANSWER_SCHEMA
        else:
            msgs, schema = messages("closed_book", question=state["question"]), SHORT_ANSWER_SCHEMA
        try:
            result = self._json(
                msgs, schema, cap=plan.caps.answer, node="answer", round=state.get("round", 0)
            )
        except LLMError as exc:
            out.errors.append({"node": "answer", "kind": "llm", "message": str(exc)})
            return
        out.charges = charges_of(result)
        out.malformed = out.malformed or result.failure == "malformed"
        if result.value and str(result.value.get("answer", "")).strip():
            out.answer = str(result.value["answer"]).strip()
            if notes:
                out.citations, out.removed = cite(result.value.get("notes", []), notes)
            out.improved = last is None or out.answer != last["answer"]

    def _retrieved_citations(
        self, state: ResearchState, out: FinalAnswer
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """A citation must name a passage actually retrieved in this run; the others are counted out."""
        hits = state.get("hits", [])
        retrieved = {h["doc_id"] for h in hits}
        kept = [c for c in out.citations if c in retrieved]
        out.removed += len(out.citations) - len(kept)
        sources = []
        for doc_id in kept:
            hit = next(h for h in hits if h["doc_id"] == doc_id)
            sources.append(
                {"doc_id": doc_id, "title": hit["title"], "url": hit.get("url"), "passage": hit["text"]}
            )
        return kept, sources


@dataclass
class FinalAnswer:
    """What the answer node settles on, step by step: the answer, its citations, what it cost."""

    answer: str
    citations: list[str]
    errors: list[dict[str, str]]
    malformed: bool
    removed: int = 0
    improved: bool = False
    charges: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def settle_no_answer(self) -> str | None:
        """Why there is no answer, if there is none ("backend", "malformed" or "budget"); a malformed
        output says so in the answer itself (not the budget's no-answer text)."""
        if self.answer != NO_ANSWER:
            return None
        reason = "backend" if self.errors else "malformed" if self.malformed else "budget"
        if reason == "malformed":
            self.answer = NO_ANSWER_MALFORMED
        return reason

    def stop_reason(self, otherwise: str) -> str:
        return "error" if self.errors else otherwise


def unread_passages(state: ResearchState, round_: int, rrf_k: int = DEFAULT_K) -> list[dict[str, Any]]:
    """The passages not yet read, best first: reciprocal-rank fusion across this run's queries (a
    passage several queries agree on wins), this round's hits counted twice."""
    read_ids = set(state.get("read_ids", []))
    unread = [h for h in state.get("hits", []) if h["doc_id"] not in read_ids and h["round"] <= round_]
    by_id: dict[str, dict[str, Any]] = {}
    for hit in unread:
        by_id.setdefault(hit["doc_id"], hit)
    entries = ((h["doc_id"], h["rank"], 2.0 if h["round"] == round_ else 1.0) for h in unread)
    return [by_id[doc_id] for doc_id, _ in fuse(entries, k=rrf_k)]


def notes_from_facts(result: StepResult, chosen: list[dict[str, Any]], round_: int) -> list[Note]:
    """The extracted facts as notes on the passages they name; if none is usable, the best passage's
    opening sentences verbatim (evidence is never thrown away)."""
    notes = []
    for fact in (result.value or {}).get("facts", []):
        try:  # the grammar asks for an integer, but a repaired or retried output may hold null
            index = int(fact["passage"]) - 1
        except (TypeError, ValueError, KeyError):
            continue  # a fact naming no passage cannot be cited
        text = str(fact.get("fact", "")).strip()
        if 0 <= index < len(chosen) and text:
            hit = chosen[index]
            notes.append(Note(doc_id=hit["doc_id"], title=hit["title"], fact=text, round=round_))
    if not notes:
        top = chosen[0]
        opening = " ".join(re.split(r"(?<=[.!?])\s+", top["text"])[:2])
        notes.append(Note(doc_id=top["doc_id"], title=top["title"], fact=opening, round=round_))
    return notes


def passage_title(state: ResearchState, doc_id: str) -> str:
    return next(h["title"] for h in state.get("hits", []) if h["doc_id"] == doc_id)


def passage_url(state: ResearchState, doc_id: str) -> str | None:
    return next((h.get("url") for h in state.get("hits", []) if h["doc_id"] == doc_id), None)


def cite(numbers: list[Any], notes: list[Note]) -> tuple[list[str], int]:
    """Note numbers -> distinct doc ids; numbers that name no note are dropped and counted."""
    cited: list[str] = []
    removed = 0
    for n in numbers:
        try:
            index = int(n) - 1
        except (TypeError, ValueError):
            removed += 1
            continue
        if 0 <= index < len(notes):
            doc_id = notes[index].doc_id
            if doc_id not in cited:
                cited.append(doc_id)
        else:
            removed += 1
    return cited, removed
