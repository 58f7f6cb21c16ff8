"""The report graph's nodes: an open question's research loop, written up as a cited report.

outline -> report_queries -> report_search (one branch per section's query) -> report_read ->
report_reflect -> (report_queries | write) -> check

They share the research loop's machinery (`ResearchNodes`: the ledger-charged model calls and searches,
events, failures) and differ where a report differs from a short answer: the plan is an outline whose
sub-questions are searched side by side in the first round; notes are quoted whole sentences, not
extracted facts; a round drafts nothing, and at the plan's depth the sections the notes leave unanswered
get one more round of their own (the thin-section rule); the run ends by writing a cited paragraph per
section and checking every sentence against the notes it cites.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sounding.agent.nodes import (
    NO_ANSWER,
    NO_ANSWER_MALFORMED,
    ResearchNodes,
    admit_query,
    charges_of,
    fresh_run,
    messages,
    normalise_query,
    passage_title,
    passage_url,
    queries_schema,
    queries_update,
    unread_passages,
)
from sounding.agent.question import check_question
from sounding.agent.report import (
    MAX_SECTIONS,
    REPORT_PROMPTS,
    THIN_SPENT_SHARE,
    Report,
    ReportWriter,
    passage_quote,
    thin_section,
)
from sounding.agent.state import Note, ResearchState
from sounding.budgets.controllers import Decision, Plan, fit_depth, report_usage, round_usage, step_usage
from sounding.budgets.features import Features, answer_format
from sounding.tools.llm.base import LLMError
from sounding.tools.text import content_words


class ReportNodes(ResearchNodes):
    """A report's nodes (graph names in ``ReportNodes.NAMES``); the short answer's are the base class's."""

    NAMES: ClassVar[dict[str, str]] = {
        "queries": "report_queries", "search": "report_search", "read": "report_read",
        "reflect": "report_reflect", "end": "write",
    }  # fmt: skip
    #: A report's query is a repeat when its words are all in an earlier query's (it finds the same passages).
    SUBSUMED_QUERIES_REPEAT: ClassVar[bool] = True

    # outline: the controller's plan widened to an outline's sub-questions ----------------------------

    def plan(self, state: ResearchState) -> dict[str, Any]:
        question = check_question(state["question"])  # Studio's input reaches the graph unchecked
        update = fresh_run()
        why = answer_format(question)[1] if self.deps.answer_format == "auto" else "asked for"
        return self._plan_report(question, update, why)

    def _plan_report(self, question: str, update: dict[str, Any], why: str) -> dict[str, Any]:
        """An open question: the controller's plan widened to an outline's sub-questions (searched in
        parallel in the first round), with room left for writing and checking every section."""
        ledger = self.deps.ledger
        plan = self.deps.controller.plan(Features(question=question), ledger.budget, ledger.cost_model)
        writer = self._writer(plan)
        try:
            title, sections = writer.outline(question, n=min(3, MAX_SECTIONS))
        except LLMError as exc:
            failed = self._fail("plan", exc)
            title, sections = question, [question]
            update = {**update, **failed}
        plan = plan.model_copy(
            update={
                "format": "report",
                "sections": len(sections),
                "depth": max(plan.depth, 1),
                "breadth": len(sections),
                "read": max(plan.read, min(len(sections) + 2, 6)),
                "why": f"report: {why}",
                "stop_rule": "depth",
            }
        )
        plan = fit_depth(plan, ledger.budget, ledger.cost_model)
        event = self._event(
            "plan", plan=plan.model_dump(), difficulty=None, subquestions=sections, title=title
        )
        return {
            **update,
            "plan": plan,
            "features": Features(question=question).model_dump(),
            "subquestions": sections,
            "title": title,
            "charges": [c.model_dump() for c in writer.charges],
            "events": [*update.get("events", []), event],
        }

    def _writer(self, plan: Plan) -> ReportWriter:
        return ReportWriter(
            self.deps.llm,
            self.deps.ledger,
            REPORT_PROMPTS,
            plan.caps,
            seed=self.deps.seed,
            related=self.deps.relatedness,
            sample_temperature=self.deps.reasoning_temperature,
            composer=self.deps.composer,
        )

    def first_queries(self, state: ResearchState) -> list[str]:
        """One search per section of the outline."""
        return list(state.get("subquestions", []))

    def queries(self, state: ResearchState) -> dict[str, Any]:
        plan = state["plan"]
        round_ = state.get("round", 0) + 1
        if round_ > plan.depth:  # a report's round for its thin sections
            return self._thin_queries(state, plan, round_)
        return self._round_queries(state, plan, round_)

    def _thin_queries(self, state: ResearchState, plan: Plan, round_: int) -> dict[str, Any]:
        """The thin-section round of a report: for each section the notes leave unanswered, a new
        keyword query of its own (the model's, for the sub-question: searching the sub-question
        itself again would find the same passages), one search each."""
        issued = list(state.get("issued", []))
        seen = {normalise_query(q) for q in issued}
        fresh: list[str] = []
        suppressed: list[str] = []
        charges: list[dict[str, Any]] = []
        for sub in state.get("thin", []):
            msgs = messages("queries", question=sub, known="", issued="; ".join(issued + fresh), n=2)
            try:
                result = self._json(
                    msgs, queries_schema(2), cap=plan.caps.query, node="queries", round=round_
                )
            except LLMError as exc:
                return {**self._fail("queries", exc), "round": round_, "queries": []}
            charges += charges_of(result)
            for candidate in (result.value or {}).get("queries", [])[:2]:
                if admit_query(str(candidate), seen, fresh, suppressed, report=True):
                    break
        event = self._event(
            "queries", round=round_, queries=fresh, suppressed=suppressed, thin=state.get("thin", [])
        )
        return queries_update(round_, fresh, charges, event)

    # read: quote whole sentences from the round's best passages -------------------------------------

    def read(self, state: ResearchState) -> dict[str, Any]:
        if state.get("errors"):
            return {}
        round_ = state["round"]
        chosen = unread_passages(state, round_, self.deps.rrf_k)[: state["plan"].read]
        if not chosen:
            return {"events": [self._event("read", round=round_, passages=[], facts=0)]}
        return self._read_quotes(state, chosen, round_)

    def _read_quotes(self, state: ResearchState, chosen: list[dict[str, Any]], round_: int) -> dict[str, Any]:
        """A report's notes are quotations: from each passage, the whole sentences that bear most on the
        question and this round's queries (embeddings when the run has them, else shared words). Free
        of model calls, and every citation then points at words the source really contains (small
        models' paraphrased facts drift)."""
        question, queries = state["question"], list(state.get("queries", []))
        wanted = content_words(" ".join([question, *queries]))
        related = self.deps.relatedness
        score = None
        if related is not None:

            def score(texts: list[str]) -> list[float]:
                per_query = [related.similarity(q, texts) for q in [question, *queries]]
                return [max(column) for column in zip(*per_query, strict=True)]

        notes = []
        for hit in chosen:
            fact = passage_quote(hit["doc_id"], hit["text"], wanted, score)  # whole sentences only
            if fact:
                notes.append(Note(doc_id=hit["doc_id"], title=hit["title"], fact=fact, round=round_))
        event = self._event("read", round=round_, passages=[h["title"] for h in chosen], facts=len(notes))
        return {"notes": notes, "read_ids": [h["doc_id"] for h in chosen], "events": [event]}

    # reflect: go on to the plan's depth (and a thin section's round) while the writing stays affordable

    def reflect(self, state: ResearchState) -> dict[str, Any]:
        if state.get("errors"):
            return {"decision": Decision.STOP.value}
        return self._reflect_report(state, state["plan"], state["round"], state.get("notes", []))

    def _reflect_report(
        self, state: ResearchState, plan: Plan, round_: int, notes: list[Note]
    ) -> dict[str, Any]:
        """A report's round needs no draft: go on to the plan's depth while the next round and the
        writing after it are affordable. At the plan's depth, sections the notes leave unanswered get
        one more round of their own if more than half the budget is unspent (the thin-section rule)."""
        decision, stop_reason = Decision.CONTINUE, None
        thin: list[str] = []
        if round_ >= plan.depth:
            thin = self._thin_sections(state, plan, notes)
            decision, stop_reason = (Decision.CONTINUE, None) if thin else (Decision.STOP, "depth")
        elif not self.deps.ledger.can_afford(round_usage(plan, round_ + 1) + report_usage(plan)):
            decision, stop_reason = Decision.STOP, "budget"
        event = self._event("round", round=round_, notes=len(notes), decision=decision.value, thin=thin)
        update: dict[str, Any] = {"decision": decision.value, "stop_reason": stop_reason, "events": [event]}
        if thin:
            update["thin"] = thin
        return update

    def _thin_sections(self, state: ResearchState, plan: Plan, notes: list[Note]) -> list[str]:
        """The sub-questions the notes leave unanswered (`thin_section`), when they may have their
        round: once per report, with less than THIN_SPENT_SHARE of the budget spent, and that round
        (a query and a search per section) and the writing after it affordable."""
        if state.get("thin") or self.deps.ledger.spent_share() >= THIN_SPENT_SHARE:
            return []
        question = state["question"]
        related = self.deps.relatedness
        thin = [s for s in state.get("subquestions", []) if thin_section(notes, s, question, related)]
        if not thin:
            return []
        usage = round_usage(plan.model_copy(update={"breadth": len(thin)}), round_=plan.depth + 1)
        for _ in thin[1:]:
            usage = usage + step_usage(plan, "query")
        return thin if self.deps.ledger.can_afford(usage + report_usage(plan)) else []

    # write and check: a report's paragraphs, then every sentence against the notes it cites -------

    def write(self, state: ResearchState) -> dict[str, Any]:
        plan = state["plan"]
        notes = state.get("notes", [])
        writer = self._writer(plan)
        subquestions = state.get("subquestions") or [state["question"]]
        title = state.get("title") or state["question"]
        if any(e["kind"] == "llm" for e in state.get("errors", [])):  # the model is gone: write nothing
            return {
                "report": Report(title=title, sections=[], unsupported=self.deps.unsupported).model_dump()
            }
        try:
            sections = writer.write(state["question"], subquestions, notes)
        except LLMError as exc:
            failed = self._fail("write", exc)
            report = Report(title=title, sections=[], unsupported=self.deps.unsupported)
            return {
                **failed,
                "report": report.model_dump(),
                "charges": [c.model_dump() for c in writer.charges],
            }
        for section in sections:
            section.searched_again = section.question in state.get("thin", [])
        report = Report(title=title, sections=sections, unsupported=self.deps.unsupported)
        written = sum(len(s.claims) for s in sections)
        event = self._event("write", sections=len(sections), sentences=written, dropped=report.dropped)
        return {
            "report": report.model_dump(),
            "charges": [c.model_dump() for c in writer.charges],
            "events": [event],
        }

    def check(self, state: ResearchState) -> dict[str, Any]:
        plan = state["plan"]
        notes = state.get("notes", [])
        report = Report.model_validate(state["report"])
        passages = {h["doc_id"]: h["text"] for h in state.get("hits", [])}
        writer = self._writer(plan)
        errors = list(state.get("errors", []))
        new_errors: list[dict[str, str]] = []
        if report.sections and not errors:
            try:
                report.check = writer.check(report.sections, notes, passages)
            except LLMError as exc:
                new_errors.append({"node": "check", "kind": "llm", "message": str(exc)})
        cited = report.cited_notes()
        doc_ids: list[str] = []
        for n in cited:
            if notes[n - 1].doc_id not in doc_ids:
                doc_ids.append(notes[n - 1].doc_id)
        source_of = {n: doc_ids.index(notes[n - 1].doc_id) + 1 for n in cited}
        sources = [
            {
                "doc_id": d,
                "title": passage_title(state, d),
                "url": passage_url(state, d),
                "passage": passages[d],
            }
            for d in doc_ids
        ]
        all_errors = errors + new_errors
        body = report.markdown(source_of) if report.printed_claims() else NO_ANSWER
        no_answer_reason = None
        if body == NO_ANSWER:
            no_answer_reason = report_no_answer_reason(report, bool(all_errors))
            body = {
                "malformed": NO_ANSWER_MALFORMED,
                "no notes": "No answer: the searches found nothing to write a report from.",
                # the sections' own lines say why each printed nothing (off topic, cut, unhelpful ...)
                "nothing printed": "No answer: nothing written passed the report's checks.\n\n"
                + report.markdown(source_of),
            }.get(no_answer_reason, NO_ANSWER)
        final = {
            "answer": body,
            "no_answer_reason": no_answer_reason,
            "citations": doc_ids,
            "sources": sources,
            "citations_removed": 0,
            "improved": False,
            "degraded": bool(all_errors),
            "error": "; ".join(f"{e['node']}: {e['message']}" for e in all_errors) or None,
            "stop_reason": "error" if all_errors else state.get("stop_reason") or "done",
            "report": report.model_dump(),
        }
        check = report.check
        event = self._event(
            "check",
            sentences=check.sentences,
            supported=check.supported,
            citation_precision=check.citation_precision,
        )
        return {
            "final": final,
            "report": report.model_dump(),
            "charges": [c.model_dump() for c in writer.charges],
            "events": [event],
            "errors": new_errors,
        }


def report_no_answer_reason(report: Report, failed: bool) -> str:
    """Why a report printed nothing: the backend failed, the budget ran out (or nothing was planned),
    the model's output never parsed, the searches found nothing to write from, or what was written
    was all left out (off topic, cut, repeated, unhelpful or unsupported: "nothing printed")."""
    skipped = {section.skipped for section in report.sections}
    if failed:
        return "backend"
    if "budget" in skipped or not report.sections:
        return "budget"
    if "malformed" in skipped:
        return "malformed"
    return "no notes" if skipped <= {"no notes", "no relevant notes"} else "nothing printed"
