"""`sounding tune`: a known best policy is recovered from synthetic rows, cross-validation never scores
a question with a policy fitted on it, bad stores and policy files are refused, and the tuned
controller runs on a real small model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sounding.budgets.controllers import PolicyError, make_controller
from sounding.budgets.features import Features, question_form
from sounding.budgets.tuned import Setting, TunedController, TunedPolicy, check_tuned_model, load_tuned_policy
from sounding.evals import tune as tune_module
from sounding.evals.tune import TuneError, evaluate, load_grid, tune

SETTINGS = [(0, 0, 1), (1, 0, 1), (2, 0, 1), (2, 0, 3)]
COST = {(0, 0, 1): 100.0, (1, 0, 1): 1000.0, (2, 0, 1): 2000.0, (2, 0, 3): 2600.0}


def synthetic(n: int = 40, *, with_features: bool = True) -> tuple[list, dict, dict]:
    """Easy questions (closed-book samples agree, confident) are right closed book; hard ones
    (samples disagree) only at depth 2. So the best policy at a mean budget of ~1100: easy -> d0,
    hard -> d2; any single setting at that spend gets half of them."""
    runs = {
        "k": {"controller": "fixed", "budget": None, "model": "m", "suite": "s", "breadth": 1, "depth": 2}
    }
    rows, features = [], {}
    for i in range(n):
        easy = i % 2 == 0
        q = f"q{i}"
        for d, t, s in SETTINGS:
            right = easy if d == 0 else (not easy if d == 2 else False)
            rows.append(
                {
                    "run_key": "k", "question_id": q, "round": d, "think": t, "samples": s,
                    "cover_em": float(right), "answer": "x" if right else "y", "seed": 0,
                    "cost": {"tokens": COST[(d, t, s)]}, "prompt_tokens": 0, "completion_tokens": 0,
                    "searches": d,
                }
            )  # fmt: skip
        if with_features:
            f = Features(
                question=f"Who wrote book number {i}?",
                groups=["form", "closed_book"],
                probe_answers=["A", "A", "A"] if easy else ["A", "B", "C"],
                probe_logprob=-0.1 if easy else -2.5,
                cost={"closed_book": {"tokens": 50.0}},
            )
            features[("k", q)] = f.model_dump()
    return rows, runs, features


@pytest.fixture(autouse=True)
def _plain_identity(monkeypatch):
    # the synthetic configs are partial: every run is its own family
    import sounding.evals.sweep as sweep

    monkeypatch.setattr(sweep, "setting_identity", lambda cfg: "same")


def test_a_known_best_policy_is_recovered_and_beats_the_best_fixed_setting():
    rows, runs, features = synthetic()
    grid = load_grid(rows, runs, features)
    assert [s.label for s in grid.settings] == ["d0 T0 N1", "d1 T0 N1", "d2 T0 N1", "d2 T0 N3"]
    policy, report = tune(grid, 1200.0, budgets=[1200.0], k=5)
    easy = Features(question="Who wrote book number 0?", groups=["form", "closed_book"],
                    probe_answers=["A", "A", "A"], probe_logprob=-0.1)  # fmt: skip
    hard = Features(question="Who wrote book number 1?", groups=["form", "closed_book"],
                    probe_answers=["A", "B", "C"], probe_logprob=-2.5)  # fmt: skip
    assert policy.choose(easy)[0].label == "d0 T0 N1"
    assert policy.choose(hard)[0].label == "d2 T0 N1"
    assert "closed_book" in policy.groups
    (result,) = report.results
    assert result.tuned_acc == 1.0  # every held-out question gets its right setting
    assert result.fixed_acc == 0.5 and result.gain == 0.5 and result.gain_ci[0] > 0
    # spend: half at 100, half at 2000, plus the 50-token probe on every question
    assert result.tuned_cost == pytest.approx(1100.0)
    assert report.oracle == (1.0, pytest.approx(1050.0))
    # the policy file round-trips and the runtime controller plans the same choice
    again = TunedPolicy.model_validate_json(policy.model_dump_json())
    assert again.choose(hard)[0].label == "d2 T0 N1"


def test_cross_validation_never_scores_a_question_with_a_policy_fitted_on_it(monkeypatch):
    rows, runs, features = synthetic(30)
    grid = load_grid(rows, runs, features)
    fitted_on: list[set[int]] = []
    scored: list[set[int]] = []
    real_fit, real_apply = tune_module.fit_policy, tune_module.apply_policy

    def fit(grid, train, *args, **kwargs):
        fitted_on.append(set(train.tolist()))
        return real_fit(grid, train, *args, **kwargs)

    def apply(grid, policy, rows):
        scored.append(set(rows.tolist()))
        policy.fitted["on"] = sorted(fitted_on[-1])
        return real_apply(grid, policy, rows)

    monkeypatch.setattr(tune_module, "fit_policy", fit)
    monkeypatch.setattr(tune_module, "apply_policy", apply)
    evaluate(grid, 1200.0, k=5)
    assert scored and all(not (s & set(f)) for s, f in zip(scored, fitted_on, strict=False))
    outer = [s for s in scored if len(s) == 6]  # the outer folds of 30 questions
    assert set().union(*outer) == set(range(30)) and sum(len(s) for s in outer) == 30


def test_stores_that_cannot_be_tuned_say_what_is_missing():
    rows, runs, _ = synthetic(10, with_features=False)
    with pytest.raises(TuneError, match="no question of the m grid has probe features"):
        load_grid(rows, runs, {})
    one = [r for r in rows if r["round"] == 0]
    with pytest.raises(TuneError, match="one setting only"):
        load_grid(one, runs, {})
    with pytest.raises(TuneError, match="no fixed-controller grid"):
        load_grid(rows, runs, {}, model="other")
    rows, runs, features = synthetic(8)
    with pytest.raises(TuneError, match=r"8 questions .* needs at least 15"):
        evaluate(load_grid(rows, runs, features), 1000.0, k=5)


def test_policy_files_corrupt_foreign_or_for_another_model_are_refused(tmp_path):
    rows, runs, features = synthetic()
    policy, _ = tune(load_grid(rows, runs, features), 1200.0, budgets=[1200.0], k=5)
    good = tmp_path / "policy.json"
    good.write_text(policy.model_dump_json())
    assert make_controller("tuned", policy_file=good).name == "tuned"
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(policy.model_dump_json()[:50])
    with pytest.raises(PolicyError, match=f"cannot read tuned policy {corrupt}"):
        load_tuned_policy(corrupt)
    foreign = tmp_path / "calibrated.json"
    foreign.write_text(json.dumps({"bins": {}}))
    with pytest.raises(PolicyError, match=r"not a policy written by `sounding tune`.*calibrated"):
        load_tuned_policy(foreign)
    broken = json.loads(policy.model_dump_json())
    broken["settings"] = []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    with pytest.raises(PolicyError, match=f"tuned policy {bad} is invalid at settings"):
        load_tuned_policy(bad)
    with pytest.raises(PolicyError, match=r"fitted for m, not qwen2\.5-coder-0\.5b"):
        check_tuned_model(policy, "qwen2.5-coder-0.5b", good)


def test_question_form_reads_the_wording():
    form = question_form("Were Scott Derrickson and Ed Wood of the same nationality?")
    assert form["form_yes_no"] == 1.0 and form["form_comparison"] == 1.0 and form["form_entities"] == 2.0
    who = question_form("Who directed the film Kiss and Tell?")
    assert who["form_who"] == 1.0 and who["form_yes_no"] == 0.0


@pytest.mark.model
def test_the_tuned_controller_probes_chooses_and_runs_on_a_real_model(smollm2, tmp_path):
    """SmolLM2-135M answers the probe for real; the plan is the setting the policy gives for the
    features the probe measured, the probe is charged, and the choice is recorded with its reason."""
    from sounding.agent.runner import run_research
    from sounding.budgets.tuned import LinearModel, TunedController
    from sounding.research import make_deps
    from sounding.settings import load_settings
    from tests.scripted import MemorySearch

    docs = {
        "d-bp": ("Budapest", "Budapest is the capital of Hungary. The Danube flows through Budapest."),
        "d-da": ("Danube", "The Danube is a river in Europe that flows through Vienna and Budapest."),
    }

    policy = TunedPolicy(
        model="smollm2-135m", suite="s", unit="tokens", budget=3000.0, groups=["form", "closed_book"],
        method="bins",
        settings=[Setting(depth=0, mean_cost=100), Setting(depth=1, mean_cost=900)],
        difficulty=LinearModel(features=["cb_agreement"], mean=[0.5], scale=[0.5], coef=[3.0], intercept=0.0),
        thresholds=[0.75], bin_settings=[1, 0],
    )  # fmt: skip
    settings = load_settings(home=tmp_path, llm={"model": "smollm2-135m"}, budget={"budget": 6000})
    deps = make_deps(settings, smollm2, MemorySearch(docs), controller=TunedController(policy))
    result = run_research("Which river flows through Budapest?", deps)
    plan = result.plan
    assert result.features is not None
    features = Features.model_validate(result.features)
    assert features.groups == ["form", "closed_book"] and len(features.probe_answers) == 3
    assert features.probe_logprob is not None and features.probe_logprob < 0
    probe = [c for c in result.charges if c.node == "probe"]
    assert probe and all(c.usage.completion_tokens > 0 and not c.reasoning for c in probe)
    assert plan["controller"] == "tuned" and "difficulty bin" in plan["why"]
    chosen, _ = policy.choose(features)
    assert plan["depth"] == chosen.depth and plan["why"].endswith(chosen.label)
    assert np.isfinite(sum(c.cost["tokens"] for c in probe))


def test_transfer_fits_on_the_shared_settings_and_scores_on_the_other_grid():
    from sounding.evals.tune import common_settings, transfer

    rows, runs, features = synthetic(40)
    source = load_grid(rows, runs, features)
    # the other suite's grid lacks (2, 0, 3): a transferred policy may not choose it
    other_rows = [r for r in rows if (r["round"], r["samples"]) != (2, 3)]
    other = load_grid(other_rows, runs, features)
    shared = common_settings(source, other)
    assert [s.label for s in shared.settings] == ["d0 T0 N1", "d1 T0 N1", "d2 T0 N1"]
    policy, _ = tune(shared, 1200.0, budgets=[1200.0], k=5)
    result = transfer(policy, other)
    assert result["acc"] == 1.0 and result["gain"] == 0.5 and result["best_fixed"] == "d0 T0 N1"
    with pytest.raises(TuneError, match="lacks settings the policy chooses"):
        transfer(
            tune(source, 5000.0, budgets=[5000.0], k=5)[0].model_copy(
                update={"method": "fixed", "choice": 3}
            ),
            other,
        )


def test_a_sweep_with_the_tuned_controller_stores_rows_features_and_the_choice(tmp_path):
    """`bench --controller tuned`: the policy is stored in the run's key, every question gets its
    probe (charged in its spend, unlike a fixed run's stored features) and the plan records the choice."""
    from sounding.budgets.tuned import LinearModel
    from sounding.evals.store import ResultStore
    from sounding.evals.sweep import run_sweep_config
    from sounding.settings import load_settings
    from tests.scripted import MemorySearch, ScriptedLLM
    from tests.test_agent_nodes import DOCS, script
    from tests.test_harness import SAMPLES, config

    policy = TunedPolicy(
        model="scripted", suite="test", unit="tokens", budget=3000.0, groups=["form", "closed_book"],
        method="bins", settings=[Setting(depth=0, mean_cost=100), Setting(depth=2, mean_cost=900)],
        difficulty=LinearModel(features=["cb_agreement"], mean=[0.5], scale=[0.5], coef=[3.0], intercept=0.0),
        thresholds=[0.75], bin_settings=[1, 0],
    )  # fmt: skip
    cfg = config(controller="tuned", depth=2, policy=policy)
    other = config(controller="tuned", depth=2, policy=policy.model_copy(update={"thresholds": [0.5]}))
    assert cfg.key != other.key
    store = ResultStore(tmp_path / "r.sqlite")
    llm = ScriptedLLM(script(probe="Danube"))  # every probe sample agrees: easy -> depth 0
    run_sweep_config(cfg, SAMPLES[:2], load_settings(home=tmp_path), llm, MemorySearch(DOCS), store)
    rows = store.results(cfg.key)
    assert {r["question_id"] for r in rows} == {s.id for s in SAMPLES[:2]}
    traces = store.traces(cfg.key)
    plans = [t["plan"] for t in traces.values()]
    assert all(p["depth"] == 0 and "bin 2 of 2" in p["why"] for p in plans)
    charges = [c for t in traces.values() for c in t["charges"] if c["node"] == "probe"]
    assert charges  # the run's own probe was charged to the run
    assert len(store.features(cfg.key)) == 2


def test_early_stopping_is_learned_as_a_setting_read_off_the_stored_rounds():
    """With rounds 0..3 stored, "depth 3, stop once two consecutive rounds agree" is a setting: a
    question whose rounds 1 and 2 agree is scored and charged at round 2."""
    runs = {
        "k": {"controller": "fixed", "budget": None, "model": "m", "suite": "s", "breadth": 1, "depth": 3}
    }
    answers = {"q0": ["a", "b", "b", "c"], "q1": ["a", "b", "c", "d"]}
    rows, features = [], {}
    for q, by_round in answers.items():
        for d, answer in enumerate(by_round):
            rows.append(
                {"run_key": "k", "question_id": q, "round": d, "think": 0, "samples": 1, "seed": 0,
                 "cover_em": float(answer == "b"), "answer": answer, "cost": {"tokens": 100.0 * (d + 1)},
                 "prompt_tokens": 0, "completion_tokens": 0, "searches": d}
            )  # fmt: skip
        features[("k", q)] = Features(question=f"Who is {q}?", groups=["form"]).model_dump()
    grid = load_grid(rows, runs, features)
    labels = [s.label for s in grid.settings]
    assert labels[-1] == "d3 T0 N1 stop-on-agree"
    stop = labels.index("d3 T0 N1 stop-on-agree")
    # q0 stops at round 2 (b, b): right, 300 tokens; q1 never agrees: round 3, wrong, 400 tokens
    assert grid.acc[:, stop].tolist() == [1.0, 0.0] and grid.cost[:, stop].tolist() == [300.0, 400.0]


def synthetic_across(n: int = 40):
    """The iterative grid answers only the easy questions (closed book); a tree run at depth 2 answers
    only the hard ones. A policy across strategies sends easy -> iterative d0, hard -> tree d2."""
    rows, runs, features = synthetic(n)
    rows = [r for r in rows if r["round"] == 0]
    runs["t"] = {**runs["k"], "strategy": "tree", "dials": {"beam": 1, "value": "logprob", "width": 3}}
    for i in range(n):
        easy = i % 2 == 0
        for d in (0, 2):
            right = easy if d == 0 else not easy
            rows.append({"run_key": "t", "question_id": f"q{i}", "round": d, "think": 0, "samples": 1,
                         "cover_em": float(right), "answer": "x", "seed": 0, "searches": 3 * d,
                         "cost": {"tokens": 100.0 if d == 0 else 3000.0}, "prompt_tokens": 0,
                         "completion_tokens": 0})  # fmt: skip
    return rows, runs, features


def test_a_policy_across_strategies_sends_each_question_to_its_strategy():
    from sounding.evals.tune import strategy_grid

    rows, runs, features = synthetic_across()
    grid = strategy_grid(rows, runs, features)
    labels = [s.label for s in grid.settings]
    assert "d0 T0 N1" in labels and "tree:beam=1:value=logprob:width=3 d2" in labels
    policy, report = tune(grid, 1700.0, budgets=[1700.0], k=5)
    hard = Features(question="Who wrote book number 1?", groups=["form", "closed_book"],
                    probe_answers=["A", "B", "C"], probe_logprob=-2.5)  # fmt: skip
    chosen, _ = policy.choose(hard)
    assert chosen.strategy == "tree" and chosen.depth == 2
    (result,) = report.results
    assert result.tuned_acc == 1.0 and result.gain_ci[0] > 0
    # the file keeps the strategy; an old policy's JSON has no strategy fields at all
    again = TunedPolicy.model_validate_json(policy.model_dump_json())
    assert again.choose(hard)[0].dials == {"beam": 1, "value": "logprob", "width": 3}
    assert "strategy" not in Setting(depth=1).model_dump_json()
    assert TunedController(again).chooses_strategy and not TunedController(policy_of_one()).chooses_strategy


def test_a_strategy_run_on_fewer_questions_is_left_out_by_name(tmp_path):
    from sounding.evals.compare import select_runs
    from sounding.evals.tune import strategy_grid

    rows, runs, features = synthetic_across()
    runs["d"] = {**runs["k"], "strategy": "decompose", "dials": {"anchor": True, "mode": "auto"}}
    rows += [
        {**r, "run_key": "d"} for r in rows if r["run_key"] == "t" and r["question_id"] in ("q0", "q1", "q2")
    ]
    assert (
        len(strategy_grid(rows, runs, features).question_ids) == 3
    )  # every strategy: their common questions
    grid = strategy_grid(rows, select_runs(runs, ["tree"]), features)
    assert len(grid.question_ids) == 40 and not any(s.strategy == "decompose" for s in grid.settings)
    done = subprocess.run([sys.executable, "-m", "sounding", "tune", str(tmp_path), "--budget", "100",
                           "--out", str(tmp_path / "p.json"), "--only", "tree"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "--across-strategies" in done.stderr


def policy_of_one() -> TunedPolicy:
    rows, runs, features = synthetic()
    return tune(load_grid(rows, runs, features), 1200.0, budgets=[1200.0], k=5)[0]


@pytest.mark.parametrize(("probe", "strategy"), [(["A", "B", "C"], "tree"), (["A", "A", "A"], "iterative")])
def test_a_policy_across_strategies_routes_each_question_when_it_runs(probe, strategy, tmp_path):
    from sounding.agent.runner import run_research, sqlite_checkpointer
    from sounding.evals.tune import strategy_grid
    from tests.scripted import MemorySearch, ScriptedLLM
    from tests.test_agent_nodes import DOCS, deps, script
    from tests.test_tree import tree_script

    rows, runs, features = synthetic_across()
    policy, _ = tune(strategy_grid(rows, runs, features), 1700.0, budgets=[1700.0], k=5)
    logprob = -0.1 if probe[0] == probe[1] else -2.5
    question = "Who wrote book number 1?"
    llm = ScriptedLLM(
        {**script(), **tree_script(), "probe": lambda n, m: {"answer": probe[n % 3], "_logprob": logprob}}
    )
    saver = sqlite_checkpointer(tmp_path / "c.sqlite")
    d = deps(llm, MemorySearch(DOCS), controller=TunedController(policy))
    result = run_research(question, d, thread_id="t1", checkpointer=saver)
    (routed,) = [e for e in result.events if e["kind"] == "route"]
    assert routed["strategy"] == strategy and not result.degraded
    assert result.charges[0].node == "probe"  # the probe is charged to the run, once
    assert any(e["kind"] == "candidates" for e in result.events) == (strategy == "tree")
    probes = [s for s, *_ in llm.calls].count("probe")
    # the finished thread, asked again, keeps its route and spends nothing
    again = run_research(question, deps(llm, MemorySearch(DOCS), controller=TunedController(policy)),
                         thread_id="t1", checkpointer=saver)  # fmt: skip
    assert again.answer == result.answer and [s for s, *_ in llm.calls].count("probe") == probes
