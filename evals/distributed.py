"""Sweeps beyond one machine: questions run on a Ray cluster, the driver is the store's one writer.

Each worker is a Ray actor that builds its backends once, where it runs: the LLM from the settings
(an endpoint such as ``http://127.0.0.1:8000`` is therefore the server *of the worker's own node*;
the embedded backend loads the model on that node) and the search backend from the shared index
cache (the driver builds every index first, so each content fingerprint is built once). A question
is solved in an actor and its rows come back to the driver, which writes them, one atomic group per
question, to the one store: rows land exactly once. An actor whose process dies (a killed worker,
a lost node) is restarted by Ray and its question retried (``max_restarts``/``max_task_retries``).

Without Ray, shards of a sweep run anywhere can be combined with `merge_stores` (``sounding merge``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from sounding.evals.datasets import Sample
from sounding.evals.store import ResultStore, StoreError
from sounding.evals.sweep import (
    Outcome,
    RunConfig,
    pending_questions,
    question_features,
    solve,
    write_outcome,
)
from sounding.settings import Settings
from sounding.tools.llm.base import LLM
from sounding.tools.search.base import SearchBackend

RAY_MISSING = "distributed sweeps need Ray: pip install 'sounding[ray]'"


class Backends(Protocol):
    """Builds a worker's LLM and search backend, on the worker (must be picklable)."""

    def llm(self, settings: Settings, model: str) -> LLM: ...

    def search(self, settings: Settings) -> SearchBackend: ...


class SettingsBackends:
    """The backends the settings name, as `sounding bench` builds them (the default), with its cassette:
    a worker replays (or records) the same searches as a sweep on this machine would (the path must be
    readable on every node: a shared folder)."""

    def __init__(self, cassette: Path | None = None, cassette_mode: str = "replay") -> None:
        self.cassette, self.cassette_mode = cassette, cassette_mode

    def llm(self, settings: Settings, model: str) -> LLM:
        from sounding.tools.llm import make_llm

        return make_llm(settings.model_copy(update={"llm": settings.llm.model_copy(update={"model": model})}))

    def search(self, settings: Settings) -> SearchBackend:
        from sounding.tools.search.factory import make_search

        return make_search(
            settings,
            on_mismatch="rebuild",
            cassette=self.cassette,
            cassette_mode="replay-only" if self.cassette_mode == "replay-only" else "replay",
        )


class QuestionSolver:
    """Solves questions of one run spec with backends built once, on its node (a Ray actor's body):
    the same ``solve`` as a sweep on this machine, with the judge and the cassette it would use."""

    def __init__(
        self, config: RunConfig, settings: Settings, backends: Backends, judge: str | None = None
    ) -> None:
        self.config, self.settings = config, settings
        self.llm = backends.llm(settings, config.model)
        self.search = backends.search(settings)
        self.judge = backends.llm(settings, judge) if judge else None

    def solve(self, sample: Sample) -> Outcome:
        return solve(self.config, sample, self.settings, self.llm, self.search, judge=self.judge)

    def features(self, sample: Sample) -> tuple[str, dict[str, Any] | None, str | None]:
        """A stored question's features, measured late (questions stored before features existed)."""
        try:
            return (
                sample.id,
                question_features(self.config, sample.question, self.settings, self.llm, self.search),
                None,
            )
        except Exception as exc:  # the rows stay; tune says which questions lack features
            return sample.id, None, str(exc)


def run_sweep_on_ray(
    config: RunConfig,
    samples: list[Sample],
    settings: Settings,
    store: ResultStore,
    *,
    address: str | None = None,
    workers: int = 2,
    backends: Backends | None = None,
    retry_errors: bool = False,
    judge: str | None = None,
    tick: Callable[[str, dict[str, Any] | None], None] = lambda status, row: None,
    max_retries: int = 3,
) -> None:
    """Run every not-yet-done question of one config as Ray work (the same ``solve`` as on this
    machine, judged by the same judge model); the driver writes every row. Questions stored before
    features existed get them measured by the workers too."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise RuntimeError(RAY_MISSING) from exc
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    todo, backfill = pending_questions(store, config, samples, retry_errors, tick)
    if not todo and not backfill:
        return
    actor = ray.remote(max_restarts=max_retries, max_task_retries=max_retries, num_cpus=1)(QuestionSolver)
    pool = ActorPool(
        [
            actor.remote(config, settings, backends or SettingsBackends(), judge)
            for _ in range(max(1, min(workers, len(todo) or len(backfill))))
        ]
    )
    for question_id, features, error in pool.map_unordered(lambda a, s: a.features.remote(s), backfill):
        if features is None:
            tick("features-error", {"question_id": question_id, "error": error})
        else:
            store.add_features(config.key, question_id, features)
    for outcome in pool.map_unordered(lambda a, s: a.solve.remote(s), todo):
        write_outcome(store, config, outcome, tick)


class MergeReport(BaseModel):
    runs: int
    rows_added: int
    rows_already_there: int
    errors_added: int


def merge_stores(sources: list[Path], target: Path) -> MergeReport:
    """Combine result stores of shards into one: runs, rows (each question's group at once, so a
    question is in the target whole or not at all) and errors; rows already in the target (the same
    run key, question and setting) are kept, never duplicated. Sources are only read."""
    for source in sources:
        if source.resolve() == target.resolve():
            raise StoreError(f"{source} is the merge target itself")
    shards = [ResultStore.open_read_only(source) for source in sources]  # every input checked first
    for shard in shards:
        shard.runs()
        shard.results()  # reads every page: a truncated or foreign shard fails here, before any write
    # A new target is built beside its final name and renamed when whole, so a failure leaves no
    # half-merged store; an existing target takes each question whole or not at all (one transaction).
    fresh = not target.exists()
    building = target.with_name(f".{target.name}.merging") if fresh else target
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{building}{suffix}").unlink(missing_ok=True)
    try:
        report = _merge_into(shards, building)
    except BaseException:
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{building}{suffix}").unlink(missing_ok=True)
        raise
    finally:
        for shard in shards:
            shard.close()
    if fresh:
        os.replace(building, target)
    return report


def _merge_into(shards: list[ResultStore], target: Path) -> MergeReport:
    out = ResultStore(target)
    report = MergeReport(runs=0, rows_added=0, rows_already_there=0, errors_added=0)
    for shard in shards:
        runs = shard.runs()
        for key, cfg in runs.items():
            out.register_run(key, cfg)
        report.runs += len(runs)
        traces, features = shard.traces(), shard.features()
        by_question: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in shard.results():
            by_question.setdefault((row["run_key"], row["question_id"]), []).append(row)
        for (key, qid), rows in by_question.items():
            added = out.add_question(rows, traces.get((key, qid)), features.get((key, qid)))
            report.rows_added += added
            report.rows_already_there += len(rows) - added
        answered = {(r["run_key"], r["question_id"]) for r in out.results()}
        seen = {(e["run_key"], e["question_id"], e["error"]) for e in out.errors()}
        for e in shard.errors():
            if (e["run_key"], e["question_id"]) not in answered and (
                e["run_key"],
                e["question_id"],
                e["error"],
            ) not in seen:
                out.add_error(e["run_key"], e["question_id"], e["error"])
                report.errors_added += 1
    out.close()
    return report
