"""The `tree` and `best_of_n` strategies: search over research trajectories with a value function,
and N complete trajectories chosen by the same value function, at the same compute per round.

    plan ──▶ expand ──┬─▶ expand (the next round)  ... one per round (the plan's depth)
                      └─▶ finish ──▶ END

A *branch* is a partial research state: the queries it issued, the passages it read and its
current answer. Every round (``expand``):

1. each kept branch writes queries (research.toml's [queries] prompt): ``width`` of them in one call;
   a branch that is a copy of another (round 1 starts from ``beam`` copies of the empty root; every
   best_of_n trajectory after the first) samples at the reasoning temperature, else greedy;
2. each query becomes a child: one charged search, the top ``read`` unread passages quoted and added
   to the parent's, and a short answer from all of them (with its token log-probabilities);
3. each child is valued: ``logprob`` (the mean token log-probability of its answer's JSON output,
   whose grammar-forced tokens are near 0 for every answer, free), ``agreement``
   (the share of this round's children giving the same normalised answer, free) and, when the value
   is ``support``, one charged yes/no check of the answer against the child's passages;
4. ``tree`` keeps the ``beam`` best children of all (ties: the higher log-probability);
   ``best_of_n`` keeps every trajectory (each has one child), so no trajectory sees another.

The round's anytime draft is the best child by the value; the harness reads every smaller depth off
one run, as for the iterative loop. Children of a round run side by side (``deps.workers``); every
call is charged to one ledger, and a child the budget cannot pay is dropped (a round with none ends
the run with the best answer so far). Equal compute: ``tree`` with beam B and width W and
``best_of_n`` with n = B x W make the same searches and answers per round (their query calls differ:
B calls of W queries against n calls of one); the measured spend is what the sweep compares.

The trace's ``candidates`` events hold every child's answer and all its values, so the value
functions' AUROC for correctness is computed from stored traces (evals/compare.py).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict, Field

from sounding.agent.llm_step import budgeted_json, charged_completion, parse_json_object
from sounding.agent.nodes import SHORT_ANSWER_SCHEMA, AgentDeps, emit_event, messages, queries_schema, quote
from sounding.agent.probe import charged_search
from sounding.agent.state import Note, ResearchState
from sounding.agent.strategies.common import draft, final_answer, plan_node, run_side_by_side
from sounding.budgets.controllers import Plan
from sounding.budgets.ledger import BudgetExceeded
from sounding.tools.llm.base import LLMError, Message, derive_seed
from sounding.tools.search.base import SearchError
from sounding.tools.text import normalize_answer

TREE_PROMPTS: dict[str, dict[str, str]] = tomllib.loads(
    resources.files("sounding.agent.strategies").joinpath("tree.toml").read_text(encoding="utf-8")
)
ValueName = Literal["logprob", "agreement", "support"]
#: Passages a branch shows its answer step (its latest): keeps prompts inside a small model's context.
SHOWN_PASSAGES = 6
SUPPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"supported": {"type": "boolean"}},
    "required": ["supported"],
}


class TreeDials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Queries (children) each kept branch expands into per round.
    width: int = Field(default=3, ge=1, le=8)
    #: Branches kept per round (and copies of the root expanded in round 1).
    beam: int = Field(default=1, ge=1, le=8)
    #: What ranks the children: mean token log-probability of the answer, agreement of the round's
    #: answers, or a charged support check.
    value: ValueName = "logprob"


class BestOfNDials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Independent trajectories (the first greedy, the others sampled).
    n: int = Field(default=3, ge=1, le=16)
    value: ValueName = "logprob"


class Branch(BaseModel):
    """One partial research state."""

    id: str  # "r.i": round and position in that round's children
    parent: str | None = None
    queries: list[str] = []
    passages: list[dict[str, Any]] = []  # {doc_id, title, text, url}
    answer: str = ""
    logprob: float | None = None
    agreement: float | None = None
    support: float | None = None
    #: True for a trajectory that samples (best_of_n after the first, copies of the root)
    sampled: bool = False
    #: How many of its passages this round's search added (the last ones).
    fresh: int = 0

    def score(self, value: ValueName) -> tuple[float, float]:
        """The rank of the branch by ``value`` (missing = lowest), ties broken by log-probability."""
        main = {"logprob": self.logprob, "agreement": self.agreement, "support": self.support}[value]
        tie = self.logprob if self.logprob is not None else float("-inf")
        return (main if main is not None else float("-inf"), tie)


def exactly(schema: dict[str, Any], n: int) -> dict[str, Any]:
    """The queries schema asking for exactly ``n`` queries: a round's children are its compute, so a
    model that writes fewer must not make one strategy cheaper than another by accident."""
    queries = {**schema["properties"]["queries"], "minItems": n, "maxItems": n}
    return {**schema, "properties": {**schema["properties"], "queries": queries}}


def prompt(step: str, **fields: Any) -> list[Message]:
    template = TREE_PROMPTS[step]
    return [
        {"role": "system", "content": template["system"]},
        {"role": "user", "content": template["user"].format(**fields)},
    ]


def shown(passages: list[dict[str, Any]]) -> str:
    latest = passages[-SHOWN_PASSAGES:]
    return "\n\n".join(f"Passage {i} ({p['title']}):\n{quote(p['text'])}" for i, p in enumerate(latest, 1))


def agreements(answers: list[str]) -> list[float]:
    """Each answer's share of all the answers that are the same once normalised (empty: none)."""
    keys = [normalize_answer(a) for a in answers]
    return [(keys.count(k) / len(keys)) if k else 0.0 for k in keys]


class TreeNodes:
    def __init__(self, deps: AgentDeps, *, name: str, width: int, beam: int, value: ValueName, prune: bool):
        self.deps = deps
        self.name = name
        self.width = width
        self.beam = beam
        self.value: ValueName = value
        #: tree keeps the best `beam` children of all; best_of_n keeps each trajectory's own child
        self.prune = prune

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        return emit_event(self.deps, kind, **data)

    def plan(self, state: ResearchState) -> dict[str, Any]:
        return plan_node(self.deps, state["question"], self.name, branches=[])

    # expand: one round ---------------------------------------------------------------------------------

    def expand(self, state: ResearchState) -> dict[str, Any]:
        plan = state["plan"]
        question = state["question"]
        round_ = state.get("round", 0) + 1
        parents = [Branch.model_validate(b) for b in state.get("branches", [])] or [
            Branch(id=f"0.{i}", sampled=i > 0) for i in range(self.beam)
        ]
        jobs, outcomes = self._grow(plan, question, round_, parents)
        children = [o["branch"] for o in outcomes if o.get("branch") is not None]
        update = self._round_record(round_, jobs, outcomes, children)
        answered = [c for c in children if c.answer]
        if not answered:  # nothing to keep: the best answer so far stands (a budget, a model, a search)
            reason = "error" if update["errors"] else "budget"
            skipped = self._event("round_skipped", round=round_, reason=reason)
            return {**update, "stop_reason": None if update["errors"] else "budget", "branches": [],
                    "events": [*update["events"], skipped]}  # fmt: skip
        return {**update, **self._select(round_, answered, update["events"])}

    def _grow(
        self, plan: Plan, question: str, round_: int, parents: list[Branch]
    ) -> tuple[list[tuple[Branch, str, int]], list[dict[str, Any]]]:
        """One round's growth: each parent writes its queries, each query a child that searches and
        answers (and, for the support value, is checked). The jobs (parent, query, repeat) and every
        call's outcome."""
        planned = run_side_by_side(
            lambda p: self._queries(plan, question, p, round_), list(enumerate(parents)), self.deps.workers
        )
        jobs = [
            (parent, q, queries[:n].count(q)) for parent, queries, _ in planned for n, q in enumerate(queries)
        ]
        outcomes = [*(o for _, _, o in planned), *run_side_by_side(
            lambda job: self._child(plan, question, round_, job), list(enumerate(jobs)), self.deps.workers
        )]  # fmt: skip
        children = [o["branch"] for o in outcomes if o.get("branch") is not None]
        if self.value == "support" and children:
            outcomes += run_side_by_side(
                lambda c: self._support(plan, question, round_, c), children, self.deps.workers
            )
        return jobs, outcomes

    def _round_record(
        self,
        round_: int,
        jobs: list[tuple[Branch, str, int]],
        outcomes: list[dict[str, Any]],
        children: list[Branch],
    ) -> dict[str, Any]:
        """The state update every round makes, kept or not: queries issued, hits, passages read (for
        support recall), charges and errors."""
        fresh = [p for c in children for p in c.passages[len(c.passages) - c.fresh :]]
        titles = [p["title"] for p in fresh]
        return {
            "round": round_,
            "issued": [q for _, q, _ in jobs],
            "hits": [h for o in outcomes for h in o.get("hits", [])],
            "read_ids": [p["doc_id"] for p in fresh],
            "charges": [c for o in outcomes for c in o.get("charges", [])],
            "errors": [e for o in outcomes for e in o.get("errors", [])],
            "events": [self._event("read", round=round_, passages=titles, facts=len(titles))]
            if titles
            else [],
        }

    def _select(self, round_: int, answered: list[Branch], events: list[dict[str, Any]]) -> dict[str, Any]:
        """Value the answered children, keep the beam (tree) or every trajectory (best_of_n), and
        draft the best child's answer with the passages that contain it."""
        for child, share in zip(answered, agreements([c.answer for c in answered]), strict=True):
            child.agreement = share
        ranked = sorted(answered, key=lambda c: c.score(self.value), reverse=True)
        kept = ranked[: self.beam] if self.prune else answered
        kept_ids = {k.id for k in kept}
        best = ranked[0]
        citations = [p["doc_id"] for p in supporting(best.passages, best.answer)]
        chosen = [
            self._event(
                "candidates", round=round_, value=self.value, chosen=best.id,
                candidates=[{**c.model_dump(exclude={"passages"}), "kept": c.id in kept_ids} for c in answered],
            ),
            self._event("draft", round=round_, answer=best.answer, supported=bool(citations),
                        citations=citations, decision="continue"),
        ]  # fmt: skip
        return {
            "branches": [c.model_dump() for c in kept],
            "drafts": [draft(self.deps, round_, best.answer, citations, branch=best.id)],
            "notes": [
                Note(doc_id=p["doc_id"], title=p["title"], fact=quote(p["text"], 40), round=round_)
                for p in best.passages if p["doc_id"] in citations
            ],
            "events": [*events, *chosen],
        }  # fmt: skip

    def _queries(
        self, plan: Plan, question: str, numbered: tuple[int, Branch], round_: int
    ) -> tuple[Branch, list[str], dict[str, Any]]:
        """A branch's next ``width`` queries (none when the budget cannot pay for them or the model
        failed: then an error record), and what the call charged."""
        i, parent = numbered
        known = "".join(f"Known: {p['title']}: {quote(p['text'], 30)}\n" for p in parent.passages[-2:])
        msgs = messages(
            "queries",
            question=question,
            known=known,
            issued="; ".join(parent.queries) or "nothing",
            n=self.width,
        )
        try:
            result = budgeted_json(
                self.deps.llm, self.deps.ledger, msgs, exactly(queries_schema(self.width), self.width),
                cap=plan.caps.query * self.width, node="tree_queries", round=round_,
                seed=derive_seed(self.deps.seed, question, "tree_queries", round_, i),
                temperature=self.deps.reasoning_temperature if parent.sampled else 0.0,
            )  # fmt: skip
        except LLMError as exc:
            return parent, [], {"errors": [{"node": "expand", "kind": "llm", "message": str(exc)}]}
        raw = (result.value or {}).get("queries") or []
        # a repeated query is kept: its child reads the next unread passages of the same ranking
        queries = [str(q).strip() for q in raw if str(q).strip()][: self.width]
        if result.value is not None and not queries:
            queries = [question]  # a branch that wrote no query still searches the question
        return parent, queries, {"charges": [c.model_dump() for c in result.charges]}

    def _child(
        self, plan: Plan, question: str, round_: int, numbered: tuple[int, tuple[Branch, str, int]]
    ) -> dict[str, Any]:
        """One child: search its query, add the unread top passages, answer with log-probabilities."""
        i, (parent, query, repeat) = numbered
        try:
            records, charge = charged_search(
                self.deps.search, self.deps.ledger, query, plan.k, node="search", round=round_
            )
        except BudgetExceeded:
            return {}
        except SearchError as exc:
            return {"errors": [{"node": "expand", "kind": "search", "message": str(exc)}]}
        seen = {p["doc_id"] for p in parent.passages}
        fresh = [h for h in records if h["doc_id"] not in seen][repeat * plan.read : (repeat + 1) * plan.read]
        passages = [
            *parent.passages,
            *({k: h.get(k) for k in ("doc_id", "title", "text", "url")} for h in fresh),
        ]
        charges = [charge.model_dump()]
        try:
            completion, answer_charge = charged_completion(
                self.deps.llm, self.deps.ledger, prompt("answer", question=question, passages=shown(passages)),
                cap=plan.caps.answer, node="tree_answer", round=round_, min_tokens=8,
                schema=SHORT_ANSWER_SCHEMA, temperature=0.0, logprobs=True,
                seed=derive_seed(self.deps.seed, question, "tree_answer", round_, i),
        )  # fmt: skip
        except LLMError as exc:
            return {"charges": charges, "hits": records,
                    "errors": [{"node": "expand", "kind": "llm", "message": str(exc)}]}  # fmt: skip
        if completion is None or answer_charge is None:
            return {"charges": charges, "hits": records}
        charges.append(answer_charge.model_dump())
        value, _ = parse_json_object(completion.text, ["answer"])
        answer = " ".join(str((value or {}).get("answer", "")).split())
        branch = Branch(
            id=f"{round_}.{i}",
            parent=parent.id,
            queries=[*parent.queries, query],
            passages=passages,
            answer=answer,
            # over the whole JSON output: the grammar's forced tokens are near 0 for every answer
            logprob=completion.samples()[0].mean_logprob if answer else None,
            sampled=parent.sampled and not self.prune,
            fresh=len(fresh),
        )
        return {"branch": branch, "charges": charges, "hits": records}

    def _support(self, plan: Plan, question: str, round_: int, child: Branch) -> dict[str, Any]:
        """The support value: 1 when the model says the child's passages support its answer, else 0."""
        msgs = prompt("support", question=question, passages=shown(child.passages), answer=child.answer)
        try:
            result = budgeted_json(
                self.deps.llm, self.deps.ledger, msgs, SUPPORT_SCHEMA, cap=16, node="tree_support",
                round=round_, seed=derive_seed(self.deps.seed, question, "tree_support", round_, child.id),
            )  # fmt: skip
        except LLMError as exc:
            return {"errors": [{"node": "expand", "kind": "llm", "message": str(exc)}]}
        if result.value is not None:
            child.support = 1.0 if result.value.get("supported") is True else 0.0
        return {"charges": [c.model_dump() for c in result.charges]}

    def route(self, state: ResearchState) -> str:
        plan = state["plan"]
        if (
            state.get("errors")
            or state.get("stop_reason")
            or (not state.get("branches") and state.get("round"))
        ):
            return "finish"
        return "expand" if state.get("round", 0) < plan.depth else "finish"

    def finish(self, state: ResearchState) -> dict[str, Any]:
        errors = list(state.get("errors", []))
        rounds = [d for d in state.get("drafts", []) if d["round"] > 0]
        answer = rounds[-1]["answer"] if rounds and rounds[-1]["answer"] else None
        final = final_answer(self.deps, state, answer, rounds[-1]["citations"] if answer else [], errors)
        event = self._event(
            "answer", answer=final["answer"], citations=final["citations"], degraded=bool(errors)
        )
        return {"final": final, "events": [event]}


def supporting(passages: list[dict[str, Any]], answer: str) -> list[dict[str, Any]]:
    """The passages that contain the answer (its evidence): none when no passage does (then the draft
    is marked unsupported rather than citing a passage that does not say it)."""
    if not passages or not answer:
        return []
    key = normalize_answer(answer)
    return [p for p in passages if key and key in normalize_answer(p["text"])]


def _graph(nodes: TreeNodes, checkpointer: Any) -> Any:
    graph = StateGraph(ResearchState)
    graph.add_node("plan", nodes.plan)
    graph.add_node("expand", nodes.expand)
    graph.add_node("finish", nodes.finish)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", nodes.route, ["expand", "finish"])
    graph.add_conditional_edges("expand", nodes.route, ["expand", "finish"])
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer)


def build_tree_graph(deps: AgentDeps, *, checkpointer: Any = None) -> Any:
    dials = TreeDials.model_validate(deps.dials)
    nodes = TreeNodes(deps, name="tree", width=dials.width, beam=dials.beam, value=dials.value, prune=True)
    return _graph(nodes, checkpointer)


def build_best_of_n_graph(deps: AgentDeps, *, checkpointer: Any = None) -> Any:
    dials = BestOfNDials.model_validate(deps.dials)
    nodes = TreeNodes(deps, name="best_of_n", width=1, beam=dials.n, value=dials.value, prune=False)
    return _graph(nodes, checkpointer)
