"""The tree and best_of_n strategies on scripted models: the value function decides what is kept and
answered, best_of_n keeps its trajectories apart, both spend the same per round, every round is an
anytime draft, and parallel branches never overspend the ledger. Also decompose's scheduling modes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sounding.agent.runner import run_research
from sounding.agent.strategies import (
    UnknownStrategyError,
    dials_for,
    parse_variant,
    parse_variants,
)
from sounding.agent.strategies.tree import Branch, agreements
from sounding.budgets.controllers import FixedController
from sounding.budgets.ledger import Budget
from sounding.evals.datasets import Sample
from sounding.evals.sweep import rows_for
from sounding.factory import strategy_fields
from sounding.spec import RunSpec
from tests.scripted import MemorySearch, ScriptedLLM
from tests.test_agent_nodes import DOCS, deps

Q = "Which river flows through the capital of Hungary?"
# each query finds one document; each document's answer has its own log-probability
QUERIES = ["Budapest", "Hungary", "Paris"]
ANSWER_BY_TITLE = {"Budapest": ("Danube", -0.1), "Hungary": ("Budapest", -0.5), "Paris": ("Seine", -0.9)}


def answer_from_passages(n, messages):
    text = messages[-1]["content"]
    first = text.split("Passage 1 (")[1].split(")")[0] if "Passage 1 (" in text else ""
    last = text.rsplit("Passage ", 1)[1].split("(")[1].split(")")[0] if "Passage " in text else first
    answer, logprob = ANSWER_BY_TITLE.get(last, ("unknown", -3.0))
    return {"answer": answer, "_logprob": logprob}


def tree_script(**overrides):
    base = {
        "queries": lambda n, m: {"queries": QUERIES},
        "tree_answer": answer_from_passages,
        "probe": {"answer": "Tisza"},  # the closed-book draft
        "tree_support": {"supported": True},
    }
    return {**base, **overrides}


def one_doc_search():
    """Each query's word names one document (k = 1 by the plan below)."""
    return MemorySearch({k: v for k, v in DOCS.items()})


def run(strategy: str, dials: dict, llm=None, *, depth=1, budget=None, workers=1, **flags):
    llm = llm or ScriptedLLM(tree_script())
    search = one_doc_search()
    controller = FixedController(depth, 1, k=1, read=1)
    d = deps(llm, search, controller=controller, budget=budget, closed_book_draft=True, **flags)
    d.dials, d.workers = dials_for(strategy, dials), workers
    return run_research(Q, d, strategy=strategy), llm, search, d


def candidates(result, round_=1):
    (event,) = [e for e in result.events if e["kind"] == "candidates" and e["round"] == round_]
    return event


def test_the_tree_keeps_the_child_the_value_function_ranks_first():
    result, _, search, _ = run("tree", {"width": 3, "beam": 1, "value": "logprob"})
    event = candidates(result)
    assert [c["answer"] for c in event["candidates"]] == ["Danube", "Budapest", "Seine"]
    assert [c["kept"] for c in event["candidates"]] == [True, False, False]
    assert result.answer == "Danube" and search.queries == QUERIES
    assert [d["round"] for d in result.drafts] == [0, 1] and result.drafts[0]["answer"] == "Tisza"
    assert result.citations == ["d-bp"]  # the kept child's passage that contains its answer


def test_agreement_picks_the_majority_answer_over_a_confident_one():
    def answer(n, messages):
        # two of three children agree on "Budapest"; the lone "Danube" is the most confident
        return {"answer": "Danube", "_logprob": -0.1} if "Budapest)" in messages[-1]["content"] else {
            "answer": "budapest", "_logprob": -2.0}  # fmt: skip

    llm = ScriptedLLM(tree_script(tree_answer=answer))
    by_agreement, *_ = run("tree", {"width": 3, "value": "agreement"}, llm)
    by_logprob, *_ = run(
        "tree", {"width": 3, "value": "logprob"}, ScriptedLLM(tree_script(tree_answer=answer))
    )
    assert by_agreement.answer == "budapest" and by_logprob.answer == "Danube"
    shares = [c["agreement"] for c in candidates(by_agreement)["candidates"]]
    assert sorted(shares) == pytest.approx([1 / 3, 2 / 3, 2 / 3])


def test_the_support_value_is_a_charged_check_per_child():
    result, llm, _, _d = run("tree", {"width": 3, "value": "support"},
                            ScriptedLLM(tree_script(tree_support=lambda n, m: {"supported": "Seine" in m[-1]["content"]})))  # fmt: skip
    assert [s for s, *_ in llm.calls].count("tree_support") == 3
    assert result.answer == "Seine"  # the only supported child wins over higher log-probabilities
    assert any(c.node == "tree_support" for c in result.charges)


def test_best_of_n_keeps_its_trajectories_apart_and_samples_all_but_the_first():
    def queries(n, messages):
        return {"queries": [QUERIES[(n - 1) % 3]]}

    llm = ScriptedLLM(tree_script(queries=queries))
    result, llm, _search, _ = run("best_of_n", {"n": 3, "value": "logprob"}, llm, depth=2)
    temperatures = [t for (step, _, _, t) in llm.seeds if step == "queries"]
    assert temperatures[0] == 0.0 and all(t and t > 0 for t in temperatures[1:3])
    round2 = candidates(result, 2)["candidates"]
    assert all(c["kept"] for c in round2) and len(round2) == 3
    # every trajectory extends only its own: its parent is the same-numbered trajectory of round 1
    assert [c["parent"] for c in round2] == ["1.0", "1.1", "1.2"]
    assert [len(c["queries"]) for c in round2] == [2, 2, 2]


def test_tree_and_best_of_n_make_the_same_searches_and_answers_per_round():
    _tree, tree_llm, tree_search, _ = run("tree", {"width": 3, "beam": 1}, depth=2)
    _bon, bon_llm, bon_search, _ = run(
        "best_of_n",
        {"n": 3},
        ScriptedLLM(tree_script(queries=lambda n, m: {"queries": QUERIES[:1]})),
        depth=2,
    )
    assert len(tree_search.queries) == len(bon_search.queries) == 6
    count = lambda llm, step: [s for s, *_ in llm.calls].count(step)  # noqa: E731
    assert count(tree_llm, "tree_answer") == count(bon_llm, "tree_answer") == 6
    assert count(tree_llm, "queries") == 2 and count(bon_llm, "queries") == 6  # one call of 3, three of 1


def test_every_round_is_an_anytime_draft_the_sweep_reads_as_a_depth():
    result, *_ = run("tree", {"width": 2, "beam": 2}, depth=2)
    assert [d["round"] for d in result.drafts] == [0, 1, 2]
    spec = RunSpec(
        suite="s", model="m", model_id="x", llm_backend="llama", temperature=0.0, sample_temperature=0.7,
        prompts="p", controller="fixed", depth=2, breadth=1, seed=0, unit="tokens", budget=None,
        max_searches=None, search_backend="bm25", corpus="c", corpus_fingerprint="f",
        **strategy_fields("tree", {"width": 2, "beam": 2}),
    )  # fmt: skip
    sample = Sample(id="q1", question=Q, answers=["Danube"])
    rows = rows_for(spec, sample, result, None)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[0]["answer"] == "Tisza" and rows[0]["searches"] == 0
    assert rows[1]["searches"] < rows[2]["searches"] and rows[2]["is_final"] == 1


def test_a_round_the_budget_cannot_pay_ends_the_run_with_the_best_answer_so_far():
    # 1,200 token-equivalents pay for round 1 (reserved at the callers' caps) but not for round 2
    result, _, _, d = run("tree", {"width": 3}, depth=3, budget=Budget(limit=1200, unit="tokens"))
    assert [x["round"] for x in result.drafts] == [0, 1] and result.stop_reason == "budget"
    assert result.answer == "Danube" and d.ledger.spent_in("tokens") <= 1200


@settings(max_examples=40, deadline=None)
@given(st.integers(30, 3000), st.sampled_from(["tree", "best_of_n", "decompose"]), st.integers(1, 3))
def test_parallel_branches_never_spend_past_the_budget(limit, name, depth):
    dials = {"tree": {"width": 3, "beam": 2, "value": "agreement"}, "best_of_n": {"n": 4},
             "decompose": {"mode": "parallel"}}[name]  # fmt: skip
    script = tree_script(
        split_parallel={"subquestions": ["What is the capital of Hungary?", "Which river is in Budapest?"]},
        step=lambda n, m: {"answer": ["Budapest", "Danube"][n % 2]},
        compose={"answer": "Danube"},
    )
    result, _, _, d = run(name, dials, ScriptedLLM(script), depth=depth,
                          budget=Budget(limit=limit, unit="tokens"), workers=4)  # fmt: skip
    assert d.ledger.spent_in("tokens") <= limit + 1e-9
    assert result.answer


def test_values_and_agreement():
    assert agreements(["The Danube", "danube", "Seine", ""]) == [0.5, 0.5, 0.25, 0.0]
    b = Branch(id="1.0", logprob=None, agreement=0.5)
    assert b.score("logprob") == (float("-inf"), float("-inf")) and b.score("agreement")[0] == 0.5


# --- decompose: scheduled by structure, or forced --------------------------------------------------


#: The scheduling tests' split asks about France for a question about Hungary: the anchor flags would
#: discard it (tested in test_decompose.py), so these tests turn them off.
UNANCHORED = {"anchor": False}


def decompose_script():
    def step(n, messages):
        asked = messages[-1]["content"]
        for needle, answer in (("capital of Hungary", "Budapest"), ("capital of France", "Paris"),
                               ("longer, Budapest", "Budapest"), ("through Budapest", "Danube")):  # fmt: skip
            if needle in asked.split("Passages:")[0]:
                return {"answer": answer}
        return {"answer": "unknown"}

    return {
        "split": {
            "subquestions": [
                "What is the capital of Hungary?",
                "What is the capital of France?",
                "Which is longer, #1 or #2?",
            ]
        },
        "split_parallel": {
            "subquestions": ["What is the capital of Hungary?", "What is the capital of France?"]
        },
        "step": step,
        "compose": {"answer": "Budapest"},
        "probe": {"answer": "x"},
    }


def waves(result):
    return [(e["step"], e["wave"]) for e in result.events if e["kind"] == "step"]


@pytest.mark.parametrize("workers", [1, 3])
def test_auto_runs_independent_sub_questions_in_one_wave_and_dependent_ones_after(workers):
    result, _llm, *_ = run(
        "decompose", {"mode": "auto", **UNANCHORED}, ScriptedLLM(decompose_script()), depth=3, workers=workers
    )
    assert sorted(waves(result)) == [(1, 1), (2, 1), (3, 2)]
    steps = [e for e in result.events if e["kind"] == "step"]
    assert steps[-1]["question"] == "Which is longer, Budapest or Paris?" and result.answer == "Budapest"


def test_sequential_forces_one_sub_question_per_wave_with_every_earlier_answer():
    result, llm, *_ = run(
        "decompose", {"mode": "sequential", **UNANCHORED}, ScriptedLLM(decompose_script()), depth=3
    )
    assert waves(result) == [(1, 1), (2, 2), (3, 3)]
    prompts = [m[-1]["content"] for s, m, _ in llm.calls if s == "step"]
    assert "Known so far" not in prompts[0] and "What is the capital of Hungary? Budapest" in prompts[-1]


def test_parallel_splits_into_independent_sub_questions_in_one_wave():
    result, llm, *_ = run(
        "decompose", {"mode": "parallel", **UNANCHORED}, ScriptedLLM(decompose_script()), depth=3
    )
    assert waves(result) == [(1, 1), (2, 1)]
    assert [s for s, *_ in llm.calls].count("split_parallel") == 1 and result.answer == "Budapest"


def test_strategy_variants_parse_and_refuse_bad_dials():
    assert parse_variant("tree:width=2:value=agreement").dials == {
        "beam": 1,
        "value": "agreement",
        "width": 2,
    }
    assert parse_variant("iterative").label == "iterative"
    assert [v.label for v in parse_variants("iterative, best_of_n:n=4")] == [
        "iterative",
        "best_of_n:n=4:value=logprob",
    ]
    for bad, says in [("tree:width=0", "width"), ("tree:depth=2", "depth"), ("nope", "unknown strategy"),
                      ("tree:width", "dial=value"), ("decompose:mode=fast", "mode"), ("tree,tree", "twice")]:  # fmt: skip
        with pytest.raises(UnknownStrategyError, match=says):
            parse_variants(bad)


def test_an_off_topic_split_is_red_flagged_drawn_again_and_else_the_question_is_researched():
    from sounding.agent.strategies.decompose import prompt, split_flag

    # a 0.5B model copied the prompt's example for every question: such a split is discarded
    assert (
        split_flag(
            ["Who directed Inception?", "Where was #1 born?"],
            "Who is older, Annie Morton or Terry Richardson?",
        )
        == "off_topic"
    )
    assert (
        split_flag(
            ["How old is Annie Morton?", "How old is Terry Richardson?"],
            "Who is older, Annie Morton or Terry Richardson?",
        )
        is None
    )
    msgs = prompt("split", question="Who is older, A or B?", n=2)
    assert [m["role"] for m in msgs] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert msgs[-1]["content"].startswith("Question: Who is older, A or B?")
    copied = {"subquestions": ["Who directed Inception?", "Where was #1 born?"]}
    script = {
        **decompose_script(),
        "split": lambda n, m: copied if n == 1 else {"subquestions": ["What is the capital of Hungary?"]},
    }
    result, llm, *_ = run("decompose", {"mode": "auto"}, ScriptedLLM(script), depth=2)
    (split,) = [e for e in result.events if e["kind"] == "split"]
    assert split["red_flags"] == ["off_topic"] and split["subquestions"] == [
        "What is the capital of Hungary?"
    ]
    temps = [t for s, _, _, t in llm.seeds if s == "split"]
    assert temps[0] is None and temps[1] and temps[1] > 0  # the second draw is sampled
    always_copied = {**decompose_script(), "split": copied}
    result, *_ = run("decompose", {"mode": "auto"}, ScriptedLLM(always_copied), depth=2)
    (split,) = [e for e in result.events if e["kind"] == "split"]
    assert split["red_flags"] == ["off_topic", "off_topic"] and split["subquestions"] == [Q]


@pytest.mark.parametrize("step", ["queries", "tree_answer", "tree_support"])
def test_a_model_failure_in_any_tree_node_is_a_degraded_run_not_a_crash(step):
    llm = ScriptedLLM(tree_script(), fail_on=step)
    result, *_ = run("tree", {"width": 3, "value": "support"}, llm, depth=2)
    assert result.degraded and "endpoint went away" in (result.error or "")
    assert result.answer  # the best answer so far (the closed-book draft, or round 1's)


def test_empty_answers_never_replace_a_real_one():
    llm = ScriptedLLM(tree_script(tree_answer=lambda n, m: {"answer": "", "_logprob": -0.1}))
    result, *_ = run("tree", {"width": 2}, llm, depth=2)
    assert result.answer == "Tisza" and [d["round"] for d in result.drafts] == [0]
    assert any(e["kind"] == "round_skipped" for e in result.events)


def test_tree_rows_carry_supporting_title_recall():
    result, *_ = run("tree", {"width": 3}, depth=1)
    spec = RunSpec(
        suite="s", model="m", model_id="x", llm_backend="llama", temperature=0.0, sample_temperature=0.7,
        prompts="p", controller="fixed", depth=1, breadth=1, seed=0, unit="tokens", budget=None,
        max_searches=None, search_backend="bm25", corpus="c", corpus_fingerprint="f",
        **strategy_fields("tree", {"width": 3}),
    )  # fmt: skip
    sample = Sample(id="q1", question=Q, answers=["Danube"], supporting_titles=["Budapest", "Danube"])
    rows = rows_for(spec, sample, result, None)
    assert rows[0]["recall"] == 0.0 and rows[1]["recall"] == 0.5  # Budapest read in round 1, Danube never
