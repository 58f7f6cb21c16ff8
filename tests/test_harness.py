"""Sweeps, the result store, fits and reports (scripted LLM for speed; the kill test uses the real CLI)."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from sounding.evals.datasets import Sample
from sounding.evals.fit import _interp_compute, analyse, fit_law, logistic_law, split_half_agreement
from sounding.evals.plot import make_figures
from sounding.evals.report import write_report
from sounding.evals.store import ResultStore
from sounding.evals.sweep import RunConfig, run_sweep_config, verify_anytime
from sounding.settings import load_settings
from tests.conftest import REPO
from tests.scripted import MemorySearch, ScriptedLLM
from tests.test_agent_nodes import DOCS, script

SAMPLES = [
    Sample(
        id=f"q{i}",
        question=f"Which river flows through Budapest {i}?",
        answers=["Danube"],
        type="bridge" if i % 2 else "comparison",
        supporting_titles=["Budapest", "Danube"],
    )
    for i in range(6)
]


PINNED_KEY = "3b15e4417a5bbb65"


def config(**kw) -> RunConfig:
    base = {
        "suite": "test",
        "model": "scripted",
        "controller": "fixed",
        "depth": 3,
        "breadth": 1,
        "seed": 0,
        "unit": "tokens",
        "budget": None,
        "max_searches": None,
        "search_backend": "memory",
        "corpus": "mem",
        "corpus_fingerprint": "mem-fp",
        "model_id": "scripted:1",
        "llm_backend": "scripted",
        "temperature": 0.0,
        "sample_temperature": 0.7,
        "prompts": "p",
    }
    return RunConfig(**{**base, **kw})


def test_sweep_writes_one_row_per_round_and_is_idempotent(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    settings = load_settings(home=tmp_path)
    cfg = config()
    llm = ScriptedLLM(script())
    run_sweep_config(cfg, SAMPLES, settings, llm, MemorySearch(DOCS), store)
    rows = store.results(cfg.key)
    assert len(rows) == len(SAMPLES) * 4  # rounds 0..3
    by_round = {r["round"]: r for r in rows if r["question_id"] == "q0"}
    assert by_round[0]["searches"] == 0  # round 0 is the closed-book answer
    assert by_round[1]["searches"] <= by_round[2]["searches"] <= by_round[3]["searches"]
    assert (
        by_round[3]["answer"] == "Danube" and by_round[3]["cover_em"] == 1.0 and by_round[3]["is_final"] == 1
    )
    assert by_round[1]["llm_calls"] < by_round[3]["llm_calls"]
    calls = len(llm.calls)
    run_sweep_config(cfg, SAMPLES, settings, llm, MemorySearch(DOCS), store)  # a rerun does nothing
    assert len(llm.calls) == calls and store.count() == len(rows)


def test_failed_questions_are_errors_not_wrong_answers_and_can_be_retried(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    settings = load_settings(home=tmp_path)
    cfg = config(depth=1)
    run_sweep_config(cfg, SAMPLES[:3], settings, ScriptedLLM(script()), MemorySearch(DOCS, fail=True), store)
    assert store.count() == 0 and len(store.errors()) == 3
    assert store.errored_questions(cfg.key) == {"q0", "q1", "q2"}
    run_sweep_config(cfg, SAMPLES[:3], settings, ScriptedLLM(script()), MemorySearch(DOCS), store)
    assert store.count() == 0  # errors are not retried unless asked
    run_sweep_config(
        cfg, SAMPLES[:3], settings, ScriptedLLM(script()), MemorySearch(DOCS), store, retry_errors=True
    )
    assert store.count() == 3 * 2 and store.errored_questions(cfg.key) == set()
    assert len(store.errors()) == 3  # append-only: the error history stays


def test_a_bug_on_one_question_is_recorded_and_the_sweep_goes_on(tmp_path):
    def explode(query: str) -> None:
        if "budapest 1" in query.lower():
            raise RuntimeError("a bug only this question reaches")

    store = ResultStore(tmp_path / "r.sqlite")
    cfg = config(depth=1)
    search = MemorySearch(DOCS, on_search=explode)
    run_sweep_config(cfg, SAMPLES[:3], load_settings(home=tmp_path), ScriptedLLM(script()), search, store)
    assert store.done_questions(cfg.key) == {"q0", "q2"}
    (error,) = store.errors()
    assert error["question_id"] == "q1"
    assert error["error"] == "unexpected RuntimeError: a bug only this question reaches"


def test_verify_anytime_agrees_for_deterministic_runs(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    settings = load_settings(home=tmp_path)
    cfg = config(depth=3)
    llm = ScriptedLLM(
        script(
            reflect=lambda n, m: {
                "answer": "Danube",
                "notes": [1],
                "supported": True,
                "next_query": "Danube river Europe",
            }
        )
    )
    run_sweep_config(cfg, SAMPLES[:2], settings, llm, MemorySearch(DOCS), store)
    report = verify_anytime(cfg, SAMPLES[:2], [0, 1, 2, 3], settings, llm, MemorySearch(DOCS), store)
    assert report["checked"] == 2 * 3 and report["rate"] == 1.0


def test_fits_recover_a_known_law():
    x = np.array([1, 2, 4, 8, 16], dtype=float)
    y = 0.2 + 0.1 * np.log(x)
    a, b = fit_law("linear", x, y)
    assert (a, b) == (pytest.approx(0.2), pytest.approx(0.1))
    y2 = logistic_law(x, -1.0, 0.8)
    alpha, beta = fit_law("logistic", x, y2)
    assert (alpha, beta) == (pytest.approx(-1.0, abs=1e-3), pytest.approx(0.8, abs=1e-3))


def test_r_squared_of_a_flat_curve_is_undefined_not_a_float_artefact():
    from sounding.evals.fit import r_squared

    flat = np.array([0.1 + 0.2, 0.3, 0.3, 0.3])  # equal up to float noise, as means over questions can be
    assert r_squared(flat, flat + 1e-18) is None
    assert r_squared(np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.2, 0.3])) == 1.0


def test_interpolated_compute_for_exchange_rate():
    pts = [(100.0, 0.2), (1000.0, 0.4), (10000.0, 0.5)]
    assert _interp_compute(pts, 0.3) == pytest.approx(math.sqrt(100 * 1000))
    assert _interp_compute(pts, 0.6) is None
    assert _interp_compute(pts, 0.1) == 100.0


def synthetic_rows(
    model: str, key: str, acc_by_depth: dict[int, float], tokens_per_round: float, n: int = 40
):
    rng = np.random.default_rng(0)
    rows = []
    for q in range(n):
        for d, p in acc_by_depth.items():
            correct = float(rng.random() < p)
            rows.append(
                {
                    "run_key": key,
                    "question_id": f"q{q}",
                    "round": d,
                    "rounds_done": max(acc_by_depth),
                    "question": "q",
                    "qtype": "bridge" if q % 2 else "comparison",
                    "hops": 2,
                    "answer": "a",
                    "golds": ["a"],
                    "em": correct,
                    "f1": correct,
                    "cover_em": correct,
                    "recall": 0.5,
                    "judge": None,
                    "judge_model": None,
                    "searches": d,
                    "prompt_tokens": int(100 + tokens_per_round * d),
                    "completion_tokens": 10,
                    "cost": {
                        "tokens": 110 + (tokens_per_round + 300) * d,
                        "flops": (110 + tokens_per_round * d) * 2e9,
                    },
                    "llm_calls": 1 + 2 * d,
                    "spend_by_event": {"llm": 110 + tokens_per_round * d, "search": 300 * d},
                    "wall_seconds": 1.0,
                    "stop_reason": "depth",
                    "is_final": int(d == max(acc_by_depth)),
                }
            )
    return rows


def test_analysis_exchange_rate_and_report(tmp_path):
    runs = {
        "k1": config(model="smollm2-135m").model_dump(),
        "k2": config(model="qwen2.5-coder-1.5b").model_dump(),
    }
    rows = synthetic_rows(
        "smollm2-135m", "k1", {0: 0.1, 1: 0.3, 2: 0.45, 4: 0.6, 8: 0.7}, 500
    ) + synthetic_rows("qwen2.5-coder-1.5b", "k2", {0: 0.3, 1: 0.5, 2: 0.6, 4: 0.7, 8: 0.75}, 500)
    analysis = analyse(rows, runs, n_boot=50, by="qtype")
    main = [c for c in analysis.curves if c.group == "all"]
    assert {c.model for c in main} == {"smollm2-135m", "qwen2.5-coder-1.5b"}
    small = next(c for c in main if c.model == "smollm2-135m")
    assert [p.depth for p in small.points] == [0, 1, 2, 4, 8]
    assert all(p.ci[0] <= p.acc <= p.ci[1] for p in small.points)
    steps_linear = next(f for f in small.fits if f.axis == "steps" and f.form == "linear")
    assert (
        steps_linear.params["b"] > 0
        and steps_linear.r2 is not None
        and steps_linear.holdout_error is not None
    )
    ex = [e for e in analysis.exchanges if e.axis == "tokens" and e.group == "all"]
    assert ex and all(e.small == "smollm2-135m" for e in ex)
    assert any(e.ratio is not None and e.ratio > 1 for e in ex)  # the small model needs more compute
    assert any(e.ratio is None and e.note.startswith("not reached") for e in ex)  # 0.75 is never reached
    (tmp_path / "figures").mkdir()
    figures = make_figures(analysis, tmp_path / "figures")
    assert any(p.suffix == ".svg" for p in figures) and all(p.stat().st_size > 1000 for p in figures)
    md, html = write_report(analysis, tmp_path)
    text = md.read_text()
    assert "Fitted laws" in text and "Exchange rates" in text and "not reached" in text
    assert "figures/" in text and "<table>" in html.read_text()


def test_split_half_tells_a_trend_from_noise():
    """A curve that rises with depth keeps its slope's sign in every half of every split; on a curve
    whose questions are coin flips at every depth, the chance slope of the whole sample is not in
    every half (about 0.7 here: a split-half sees how widely a trend is shared, not past its sample)."""
    runs = {
        "k1": config(model="smollm2-135m").model_dump(),
        "k2": config(model="qwen2.5-coder-1.5b").model_dump(),
    }
    rising = synthetic_rows("smollm2-135m", "k1", {0: 0.05, 1: 0.2, 2: 0.45, 4: 0.7, 8: 0.95}, 500, n=60)
    flat = synthetic_rows("qwen2.5-coder-1.5b", "k2", {0: 0.5, 1: 0.5, 2: 0.5, 4: 0.5, 8: 0.5}, 500, n=60)
    analysis = analyse(rising + flat, runs, n_boot=20, n_splits=100)

    def linear_steps(model: str):
        curve = next(c for c in analysis.curves if c.model == model and c.group == "all")
        return next(f for f in curve.fits if f.axis == "steps" and f.form == "linear")

    assert linear_steps("smollm2-135m").split_half == 1.0
    noise = linear_steps("qwen2.5-coder-1.5b").split_half
    assert noise is not None and noise < 0.9, noise
    assert all(f.split_half is None for c in analysis.curves for f in c.fits if f.form == "logistic")


def test_split_half_counts_a_flat_half_as_no_trend():
    """Two points with equal means (2/3 and 2/3; 0.1 + 0.2 and 0.3) fit a slope of float noise, about
    1e-17, whose sign is arbitrary: such a half shares no trend, whichever sign the whole curve has."""
    x = np.array([75.0, 475.0])
    flat = [({0: 2 / 3, 1: 2 / 3}, {0: 0.1 + 0.2, 1: 0.3}), ({0: 0.3, 1: 0.1 + 0.2}, {0: 0.0, 1: 0.0})]
    rising = [({0: 0.2, 1: 0.4}, {0: 0.1, 1: 0.3})]
    for sign in (+1, -1):
        assert split_half_agreement(x, [0, 1], sign * 0.05, flat) == 0.0
    assert split_half_agreement(x, [0, 1], 0.05, rising + flat) == 1 / 3
    assert split_half_agreement(x, [0, 1], -0.05, rising) == 0.0
    assert split_half_agreement(x, [0, 1], 1e-17, rising) is None  # the whole curve is flat


@pytest.mark.model
def test_kill_nine_mid_sweep_then_resume(tmp_path, data_dir):
    """A real `sounding bench` subprocess killed with SIGKILL mid-sweep resumes with no lost or duplicated rows."""
    home = tmp_path / "home"
    out = tmp_path / "run"
    env = {**os.environ, "SOUNDING_HOME": str(home)}
    suite = f"hotpotqa:{data_dir / 'hotpotqa/hotpot_dev_distractor_subset.json.gz'}"
    cmd = [
        sys.executable,
        "-m",
        "sounding",
        "bench",
        suite,
        "--limit",
        "8",
        "--depths",
        "0,1",
        "--model",
        "smollm2-135m",
        "--backend",
        "bm25",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "results.sqlite"
    deadline = time.monotonic() + 600  # generous: it stops waiting as soon as 4 rows are in
    rows = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.Error:
                continue
            if rows >= 4:
                break
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = sqlite3.connect(db).execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert 4 <= killed_at < 16
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 8 * 2
    per_question = con.execute("SELECT question_id, COUNT(*) FROM results GROUP BY question_id").fetchall()
    assert len(per_question) == 8 and all(n == 2 for _, n in per_question)


def test_sweep_rerun_from_a_replay_only_cassette_is_identical(tmp_path):
    from sounding.tools.search.cassette import Cassette, CassetteSearch

    settings = load_settings(home=tmp_path)
    cfg = config(depth=2)
    recorded = CassetteSearch(MemorySearch(DOCS), Cassette(tmp_path / "c.jsonl", "record"), name="memory")
    first = ResultStore(tmp_path / "a.sqlite")
    run_sweep_config(cfg, SAMPLES[:3], settings, ScriptedLLM(script()), recorded, first)
    offline = CassetteSearch(None, Cassette(tmp_path / "c.jsonl", "replay-only"), name="memory")
    second = ResultStore(tmp_path / "b.sqlite")
    run_sweep_config(cfg, SAMPLES[:3], settings, ScriptedLLM(script()), offline, second)
    strip = ("created", "wall_seconds")
    a = [{k: v for k, v in r.items() if k not in strip} for r in first.results()]
    b = [{k: v for k, v in r.items() if k not in strip} for r in second.results()]
    assert a == b and len(a) == 3 * 3


def test_adaptive_vs_fixed_at_equal_mean_spend(tmp_path):
    runs = {
        "f": config(model="qwen2.5-coder-0.5b").model_dump(),
        "a": config(model="qwen2.5-coder-0.5b", controller="adaptive", budget=4000.0).model_dump(),
    }
    fixed = synthetic_rows("qwen2.5-coder-0.5b", "f", {0: 0.2, 1: 0.3, 2: 0.4, 4: 0.5}, 500)
    adaptive = [r for r in synthetic_rows("qwen2.5-coder-0.5b", "a", {0: 0.2, 1: 0.35, 2: 0.6}, 500)]
    analysis = analyse(fixed + adaptive, runs, n_boot=100)
    (cmp,) = analysis.comparisons
    assert cmp.controller == "adaptive" and cmp.note == "compared"
    # adaptive's final point spends what fixed spends at depth 2, so fixed is interpolated exactly there
    assert cmp.fixed_acc == pytest.approx(
        next(
            p.acc
            for c in analysis.curves
            if c.controller == "fixed" and c.group == "all"
            for p in c.points
            if p.depth == 2
        )
    )
    assert cmp.diff == pytest.approx(cmp.acc - cmp.fixed_acc)
    assert cmp.diff_ci is not None and cmp.diff_ci[0] <= cmp.diff <= cmp.diff_ci[1]
    md, _ = write_report(analysis, tmp_path)
    assert "Adaptive vs fixed" in md.read_text()


def test_exchange_and_controller_comparison_use_only_shared_questions():
    """A larger model run on fewer questions is compared on those questions only: the smaller model's
    extra questions (all answered right here) must not make it look better than it is on the shared ones."""
    runs = {
        "s": config(model="qwen2.5-coder-0.5b").model_dump(),
        "l": config(model="qwen2.5-coder-1.5b").model_dump(),
        "a": config(model="qwen2.5-coder-0.5b", controller="adaptive", budget=4000.0).model_dump(),
    }
    small = synthetic_rows("qwen2.5-coder-0.5b", "s", {0: 0.1, 1: 0.2, 2: 0.3, 4: 0.4, 8: 0.5}, 500, n=40)
    for r in small:
        if int(r["question_id"][1:]) >= 20:  # questions only the small model ran: all right
            r["em"] = r["f1"] = r["cover_em"] = 1.0
    large = synthetic_rows("qwen2.5-coder-1.5b", "l", {0: 0.2, 1: 0.25, 2: 0.6, 4: 0.7, 8: 0.8}, 500, n=20)
    adaptive = synthetic_rows("qwen2.5-coder-0.5b", "a", {0: 0.1, 1: 0.3, 2: 0.5}, 500, n=10)
    analysis = analyse(small + large + adaptive, runs, n_boot=60)
    shared = {f"q{i}#0" for i in range(20)}
    small_on_shared = {
        d: np.mean([r["cover_em"] for r in small if r["round"] == d and r["question_id"] + "#0" in shared])
        for d in (0, 1, 2, 4, 8)
    }
    ex = [e for e in analysis.exchanges if e.group == "all"]
    assert ex and all(e.n == 20 for e in ex)
    assert {e.axis for e in ex} == {"searches", "tokens", "flops"}
    for e in ex:
        large_acc = np.mean([r["cover_em"] for r in large if r["round"] == e.depth])
        assert e.large_acc == pytest.approx(large_acc)
        # reached exactly when the small model's curve on the shared questions gets there
        assert (e.ratio is not None) == (max(small_on_shared.values()) >= large_acc)
    reached = [e for e in ex if e.axis == "searches" and e.ratio is not None]
    assert reached, "the large model's shallow points are within the small model's reach"
    for e in reached:  # one search per round in these rows: spend on this axis is the depth
        assert e.large_compute == pytest.approx(e.depth) and e.small_compute >= 1.0
    gaps = [g for g in analysis.gaps if g.group == "all" and g.large == "qwen2.5-coder-1.5b"]
    assert [g.depth for g in gaps] == [0, 1, 2, 4, 8] and all(g.n == 20 and g.small_depth == 8 for g in gaps)
    for g in gaps:  # paired on the shared questions: the small model's all-right extras do not count
        assert g.small_acc == pytest.approx(small_on_shared[8])
        assert g.diff == pytest.approx(g.small_acc - g.large_acc)
        assert g.diff_ci[0] <= g.diff <= g.diff_ci[1]
    (cmp,) = analysis.comparisons
    assert cmp.n == 10
    fixed_d2_on_ten = np.mean(
        [r["cover_em"] for r in small if r["round"] == 2 and int(r["question_id"][1:]) < 10]
    )
    assert cmp.fixed_acc == pytest.approx(fixed_d2_on_ten)
    curve = next(c for c in analysis.curves if c.model == "qwen2.5-coder-1.5b" and c.group == "all")
    assert all(set(p.metrics) == {"em", "f1", "cover_em"} for p in curve.points)


def test_fit_plot_report_commands_on_a_real_store(tmp_path):
    """The analysis commands read a store written by ResultStore and write report, figures and fits.json;
    a directory with no store gets an error naming the command that makes one."""
    from typer.testing import CliRunner

    from sounding.cli import app
    from sounding.evals.fit import Analysis

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    store = ResultStore(run_dir / "results.sqlite")
    for key, model, acc in (
        ("k1", "smollm2-135m", {0: 0.1, 1: 0.3, 2: 0.45, 4: 0.6}),
        ("k2", "qwen2.5-coder-1.5b", {0: 0.3, 1: 0.5, 2: 0.6, 4: 0.7}),
    ):
        store.register_run(key, config(model=model, depth=4).model_dump())
        rows = synthetic_rows(model, key, acc, 500, n=30)
        for q in sorted({r["question_id"] for r in rows}):
            store.add_question([r for r in rows if r["question_id"] == q])
    store.add_error("k1", "q99", "unexpected TypeError: int() | got None\nsecond line")
    store.add_error("k1", "q98", "LLM endpoint went away")
    store.add_error("k2", "q0", "failed once, answered by the retry")  # q0 of k2 has rows
    store.close()
    runner = CliRunner()
    report = runner.invoke(app, ["report", str(run_dir), "--bootstrap", "40"])
    assert report.exit_code == 0, report.output
    text = (run_dir / "report.md").read_text()
    assert "Exchange rates" in text and "By question type" in text and "| EM | F1 |" in text
    assert "Does searching more close the gap?" in text
    # failed questions never answered are listed per run (k2's retried failure is not)
    assert "## Failed questions" in text
    assert "| smollm2-135m | fixed | - | 2 | unexpected TypeError: int() \\| got None second line |" in text
    assert "answered by the retry" not in text
    analysis = Analysis.model_validate_json((run_dir / "fits.json").read_text())
    assert {c.model for c in analysis.curves} == {"smollm2-135m", "qwen2.5-coder-1.5b"}
    assert any(e.axis == "searches" for e in analysis.exchanges)
    assert all(f"figures/{p.name}" in text for p in (run_dir / "figures").glob("*.png"))
    fit = runner.invoke(app, ["fit", str(run_dir), "--metric", "f1", "--bootstrap", "20"])
    assert (
        fit.exit_code == 0
        and Analysis.model_validate_json((run_dir / "fits.json").read_text()).metric == "f1"
    )
    bad_metric = runner.invoke(app, ["fit", str(run_dir), "--metric", "accuracy"])
    assert bad_metric.exit_code != 0 and "unknown metric 'accuracy'" in bad_metric.output
    empty = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert empty.exit_code != 0 and "sounding bench --out" in empty.output


def _store_with_fixed_run(path, model="qwen2.5-coder-0.5b"):
    store = ResultStore(path)
    store.register_run("f", config(model=model, depth=4).model_dump())
    rows = synthetic_rows(model, "f", {0: 0.2, 1: 0.3, 2: 0.4, 3: 0.45, 4: 0.5}, 500, n=10)
    for r in rows:  # round r costs 500 + 20 * r prompt tokens: later rounds read longer notes
        r["prompt_tokens"] = 100 + sum(500 + 20 * k for k in range(1, r["round"] + 1))
        r["completion_tokens"] = 10 + 30 * r["round"]
    for q in sorted({r["question_id"] for r in rows}):
        store.add_question([r for r in rows if r["question_id"] == q])
    store.register_run("a", config(model=model, controller="adaptive", budget=3000.0).model_dump())
    return store


def test_measured_usage_per_round_from_a_store(tmp_path):
    from sounding.evals.estimate import EstimateError, measure_usage

    store = _store_with_fixed_run(tmp_path / "r.sqlite")
    est = measure_usage(store, "qwen2.5-coder-0.5b")
    assert (est.overhead_prompt_tokens, est.overhead_completion_tokens) == (100, 10)
    assert est.round_prompt_tokens == [520, 540, 560, 580]
    assert est.round_completion_tokens == [30, 30, 30, 30]
    assert est.questions == 10 and "runs f" in est.source
    with pytest.raises(EstimateError, match=r"models there: qwen2\.5-coder-0\.5b"):
        measure_usage(store, "smollm2-135m")


def test_budget_estimate_command_writes_a_policy_the_calibrated_controller_reads(tmp_path):
    from typer.testing import CliRunner

    from sounding.budgets.controllers import load_policy
    from sounding.cli import app

    run_dir = tmp_path / "run"
    _store_with_fixed_run(run_dir / "results.sqlite").close()
    out = tmp_path / "policy.json"
    runner = CliRunner()
    ok = runner.invoke(
        app, ["budget", "estimate", str(run_dir), "--model", "qwen2.5-coder-0.5b", "--out", str(out)]
    )
    assert ok.exit_code == 0, ok.output
    assert "per round 550, 570, 590, 610" in " ".join(ok.output.split())
    policy = load_policy(out)
    assert policy.estimate is not None and policy.estimate.round_prompt_tokens[0] == 520
    assert set(policy.bins) == {"easy", "medium", "hard"}
    before = out.read_text()
    for args, message in (
        (["--model", "smollm2-135m", "--out", str(out)], "no unbudgeted fixed-controller runs"),
        (["--model", "qwen2.5-coder-0.5b", "--out", str(tmp_path / "p.toml")], "must be a .json file"),
    ):
        bad = runner.invoke(app, ["budget", "estimate", str(run_dir), *args])
        assert bad.exit_code != 0 and message in " ".join(bad.output.split())
    assert out.read_text() == before  # a failed estimate leaves the earlier policy as it was
    missing = runner.invoke(
        app, ["budget", "estimate", str(tmp_path / "none"), "--model", "m", "--out", str(out)]
    )
    assert missing.exit_code != 0 and "sounding bench --out" in missing.output


def test_run_keys_are_stable_and_a_calibrated_policy_is_part_of_the_key(tmp_path):
    from sounding.budgets.controllers import DEFAULT_POLICY, PolicyError, UsageEstimate
    from sounding.evals.sweep import RunIdentity, SweepSpec, run_configs
    from sounding.factory import build_deps

    # A v2 key is pinned: it may only change on purpose (a new key_version), never by accident.
    assert config().key == PINNED_KEY
    assert "/" not in config().model_dump_json().replace("https://", "")  # no paths in a key
    estimate = UsageEstimate(
        model="scripted",
        overhead_prompt_tokens=50,
        overhead_completion_tokens=5,
        round_prompt_tokens=[400],
        round_completion_tokens=[40],
        questions=3,
    )
    one = DEFAULT_POLICY.model_copy(update={"estimate": estimate})
    two = one.model_copy(update={"easy_margin": 0.5})
    calibrated = [config(controller="calibrated", budget=3000.0, policy=p) for p in (one, two)]
    assert len({c.key for c in calibrated}) == 2
    # the controller is built from the policy stored with the run, whatever file is on disk now
    deps = build_deps(calibrated[1], load_settings(home=tmp_path), ScriptedLLM(script()), MemorySearch(DOCS))
    assert deps.controller.name == "calibrated" and deps.controller.policy.easy_margin == 0.5
    path = tmp_path / "policy.json"
    path.write_text(one.model_dump_json())
    settings = load_settings(home=tmp_path)
    settings = settings.model_copy(
        update={"budget": settings.budget.model_copy(update={"policy_file": path})}
    )
    spec = SweepSpec(
        suite="s", limit=None, depths=[3], breadths=[1], models=["scripted"], controller="calibrated"
    )
    identity = RunIdentity(suite="s", corpus="mem", corpus_fingerprint="fp")
    (cfg,) = run_configs(spec, settings, identity)
    assert cfg.policy == one
    other = spec.model_copy(update={"models": ["qwen2.5-coder-1.5b"]})
    with pytest.raises(PolicyError, match=r"measured on scripted, not qwen2\.5-coder-1\.5b"):
        run_configs(other, settings, identity)
    # `ask` refuses the same mismatch: the policy was measured on "scripted", settings run the default
    from sounding.research import make_deps

    calibrated_settings = settings.model_copy(
        update={"budget": settings.budget.model_copy(update={"controller": "calibrated"})}
    )
    with pytest.raises(PolicyError, match=r"measured on scripted, not qwen2\.5-coder-1\.5b"):
        make_deps(calibrated_settings, ScriptedLLM(script()), MemorySearch(DOCS))


def test_manifest_keeps_each_controllers_depths_and_the_analysis_reads_curves_at_them(tmp_path):
    """A tuned sweep to depth 3 written after a fixed sweep to depth 8 must not cut the fixed curve."""
    import json

    from sounding.evals.datasets import Suite
    from sounding.evals.sweep import SweepSpec, sweep_manifest

    path = tmp_path / "sweep.json"
    suite = Suite(name="test", kind="test", path=tmp_path, samples=SAMPLES)
    fixed = SweepSpec(suite="s", limit=6, depths=[0, 1, 2, 4, 8], breadths=[1], models=["m"])
    tuned = fixed.model_copy(update={"depths": [0, 1, 2, 3], "controller": "tuned"})
    sweep_manifest(path, fixed, ["sounding", "bench", "fixed"], suite)
    sweep_manifest(path, tuned, ["sounding", "bench", "tuned"], suite)
    sweep_manifest(path, fixed.model_copy(update={"depths": [0, 16]}), ["sounding", "bench", "deeper"], suite)
    manifest = json.loads(path.read_text())
    assert manifest["depths"] == {"fixed": [0, 1, 2, 4, 8, 16], "tuned": [0, 1, 2, 3]}
    assert len(manifest["commands"]) == 3 and manifest["spec"]["depths"] == [0, 16]

    runs = {
        "f": config(model="m", depth=8).model_dump(),
        "t": config(model="m", controller="tuned", depth=3, budget=3000.0).model_dump(),
    }
    rows = synthetic_rows("m", "f", {d: 0.1 + 0.03 * d for d in range(9)}, 500, n=10)
    rows += synthetic_rows("m", "t", {d: 0.3 for d in range(4)}, 500, n=10)
    wanted = {"fixed": [0, 1, 2, 4, 8], "tuned": [0, 1, 2, 3]}
    analysis = analyse(rows, runs, n_boot=10, depths=wanted, by="qtype")
    by_controller = {c.controller: [p.depth for p in c.points] for c in analysis.curves}
    assert by_controller == {"fixed": [0, 1, 2, 4, 8], "tuned": [0, 1, 2, 3]}
    # the by-type table has a column per depth of either run and names the tuned run and its budget
    md, _ = write_report(analysis, tmp_path)
    text = md.read_text()
    assert "| run | group | d=0 | d=1 | d=2 | d=3 | d=4 | d=8 |" in text
    tuned_row = next(
        line for line in text.splitlines() if line.startswith("| m tuned B1 @ 3000 tokens | qtype=")
    )
    assert tuned_row.endswith("|  |  |")  # no depth 4 or 8 for the tuned run


# --- issue 12: correct under concurrency, complete keys, seeds, settings never merged -----------


def test_sixteen_threads_share_one_store_without_lost_or_duplicated_rows(tmp_path):
    import threading

    store = ResultStore(tmp_path / "r.sqlite")
    store.register_run("k", config().model_dump())
    errors: list[BaseException] = []

    def write(i: int) -> None:
        rows = [
            {**synthetic_rows("m", "k", {0: 0.5, 1: 0.5}, 500, n=1)[0], "question_id": f"q{i}", "round": r}
            for r in (0, 1)
        ]
        try:
            for _ in range(3):  # every question written three times: the rows land once
                store.add_question(rows, {"answer": f"a{i}"})
            store.add_error("k", f"e{i}", "boom") if i % 4 == 0 else None
        except BaseException as exc:  # pragma: no cover - the failure this test exists for
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(64)]
    for t in threads[:16]:
        t.start()
    for t in threads[16:]:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 64 * 2
    assert len(store.done_questions("k")) == 64 and len(store.traces("k")) == 64
    assert len(store.errors()) == 16


def test_a_sweep_at_concurrency_16_stores_every_question_once(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    samples = [
        Sample(id=f"q{i}", question=f"Which river flows through Budapest {i}?", answers=["Danube"])
        for i in range(40)
    ]
    cfg = config(depth=1)
    run_sweep_config(
        cfg,
        samples,
        load_settings(home=tmp_path),
        ScriptedLLM(script()),
        MemorySearch(DOCS),
        store,
        concurrency=16,
    )
    rows = store.results(cfg.key)
    assert len(rows) == 40 * 2 and len({(r["question_id"], r["round"]) for r in rows}) == 80
    assert store.errors() == []


def test_a_store_that_cannot_be_written_stops_the_sweep_and_records_no_error(tmp_path, monkeypatch):
    """A full disk is not the question's failure: the sweep stops, nothing is recorded against the
    question in flight, and a plain rerun (no --retry-errors) answers it. (The real failing write, a
    file-size limit under a real `sounding bench`, is tests/test_failures.py's.)"""
    from sounding.evals.store import StoreWriteError

    store = ResultStore(tmp_path / "r.sqlite")
    real = store.add_question

    def full(rows, trace=None, features=None):
        if rows and rows[0]["question_id"] == "q1":
            raise StoreWriteError("cannot write r.sqlite: database or disk is full")
        return real(rows, trace, features)

    monkeypatch.setattr(store, "add_question", full)
    cfg = config(depth=1)
    settings = load_settings(home=tmp_path)
    with pytest.raises(StoreWriteError):
        run_sweep_config(cfg, SAMPLES[:3], settings, ScriptedLLM(script()), MemorySearch(DOCS), store)
    assert store.done_questions(cfg.key) == {"q0"} and store.errors() == []
    monkeypatch.setattr(store, "add_question", real)
    run_sweep_config(cfg, SAMPLES[:3], settings, ScriptedLLM(script()), MemorySearch(DOCS), store)
    assert store.done_questions(cfg.key) == {"q0", "q1", "q2"} and store.errors() == []


def test_seeds_are_repeated_measures_not_extra_questions():
    runs = {
        f"s{seed}": config(model="m", depth=2, seed=seed, temperature=0.7).model_dump() for seed in range(3)
    }
    rows = []
    for seed in range(3):
        rows += synthetic_rows("m", f"s{seed}", {0: 0.2, 1: 0.4, 2: 0.5}, 500, n=40)
    analysis = analyse(rows, runs, n_boot=200)
    (curve,) = analysis.curves
    assert all(p.n == 40 for p in curve.points) and curve.seeds == 3


def test_runs_that_differ_in_any_setting_are_never_one_curve():
    runs = {
        "bm25": config(model="m", depth=1, search_backend="bm25").model_dump(),
        "hybrid": config(model="m", depth=1, search_backend="hybrid").model_dump(),
    }
    rows = synthetic_rows("m", "bm25", {0: 0.0, 1: 0.0}, 500, n=10)
    rows += synthetic_rows("m", "hybrid", {0: 1.0, 1: 1.0}, 500, n=10)
    analysis = analyse(rows, runs, n_boot=10)
    assert len(analysis.curves) == 2
    by = {c.distinct["search_backend"]: [p.acc for p in c.points] for c in analysis.curves}
    assert by == {"bm25": [0.0, 0.0], "hybrid": [1.0, 1.0]}
    assert all(p.n == 10 for c in analysis.curves for p in c.points)


def test_run_keys_change_with_everything_that_changes_answers():
    base = config()
    for change in (
        {"llm_backend": "http"},
        {"model_id": "sha256:other"},
        {"temperature": 0.7},
        {"prompts": "other"},
        {"corpus_fingerprint": "other"},
        {"k": 10},
        {"read": 2},
        {"think": 64, "think_caps": [0, 64]},
        {"samples": 5, "sample_counts": [1, 5]},
        {"seed": 1},
    ):
        assert config(**change).key != base.key, change


def test_an_old_store_is_read_and_migrated_without_losing_a_row(tmp_path):
    import shutil

    old = REPO / "docs" / "results" / "first-result" / "hotpotqa" / "results.sqlite"
    copy = tmp_path / "old.sqlite"
    shutil.copy(old, copy)
    before = sqlite3.connect(copy).execute("SELECT COUNT(*) FROM results").fetchone()[0]
    read_only = ResultStore.open_read_only(copy)
    rows = read_only.results()
    assert len(rows) == before and {(r["think"], r["samples"]) for r in rows} == {(0, 1)}
    read_only.close()
    assert "think" not in [c[1] for c in sqlite3.connect(copy).execute("PRAGMA table_info(results)")]
    writable = ResultStore(copy)  # a sweep appending to it migrates it, all rows kept
    assert writable.count() == before
    assert "think" in [c[1] for c in sqlite3.connect(copy).execute("PRAGMA table_info(results)")]


def test_read_only_store_errors_name_the_file(tmp_path):
    from sounding.evals.store import StoreError

    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(StoreError, match=r"empty\.sqlite"):
        ResultStore.open_read_only(empty)
    assert empty.stat().st_size == 0  # never created or migrated
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match=r"junk\.sqlite"):
        ResultStore.open_read_only(junk)
    with pytest.raises(StoreError, match=r"junk\.sqlite"):
        ResultStore(junk)  # the sweep refuses to append to it
