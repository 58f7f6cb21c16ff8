"""Sweeps on a real local Ray cluster (the driver writes every row once; a killed worker is retried),
and `sounding merge` of shards."""

from __future__ import annotations

import pytest

from sounding.evals.datasets import Sample
from sounding.evals.store import ResultStore
from sounding.evals.sweep import run_sweep_config
from sounding.settings import load_settings
from tests.conftest import REPO
from tests.scripted import MemorySearch, ScriptedBackends
from tests.test_agent_nodes import DOCS
from tests.test_harness import config

ray = pytest.importorskip("ray")

SAMPLES = [
    Sample(id=f"q{i}", question=f"Which river flows through Budapest {i}?", answers=["Danube"])
    for i in range(6)
]
VOLATILE = ("created", "wall_seconds")


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield
    ray.shutdown()


def comparable(store: ResultStore, key: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in store.results(key)]


def test_a_ray_sweep_stores_the_same_rows_as_a_sequential_one(cluster, tmp_path):
    from sounding.evals.distributed import run_sweep_on_ray

    settings = load_settings(home=tmp_path)
    cfg = config(depth=2)
    local = ResultStore(tmp_path / "local.sqlite")
    run_sweep_config(cfg, SAMPLES, settings, ScriptedBackends().llm(settings, "m"), MemorySearch(DOCS), local)
    distributed = ResultStore(tmp_path / "ray.sqlite")
    run_sweep_on_ray(cfg, SAMPLES, settings, distributed, workers=2, backends=ScriptedBackends())
    assert comparable(distributed, cfg.key) == comparable(local, cfg.key)
    assert distributed.count() == 6 * 3 and len(distributed.traces(cfg.key)) == 6


def test_a_killed_worker_is_retried_and_every_row_lands_once(cluster, tmp_path):
    from sounding.evals.distributed import run_sweep_on_ray

    marker = tmp_path / "killed"
    cfg = config(depth=1)
    store = ResultStore(tmp_path / "ray.sqlite")
    backends = ScriptedBackends(die_on="Budapest 3?", marker=str(marker))
    run_sweep_on_ray(cfg, SAMPLES, load_settings(home=tmp_path), store, workers=2, backends=backends)
    assert marker.read_text() == "killed"  # a worker really died mid-question
    rows = store.results(cfg.key)
    assert len(rows) == 6 * 2 and len({(r["question_id"], r["round"]) for r in rows}) == 12
    assert store.errors() == []
    # rerunning the same sweep adds nothing
    run_sweep_on_ray(
        cfg, SAMPLES, load_settings(home=tmp_path), store, workers=2, backends=ScriptedBackends()
    )
    assert store.count() == 12


def test_merge_combines_shards_once(tmp_path):
    from typer.testing import CliRunner

    from sounding.cli import app

    settings = load_settings(home=tmp_path)
    cfg = config(depth=1)
    for name, part in (("a", SAMPLES[:4]), ("b", SAMPLES[2:])):  # overlapping shards
        store = ResultStore(tmp_path / name / "results.sqlite")
        run_sweep_config(
            cfg, part, settings, ScriptedBackends().llm(settings, "m"), MemorySearch(DOCS), store
        )
        store.close()
    runner = CliRunner()
    out = runner.invoke(
        app, ["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "all")]
    )
    assert out.exit_code == 0, out.output
    assert "12 rows added, 4 already there" in out.output
    merged = ResultStore.open_read_only(tmp_path / "all" / "results.sqlite")
    assert merged.count() == 12 and merged.done_questions(cfg.key) == {s.id for s in SAMPLES}
    again = runner.invoke(app, ["merge", str(tmp_path / "a"), "--out", str(tmp_path / "all")])
    assert "0 rows added, 8 already there" in again.output
    bad = runner.invoke(app, ["merge", str(tmp_path / "nowhere"), "--out", str(tmp_path / "all")])
    assert bad.exit_code == 2 and "no results.sqlite" in bad.output
