"""The research graph with a scripted LLM (test double): routing, budget, fan-out, citations, faults."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sounding.agent.llm_step import parse_json_object
from sounding.agent.nodes import AgentDeps, clean_query
from sounding.agent.runner import QuestionError, check_question, run_research, sqlite_checkpointer
from sounding.agent.state import Note
from sounding.budgets.controllers import AdaptiveController, FixedController
from sounding.budgets.cost import make_cost_model
from sounding.budgets.ledger import Budget, Ledger
from sounding.settings import BudgetSettings
from tests.scripted import MemorySearch, ScriptedLLM

DOCS = {
    "d-hu": ("Hungary", "Hungary is a country in Central Europe. Its capital is Budapest."),
    "d-bp": ("Budapest", "Budapest is the capital of Hungary. The Danube flows through Budapest."),
    "d-da": ("Danube", "The Danube is a river in Europe that flows through Vienna and Budapest."),
    "d-pa": ("Paris", "Paris is the capital of France on the river Seine."),
}
Q = "Which river flows through the capital of Hungary?"


def script(**overrides):
    base = {
        "probe": "Danube",
        "queries": lambda n, m: {"queries": ["Budapest river", "capital Hungary"][: 1 + (n % 2)]},
        "extract": {
            "facts": [
                {"passage": 1, "fact": "Budapest is the capital of Hungary."},
                {"passage": 2, "fact": "The Danube flows through Budapest."},
            ]
        },
        "reflect": lambda n, m: {
            "answer": "Danube",
            "notes": [1, 2],
            "supported": True,
            "next_query": f"Danube Budapest {n}",
        },
        "answer": {"answer": "The Danube", "notes": [1, 2]},
    }
    base.update(overrides)
    return base


def deps(llm, search=None, *, budget=None, controller=None, **flags) -> AgentDeps:
    b = budget or Budget(limit=50_000, unit="tokens")
    ledger = Ledger(b, make_cost_model("tokens", BudgetSettings(), n_params=None))
    return AgentDeps(
        llm=llm,
        search=search or MemorySearch(DOCS),
        ledger=ledger,
        controller=controller or FixedController(2, 2),
        **flags,
    )


def test_full_run_answers_with_citations_and_anytime_drafts():
    d = deps(ScriptedLLM(script()))
    r = run_research(Q, d)
    assert r.answer == "The Danube"
    assert [x["round"] for x in r.drafts] == [1, 2]
    assert all(set(x["spend"]) >= {"searches", "tokens", "cost"} for x in r.drafts)
    assert r.drafts[0]["spend"]["tokens"] < r.drafts[1]["spend"]["tokens"]  # cumulative spend per round
    assert set(r.citations) <= {h for h in r.read_doc_ids}
    assert [s.title for s in r.sources] and all(s.passage for s in r.sources)
    assert not r.degraded and r.stop_reason == "depth"


def test_facts_naming_no_passage_are_dropped_not_fatal():
    """Seen on 2Wiki with the 0.5B: a fact whose passage was null crashed the read node (and the sweep)."""
    odd = {
        "facts": [
            {"passage": None, "fact": "Budapest is the capital of Hungary."},
            {"fact": "no passage at all"},
            "a bare string",
            {"passage": "two", "fact": "not a number"},
            {"passage": 2, "fact": "The Danube flows through Budapest."},
        ]
    }
    r = run_research(Q, deps(ScriptedLLM(script(extract=odd))))
    assert r.answer == "The Danube" and not r.degraded
    read = [e for e in r.events if e["kind"] == "read"]
    assert read and all(e["facts"] == 1 for e in read)  # only the fact with a passage number is kept


def test_parallel_search_fan_out():
    """Breadth-2 rounds run their searches concurrently (Send): both are in flight at once."""
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def on_search(q: str) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.3)
        with lock:
            in_flight -= 1

    search = MemorySearch(DOCS, on_search=on_search)
    llm = ScriptedLLM(script(queries={"queries": ["Budapest river", "Danube Europe", "capital Hungary"]}))
    r = run_research(Q, deps(llm, search, controller=FixedController(1, 3)))
    assert len(search.queries) == 3
    assert peak >= 2
    assert r.spend["searches"] == 3


def test_duplicate_queries_are_suppressed():
    llm = ScriptedLLM(
        script(
            queries={
                "queries": [
                    "Which river flows through the capital of Hungary",
                    "budapest RIVER",
                    "river budapest",
                ]
            },
            reflect={"answer": "Danube", "notes": [1], "supported": False, "next_query": "Budapest river"},
        )
    )
    search = MemorySearch(DOCS)
    r = run_research(Q, deps(llm, search, controller=FixedController(3, 3)))
    normalised = [" ".join(sorted(q.lower().split())) for q in search.queries]
    assert len(normalised) == len(set(normalised))  # no query was searched twice
    assert len(r.queries) == len(set(r.queries))


def test_stop_on_budget_goes_to_answer_within_budget():
    llm = ScriptedLLM(script())
    b = Budget(limit=2500, unit="tokens")
    d = deps(llm, budget=b, controller=FixedController(8, 2))
    r = run_research(Q, d)
    assert d.ledger.spent_cost <= 2500
    assert r.stop_reason == "budget"
    assert r.answer and not r.degraded
    assert len(r.drafts) < 8


def test_adaptive_decomposes_hard_questions_into_first_hop_queries():
    llm = ScriptedLLM(
        script(
            probe=lambda n, m: ["Danube", "Tisza"][n % 2],
            decompose={"subquestions": ["What is the capital of Hungary?", "Which river flows there?"]},
        )
    )
    search = MemorySearch(DOCS)
    r = run_research(Q, deps(llm, search, controller=AdaptiveController()))
    assert r.plan["decompose"] is True
    assert "What is the capital of Hungary" in search.queries
    assert any(s == "decompose" for s, _, _ in llm.calls)


def test_stop_on_controller():
    llm = ScriptedLLM(
        script(reflect={"answer": "Danube", "notes": [1, 2], "supported": True, "next_query": "x"})
    )
    d = deps(llm, controller=AdaptiveController())
    r = run_research(Q, d)
    assert r.stop_reason in ("controller", "depth")
    assert len(r.drafts) <= r.plan["depth"]
    assert r.plan["difficulty"] in ("easy", "medium", "hard")


def test_citations_to_unknown_notes_are_removed_and_counted():
    llm = ScriptedLLM(
        script(
            reflect={"answer": "Danube", "notes": [1, 9, 42], "supported": True, "next_query": "q"},
            answer={"answer": "Danube", "notes": [2, 17]},
        )
    )
    r = run_research(Q, deps(llm, controller=FixedController(1, 1)))
    assert r.citations_removed >= 3
    assert all(c in r.read_doc_ids for c in r.citations)


def test_degraded_end_on_llm_failure_keeps_best_answer():
    llm = ScriptedLLM(script(), fail_on="reflect", fail_after=1)
    r = run_research(Q, deps(llm, controller=FixedController(3, 1)))
    assert r.degraded and "endpoint went away" in (r.error or "")
    assert r.answer == "Danube"  # the round-1 draft survives
    assert r.stop_reason == "error"


def test_degraded_end_on_search_failure():
    r = run_research(
        Q, deps(ScriptedLLM(script()), MemorySearch(DOCS, fail=True), controller=FixedController(2, 2))
    )
    assert r.degraded and "scripted search failure" in (r.error or "")
    assert r.answer


def test_malformed_output_is_repaired_or_retried():
    truncated = '{"answer": "Danube", "notes": [1, 2], "supported": true, "next_query": "Danube Bud'
    llm = ScriptedLLM(script(reflect=truncated))
    r = run_research(Q, deps(llm, controller=FixedController(1, 1)))
    assert r.drafts[0]["answer"] == "Danube"
    garbage = ScriptedLLM(script(reflect="I think it is the Danube"))
    r = run_research(Q, deps(garbage, controller=FixedController(1, 1)))
    assert sum(1 for s, _, _ in garbage.calls if s == "reflect") == 2  # retried once, within budget
    assert r.stop_reason == "malformed output" and not r.degraded


@pytest.mark.parametrize(
    ("text", "expected", "completed"),
    [
        # cut inside a later key: the hand-written repair this replaced gave up here and retried
        ('{"answer": "Danube", "no', {"answer": "Danube"}, True),
        (
            '{"queries": ["Danube river", "capital of Hung',
            {"queries": ["Danube river", "capital of Hung"]},
            True,
        ),
        ('{"answer": "Danube", "notes": [1, 2', {"answer": "Danube", "notes": [1, 2]}, True),
        # a raw newline inside a string, as llama.cpp's grammar lets through: whole, not completed
        ('{"answer": "Danube\n", "notes": [1]}', {"answer": "Danube\n", "notes": [1]}, False),
    ],
)
def test_cut_off_json_is_completed_without_inventing(text, expected, completed):
    assert parse_json_object(text, ["answer", "queries"]) == (expected, completed)


@pytest.mark.parametrize("text", ['{"ans', "{", "", "I think it is the Danube", '["Danube"]', '{"other": 1}'])
def test_json_without_what_the_step_asked_for_is_none(text):
    assert parse_json_object(text, ["answer", "notes"])[0] is None


def test_a_reflection_cut_after_its_answer_needs_no_retry():
    cut = '{"answer": "Danube", "notes": [1, 2], "supp'
    llm = ScriptedLLM(script(reflect=cut))
    r = run_research(Q, deps(llm, controller=FixedController(1, 1)))
    assert r.drafts[0]["answer"] == "Danube"
    assert sum(1 for s, _, _ in llm.calls if s == "reflect") == 1


def test_depth_zero_is_closed_book():
    llm = ScriptedLLM(script(answer={"answer": "Danube"}))
    search = MemorySearch(DOCS)
    r = run_research(Q, deps(llm, search, controller=FixedController(0, 1)))
    assert search.queries == [] and r.answer and r.spend["searches"] == 0


def test_closed_book_draft_is_round_zero():
    r = run_research(
        Q,
        deps(
            ScriptedLLM(script()),
            controller=FixedController(1, 1),
            closed_book_draft=True,
            improve_final=False,
        ),
    )
    assert [d["round"] for d in r.drafts] == [0, 1]
    assert r.answer == r.drafts[-1]["answer"]


def test_queries_are_plain_keywords():
    assert clean_query("SELECT river FROM cities WHERE capital = 'Budapest'") == "river cities Budapest"
    assert clean_query('title:"Danube" river') == "Danube river"


def test_bad_questions():
    with pytest.raises(QuestionError, match="empty"):
        check_question("   ")
    with pytest.raises(QuestionError, match="limit"):
        check_question("x" * 5000)


def test_an_unfinished_thread_with_untyped_notes_is_refused_with_a_clear_error():
    from sounding.agent.runner import CheckpointError, check_resumable

    check_resumable({"notes": [Note(doc_id="d", title="t", fact="f")]}, "t1")
    with pytest.raises(CheckpointError, match="thread t1 was checkpointed by an earlier sounding"):
        check_resumable({"notes": [{"doc_id": "d", "title": "t", "fact": "f", "round": 1}]}, "t1")


def test_checkpointed_run_resumes_by_thread_id(tmp_path):
    saver = sqlite_checkpointer(tmp_path / "ck.sqlite")
    llm = ScriptedLLM(script())
    first = run_research(Q, deps(llm), thread_id="t1", checkpointer=saver)
    calls = len(llm.calls)
    again = run_research(
        Q, deps(llm), thread_id="t1", checkpointer=sqlite_checkpointer(tmp_path / "ck.sqlite")
    )
    assert len(llm.calls) == calls  # a finished thread is returned from its checkpoint, nothing re-spent
    assert again.answer == first.answer and again.spend["tokens"] == first.spend["tokens"]


def test_the_typed_plan_revives_from_a_checkpoint_with_no_unregistered_type(tmp_path, monkeypatch, caplog):
    """The plan lives in the graph state as its model; the saver allows it by name, so it comes back as a
    Plan with no 'unregistered type' warning (and so survives LANGGRAPH_STRICT_MSGPACK)."""
    from sounding.budgets.controllers import Plan

    run_research(
        Q, deps(ScriptedLLM(script())), thread_id="t1", checkpointer=sqlite_checkpointer(tmp_path / "c")
    )
    saver = sqlite_checkpointer(tmp_path / "c")
    with caplog.at_level("WARNING"):
        checkpoint = saver.get_tuple({"configurable": {"thread_id": "t1"}})
    plan = checkpoint.checkpoint["channel_values"]["plan"]
    assert isinstance(plan, Plan) and plan.depth >= 1
    notes = checkpoint.checkpoint["channel_values"]["notes"]
    assert notes and all(isinstance(n, Note) for n in notes)
    assert not [r for r in caplog.records if "unregistered" in r.getMessage()]


@settings(max_examples=25, deadline=None)
@given(
    limit=st.integers(200, 12_000),
    depth=st.integers(0, 5),
    breadth=st.integers(1, 3),
    max_searches=st.none() | st.integers(0, 6),
    adaptive=st.booleans(),
)
def test_budget_invariant_end_to_end(limit, depth, breadth, max_searches, adaptive):
    b = Budget(limit=limit, unit="tokens", max_searches=max_searches)
    controller = AdaptiveController() if adaptive else FixedController(depth, breadth)
    d = deps(ScriptedLLM(script()), budget=b, controller=controller)
    r = run_research(Q, d)
    assert d.ledger.spent_cost <= limit
    assert max_searches is None or r.spend["searches"] <= max_searches
    assert sum(c.cost["tokens"] for c in d.ledger.charges) <= limit
    assert r.answer


def test_deep_plan_runs_all_rounds_within_the_recursion_limit():
    r = run_research(
        Q, deps(ScriptedLLM(script()), budget=Budget(limit=None), controller=FixedController(12, 1))
    )
    assert [d["round"] for d in r.drafts] == list(range(1, 13)) and not r.degraded


def test_recursion_limit_never_surfaces_as_a_crash():
    class Overreaching(FixedController):
        @property
        def max_depth(self) -> int:  # claims shallow plans, then plans deep ones
            return 1

    r = run_research(
        Q, deps(ScriptedLLM(script()), budget=Budget(limit=None), controller=Overreaching(30, 1))
    )
    assert r.degraded and "Recursion limit" in (r.error or "")
    assert r.answer == "Danube" and len(r.drafts) >= 1  # the best draft so far
