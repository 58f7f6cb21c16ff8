"""The reasoning half of the budget: thinking, samples, votes, their charges and their grid readings.

Scripted LLM (a test double) for the graph logic; the real SmolLM2 for seeds, samples and prefill."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sounding.agent.nodes import NO_ANSWER
from sounding.agent.reasoning import Reading, Reasoning, ReasoningSample, majority, vote_subsets
from sounding.agent.runner import run_research
from sounding.budgets.controllers import FixedController, Plan, fit_depth, plan_usage
from sounding.budgets.cost import Usage, make_cost_model
from sounding.budgets.ledger import Budget, Ledger
from sounding.evals.datasets import Sample
from sounding.evals.report import format_amount
from sounding.evals.store import ResultStore
from sounding.evals.sweep import rows_for, run_sweep_config, verify_anytime
from sounding.settings import BudgetSettings, load_settings
from tests.scripted import MemorySearch, ScriptedLLM
from tests.test_agent_nodes import DOCS, Q, deps, script
from tests.test_harness import config


def reading(answer: str | None) -> Reading:
    return Reading(answer=answer)


def test_majority_vote_ignores_abstentions_and_breaks_ties_by_the_earliest_sample():
    vote = majority(
        [reading(None), reading("Vienna"), reading("the Danube"), reading("Danube"), reading(None)]
    )
    assert vote.answer == "the Danube" and vote.votes == {"Vienna": 1, "the Danube": 2}
    assert vote.abstained == 2
    assert majority([reading("Vienna"), reading("Danube")]).answer == "Vienna"  # tie: first wins
    nobody = majority([reading(None), reading(None)])
    assert nobody.answer is None and nobody.abstained == 2


def test_vote_subsets_are_every_combination_when_few():
    assert vote_subsets(5, 3) == [
        (0, 1, 2), (0, 1, 3), (0, 1, 4), (0, 2, 3), (0, 2, 4), (0, 3, 4), (1, 2, 3), (1, 2, 4), (1, 3, 4), (2, 3, 4)
    ]  # fmt: skip
    assert len(vote_subsets(64, 32)) == 512


def thinking_script(answers: list[str | None], thought: str = "step one then step two then done"):
    """Scripted thinking (each sample says which answer it reached) and forced answers that follow it."""

    def think(n, messages):
        return f"{thought} sample{(n - 1) % len(answers)}"

    def forced(n, messages):
        reasoning = messages[-2]["content"]
        index = int(reasoning.rsplit("sample", 1)[1]) if "sample" in reasoning else 0
        answer = answers[index]
        return "not json {" if answer is None else {"answer": answer, "notes": [1]}

    def vote(n, messages):
        answer = answers[(n - 1) % len(answers)]
        return "garbage" if answer is None else {"answer": answer, "notes": [2]}

    return script(think=think, think_answer=forced, vote=vote)


def test_samples_vote_and_the_round_answer_is_the_vote():
    llm = ScriptedLLM(thinking_script(["Vienna", "Danube", "Danube"]))
    result = run_research(Q, deps(llm, controller=FixedController(1, 1, think=16, samples=3)))
    draft = result.drafts[-1]
    assert draft["answer"] == "Danube" and draft["greedy"] == "Danube"
    votes = draft["reasoning"]["vote"]["votes"]
    assert votes == {"Vienna": 1, "Danube": 2}
    assert result.answer == "Danube"  # no rewrite of a voted answer
    # one thinking call for all three samples (one prefill), then one forced answer per sample
    steps = [s for s, _, _ in llm.calls]
    assert steps.count("think") == 1 and steps.count("think_answer") == 3
    think_calls = [(n, t) for step, _, n, t in llm.seeds if step == "think"]
    assert think_calls == [(3, 0.7)]
    assert any(e["kind"] == "reasoning" for e in result.events)


def test_every_sample_abstaining_is_the_no_answer_result_not_a_crash():
    llm = ScriptedLLM(thinking_script([None, None]))
    result = run_research(Q, deps(llm, controller=FixedController(1, 1, think=8, samples=2)))
    assert result.drafts[-1]["answer"] == NO_ANSWER
    assert result.drafts[-1]["reasoning"]["vote"]["abstained"] == 2
    assert not result.degraded


def test_thinking_is_cut_at_the_cap_and_charged():
    long_thought = " ".join(f"w{i}" for i in range(100))
    llm = ScriptedLLM(thinking_script(["Danube"], thought=long_thought))
    d = deps(llm, controller=FixedController(1, 1, think=10, samples=1))
    result = run_research(Q, d)
    sample = result.drafts[-1]["reasoning"]["drawn"][0]
    assert sample["thinking_tokens"] == 10 and len(sample["thinking"].split()) == 10
    think_charges = [c for c in result.charges if c.node == "think"]
    assert len(think_charges) == 1 and think_charges[0].usage.completion_tokens == 10
    # the reasoner's steps, and only they, are marked as reasoning where they are charged
    marked = {c.node for c in result.charges if c.reasoning}
    assert marked == {"think", "think_answer"} and all(
        not c.reasoning for c in result.charges if c.node not in marked
    )
    # the forced answer was asked for after the reasoning, as the assistant's own turn
    forced = next(m for s, m, _ in llm.calls if s == "think_answer")
    assert forced[-2] == {"role": "assistant", "content": sample["thinking"].strip()}


def test_no_thinking_several_samples_is_one_call_with_n():
    llm = ScriptedLLM(thinking_script(["Danube", "Vienna", "Danube", "Danube", "Vienna"]))
    result = run_research(Q, deps(llm, controller=FixedController(1, 1, samples=5)))
    assert result.drafts[-1]["answer"] == "Danube"
    assert [(s, n) for s, _, n, _ in llm.seeds if s == "vote"] == [("vote", 5)]


def test_verified_vote_prefers_a_supported_candidate_over_a_larger_unsupported_one():
    base = thinking_script(["Vienna", "Vienna", "Danube"])
    base["verify"] = lambda n, m: {"supported": "Danube" in m[-1]["content"].split("Proposed answer:")[1]}
    llm = ScriptedLLM(base)
    plan_controller = FixedController(1, 1, think=8, samples=3, verify=True)
    result = run_research(Q, deps(llm, controller=plan_controller))
    vote = result.drafts[-1]["reasoning"]["vote"]
    assert vote["answer"] == "Danube" and vote["verified"] == {"Vienna": False, "Danube": True}
    assert sum(1 for c in result.charges if c.node == "verify") == 2  # one per distinct candidate


def test_a_small_budget_shrinks_samples_then_thinking_before_depth():
    cost = make_cost_model("tokens", BudgetSettings(), n_params=None)
    plan = Plan(controller="fixed", depth=2, breadth=1, think=256, samples=8)
    big = plan_usage(plan)
    fitted = fit_depth(plan, Budget(limit=cost.price(big) * 0.5), cost)
    assert fitted.depth == 2 and fitted.samples < 8
    tiny = fit_depth(
        plan, Budget(limit=cost.price(plan_usage(plan.model_copy(update={"think": 0, "samples": 1})))), cost
    )
    assert tiny.samples == 1 and tiny.think == 0 and tiny.depth == 2


def test_a_budget_too_small_for_all_samples_draws_fewer_in_one_reservation():
    llm = ScriptedLLM(thinking_script(["Danube"] * 8))
    d = deps(llm, controller=FixedController(0, 1, samples=8), budget=Budget(limit=400, unit="tokens"))
    run_research(Q, d)
    vote_calls = [n for s, _, n, _ in llm.seeds if s == "vote"]
    assert vote_calls and vote_calls[0] < 8
    assert d.ledger.spent_cost <= 400


@settings(max_examples=25, deadline=None)
@given(
    limit=st.integers(min_value=50, max_value=4000),
    requests=st.lists(st.tuples(st.integers(1, 64), st.integers(1, 60)), min_size=1, max_size=12),
)
def test_ledger_never_overspends_with_concurrent_sample_reservations(limit, requests):
    from sounding.agent.llm_step import charged_completion

    ledger = Ledger(
        Budget(limit=limit, unit="tokens"), make_cost_model("tokens", BudgetSettings(), n_params=None)
    )
    llm = ScriptedLLM({"vote": {"answer": "x", "notes": []}})
    msgs = [
        {"role": "system", "content": "You answer a question with a short answer"},
        {"role": "user", "content": "q"},
    ]

    def call(n: int, cap: int) -> None:
        charged_completion(llm, ledger, msgs, cap=cap, node="vote", round=1, min_tokens=1, n=n)

    threads = [threading.Thread(target=call, args=r) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.spent_cost <= limit + 1e-9


# --- the harness reads the grid off one run ---------------------------------------------------

SAMPLES = [
    Sample(id=f"q{i}", question=f"Which river flows through Budapest {i}?", answers=["Danube"])
    for i in range(3)
]


def grid_config(**kw):
    return config(depth=2, think=8, think_caps=[0, 4, 8], samples=3, sample_counts=[1, 3], **kw)


def test_one_run_stores_every_reading_of_the_grid_and_its_trace(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    cfg = grid_config()
    llm = ScriptedLLM(thinking_script(["Danube", "Vienna", "Danube"]))
    run_sweep_config(cfg, SAMPLES, load_settings(home=tmp_path), llm, MemorySearch(DOCS), store)
    rows = store.results(cfg.key)
    settings_seen = {(r["round"], r["think"], r["samples"]) for r in rows}
    assert settings_seen == {(d, t, n) for d in range(3) for t in (0, 4, 8) for n in (1, 3)}
    by = {(r["question_id"], r["round"], r["think"], r["samples"]): r for r in rows}
    # samples 1 at think 8 is sample 0 ("Danube"); 3 samples vote Danube 2:1
    assert by[("q0", 2, 8, 1)]["answer"] == "Danube" and by[("q0", 2, 8, 3)]["answer"] == "Danube"
    # the reading's spend is what it costs: more thinking, more samples, more tokens; (0, 1) has none
    spend = {(t, n): by[("q0", 2, t, n)]["completion_tokens"] for t in (0, 4, 8) for n in (1, 3)}
    assert spend[(0, 1)] < spend[(0, 3)] and spend[(4, 1)] < spend[(8, 1)] < spend[(8, 3)]
    assert spend[(4, 3)] < spend[(8, 3)]
    traces = store.traces(cfg.key)
    assert len(traces) == 3
    stored = traces[(cfg.key, "q0")]["drafts"][-1]["reasoning"]
    assert len(stored["drawn"]) == 3 and set(stored["drawn"][0]["readings"]) == {"0", "4", "8"}


def test_subset_mean_scores_a_sample_count_exactly():
    reasoning = Reasoning(
        round=1,
        think=0,
        samples=3,
        caps=[0],
        temperature=0.7,
        drawn=[
            ReasoningSample(index=i, seed=i, readings={0: Reading(answer=a)})
            for i, a in enumerate(["Danube", "Vienna", "Vienna"])
        ],
    )
    draft = {"round": 1, "answer": "x", "greedy": "x", "reasoning": reasoning.model_dump(), "spend": {}}
    from sounding.evals.sweep import _reading

    answer, scores = _reading(draft, 0, 2, ["Danube"])
    # first two samples tie 1:1 -> Danube (earliest); over all three pairs: {D,V} D, {D,V} D, {V,V} V
    assert answer == "Danube" and scores["em"] == pytest.approx(2 / 3)


def test_readings_agree_with_independent_runs_at_each_setting(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    cfg = grid_config()
    search = MemorySearch(DOCS)
    settings_ = load_settings(home=tmp_path)

    def fresh():
        return ScriptedLLM(thinking_script(["Danube", "Vienna", "Vienna"]))

    run_sweep_config(cfg, SAMPLES[:1], settings_, fresh(), search, store)
    report = verify_anytime(cfg, SAMPLES[:1], [0, 1, 2], settings_, fresh(), search, store)
    assert report["checked"] == 2 + 5 and report["agreed"] == report["checked"]


def test_seeds_reach_every_call_and_differ_between_runs(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    llm = ScriptedLLM(script())
    for seed in (0, 1):
        run_sweep_config(
            config(depth=1, seed=seed),
            SAMPLES[:1],
            load_settings(home=tmp_path),
            llm,
            MemorySearch(DOCS),
            store,
        )
    seeds = [s for _, s, _, _ in llm.seeds]
    assert None not in seeds
    half = len(seeds) // 2
    assert seeds[:half] != seeds[half:]  # another run seed, other call seeds
    again = ScriptedLLM(script())
    run_sweep_config(
        config(depth=1, seed=0),
        SAMPLES[:1],
        load_settings(home=tmp_path),
        again,
        MemorySearch(DOCS),
        ResultStore(tmp_path / "b.sqlite"),
    )
    assert [s for _, s, _, _ in again.seeds] == seeds[:half]  # the same seed, the same calls


def test_rows_for_without_reasoning_are_one_per_round():
    llm = ScriptedLLM(script())
    from sounding.factory import build_deps

    cfg = config(depth=2)
    d = build_deps(cfg, load_settings(), llm, MemorySearch(DOCS))
    result = run_research(SAMPLES[0].question, d)
    rows = rows_for(cfg, SAMPLES[0], result, None, d.ledger.report_models)
    assert [(r["round"], r["think"], r["samples"]) for r in rows] == [(0, 0, 1), (1, 0, 1), (2, 0, 1)]
    assert Usage(prompt_tokens=rows[-1]["prompt_tokens"]).prompt_tokens == d.ledger.spent.prompt_tokens


# --- the real model --------------------------------------------------------------------------


@pytest.mark.model
def test_real_model_seeds_samples_and_one_prefill(smollm2):
    msgs = [{"role": "user", "content": "Name a river in Europe and say one thing about it. " * 8}]
    before = smollm2.evaluated_tokens
    five = smollm2.complete(msgs, max_tokens=16, n=5, seed=11, temperature=0.9, logprobs=True)
    evaluated = smollm2.evaluated_tokens - before
    assert len(five.choices) == 5
    assert len({c.text for c in five.choices}) >= 3  # different seeds, different samples
    # the prompt is evaluated once: far fewer tokens than five prompts
    assert evaluated < 2 * five.prompt_tokens + five.completion_tokens
    assert five.completion_tokens == sum(c.completion_tokens for c in five.choices)
    assert "".join(five.choices[0].tokens or []) == five.choices[0].text
    one = smollm2.complete(msgs, max_tokens=16, seed=11, temperature=0.9)
    assert one.text == five.choices[0].text  # the same seed gives the same sample
    other = smollm2.complete(msgs, max_tokens=16, seed=12, temperature=0.9)
    assert other.text != one.text


@pytest.mark.model
def test_real_model_thinks_votes_and_stays_in_budget(smollm2):
    ledger = Ledger(
        Budget(limit=6000, unit="tokens"), make_cost_model("tokens", BudgetSettings(), n_params=None)
    )
    from sounding.agent.nodes import AgentDeps

    d = AgentDeps(
        llm=smollm2,
        search=MemorySearch(DOCS),
        ledger=ledger,
        controller=FixedController(1, 1, think=24, samples=3),
    )
    result = run_research(Q, d)
    reasoning = result.drafts[-1]["reasoning"]
    assert len(reasoning["drawn"]) == 3
    assert all(0 < s["thinking_tokens"] <= 24 for s in reasoning["drawn"])
    assert ledger.spent_cost <= 6000
    assert result.answer == (reasoning["vote"]["answer"] or NO_ANSWER)


def test_frontier_report_and_figures_from_a_grid_store(tmp_path):
    from sounding.evals.fit import analyse
    from sounding.evals.frontier import frontiers
    from sounding.evals.plot import make_frontier_figures
    from sounding.evals.report import write_report

    store = ResultStore(tmp_path / "r.sqlite")
    cfg = grid_config()
    samples = [
        Sample(id=f"q{i}", question=f"Which river flows through Budapest {i}?", answers=["Danube"])
        for i in range(6)
    ]
    llm = ScriptedLLM(thinking_script(["Danube", "Vienna", "Danube"]))
    run_sweep_config(cfg, samples, load_settings(home=tmp_path), llm, MemorySearch(DOCS), store)
    rows, runs = store.results(), store.runs()
    (front,) = frontiers(rows, runs, n_boot=50)
    assert front.questions == 6 and len(front.settings) == 3 * 3 * 2
    labels = {s.label for s in front.settings}
    assert "d0 T0 N1" in labels and "d2 T8 N3" in labels
    # the envelope is cheapest first and never falls
    by = {s.label: s for s in front.settings}
    accs = [by[label].acc for label in front.envelope]
    costs = [by[label].tokens for label in front.envelope]
    assert (
        accs == sorted(accs)
        and costs == sorted(costs)
        and front.envelope[0] == min(by, key=lambda k: by[k].tokens)
    )
    assert {f.axis for f in front.fits} == {"search", "think", "samples"}
    analysis = analyse(rows, runs, n_boot=20)
    analysis.frontiers = [front]
    md, _ = write_report(analysis, tmp_path)
    text = md.read_text()
    assert "Search against reasoning" in text and "iso-compute frontier" in text
    # compute cells carry three significant digits, never padding zeros
    closed = by["d0 T0 N1"].tokens
    assert f"| d0 T0 N1 | {format_amount(closed)} |" in text
    paths = make_frontier_figures([front], tmp_path / "figures")
    assert any("frontier-tokens.png" in p.name for p in paths)
    assert any("grid-depth-x-think.png" in p.name for p in paths)
    # the same data draws the same bytes (no date, fixed ids), so regenerated figures diff only on change
    again = make_frontier_figures([front], tmp_path / "again")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


def test_compute_amounts_print_three_significant_digits_without_padding():
    assert [format_amount(v) for v in (77.9, 5.25, 0.5, 1098.4, 10_100.0, 7.7e10, None)] == [
        "77.9",
        "5.25",
        "0.5",
        "1098",
        "1.01e+04",
        "7.7e+10",
        "-",
    ]


def test_composition_counts_what_reasoning_adds_where_search_failed():
    from sounding.evals.frontier import composition

    grid = [(d, t, n) for d in (0, 1) for t in (0, 8) for n in (1, 3)]

    def question(qtype: str, right: set[tuple[int, int, int]]) -> dict:
        return {g: {"cover_em": float(g in right), "qtype": qtype, "hops": 2} for g in grid}

    matrix = {
        "q1": question("bridge", {(1, 8, 1), (1, 8, 3)}),  # search never; thinking on top of it does
        "q2": question("comparison", {(1, 0, 1), (0, 8, 3)}),  # search answers it: not counted
        "q3": question("bridge", set()),  # nothing does
    }
    result = {c.group: c for c in composition(matrix, ["q1", "q2", "q3"], grid, "cover_em", n_boot=50)}
    every = result["all"]
    assert (every.questions, every.search_failed) == (3, 2)
    shares = {r.setting: r.share for r in every.rescues}
    assert shares == {"d1 T8 N1": 0.5, "d1 T0 N3": 0.0, "d1 T8 N3": 0.5, "d0 T8 N3": 0.0}
    assert all(r.ci[0] <= r.share <= r.ci[1] for r in every.rescues)
    assert (result["type bridge"].questions, result["type bridge"].search_failed) == (2, 2)
    assert result["type comparison"].search_failed == 0 and result["type comparison"].rescues == []
    assert result["2 hops"].questions == 3


def test_split_exchange_prices_the_larger_models_frontier_in_the_smaller_models_flops():
    from sounding.evals.frontier import split_exchanges

    grid = [(0, 0, 1), (1, 0, 1), (1, 8, 3)]
    flops = {"qwen2.5-coder-0.5b": 1.0, "qwen2.5-coder-1.5b": 3.0}  # per unit of the setting's size
    size = {(0, 0, 1): 1.0, (1, 0, 1): 4.0, (1, 8, 3): 10.0}
    # questions right per setting: the 0.5B reaches the 1.5B's closed book by searching, never its best
    right = {
        "qwen2.5-coder-0.5b": {(0, 0, 1): {"q1"}, (1, 0, 1): {"q1", "q2"}, (1, 8, 3): {"q1", "q2"}},
        "qwen2.5-coder-1.5b": {(0, 0, 1): {"q1", "q2"}, (1, 0, 1): {"q1", "q2", "q3"}, (1, 8, 3): {"q2"}},
    }
    runs, rows = {}, []
    for model in flops:
        runs[model] = {"model": model, "suite": "hotpotqa:dev", "controller": "fixed", "budget": None}
        for q in ("q1", "q2", "q3", "q4"):
            for s in grid:
                cost = flops[model] * size[s]
                rows.append(
                    {
                        "run_key": model, "question_id": q, "round": s[0], "think": s[1], "samples": s[2],
                        "cover_em": float(q in right[model][s]), "searches": s[0],
                        "prompt_tokens": 1, "completion_tokens": 1, "cost": {"tokens": size[s], "flops": cost},
                    }
                )  # fmt: skip
    (x,) = split_exchanges(rows, runs, n_boot=200)
    assert (x.small, x.large, x.questions, x.settings) == ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", 4, 3)
    assert (x.small_best, x.small_best_acc) == ("d1 T0 N1", 0.5)  # the cheaper of the two at 0.5
    assert (x.large_best, x.large_best_acc) == ("d1 T0 N1", 0.75)
    assert x.gap == -0.25 and x.gap_ci[0] <= -0.25 <= x.gap_ci[1]
    # the 1.5B's frontier: closed book (0.5 at 3 FLOPs), one search (0.75 at 12); its d1 T8 N3 is off it
    closed, searched = x.points
    assert (closed.large_setting, closed.large_acc, closed.large_flops) == ("d0 T0 N1", 0.5, 3.0)
    assert (closed.small_setting, closed.small_flops, closed.ratio) == ("d1 T0 N1", 4.0, 4.0 / 3.0)
    assert 0.0 < closed.reached <= 1.0
    assert (searched.large_setting, searched.small_setting, searched.ratio) == ("d1 T0 N1", None, None)
    assert searched.reached < 0.5
    # every shared setting of both models, what the figure draws: accuracy, FLOPs and a CI around it
    small = {s.label: (s.acc, s.flops) for s in x.small_settings}
    large = {s.label: (s.acc, s.flops) for s in x.large_settings}
    assert small == {"d0 T0 N1": (0.25, 1.0), "d1 T0 N1": (0.5, 4.0), "d1 T8 N3": (0.5, 10.0)}
    assert large == {"d0 T0 N1": (0.5, 3.0), "d1 T0 N1": (0.75, 12.0), "d1 T8 N3": (0.25, 30.0)}
    assert all(s.ci[0] <= s.acc <= s.ci[1] and s.n == 4 for s in x.small_settings + x.large_settings)


def test_axis_split_half_tells_a_shared_trend_from_one_question():
    from sounding.evals.frontier import frontiers

    grid = [(0, 0, 1), (1, 0, 1), (2, 0, 1), (0, 8, 1)]
    questions = [f"q{i}" for i in range(8)]

    def rows_where(right) -> list[dict]:
        return [
            {
                "run_key": "r", "question_id": q, "round": s[0], "think": s[1], "samples": s[2],
                "cover_em": float(right(q, s)), "searches": s[0], "prompt_tokens": 1, "completion_tokens": 1,
                "cost": {"tokens": 10.0 * (1 + s[0]) + s[1]},
            }
            for q in questions
            for s in grid
        ]  # fmt: skip

    runs = {
        "r": {"model": "qwen2.5-coder-0.5b", "suite": "hotpotqa:dev", "controller": "fixed", "budget": None}
    }
    shared = rows_where(lambda q, s: s[0] >= 1 and q != "q0")  # every question but one gains from search
    one = rows_where(lambda q, s: s[0] == 2 and q == "q0")  # one question carries the whole trend

    def search_fit(rows):
        (front,) = frontiers(rows, runs, n_boot=50)
        return next(f for f in front.fits if f.axis == "search" and f.unit == "tokens")

    broad, narrow = search_fit(shared), search_fit(one)
    assert broad.slope > 0 and narrow.slope > 0
    assert broad.split_half == 1.0
    assert narrow.split_half == 0.0  # the half without q0 is flat in every split
    (front,) = frontiers(shared, runs, n_boot=20)
    flat = next(f for f in front.fits if f.axis == "think")  # thinking never right: no trend to share
    assert flat.slope == 0.0 and flat.split_half is None


def test_frontier_command_reads_two_models_grids_as_one(tmp_path):
    """`sounding frontier A B` prints each grid's axes and the best-split exchange of the two models,
    reading both stores (no merge) and writing nothing."""
    from typer.testing import CliRunner

    from sounding.cli import app

    for model, script_answers in (
        ("qwen2.5-coder-0.5b", ["Vienna", "Vienna", "Danube"]),
        ("qwen2.5-coder-1.5b", ["Danube", "Danube", "Vienna"]),
    ):
        store = ResultStore(tmp_path / model / "results.sqlite")
        llm = ScriptedLLM(thinking_script(script_answers))
        run_sweep_config(
            grid_config(model=model), SAMPLES, load_settings(home=tmp_path), llm, MemorySearch(DOCS), store
        )
        store.close()
    before = sorted(p.name for p in (tmp_path / "qwen2.5-coder-0.5b").iterdir())
    out = CliRunner().invoke(
        app,
        [
            "frontier",
            str(tmp_path / "qwen2.5-coder-0.5b"),
            str(tmp_path / "qwen2.5-coder-1.5b"),
            "--bootstrap",
            "30",
            "--figures",
            str(tmp_path / "figures"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "## Search against reasoning: qwen2.5-coder-0.5b" in out.output
    assert "## Search against reasoning: qwen2.5-coder-1.5b" in out.output
    assert "## Best split against best split: qwen2.5-coder-0.5b vs qwen2.5-coder-1.5b" in out.output
    # the scripted 1.5B votes Danube over 3 samples, the 0.5B needs a search step to be right
    assert "| d0 T0 N3 | 4.34e+08 | 1.000 | d1 T0 N1 | 2.14e+09 | 4.94 [4.94, 4.94] | 1.00 |" in out.output
    assert "Smaller best minus larger best: +0.000" in out.output
    assert "search alone answered every question" in out.output
    # read-only: no report, figures or fits beside the store (SQLite's own -wal/-shm aside)
    assert {p.name.split("-")[0] for p in (tmp_path / "qwen2.5-coder-0.5b").iterdir()} == {"results.sqlite"}
    assert before == ["results.sqlite"]
    # --figures: each grid's figures and the two models' best-split figure, only where asked
    drawn = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert "test-qwen2.5-coder-0.5b-vs-qwen2.5-coder-1.5b-best-split.png" in drawn
    assert any(n.startswith("qwen2.5-coder-1.5b-") and n.endswith("frontier-flops.png") for n in drawn)
    assert all((tmp_path / "figures" / n).stat().st_size > 10_000 for n in drawn)
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = CliRunner().invoke(app, ["frontier", str(empty)])
    assert missing.exit_code == 2 and "results.sqlite" in missing.output


def test_frontier_command_reads_a_sub_grid_and_names_a_filter_that_matches_nothing(tmp_path):
    """--depths/--think/--samples restrict what `sounding frontier` reads, so a store swept wider on
    fewer questions compares on the grid it shares with another; a filter that matches no row is an
    error that names the settings, and bad values are refused before anything is read."""
    from typer.testing import CliRunner

    from sounding.cli import app

    store = ResultStore(tmp_path / "grid" / "results.sqlite")
    llm = ScriptedLLM(thinking_script(["Vienna", "Vienna", "Danube"]))
    run_sweep_config(grid_config(), SAMPLES, load_settings(home=tmp_path), llm, MemorySearch(DOCS), store)
    store.close()
    run = str(tmp_path / "grid")
    full = CliRunner().invoke(app, ["frontier", run, "--bootstrap", "20"])
    sub = CliRunner().invoke(app, ["frontier", run, "--bootstrap", "20", "--samples", "1", "--think", "0,8"])
    assert full.exit_code == 0 and sub.exit_code == 0, full.output + sub.output
    assert "| d0 T0 N3 |" in full.output and "| d2 T4 N1 |" in full.output
    # the sub-grid: no 3-sample vote, no 4-token cap, every depth
    assert "N3 |" not in sub.output and " T4 " not in sub.output
    assert {"| d0 T0 N1 |", "| d2 T8 N1 |", "| d1 T8 N1 |"} <= {
        line[: len("| d0 T0 N1 |")] for line in sub.output.splitlines()
    }
    none = CliRunner().invoke(app, ["frontier", run, "--depths", "3"])
    assert none.exit_code != 0 and "no results at the settings asked for (--depths 3)" in none.output
    bad = CliRunner().invoke(app, ["frontier", run, "--samples", "0"])
    assert bad.exit_code != 0 and "--samples must list integers from 1" in bad.output
