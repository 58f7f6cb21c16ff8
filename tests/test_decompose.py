"""The decompose strategy and its vote: a first-to-ahead-by-k vote stops exactly when one answer leads by
k, red-flagged samples are dropped and counted, a scripted chain of sub-answers is composed into the right
answer, and the ledger is never overspent."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sounding.agent.runner import run_research
from sounding.agent.strategies import dials_for
from sounding.agent.strategies.decompose import depends_on, split_flag, substitute
from sounding.agent.voting import Ballot, first_to_ahead_by_k, leader, red_flag
from sounding.budgets.controllers import FixedController
from sounding.budgets.ledger import Budget
from sounding.tools.text import name_words, question_options
from tests.scripted import MemorySearch, ScriptedLLM
from tests.test_agent_nodes import DOCS, deps

Q = "Which river flows through the capital of Hungary?"


def ballots(*answers: str | None):
    drawn: list[int] = []

    def draw(i: int) -> Ballot | None:
        drawn.append(i)
        if i >= len(answers):
            return None
        answer = answers[i]
        return Ballot(answer=answer or "", flag=red_flag(answer, max_words=5))

    return draw, drawn


def test_the_vote_stops_exactly_when_one_answer_leads_by_k():
    draw, drawn = ballots("Danube", "Tisza", "danube", "The Danube.", "Tisza", "Tisza")
    vote = first_to_ahead_by_k(draw, k=2, max_samples=10)
    # Danube 1-0 (lead 1), 1-1, 2-1, 3-1: the fourth ballot puts it 2 ahead, and no fifth is drawn
    assert vote.ended == "ahead" and vote.winner == "Danube" and vote.drawn == 4 and drawn == [0, 1, 2, 3]
    assert vote.votes == {"danube": 3, "tisza": 1}


def test_red_flagged_samples_are_dropped_and_counted():
    draw, _ = ballots(None, "", "a very long rambling answer about rivers", "Danube")
    vote = first_to_ahead_by_k(draw, k=1, max_samples=10)
    assert vote.winner == "Danube" and vote.drawn == 4 and vote.votes == {"danube": 1}
    assert vote.red_flags == {"malformed": 1, "empty": 1, "too_long": 1}


def test_the_cap_and_the_budget_end_a_vote():
    draw, _ = ballots("Pest", "Buda", "Pest", "Buda")
    capped = first_to_ahead_by_k(draw, k=3, max_samples=4)
    assert capped.ended == "max_samples" and capped.winner == "Pest"  # a tie goes to the first answer
    draw, _ = ballots("Pest")
    broke = first_to_ahead_by_k(draw, k=2, max_samples=8)
    assert broke.ended == "budget" and broke.winner == "Pest" and broke.drawn == 1
    with pytest.raises(ValueError):
        first_to_ahead_by_k(draw, k=0, max_samples=3)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(["P", "Q", "R"]), st.none(), st.just("")), max_size=20),
    st.integers(1, 4),
    st.integers(1, 12),
)
def test_the_vote_property(answers, k, max_samples):
    draw, _ = ballots(*answers)
    vote = first_to_ahead_by_k(draw, k=k, max_samples=max_samples)
    assert vote.drawn <= min(max_samples, len(answers))
    cast = vote.ballots
    assert sum(vote.red_flags.values()) == sum(1 for b in cast if b.flag) and sum(vote.votes.values()) == sum(
        1 for b in cast if not b.flag
    )
    # it stopped at the first prefix where some answer led by k, and never before
    leads = []
    counts: Counter[str] = Counter()
    order: list[str] = []
    for b in cast:
        if not b.flag:
            if b.answer.lower() not in counts:
                order.append(b.answer.lower())
            counts[b.answer.lower()] += 1
        leads.append(leader(counts, order)[1])
    assert all(lead < k for lead in leads[:-1])
    assert (vote.ended == "ahead") == bool(leads and leads[-1] >= k)


def test_placeholders_are_substituted_and_name_the_dependencies():
    assert substitute("Which river flows through #1?", ["Budapest"]) == "Which river flows through Budapest?"
    assert substitute("Is #2 older than #1?", ["A"]) == "Is #2 older than A?"
    assert depends_on("Is #2 older than #1?") == [1, 2] and depends_on("Who directed Inception?") == []


def chain_script(**overrides):
    def step(n, messages):
        asked = messages[-1]["content"].split("\n")[0]
        if "capital of Hungary" in asked:
            return {"answer": "Budapest"}
        if "through Budapest" in asked:
            return {"answer": "Danube"}
        return {"answer": "unknown"}

    base = {
        "split": {"subquestions": ["What is the capital of Hungary?", "Which river flows through #1?"]},
        "step": step,
        "compose": {"answer": "Danube"},
        "probe": {"answer": "Tisza"},
    }
    return {**base, **overrides}


def test_a_scripted_chain_is_composed_into_the_right_answer():
    llm = ScriptedLLM(chain_script())
    d = deps(llm, MemorySearch(DOCS), controller=FixedController(3, 1))
    result = run_research(Q, d, strategy="decompose")
    assert result.answer == "Danube" and not result.degraded
    steps = [e for e in result.events if e["kind"] == "step"]
    assert [s["question"] for s in steps] == [
        "What is the capital of Hungary?",
        "Which river flows through Budapest?",
    ]
    assert [s["answer"] for s in steps] == ["Budapest", "Danube"]
    assert all(s["ended"] == "ahead" for s in steps) and steps[0]["votes"] == {"budapest": 2}
    assert result.citations and set(result.citations) <= {"d-hu", "d-bp", "d-da"}
    assert [c for c, *_ in llm.calls].count("compose") == 2  # the composition is voted on too (k = 2)


def test_red_flags_in_a_step_are_counted_in_the_trace():
    rambling = {"answer": "the river that flows through the city is the famous blue Danube river"}
    llm = ScriptedLLM(chain_script(step=lambda n, m: rambling if n == 1 else {"answer": "Budapest"},
                                   split={"subquestions": ["What is the capital of Hungary?"]}))  # fmt: skip
    result = run_research(
        Q, deps(llm, MemorySearch(DOCS), controller=FixedController(2, 1)), strategy="decompose"
    )
    (step,) = [e for e in result.events if e["kind"] == "step"]
    assert step["red_flags"] == {"too_long": 1} and step["votes"] == {"budapest": 2}
    assert result.answer == "Budapest"  # one sub-question: its winner is the answer


def test_a_malformed_split_researches_the_question_itself():
    llm = ScriptedLLM(chain_script(split="not json", step=lambda n, m: {"answer": "Danube"}))
    result = run_research(
        Q, deps(llm, MemorySearch(DOCS), controller=FixedController(2, 1)), strategy="decompose"
    )
    (step,) = [e for e in result.events if e["kind"] == "step"]
    assert step["question"] == Q and result.answer == "Danube"


def test_a_ballot_that_only_repeats_its_question_is_an_echo():
    assert red_flag("Ed Wood", max_words=12, echo_of="Who was Ed Wood?") == "echo"
    assert red_flag("the Ed Wood.", max_words=12, echo_of="Who was Ed Wood?") == "echo"
    assert red_flag("Edward Wood", max_words=12, echo_of="Who was Ed Wood?") is None
    assert red_flag("Wood", max_words=12, echo_of="Who was Ed Woodward?") is None  # whole words only
    # a question offering options is answered by one of them; yes/no is never an echo
    assert red_flag("Terry Richardson", max_words=12,
                    echo_of="Who is older, Annie Morton or Terry Richardson?") is None  # fmt: skip
    assert red_flag("yes", max_words=12, echo_of="Is yes a word?") is None
    assert red_flag("Ed Wood", max_words=12) is None  # no question given: no echo check


def test_the_names_and_options_a_question_gives():
    assert name_words("Who wrote These Boots Are Made for Walkin' and died in 2007?") == {
        "these", "boots", "are", "made", "walkin'"}  # fmt: skip
    assert question_options("Which band, Letters to Cleo or Screaming Trees, had more members?") == [
        "Letters to Cleo", "Screaming Trees"]  # fmt: skip
    assert question_options("Which dog: the Manchester Terrier or the Scotch Collie?") == [
        "Manchester Terrier", "Scotch Collie"]  # fmt: skip
    assert question_options("Is Lyon a city or a town?") == []  # not after a comma, and not names
    assert question_options("Which is it, a city or a town?") == []


def test_anchored_splits_keep_the_questions_names_and_options():
    boots = "Who was the writer of These Boots Are Made for Walkin' and who died in 2007?"
    new_question = ["Who wrote These Boots Are Made for Walkin'?", "Who died in 2007?"]
    assert split_flag(new_question, boots, anchor=True) == "unanchored"
    assert split_flag(new_question, boots) is None  # the format flags alone let it through
    assert (
        split_flag(["Who wrote These Boots Are Made for Walkin'?", "When did #1 die?"], boots, anchor=True)
        is None
    )
    band = "Which band, Letters to Cleo or Screaming Trees, had more members?"
    assert split_flag(["How many members did Letters to Cleo have?"], band, anchor=True) == "dropped_option"
    assert split_flag(["How many members did Letters to Cleo have?",
                       "How many members did Screaming Trees have?"], band, anchor=True) is None  # fmt: skip
    # a question without names is held to its content words only
    assert (
        split_flag(["What is the largest ocean?"], "what is the largest ocean on earth?", anchor=True) is None
    )


def test_echoed_ballots_are_discarded_in_a_step_and_the_dial_turns_the_anchor_flags_off():
    def step(n, messages):  # the first ballot repeats the sub-question's own name
        asked = messages[-1]["content"].split("\n")[0]
        if "capital of Hungary" in asked:
            return {"answer": "Hungary"} if n == 1 else {"answer": "Budapest"}
        return {"answer": "Danube"}

    llm = ScriptedLLM(chain_script(step=step))
    result = run_research(
        Q, deps(llm, MemorySearch(DOCS), controller=FixedController(3, 1)), strategy="decompose"
    )
    first = next(e for e in result.events if e["kind"] == "step")
    assert first["red_flags"] == {"echo": 1} and first["answer"] == "Budapest" and result.answer == "Danube"

    unanchored = {"subquestions": ["Which river is the longest?", "Which river flows through #1?"]}
    for anchor, flags in ((True, ["unanchored", "unanchored"]), (False, [])):
        d = deps(
            ScriptedLLM(chain_script(split=unanchored)), MemorySearch(DOCS), controller=FixedController(3, 1)
        )
        d.dials = dials_for("decompose", {"anchor": anchor})
        result = run_research(Q, d, strategy="decompose")
        (split,) = [e for e in result.events if e["kind"] == "split"]
        assert split["red_flags"] == flags
        assert split["subquestions"] == ([Q] if anchor else unanchored["subquestions"])


@settings(max_examples=40, deadline=None)
@given(st.integers(50, 4000), st.integers(1, 4), st.integers(1, 6))
def test_spent_never_exceeds_the_budget(limit, k, max_samples):
    llm = ScriptedLLM(chain_script(step=lambda n, m: {"answer": ["Budapest", "Pest", "Buda"][n % 3]}))
    d = deps(
        llm, MemorySearch(DOCS), budget=Budget(limit=limit, unit="tokens"), controller=FixedController(3, 1)
    )
    d.vote_k, d.vote_max_samples = k, max_samples
    result = run_research(Q, d, strategy="decompose")
    assert d.ledger.spent_in("tokens") <= limit + 1e-9
    assert result.answer  # an answer, or the no-answer text: never an exception


@pytest.mark.model
def test_ask_with_the_decompose_strategy_answers_with_the_real_model(
    tmp_path, test_home, smollm2_path, small_corpus
):
    env = {
        **os.environ,
        "SOUNDING_HOME": str(test_home),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "COLUMNS": "200",
    }
    env.pop("SOUNDING_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "sounding", "ask", Q, "--strategy", "decompose", "--model", "smollm2-135m",
         "--corpus", f"jsonl:{small_corpus}", "--backend", "bm25", "--depth", "2", "--budget", "6000"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr[-2000:]
    assert "step 1" in out.stderr and out.stdout.strip()
    assert "Traceback" not in out.stderr


@pytest.mark.model
def test_ask_with_the_tree_strategy_shows_its_branches_with_the_real_model(
    tmp_path, test_home, smollm2_path, small_corpus
):
    env = {**os.environ, "SOUNDING_HOME": str(test_home), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "COLUMNS": "200"}  # fmt: skip
    env.pop("SOUNDING_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "sounding", "ask", Q, "--strategy", "tree:width=2:value=agreement", "--model",
         "smollm2-135m", "--corpus", f"jsonl:{small_corpus}", "--backend", "bm25", "--depth", "1",
         "--budget", "6000"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr[-2000:]
    assert "round 1: 2 branches, by agreement" in out.stderr and out.stdout.strip()
    assert "Traceback" not in out.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "sounding", "ask", Q, "--strategy", "tree:width=0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "width" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.model
def test_bench_sweeps_the_decompose_strategy_into_its_own_run(tmp_path, test_home, smollm2_path, data_dir):
    env = {**os.environ, "SOUNDING_HOME": str(test_home), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    env.pop("SOUNDING_CONFIG", None)
    suite = f"hotpotqa:{data_dir / 'hotpotqa/hotpot_dev_distractor_subset.json.gz'}"
    out = tmp_path / "run"
    base = [sys.executable, "-m", "sounding", "bench", suite, "--limit", "2", "--model", "smollm2-135m",
            "--backend", "bm25", "--out", str(out), "--depths", "0,2"]  # fmt: skip
    done = subprocess.run(
        [*base, "--strategy", "decompose,tree:width=2"], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    from sounding.evals.store import ResultStore

    store = ResultStore.open_read_only(out / "results.sqlite")
    specs = {s["strategy"]: (key, s) for key, s in store.runs().items()}
    assert set(specs) == {"decompose", "tree"}  # one run per strategy, each with its dials and prompts
    assert specs["decompose"][1]["vote_k"] == 2 and specs["decompose"][1]["dials"] == {
        "anchor": True,
        "mode": "auto",
    }
    assert specs["tree"][1]["dials"] == {"beam": 1, "value": "logprob", "width": 2}
    assert specs["tree"][1]["strategy_prompts"] and specs["tree"][1]["think_caps"] == [0]
    rows = store.results()
    for name, rounds in (("decompose", {0, 2}), ("tree", {0, 1, 2})):
        mine = [r for r in rows if r["run_key"] == specs[name][0]]
        assert {r["round"] for r in mine} <= rounds
        assert len({r["question_id"] for r in mine} | {e["question_id"] for e in store.errors()
                                                          if e["run_key"] == specs[name][0]}) == 2  # fmt: skip
    traces = store.traces()
    assert all(any(e for e in t["drafts"]) for t in traces.values())
    tree_traces = [t for (k, _), t in traces.items() if k == specs["tree"][0]]
    assert all(e["kind"] == "candidates" for t in tree_traces for e in t["strategy_events"])
    compared = subprocess.run([sys.executable, "-m", "sounding", "compare", str(out), "--bootstrap", "100"],
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert compared.returncode in (0, 2), compared.stderr  # 2: fewer than two questions answered by both
    assert "Traceback" not in compared.stderr
    refused = subprocess.run(
        [*base, "--strategy", "decompose", "--think", "0,16"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "iterative strategy's reasoning" in refused.stderr
