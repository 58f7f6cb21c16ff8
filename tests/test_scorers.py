"""Scoring apart from solving: the readings of a stored trace reproduce every stored score, and a new
metric re-scores a stored run with no LLM, no re-run and no migration."""

from __future__ import annotations

import glob
import time
from pathlib import Path

import pytest

from sounding.evals import scorers
from sounding.evals.scorers import SCORERS, UnknownMetricError, check_metric, rescore
from sounding.evals.store import ResultStore

REPO = Path(__file__).resolve().parents[1]


def test_the_traces_of_every_committed_store_reproduce_its_stored_scores(monkeypatch):
    """em, f1 and cover-EM re-read from the traces (greedy drafts and exact subset means of the voted
    samples) equal the columns written when each question was solved, row for row."""
    for name in ("em", "f1", "cover_em"):
        monkeypatch.setitem(SCORERS, f"{name}_again", SCORERS[name])
    checked = 0
    for db in sorted(glob.glob(str(REPO / "docs/results/*/*/results.sqlite"))):
        store = ResultStore.open_read_only(Path(db))
        traces = store.traces()
        if not traces:
            continue
        rows = store.results()
        for name in ("em", "f1", "cover_em"):
            again = rescore(rows, traces, f"{name}_again")
            assert len(again) == len(rows), db
            assert [r[f"{name}_again"] for r in again] == [r[name] for r in again], (db, name)
        checked += len(rows)
        store.close()
    assert checked >= 9_960  # every row of the second result and the reasoning grid


def test_a_new_metric_rescores_a_stored_run_without_the_llm(tmp_path, monkeypatch):
    from sounding.cli.bench import _analysis
    from sounding.evals.sweep import run_sweep_config
    from sounding.settings import load_settings
    from tests.scripted import MemorySearch, ScriptedLLM
    from tests.test_agent_nodes import DOCS, script
    from tests.test_harness import SAMPLES, config

    run_dir = tmp_path / "run"
    store = ResultStore(run_dir / "results.sqlite")
    cfg = config(depth=1)
    run_sweep_config(
        cfg, SAMPLES[:4], load_settings(home=tmp_path), ScriptedLLM(script()), MemorySearch(DOCS), store
    )
    store.close()
    before = (run_dir / "results.sqlite").read_bytes()

    # a metric nobody stored: does the answer name the first word of a gold answer?
    monkeypatch.setitem(
        SCORERS,
        "first_word",
        lambda answer, golds: float(any(g.split()[0].lower() in answer.lower() for g in golds)),
    )
    with pytest.raises(UnknownMetricError):
        check_metric("no_such_metric")
    read_only = ResultStore.open_read_only(run_dir / "results.sqlite")
    rows = read_only.results()
    scored = rescore(rows, read_only.traces(), "first_word")
    assert len(scored) == len(rows) == 4 * 2
    # the scripted model answers "Danube" from round 1 on; round 0 is the closed-book probe's draft
    for row in scored:
        assert row["first_word"] == float(
            any(g.split()[0].lower() in row["answer"].lower() for g in row["golds"])
        )
    assert {row["first_word"] for row in scored if row["round"] == 1} == {1.0}
    read_only.close()
    start = time.perf_counter()
    analysis = _analysis(run_dir, "first_word", 20)  # what `sounding fit RUN --metric first_word` reads
    assert analysis.metric == "first_word" and analysis.curves
    assert time.perf_counter() - start < 60
    assert (run_dir / "results.sqlite").read_bytes() == before  # nothing migrated or written


def test_rows_without_a_trace_cannot_be_rescored_and_are_left_out(monkeypatch):
    monkeypatch.setitem(SCORERS, "always", lambda answer, golds: 1.0)
    row = {
        "run_key": "k",
        "question_id": "q",
        "round": 0,
        "think": 0,
        "samples": 1,
        "answer": "x",
        "golds": ["x"],
    }
    assert rescore([row], {}, "always") == []
    trace = {"drafts": [{"round": 0, "answer": "x"}]}
    assert rescore([row], {("k", "q"): trace}, "always")[0]["always"] == 1.0
    assert scorers.draft_at(trace, 5) == {"round": 0, "answer": "x"}
