"""`sounding compare` on synthetic stores: settings across strategies on one axis, the paired
difference against the best iterative setting that costs no more, composition on the questions no
search depth answered, per-type accuracy, value AUROC from the stored candidates, and the model gap."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sounding.evals.compare import compare, markdown, matrices, model_gap, select_runs
from sounding.evals.store import ResultStore

IT = {"strategy": "iterative", "controller": "fixed", "budget": None, "suite": "s", "model": "small"}
TREE = {**IT, "strategy": "tree", "dials": {"beam": 1, "value": "logprob", "width": 3}}


def row(key, q, rnd, correct, tokens, *, think=0, samples=1, qtype="bridge", golds=("Danube",)):
    return {
        "run_key": key, "question_id": q, "round": rnd, "think": think, "samples": samples,
        "cover_em": float(correct), "em": float(correct), "f1": float(correct), "recall": None,
        "cost": {"tokens": float(tokens), "flops": float(tokens) * 1e9}, "prompt_tokens": tokens,
        "completion_tokens": 0, "searches": rnd, "qtype": qtype, "hops": None, "golds": list(golds),
        "llm_calls": 1, "rounds_done": rnd, "question": q, "answer": "a", "judge": None, "judge_model": None,
        "spend_by_event": {}, "wall_seconds": 1.0, "stop_reason": "depth", "is_final": 1,
    }  # fmt: skip


def store_rows(n=40):
    """Iterative: closed book right on q0-q9, one search adds q10-q19. Tree (at depth 2) is right on
    q0-q19 and on q20-q29, which no search depth answered; it costs 3x one search."""
    rows = []
    for i in range(n):
        q = f"q{i}"
        qtype = "comparison" if i % 2 else "bridge"
        rows.append(row("it", q, 0, i < 10, 80, qtype=qtype))
        rows.append(row("it", q, 1, i < 20, 1000, qtype=qtype))
        rows.append(row("tree", q, 0, i < 10, 80, qtype=qtype))
        rows.append(row("tree", q, 2, i < 30, 3000, qtype=qtype))
    return rows


def test_settings_differences_and_composition():
    ((key, matrix),) = matrices(store_rows(), {"it": IT, "tree": TREE}).items()
    assert key == ("small", "s")
    c = compare(matrix, model="small", suite="s", n_boot=300)
    by = {s.label: s for s in c.settings}
    assert set(by) == {"iterative d0 T0 N1", "iterative d1 T0 N1",
                       "tree:beam=1:value=logprob:width=3 d0", "tree:beam=1:value=logprob:width=3 d2"}  # fmt: skip
    assert by["tree:beam=1:value=logprob:width=3 d2"].acc == pytest.approx(0.75)
    assert c.envelope == ["iterative d0 T0 N1", "iterative d1 T0 N1", "tree:beam=1:value=logprob:width=3 d2"]
    diff = {d.setting: d for d in c.differences}["tree:beam=1:value=logprob:width=3 d2"]
    assert diff.baseline == "iterative d1 T0 N1" and diff.diff == pytest.approx(0.25)
    assert diff.ci[0] > 0 and diff.tokens_ratio == pytest.approx(3.0)
    # q20-q39 failed at every search depth; the tree answers q20-q29 of them
    assert c.search_failed == 20
    rescue = {r.setting: r for r in c.rescues}["tree:beam=1:value=logprob:width=3 d2"]
    assert rescue.share == pytest.approx(0.5)
    assert {t.qtype: t.n for t in c.by_type} == {"bridge": 20, "comparison": 20}
    assert "| tree:beam=1:value=logprob:width=3 d2 | 0.750 |" in markdown([c], [])


def test_a_pair_asked_for_is_a_paired_difference_on_the_same_questions():
    m = matrices(store_rows(), {"it": IT, "tree": TREE})[("small", "s")]
    c = compare(
        m,
        model="small",
        suite="s",
        n_boot=300,
        pairs=[("tree:beam=1:value=logprob:width=3 d2", "iterative d1 T0 N1")],
    )
    assert c is not None
    (d,) = c.pairs
    # the tree is right on q0-q29, one search on q0-q19: ten of forty questions apart, all one way
    assert d.diff == pytest.approx(0.25) and d.ci is not None and d.ci[0] > 0.1 and d.ci[1] <= 0.4
    assert d.tokens_ratio == pytest.approx(3.0)
    with pytest.raises(ValueError, match="no setting 'tree d7'"):
        compare(m, model="small", suite="s", n_boot=300, pairs=[("tree d7", "iterative d1 T0 N1")])


def test_value_auroc_comes_from_the_stored_candidates():
    rows = store_rows(6)
    traces = {}
    for i in range(6):
        # the right candidate always has the higher log-probability; agreement says nothing
        cands = [{"answer": "Danube", "logprob": -0.1 - i / 100, "agreement": 0.5},
                 {"answer": "Seine", "logprob": -0.9, "agreement": 0.5}]  # fmt: skip
        traces[("tree", f"q{i}")] = {"strategy_events": [{"kind": "candidates", "candidates": cands}]}
    ((_, matrix),) = matrices(rows, {"it": IT, "tree": TREE}).items()
    c = compare(matrix, model="small", suite="s", traces=traces, runs={"it": IT, "tree": TREE}, n_boot=200)
    values = {v.value: v for v in c.values}
    assert values["logprob"].within == pytest.approx(1.0) and values["agreement"].within == pytest.approx(0.5)
    assert values["logprob"].picked == 1.0 and values["logprob"].pooled == pytest.approx(1.0)
    assert values["logprob"].candidates == 12 and values["logprob"].positives == 6
    assert values["logprob"].mixed_questions == 6
    assert values["logprob"].questions == 6 and values["logprob"].ceiling == 1.0  # some candidate is right


def test_runs_that_differ_beyond_the_label_are_never_averaged_as_seeds():
    wide = {**TREE, "breadth": 2}
    rows = store_rows(10) + [row("wide", f"q{i}", 2, 0, 5000) for i in range(10)]
    ((_, matrix),) = matrices(rows, {"it": IT, "tree": TREE, "wide": wide}).items()
    labels = sorted({s for by in matrix.values() for s in by if s.endswith(" d2") or " d2 #" in s})
    assert len(labels) == 2 and all("#" in s for s in labels)  # two runs, told apart by identity
    accs = sorted(np.mean([matrix[q][s]["cover_em"] for q in matrix]) for s in labels)
    assert accs == [0.0, 1.0]  # not one setting at 0.5


def test_the_gap_between_models_reselects_both_bests():
    small = matrices(store_rows(), {"it": IT, "tree": TREE})[("small", "s")]
    large_rows = [row("big", f"q{i}", 1, i < 25, 1000) for i in range(40)]
    large = matrices(large_rows, {"big": {**IT, "model": "large"}})[("large", "s")]
    gap = model_gap(small, large, suite="s", names=("small", "large"), n_boot=300)
    assert gap.small_best.startswith("tree") and gap.gap == pytest.approx(0.75 - 0.625)
    assert gap.small_reaching.startswith("tree") and gap.flops_ratio == pytest.approx(3.0)


def test_the_command_reads_run_directories(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    store = ResultStore(run / "results.sqlite")
    store.register_run("it", IT)
    store.register_run("tree", TREE)
    rows = store_rows(10)
    for q in sorted({r["question_id"] for r in rows}):
        for key in ("it", "tree"):
            store.add_question([r for r in rows if r["question_id"] == q and r["run_key"] == key], None, None)
    store.close()
    out = tmp_path / "c.json"
    done = subprocess.run([sys.executable, "-m", "sounding", "compare", str(run), "--bootstrap", "200",
                           "--json", str(out)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "strategies on one compute axis" in done.stdout and "n = 10" in done.stdout
    assert json.loads(out.read_text())["comparisons"][0]["questions"] == 10
    missing = subprocess.run([sys.executable, "-m", "sounding", "compare", str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert missing.returncode == 2 and "results.sqlite" in missing.stderr


def test_only_the_named_strategies_are_compared_on_the_questions_they_all_answered(tmp_path):
    """A partial store: the tree has 10 questions, a decompose run only 4. Comparing everything
    restricts to the 4; naming the tree (or its full label) compares it on its 10."""
    decompose = {**IT, "strategy": "decompose", "dials": {"anchor": True, "mode": "auto"}}
    run = tmp_path / "run"
    run.mkdir()
    store = ResultStore(run / "results.sqlite")
    for key, cfg in (("it", IT), ("tree", TREE), ("dec", decompose)):
        store.register_run(key, cfg)
    rows = store_rows(10) + [row("dec", f"q{i}", 2, True, 2000) for i in range(4)]
    for q in sorted({r["question_id"] for r in rows}):
        for key in ("it", "tree", "dec"):
            mine = [r for r in rows if r["question_id"] == q and r["run_key"] == key]
            if mine:
                store.add_question(mine, None, None)
    store.close()

    def run_compare(*args):
        return subprocess.run([sys.executable, "-m", "sounding", "compare", str(run), "--bootstrap", "200", *args],
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    everything = run_compare()
    assert everything.returncode == 0 and "n = 4" in everything.stdout
    for only in ("tree", "tree:beam=1:value=logprob:width=3"):
        done = run_compare("--only", only)
        assert done.returncode == 0, done.stderr
        assert "n = 10" in done.stdout and "decompose" not in done.stdout and "iterative d1" in done.stdout
    wrong = run_compare("--only", "tree:width=5")
    assert wrong.returncode == 2
    assert "'tree:width=5'" in wrong.stderr and "decompose:anchor=True:mode=auto" in wrong.stderr
    paired = run_compare("--pair", "tree:beam=1:value=logprob:width=3 d2,iterative d1 T0 N1")
    assert paired.returncode == 0, paired.stderr
    # the tree is right on q0-q3 like one search, so on the 4 common questions the difference is 0
    assert "| tree:beam=1:value=logprob:width=3 d2 | iterative d1 T0 N1 | +0.000 |" in paired.stdout
    unknown = run_compare("--pair", "tree d9,iterative d1 T0 N1")
    assert unknown.returncode == 2 and "'tree d9'" in unknown.stderr
    empty = run_compare("--only", " , ")
    assert empty.returncode == 2 and "names no strategy" in empty.stderr
    malformed = run_compare("--pair", "tree d2")
    assert malformed.returncode == 2 and "two setting labels" in malformed.stderr
    kept = select_runs({"it": IT, "tree": TREE, "dec": decompose}, ["decompose"])
    assert set(kept) == {"it", "dec"}
    # a decompose run's non-default vote settings are part of its name, as its labels show it
    voted = {**decompose, "vote_k": 3, "vote_max_samples": 8}
    assert set(
        select_runs({"it": IT, "dec": decompose, "k3": voted}, ["decompose:anchor=True:mode=auto:k=3:max=8"])
    ) == {"it", "k3"}


def test_decompose_traces_are_summarised():
    dec = {**IT, "strategy": "decompose", "dials": {"mode": "auto"}}
    rows = store_rows(4) + [row("dec", f"q{i}", 2, 0, 4000) for i in range(4)]
    step = {"kind": "step", "question": "Who was Ed Wood?", "answer": "Ed Wood", "votes": {"ed wood": 2},
            "red_flags": {"too_long": 1}, "ended": "ahead"}  # fmt: skip
    compose = {
        "kind": "compose",
        "answer": "No",
        "votes": {"no": 3, "yes": 1},
        "red_flags": {},
        "ended": "max_samples",
    }
    traces = {("dec", f"q{i}"): {"strategy_events": [
        {"kind": "split", "subquestions": ["Who was Ed Wood?", "Where was #1 born?"], "red_flags": ["off_topic"] if i == 0 else []},
        step, compose]} for i in range(4)}  # fmt: skip
    runs = {"it": IT, "tree": TREE, "dec": dec}
    ((_, matrix),) = matrices(rows, runs).items()
    c = compare(matrix, model="small", suite="s", traces=traces, runs=runs, n_boot=100)
    (d,) = c.decompose
    assert d.questions == 4 and d.subquestions == 2.0 and d.chained == 1.0 and d.split_red_flagged == 0.25
    assert d.ballots == pytest.approx(3.5) and d.decided == 0.5 and d.red_flags == {"too_long": 4}
    assert d.echo == 1.0  # "Ed Wood" only repeats "Who was Ed Wood?"
    assert d.scored == 4 and d.step_right == 0.0 and d.final_right == 0.0  # the gold is "Danube"


def test_split_statistics_read_every_question_of_the_run_against_its_own_text():
    """A decompose run on 10 questions compared beside a run on 4: its splits are summarised over its 10,
    and an anchored sub-question stays anchored on the 6 questions outside the comparison."""
    dec = {**IT, "strategy": "decompose", "dials": {"mode": "auto"}}
    rows = store_rows(10) + [row("dec", f"q{i}", 2, 0, 4000) for i in range(10)]
    rows = [r for r in rows if r["run_key"] != "tree" or int(r["question_id"][1:]) < 4]
    for r in rows:
        r["question"] = f"Where was Ed Wood born, question {r['question_id']}?"
    traces = {("dec", f"q{i}"): {"strategy_events": [{"kind": "split", "subquestions": ["Who was Ed Wood?"]}]}
              for i in range(10)}  # fmt: skip
    runs = {"it": IT, "tree": TREE, "dec": dec}
    ((_, matrix),) = matrices(rows, runs).items()
    c = compare(matrix, model="small", suite="s", traces=traces, runs=runs, n_boot=100)
    (d,) = c.decompose
    assert c.questions == 4 and d.questions == 10 and d.unanchored == 0.0


def test_a_step_that_found_the_answer_is_told_from_the_final_answer():
    from sounding.evals.compare import _step_scores

    found = [{"kind": "step", "question": "What river?", "answer": "the Danube"},
             {"kind": "step", "question": "Which city on #1?", "answer": "Vienna"},
             {"kind": "compose", "answer": "Vienna"}]  # fmt: skip
    single = [{"kind": "step", "question": "What river?", "answer": "Danube"}]  # no composition: its step
    scores = _step_scores([("q1", found), ("q2", single)], {"q1": ["Danube"], "q2": ["Danube"]}, "cover_em")
    assert scores == {"step_right": 1.0, "final_right": 0.5, "scored": 2}


def test_unanchored_subquestions_name_nothing_of_the_question():
    from sounding.evals.compare import _anchored

    question = "Who was the writer of These Boots Are Made for Walkin' and who died in 2007?"
    assert _anchored("Who wrote These Boots Are Made for Walkin'?", question)
    assert not _anchored("Who died in 2007?", question)  # the entity that links both is gone
    assert _anchored("Where was #1 born?", question)  # an earlier answer anchors it
    assert not _anchored("Who is the writer?", "Who is the writer of Dune?")  # "Who" is not a name


def test_same_questions_cuts_every_model_to_the_questions_all_answered_at_every_setting():
    from sounding.cli.compare import on_shared_questions

    row = {"cover_em": 1.0}
    by_model = {
        ("small", "hotpotqa"): {"q1": {"a": row, "b": row}, "q2": {"a": row, "b": row}, "q3": {"a": row}},
        ("large", "hotpotqa"): {"q1": {"a": row}, "q3": {"a": row}},
        ("large", "2wiki"): {"w1": {"a": row}},
    }
    cut = on_shared_questions(by_model)
    assert sorted(cut[("small", "hotpotqa")]) == ["q1"]  # q2 the large lacks; q3 the small lacks a setting of
    assert sorted(cut[("large", "hotpotqa")]) == ["q1"]
    assert sorted(cut[("large", "2wiki")]) == ["w1"]  # another suite is cut on its own
