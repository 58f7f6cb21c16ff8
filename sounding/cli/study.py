"""`sounding study PLAN.toml`: several sweeps (suites x models x grids) as one resumable job (evals/study.py)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sounding.cli.common import EXIT_UNAVAILABLE, check_strategies, console, err_console, fail, settings_from
from sounding.cli.sweeps import DEFAULT_CONCURRENCY, ENGINES

if TYPE_CHECKING:
    from sounding.cli.sweeps import ModelEngine
    from sounding.evals.datasets import Suite
    from sounding.evals.store import ResultStore
    from sounding.evals.study import StudySweep
    from sounding.evals.sweep import RunConfig, RunIdentity, SweepSpec
    from sounding.settings import Settings


@dataclass
class CheckedSweep:
    """A sweep of the plan whose suite loads and whose grid is valid: nothing written yet."""

    entry: StudySweep
    suite: Suite
    spec: SweepSpec
    settings: Settings
    corpus: str | None

    @property
    def where(self) -> str:
        return f"{self.entry.out}: "


@dataclass
class PreparedSweep:
    """A sweep ready to run: its store, search backend, identity and each model's engine."""

    checked: CheckedSweep
    store: ResultStore
    search: Any
    identity: RunIdentity
    engines: dict[str, ModelEngine]


def study(
    ctx: typer.Context,
    plan_file: Annotated[Path, typer.Argument(help="Study plan (TOML): one [[sweep]] table per sweep.")],
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, max=64, help="Questions in flight (the server's slots)."),
    ] = DEFAULT_CONCURRENCY,
    engine: Annotated[
        str, typer.Option("--engine", help="auto | server | process, as for `sounding bench`.")
    ] = "auto",
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="Re-run questions that failed.")
    ] = False,
) -> None:
    """Run a study plan's sweeps as one job: per model, one server whose slots take the pending
    questions of every sweep that uses it, interleaved; resumable (kill it and rerun the same command)."""
    from sounding.evals.study import StudyError, load_plan
    from sounding.tools.llm.base import EngineGoneError

    if engine not in ENGINES:
        fail(f"unknown --engine {engine!r}: use {', '.join(ENGINES)}")
    try:
        plan = load_plan(plan_file)
    except StudyError as exc:
        fail(str(exc))
    for entry in plan.sweep:  # the cheap checks of every sweep first
        check_strategies(",".join(entry.strategies))
    checked = [_check(ctx, entry, concurrency) for entry in plan.sweep]  # every sweep, before any is touched
    argv = ["sounding", *sys.argv[1:]]
    prepared = [_prepare(c, engine, concurrency, argv) for c in checked]
    models = list(dict.fromkeys(m for c in checked for m in c.spec.models))
    start = time.perf_counter()
    try:
        for model in models:
            _run_model(model, [p for p in prepared if model in p.checked.spec.models], engine, retry_errors)
    except EngineGoneError as exc:
        fail(
            f"{exc}; the questions it was running stay pending: rerun the same command to resume",
            EXIT_UNAVAILABLE,
        )
    console.print(
        f"study done in {time.perf_counter() - start:.0f} s: "
        + "; ".join(f"{p.checked.entry.out}: {p.store.count()} rows" for p in prepared)
    )


def _check(ctx: typer.Context, entry: StudySweep, concurrency: int) -> CheckedSweep:
    """The sweep's suite, grid and strategies checked, as `sounding bench` checks them; nothing written."""
    from sounding.budgets.controllers import MAX_SAMPLES, MAX_THINK, PolicyError
    from sounding.evals.datasets import DatasetError, load_suite
    from sounding.evals.sweep import MAX_DEPTH, SweepSpec, check_sweep

    where = f"{entry.out}: "
    try:
        suite = load_suite(entry.suite, limit=entry.limit)
    except DatasetError as exc:
        fail(f"{where}{exc}")
    corpus = entry.corpus or suite.corpus
    if corpus is None and entry.backend != "web":
        fail(f'{where}{suite.kind} has no context paragraphs: give corpus, or backend = "web"')
    ranges = {
        "depths": (0, MAX_DEPTH),
        "think": (0, MAX_THINK),
        "samples": (1, MAX_SAMPLES),
        "breadths": (1, 16),
    }
    for name, (low, high) in ranges.items():
        values = getattr(entry, name)
        if min(values) < low or max(values) > high:
            fail(f"{where}{name} must be integers from {low} to {high}, got {values}")
    spec = SweepSpec(
        suite=entry.suite,
        limit=entry.limit,
        depths=sorted(set(entry.depths)),
        breadths=sorted(set(entry.breadths)),
        thinks=sorted(set(entry.think)),
        samples=sorted(set(entry.samples)),
        models=entry.models,
        concurrency=concurrency,
        strategies=[v.label for v in check_strategies(",".join(entry.strategies))],
        vote_k=entry.vote_k,
        vote_max_samples=entry.vote_max_samples,
    )
    try:
        check_sweep(spec)
    except PolicyError as exc:
        fail(f"{where}{exc}")
    settings = settings_from(ctx, search__corpus=corpus, search__backend=entry.backend)
    return CheckedSweep(entry, suite, spec, settings, corpus)


def _prepare(checked: CheckedSweep, engine: str, concurrency: int, argv: list[str]) -> PreparedSweep:
    """The sweep's run directory, store, corpus index, identity, engines and manifest."""
    from sounding.budgets.controllers import PolicyError
    from sounding.cli.progress import rich_progress
    from sounding.cli.sweeps import (
        choose_engines,
        corpus_fingerprint,
        corpus_identity,
        open_run_dir,
        sweep_configs,
    )
    from sounding.evals.sweep import RunIdentity, sweep_manifest
    from sounding.tools.corpus import CorpusError
    from sounding.tools.search.base import SearchError
    from sounding.tools.search.factory import make_search

    out, where, settings = checked.entry.out, checked.where, checked.settings
    if out.exists() and not out.is_dir():
        fail(f"{where}out is a file, not a run directory")
    store = open_run_dir(out, what="study", where=where)
    try:
        with rich_progress() as progress:
            search = make_search(settings, progress=progress)
        identity = RunIdentity(
            suite=checked.suite.name,
            corpus=corpus_identity(settings, checked.corpus),
            corpus_fingerprint=corpus_fingerprint(settings, checked.corpus),
        )
    except (CorpusError, SearchError) as exc:
        fail(f"{where}{exc}", EXIT_UNAVAILABLE)
    engines = choose_engines(settings, engine, concurrency, checked.spec, identity, store, where=where)
    try:
        sweep_configs(checked.spec, engines, identity)  # a bad policy fails here, before anything runs
        sweep_manifest(out / "sweep.json", checked.spec, argv, checked.suite)
    except PolicyError as exc:
        fail(f"{where}{exc}")
    except OSError as exc:
        fail(f"{where}cannot write sweep.json: {exc.strerror or exc}")
    return PreparedSweep(checked, store, search, identity, engines)


def _run_model(model: str, group: list[PreparedSweep], engine: str, retry_errors: bool) -> None:
    """One model over every sweep that uses it: one LLM (one server), the sweeps' pending questions
    interleaved over its slots. Sweeps whose runs of this model were made in process (or whose server
    could not start) run apart, in process."""
    from sounding.cli.sweeps import close_model, open_model

    served = [p for p in group if p.engines[model].served]
    if served:
        first = served[0]
        # one server for every served sweep: as many sample slots as the widest of them needs
        widest = max(p.engines[model].settings.llm.sample_slots for p in served)
        for p in served:
            p.engines[model].settings = p.engines[model].settings.model_copy(
                update={"llm": p.engines[model].settings.llm.model_copy(update={"sample_slots": widest})}
            )
        llm, _ = open_model(
            model, first.engines, first.checked.spec, first.identity, engine=engine, where=first.checked.where
        )
        try:
            if first.engines[model].served:
                _run(model, served, llm, first.engines[model].concurrency, retry_errors)
            else:  # the server could not start: every sweep of this model goes in process
                for p in served:
                    p.engines[model] = first.engines[model]
                _run(model, served, llm, 1, retry_errors)
        finally:
            close_model(llm)
    apart = [p for p in group if p not in served]
    if apart:
        first = apart[0]
        llm, _ = open_model(
            model, first.engines, first.checked.spec, first.identity, engine=engine, where=first.checked.where
        )
        try:
            _run(model, apart, llm, 1, retry_errors)
        finally:
            close_model(llm)


def _run(model: str, group: list[PreparedSweep], llm: Any, concurrency: int, retry_errors: bool) -> None:
    from sounding.cli.progress import progress_bars
    from sounding.cli.sweeps import sweep_configs
    from sounding.evals.study import interleave
    from sounding.evals.sweep import SweepWork, Tick, pending_work, run_questions

    with progress_bars() as bar:
        per_sweep, ticks = [], {}
        for p in group:
            one = p.checked.spec.model_copy(update={"models": [model]})
            configs: list[RunConfig] = sweep_configs(one, p.engines, p.identity)
            for config in configs:
                work = SweepWork(
                    config=config, samples=p.checked.suite.samples, settings=p.engines[model].settings,
                    llm=llm, search=p.search, store=p.store,
                )  # fmt: skip
                task = bar.add_task(f"{p.checked.entry.out} {_label(config)}", total=len(work.samples))
                ticks[id(work)] = _ticker(bar, task, p.checked.where)
                per_sweep.append([(work, s) for s in pending_work(work, retry_errors, ticks[id(work)])])

        def tick_of(work: SweepWork) -> Tick:
            tick: Tick = ticks[id(work)]
            return tick

        run_questions(interleave(per_sweep), concurrency=concurrency, tick=tick_of)


def _label(config: RunConfig) -> str:
    label = f"{config.model} {config.strategy} D{config.depth} B{config.breadth} s{config.seed}"
    if config.think or config.samples > 1:
        label += f" T{config.think} N{config.samples}"
    return label


def _ticker(bar: Any, task: Any, where: str) -> Any:
    def tick(status: str, row: dict[str, Any] | None) -> None:
        if status == "features-error":  # a stored question whose probe failed: rows kept
            assert row is not None
            err_console.print(f"{where}features of {row['question_id']} not measured: {row['error']}")
            return
        bar.advance(task, 1)

    return tick


def register(app: typer.Typer) -> None:
    app.command("study")(study)
