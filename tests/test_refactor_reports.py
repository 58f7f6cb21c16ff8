"""Edge cases of the report check, the report eval's judge and summary, and the per-round usage
estimate that the broader tests do not reach: what they pin must not move when the code is split up
(issue 29: complexity cut with behaviour unchanged)."""

from __future__ import annotations

import pytest

from sounding.agent.report import REPORT_PROMPTS, Claim, ReportWriter, Section
from sounding.agent.state import Note
from sounding.budgets.controllers import StepCaps
from sounding.budgets.cost import make_cost_model
from sounding.budgets.ledger import Budget, Ledger
from sounding.evals import reports
from sounding.evals.estimate import EstimateError, measure_usage
from sounding.evals.store import ResultStore
from sounding.settings import BudgetSettings
from tests.scripted import ScriptedLLM
from tests.test_harness import config, synthetic_rows

NOTES = [
    Note(doc_id="d1", title="Danube", fact="The Danube flows through Budapest."),
    Note(doc_id="d2", title="Budapest", fact="Budapest is the capital of Hungary."),
    Note(doc_id="d3", title="Everest", fact="Mount Everest is the highest mountain."),
]
PASSAGES = {"d1": "The Danube is a river in Central Europe."}
DANUBE = "The Danube flows through Budapest."
CAPITAL = "Budapest is the capital of Hungary."


def unlimited_ledger() -> Ledger:
    return Ledger(
        Budget(limit=None, unit="tokens"), make_cost_model("tokens", BudgetSettings(), n_params=None)
    )


# --- the report's own check ----------------------------------------------------------------------


def test_check_calls_once_per_cited_section_and_falls_back_to_the_lexical_check():
    answers = {
        # a "yes" naming no note, a "no", and no verdict at all for the third claim
        1: {"claims": [{"supported": True, "notes": []}, {"supported": False, "notes": [2, 7]}]},
        2: {"claims": ["yes"]},  # not a verdict: the lexical check alone decides
    }
    llm = ScriptedLLM({"check": lambda n, m: answers[n]})
    writer = ReportWriter(llm, unlimited_ledger(), REPORT_PROMPTS, StepCaps())
    sections = [
        Section(
            question="a",
            claims=[
                Claim(text=DANUBE, notes=[1, 3]),
                Claim(text=CAPITAL, notes=[2]),
                Claim(text=CAPITAL, notes=[2]),
            ],
        ),
        Section(question="b", claims=[Claim(text="Nothing here cites a single note.")]),
        Section(question="c", claims=[Claim(text=CAPITAL, notes=[1, 2])]),
    ]
    totals = writer.check(sections, NOTES, PASSAGES)

    assert [step for step, _, _ in llm.calls] == ["check", "check"]  # none for the uncited section
    assert "Claim 3:" in llm.calls[0][1][-1]["content"] and "Claim 2:" not in llm.calls[1][1][-1]["content"]
    yes, no, unjudged = sections[0].claims
    # the "yes" vouches for both cited notes; only the one sharing the sentence's words supports it
    assert (yes.model_supported, yes.supported, yes.supporting) == (True, True, [1])
    assert (no.model_supported, no.supported, no.supporting) == (False, False, [2])  # 7 is not cited
    assert (unjudged.model_supported, unjudged.supported, unjudged.supporting) == (None, True, [2])
    uncited = sections[1].claims[0]
    assert (uncited.lexical, uncited.supported, uncited.supporting) == (0.0, False, [])
    lone = sections[2].claims[0]
    assert (lone.model_supported, lone.supported, lone.supporting) == (None, True, [1, 2])
    assert totals.model_dump() == {
        "sentences": 5,
        "supported": 3,
        "citations": 6,
        "precise": 5,
        "lexical_only": 2,
        "unhelpful": 0,
        "supported_share": 0.6,
        "citation_precision": 5 / 6,
    }
    assert len(writer.charges) == 2


def test_check_with_nothing_cited_makes_no_call():
    llm = ScriptedLLM({})
    writer = ReportWriter(llm, unlimited_ledger(), REPORT_PROMPTS, StepCaps())
    totals = writer.check(
        [Section(question="a", claims=[Claim(text=DANUBE)]), Section(question="b")], NOTES, {}
    )
    assert llm.calls == [] and writer.charges == []
    assert (totals.sentences, totals.supported, totals.citations, totals.lexical_only) == (1, 0, 0, 0)


# --- the report eval's judge and summary ---------------------------------------------------------


def test_judge_claims_in_batches_with_the_notes_each_batch_cites():
    verdicts = {
        1: {"sentences": [{"supported": True, "sources": []}] * 5 + [{"supported": False, "sources": [1]}]},
        2: {"sentences": [{"supported": True, "sources": [2, 1]}]},  # one verdict for two sentences
    }
    judge = ScriptedLLM({"support": lambda n, m: verdicts[n]})
    claims = [reports.Claim(text=DANUBE, notes=[1]) for _ in range(6)]
    claims += [reports.Claim(text="An uncited sentence is never judged.")]
    claims += [reports.Claim(text=CAPITAL, notes=[2]), reports.Claim(text=CAPITAL, notes=[2])]
    judged = reports.judge_claims(judge, unlimited_ledger(), claims, NOTES)

    assert [step for step, _, _ in judge.calls] == ["support", "support"]  # 6 cited, then 2
    first, second = (m[-1]["content"] for _, m, _ in judge.calls)
    assert "[1] (Danube)" in first and "[2] (Budapest)" not in first and "Sentence 6:" in first
    assert "[2] (Budapest)" in second and "[1] (Danube)" not in second and "Sentence 3:" not in second
    assert [c.judge_supported for c in judged] == [True] * 5 + [False, None, True, None]
    # a "no" keeps the notes it names; only a supported sentence's notes count as precise
    assert [c.judge_notes for c in judged] == [[1]] * 6 + [[], [2], []]
    assert judged[0].lexical == 1.0 and judged[6].lexical == 0.0
    assert reports.score(judged).model_dump() == {
        "sentences": 9,
        "supported": 6,
        "citations": 8,
        "precise": 6,
        "lexical_supported": 8,
        "both_supported": 6,
        "uncited": 1,
        "unjudged": 1,
    }


def test_summary_of_no_records_says_nothing_rather_than_nan():
    summary = reports.summarise([])
    assert summary["questions"] == 0
    for arm in reports.ARMS:
        row = summary["arms"][arm]
        assert row["answers_with_sentences"] == 0 and row["sentences_per_answer"] == 0.0
        assert row["supported_share"] is None and row["supported_share_ci"] is None
        assert row["micro"] == reports.ArmScore().model_dump()
    assert summary["paired"]["report_checked"] == {"questions": 0, "supported_share_diff": None, "ci": None}
    assert summary["topic_read_share"] is None
    assert summary["tokens_per_question"] == {"report": None, "one_shot": None, "judge": None}
    assert list(summary) == [
        "questions",
        "arms",
        "paired",
        "topic_read_share",
        "tokens_per_question",
        "seconds_per_question",
    ]


# --- the measured spend per round ----------------------------------------------------------------


def _sweep(path, depths, *, stop_early: str | None = None, think_rows: bool = False) -> ResultStore:
    """A fixed sweep storing ``depths``; round r of question q costs 500 + 10 * r prompt tokens."""
    model = "qwen2.5-coder-0.5b"
    store = ResultStore(path)
    store.register_run("f", config(model=model, depth=max(depths)).model_dump())
    rows = synthetic_rows(model, "f", dict.fromkeys(depths, 0.5), 500, n=4)
    for r in rows:
        r["prompt_tokens"] = 100 + sum(500 + 10 * k for k in range(1, r["round"] + 1))
        r["completion_tokens"] = 10 + 20 * r["round"]
        if r["question_id"] == stop_early:  # this question stopped after round 1
            r["rounds_done"] = min(r["round"], 1)
            r["prompt_tokens"] += 1000 * r["round"]
    if think_rows:  # a reasoning setting's rows: more spend, never measured as a search round
        rows += [{**r, "think": 256, "prompt_tokens": 10**6} for r in rows]
    for q in sorted({r["question_id"] for r in rows}):
        store.add_question([r for r in rows if r["question_id"] == q])
    return store


def test_usage_is_measured_on_consecutive_rounds_done_without_reasoning(tmp_path):
    store = _sweep(tmp_path / "r.sqlite", [0, 1, 2, 4], stop_early="q0", think_rows=True)
    est = measure_usage(store, "qwen2.5-coder-0.5b")
    # rounds 1 and 2 only (no round 3 stored); q0 stopped after round 1, so it is not in round 2's mean
    assert est.round_prompt_tokens == [round((3 * 510 + 1510) / 4), 520]
    assert est.round_completion_tokens == [20, 20]
    assert (est.overhead_prompt_tokens, est.overhead_completion_tokens, est.questions) == (100, 10, 4)
    assert est.source.endswith("r.sqlite runs f")


def test_usage_needs_a_closed_book_round_and_a_first_round(tmp_path):
    with pytest.raises(EstimateError, match=r"no closed-book and first-round answers"):
        measure_usage(_sweep(tmp_path / "a.sqlite", [1, 2]), "qwen2.5-coder-0.5b")
    with pytest.raises(EstimateError, match=r"no closed-book and first-round answers"):
        measure_usage(_sweep(tmp_path / "b.sqlite", [0, 2]), "qwen2.5-coder-0.5b")
    empty = ResultStore(tmp_path / "c.sqlite")
    with pytest.raises(EstimateError, match=r"models there: none$"):
        measure_usage(empty, "qwen2.5-coder-0.5b")
