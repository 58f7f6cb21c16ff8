"""`sounding study PLAN.toml`: several sweeps as one resumable job (evals/study.py, sounding/cli/study.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sounding.cli import app
from sounding.evals.study import StudyError, interleave, load_plan


def _plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_plan_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(StudyError, match="cannot read the study plan"):
        load_plan(tmp_path / "missing.toml")
    with pytest.raises(StudyError, match="is not TOML"):
        load_plan(_plan(tmp_path, "[[sweep]\n"))
    with pytest.raises(StudyError, match=r"sweep.0.depht: Extra inputs"):
        load_plan(_plan(tmp_path, '[[sweep]]\nsuite = "hotpotqa:x"\nout = "a"\ndepht = [1]\n'))
    with pytest.raises(StudyError, match="sweep: List should have at least 1 item"):
        load_plan(_plan(tmp_path, "sweep = []\n"))
    with pytest.raises(StudyError, match="same run directory"):
        load_plan(
            _plan(tmp_path, '[[sweep]]\nsuite = "a:x"\nout = "r"\n[[sweep]]\nsuite = "b:y"\nout = "./r"\n')
        )
    with pytest.raises(StudyError, match="depths: Value error, must list at least one value"):
        load_plan(_plan(tmp_path, '[[sweep]]\nsuite = "a:x"\nout = "r"\ndepths = []\n'))
    plan = load_plan(_plan(tmp_path, '[[sweep]]\nsuite = "hotpotqa:x"\nout = "r"\nmodels = ["m1", "m2"]\n'))
    assert plan.sweep[0].models == ["m1", "m2"] and plan.sweep[0].depths == [0, 1, 2, 4]


def test_interleave_advances_every_sweep():
    a, b = object(), object()
    jobs = interleave([[(a, 1), (a, 2), (a, 3)], [(b, 1)]])  # type: ignore[list-item]
    assert jobs == [(a, 1), (b, 1), (a, 2), (a, 3)]
    assert interleave([]) == []


def test_cli_refuses_a_bad_plan_before_anything_runs(tmp_path):
    plan = _plan(tmp_path, '[[sweep]]\nsuite = "hotpotqa:x"\nout = "r"\nstrategies = ["nope"]\n')
    result = CliRunner().invoke(app, ["study", str(plan)])
    assert result.exit_code == 2 and "unknown strategy" in result.output.lower()
    assert not (tmp_path / "r").exists()


def test_a_bad_later_sweep_leaves_the_earlier_ones_untouched(tmp_path, data_dir):
    hotpot = f"hotpotqa:{data_dir / 'hotpotqa/hotpot_dev_distractor_subset.json.gz'}"
    plan = _plan(
        tmp_path,
        f'[[sweep]]\nsuite = "{hotpot}"\nout = "{tmp_path / "good"}"\nlimit = 2\n'
        f'[[sweep]]\nsuite = "hotpotqa:{tmp_path / "missing.json"}"\nout = "{tmp_path / "bad"}"\n',
    )
    result = CliRunner().invoke(app, ["study", str(plan)])
    assert result.exit_code == 2 and f"{tmp_path / 'bad'}: suite file not found" in result.output
    assert not (tmp_path / "good").exists() and not (tmp_path / "bad").exists()


def _rows(out: Path) -> list[tuple]:
    con = sqlite3.connect(out / "results.sqlite")
    return sorted(con.execute("SELECT run_key, question_id, round, answer FROM results"))


@pytest.mark.model
def test_study_runs_two_suites_as_one_job_and_resumes(tmp_path, data_dir, monkeypatch):
    """Two suites on one model through one server (2 slots): every question of both lands in its own
    run directory, an ordinary bench run (the same bench command finds nothing left to do); a rerun adds
    nothing."""
    from tests.test_llm_llama import llama_server_binary

    llama_server_binary()
    monkeypatch.setenv("SOUNDING_HOME", str(tmp_path / "home"))
    hotpot = f"hotpotqa:{data_dir / 'hotpotqa/hotpot_dev_distractor_subset.json.gz'}"
    wiki = f"2wiki:{data_dir / '2wikimultihopqa/2wiki_dev_subset.json.gz'}"
    plan = _plan(
        tmp_path,
        f'[[sweep]]\nsuite = "{hotpot}"\nout = "{tmp_path / "hotpot"}"\nlimit = 3\nmodels = ["smollm2-135m"]\n'
        f'depths = [0, 1]\nbackend = "bm25"\n'
        f'[[sweep]]\nsuite = "{wiki}"\nout = "{tmp_path / "wiki"}"\nlimit = 2\nmodels = ["smollm2-135m"]\n'
        f'depths = [0, 1]\nbackend = "bm25"\n',
    )
    runner = CliRunner()
    result = runner.invoke(app, ["study", str(plan), "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    hotpot_rows, wiki_rows = _rows(tmp_path / "hotpot"), _rows(tmp_path / "wiki")
    assert len({q for _, q, _, _ in hotpot_rows}) == 3 and len(hotpot_rows) == 6
    assert len({q for _, q, _, _ in wiki_rows}) == 2 and len(wiki_rows) == 4
    assert "study done" in result.output
    again = runner.invoke(app, ["study", str(plan), "--concurrency", "2"])
    assert again.exit_code == 0, again.output
    assert _rows(tmp_path / "hotpot") == hotpot_rows and _rows(tmp_path / "wiki") == wiki_rows
    # the run directory is an ordinary bench run: the same sweep by `sounding bench` has nothing to do
    bench = runner.invoke(
        app,
        ["bench", hotpot, "--limit", "3", "--depths", "0,1", "--model", "smollm2-135m", "--backend", "bm25",
         "--concurrency", "2", "--out", str(tmp_path / "hotpot")],
    )  # fmt: skip
    assert bench.exit_code == 0, bench.output
    assert _rows(tmp_path / "hotpot") == hotpot_rows


def test_the_example_plans_load():
    plans = sorted((Path(__file__).resolve().parents[1] / "docs/studies").glob("*.toml"))
    assert plans
    for path in plans:
        plan = load_plan(path)
        assert all(s.suite.split(":", 1)[0] in {"hotpotqa", "2wiki", "musique"} for s in plan.sweep)


def test_an_engine_gone_stops_the_sweep_without_recording_questions_as_failed(tmp_path, monkeypatch):
    """A question that fails because the engine is gone is not the question's failure: the sweep stops
    at once, and neither it nor a question failing beside it is stored as an error."""
    import threading
    import time

    import sounding.evals.sweep as sweep
    from sounding.evals.datasets import Sample
    from sounding.evals.store import ResultStore
    from sounding.tools.llm.base import EngineGoneError

    store = ResultStore(tmp_path / "results.sqlite")
    gone = threading.Event()

    def solve(config, sample, *args, **kwargs):
        if sample.id == "q0":
            time.sleep(0.2)
            gone.set()
            raise EngineGoneError("llama.cpp's server exited (status -9)")
        gone.wait(5)
        time.sleep(0.2)  # fails after the sweep began stopping, as a request to a dead server would
        return sweep.Outcome(question_id=sample.id, error="connection refused")

    monkeypatch.setattr(sweep, "solve", solve)
    config = type("Config", (), {"key": "k"})()
    work = type("Work", (), {"config": config, "settings": None, "llm": None, "search": None, "store": store,
                             "judge": None, "workers": 1})()  # fmt: skip
    samples = [Sample(id=f"q{i}", question="?", answers=["a"]) for i in range(4)]
    with pytest.raises(EngineGoneError):
        sweep.run_questions([(work, s) for s in samples], concurrency=2, tick=lambda w: lambda s, r: None)
    assert store.errored_questions("k") == set()
