"""`sounding bench|fit|plot|report`: budget sweeps over QA suites and what is made of them."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sounding.budgets.controllers import CONTROLLERS
from sounding.cli.common import (
    EXIT_UNAVAILABLE,
    StrategyHelp,
    VoteKOpt,
    VoteMaxOpt,
    check_strategies,
    console,
    err_console,
    existing_store,
    fail,
    settings_from,
)
from sounding.cli.progress import progress_bars, rich_progress
from sounding.cli.sweeps import (
    DEFAULT_CONCURRENCY,
    ENGINES,
    choose_engines,
    close_model,
    corpus_fingerprint,
    corpus_identity,
    open_model,
    open_run_dir,
    sweep_configs,
)

if TYPE_CHECKING:
    from sounding.evals.fit import Analysis


def _ints(text: str, what: str, *, low: int = 0, high: int = 64) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        fail(f"{what} must be a comma-separated list of integers, got {text!r}")
    if not values or values[0] < low or values[-1] > high:
        fail(f"{what} must list integers from {low} to {high}, got {text!r}")
    return values


def bench(
    ctx: typer.Context,
    suite: Annotated[
        str,
        typer.Argument(
            help="hotpotqa:PATH | 2wiki:PATH | musique:PATH | bamboogle:PATH | frames:PATH | simpleqa:PATH | flashrag:PATH | jsonl:PATH"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Run directory (holds results.sqlite).")],
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, max=1_000_000, help="First N questions.")
    ] = None,
    depths: Annotated[str, typer.Option("--depths", help="Search depths; 0 = closed book.")] = "0,1,2,4",
    breadths: Annotated[str, typer.Option("--breadths", help="Queries per round.")] = "1",
    model: Annotated[list[str] | None, typer.Option("--model", help="Model (repeat for several).")] = None,
    controller: Annotated[
        str, typer.Option("--controller", help="fixed | adaptive | calibrated | tuned")
    ] = "fixed",
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Policy file: `sounding tune` output for --controller tuned, a per-bin allocation for calibrated.",
        ),
    ] = None,
    budgets: Annotated[
        str | None, typer.Option("--budgets", help="Budgets in --unit to sweep (adaptive/tuned).")
    ] = None,
    unit: Annotated[str | None, typer.Option("--unit", help="tokens | flops | usd | latency")] = None,
    think: Annotated[
        str,
        typer.Option(
            "--think",
            help="Thinking caps (tokens) to read, e.g. 0,64,256: one run thinks to the largest, smaller "
            "caps are read off the same reasoning.",
        ),
    ] = "0",
    samples: Annotated[
        str,
        typer.Option("--samples", help="Answer sample counts to read, e.g. 1,3,5 (one run draws the most)."),
    ] = "1",
    verify_vote: Annotated[
        bool, typer.Option("--verify-vote", help="Weigh the vote by a support check per candidate.")
    ] = False,
    temperature: Annotated[
        float | None,
        typer.Option("--temperature", min=0.0, max=2.0, help="Temperature of the search steps' calls."),
    ] = None,
    sample_temperature: Annotated[
        float | None,
        typer.Option("--sample-temperature", min=0.0, max=2.0, help="Temperature of reasoning samples."),
    ] = None,
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds",
            min=1,
            max=100,
            help="Repeated measures of each question with seeds 0..N-1 (they vary sampling: use with "
            "--temperature > 0, or with --samples/--think, which sample).",
        ),
    ] = 1,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            min=1,
            max=64,
            help="Questions in flight at once: with an embedded model, the slots of the llama.cpp server "
            "the sweep starts (see --engine); with --llm-url, concurrent requests; with --ray, Ray workers.",
        ),
    ] = DEFAULT_CONCURRENCY,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="How an embedded model runs: server (sounding's own llama.cpp server on 127.0.0.1 with "
            "--concurrency slots, batching the questions in flight), process (in this process, one "
            "question at a time), or auto: server when it is built, else process; a run directory "
            "keeps the engine it was started with.",
        ),
    ] = "auto",
    use_ray: Annotated[
        bool, typer.Option("--ray", help="Run questions as Ray work on a cluster (a local one by default).")
    ] = False,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Ray cluster to join (implies --ray), e.g. auto.")
    ] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="Search backend (default hybrid).")] = None,
    corpus: Annotated[
        str | None, typer.Option("--corpus", help="Corpus (default: the suite's pooled paragraphs).")
    ] = None,
    llm_url: Annotated[str | None, typer.Option("--llm-url", help="OpenAI-compatible endpoint.")] = None,
    cassette: Annotated[
        Path | None, typer.Option("--cassette", help="Record/replay searches in this file.")
    ] = None,
    replay_only: Annotated[
        bool, typer.Option("--replay-only", help="With --cassette: never search for real.")
    ] = False,
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="Re-run questions that failed.")
    ] = False,
    verify_anytime: Annotated[
        int,
        typer.Option(
            "--verify-anytime",
            min=0,
            help="Re-run N questions at each smaller depth and report agreement with the anytime answers.",
        ),
    ] = 0,
    judge: Annotated[
        str | None, typer.Option("--judge", help="Also grade answers with this model (LLM judge).")
    ] = None,
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help=StrategyHelp + " Several, comma-separated, sweep each as its own run; --depths caps "
            "decompose's sub-questions (rows at 0 and the deepest) and is the rounds of the others.",
        ),
    ] = "iterative",
    vote_k: Annotated[int, VoteKOpt] = 2,
    vote_max_samples: Annotated[int, VoteMaxOpt] = 8,
    branches: Annotated[
        int,
        typer.Option(
            "--branches",
            min=1,
            max=64,
            help="Run a strategy's independent branches (tree children, parallel sub-questions) this "
            "many at a time: each branch gets a server slot of its own (--engine server).",
        ),
    ] = 1,
) -> None:
    """Sweep search budgets over a QA suite; resumable (kill it and rerun the same command)."""
    from sounding.budgets.controllers import MAX_SAMPLES, MAX_THINK, PolicyError
    from sounding.evals.datasets import DatasetError, load_suite
    from sounding.evals.sweep import (
        MAX_DEPTH,
        RunIdentity,
        SweepSpec,
        run_sweep_config,
        sweep_manifest,
    )
    from sounding.evals.sweep import verify_anytime as verify
    from sounding.settings import MAX_BUDGET
    from sounding.tools.corpus import CorpusError
    from sounding.tools.llm import make_llm
    from sounding.tools.llm.base import EngineGoneError, LLMError
    from sounding.tools.search.base import SearchError
    from sounding.tools.search.factory import make_search

    try:
        loaded = load_suite(suite, limit=limit)
    except DatasetError as exc:
        fail(str(exc))
    corpus_spec = corpus or loaded.corpus
    if corpus_spec is None and backend != "web":
        fail(f"{loaded.kind} has no context paragraphs: give --corpus or --backend web")
    budget_values: list[float | None] = [None]
    if budgets:
        try:
            budget_values = [float(b) for b in budgets.split(",")]
        except ValueError:
            fail(f"--budgets must be numbers, got {budgets!r}")
        for value in budget_values:
            if value is None or not (0 < value <= MAX_BUDGET):  # also refuses nan and inf
                fail(f"--budgets must be finite numbers above 0 and at most {MAX_BUDGET:g}, got {value}")
    spec = SweepSpec(
        suite=suite,
        limit=limit,
        depths=_ints(depths, "--depths", high=MAX_DEPTH),
        breadths=_ints(breadths, "--breadths", low=1, high=16),
        thinks=_ints(think, "--think", high=MAX_THINK),
        samples=_ints(samples, "--samples", low=1, high=MAX_SAMPLES),
        verify=verify_vote,
        models=model or ["qwen2.5-coder-0.5b"],
        controller=controller,
        budgets=budget_values,
        seeds=seeds,
        concurrency=concurrency,
        retry_errors=retry_errors,
        verify_anytime=verify_anytime,
        judge=judge,
        strategies=[v.label for v in check_strategies(strategy)],
        vote_k=vote_k,
        vote_max_samples=vote_max_samples,
        workers=branches,
    )
    from sounding.evals.sweep import check_sweep

    try:  # before the corpus is indexed or a model loaded
        check_sweep(spec)
    except PolicyError as exc:
        fail(str(exc))
    if branches > 1 and use_ray:
        fail(
            "--branches runs a question's branches on threads of a local sweep; with --ray use --concurrency"
        )
    if controller not in CONTROLLERS:
        fail(f"unknown controller {controller!r}: use {', '.join(CONTROLLERS)}")
    if engine not in ENGINES:
        fail(f"unknown --engine {engine!r}: use {', '.join(ENGINES)}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file, not a run directory")
    if seeds > 1 and not (temperature or max(spec.samples) > 1 or max(spec.thinks) > 0):
        fail(
            f"--seeds {seeds} at temperature 0 with no sampling would repeat identical runs: "
            "add --temperature > 0, or sample with --samples/--think"
        )
    settings = settings_from(
        ctx,
        search__corpus=corpus_spec,
        search__backend=backend,
        budget__unit=unit,
        budget__policy_file=policy,
        llm__base_url=llm_url,
        llm__backend="http" if llm_url else None,
        llm__temperature=temperature,
        llm__sample_temperature=sample_temperature,
    )
    store = open_run_dir(out, what="sweep")
    try:
        with rich_progress() as progress:
            search = make_search(
                settings,
                progress=progress,
                cassette=cassette,
                cassette_mode="replay-only" if replay_only else "replay",
            )
        identity = RunIdentity(
            suite=loaded.name,
            corpus=corpus_identity(settings, corpus_spec),
            corpus_fingerprint=corpus_fingerprint(settings, corpus_spec),
        )
    except (CorpusError, SearchError) as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    use_ray = use_ray or ray_address is not None
    engines = choose_engines(
        settings, engine, concurrency, spec, identity, store, use_ray=use_ray, branches=branches
    )
    try:  # a bad policy file fails here, before anything is run or written
        configs = sweep_configs(spec, engines, identity)
    except PolicyError as exc:
        fail(str(exc))
    try:
        sweep_manifest(out / "sweep.json", spec, ["sounding", *sys.argv[1:]], loaded)
    except OSError as exc:
        fail(f"cannot write {out / 'sweep.json'}: {exc.strerror or exc}")
    judge_llm = None
    if judge and not use_ray:  # on Ray every worker loads its own
        try:  # the judge grades one answer at a time: in process beside a served model, not a second server
            judge_backend = "llama" if settings.llm.backend == "llama-server" else settings.llm.backend
            judge_llm = make_llm(
                settings.model_copy(
                    update={"llm": settings.llm.model_copy(update={"model": judge, "backend": judge_backend})}
                )
            )
        except LLMError as exc:
            fail(str(exc), EXIT_UNAVAILABLE)
    if use_ray and verify_anytime:
        fail("--verify-anytime runs on this machine: use it without --ray")
    start = time.perf_counter()
    try:
        for model_name in spec.models:
            llm: Any = None
            if use_ray:  # every worker builds its own backends, on its own node
                model_configs = [c for c in configs if c.model == model_name]
            else:
                llm, model_configs = open_model(model_name, engines, spec, identity, engine=engine)
            chosen = engines[model_name]
            try:
                for config in model_configs:
                    stats = {"done": 0, "correct": 0.0, "errors": 0}
                    label = (
                        f"{model_name} {config.controller} D{config.depth} B{config.breadth} s{config.seed}"
                    )
                    if config.think or config.samples > 1:
                        label += f" T{config.think} N{config.samples}"
                    if config.budget is not None:
                        label += f" {config.budget:g}{config.unit}"
                    with progress_bars("{task.fields[acc]}") as bar:
                        task = bar.add_task(label, total=len(loaded.samples), acc="")

                        def tick(
                            status: str,
                            row: dict[str, Any] | None,
                            task: Any = task,
                            bar: Any = bar,
                            stats: dict[str, Any] = stats,
                        ) -> None:
                            if status == "features-error":  # a stored question whose probe failed: rows kept
                                assert row is not None
                                err_console.print(
                                    f"features of {row['question_id']} not measured: {row['error']}"
                                )
                                return
                            if status == "error":
                                stats["errors"] += 1
                            elif row is not None:
                                stats["done"] += 1
                                stats["correct"] += row["cover_em"]
                            acc = f"cover-EM {stats['correct'] / stats['done']:.2f}" if stats["done"] else ""
                            bar.update(task, advance=1, acc=f"{acc} errors {stats['errors']}")

                        if use_ray:
                            from sounding.evals.distributed import SettingsBackends, run_sweep_on_ray

                            run_sweep_on_ray(
                                config,
                                loaded.samples,
                                chosen.settings,
                                store,
                                address=ray_address,
                                workers=chosen.concurrency,
                                backends=SettingsBackends(
                                    cassette, "replay-only" if replay_only else "replay"
                                ),
                                retry_errors=retry_errors,
                                judge=judge,
                                tick=tick,
                            )
                        else:
                            run_sweep_config(
                                config,
                                loaded.samples,
                                chosen.settings,
                                llm,
                                search,
                                store,
                                concurrency=chosen.concurrency,
                                retry_errors=retry_errors,
                                judge=judge_llm,
                                workers=branches,
                                tick=tick,
                            )
                    if verify_anytime and config.controller == "fixed":
                        report = verify(
                            config,
                            loaded.samples[:verify_anytime],
                            spec.depths,
                            chosen.settings,
                            llm,
                            search,
                            store,
                        )
                        console.print(
                            f"anytime check {label}: {report['agreed']}/{report['checked']} independent runs agree "
                            "with the anytime answers"
                        )
            finally:
                close_model(llm)  # the model's server, if the sweep started one, however the sweep ends
    except EngineGoneError as exc:
        fail(
            f"{exc}; the questions it was running stay pending: rerun the same command to resume",
            EXIT_UNAVAILABLE,
        )
    console.print(
        f"sweep done in {time.perf_counter() - start:.0f} s; {store.count()} rows in {out / 'results.sqlite'}"
    )


def merge(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (shards) to combine.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to merge into (created if needed).")],
) -> None:
    """Combine the result stores of sweep shards (run on machines without Ray) into one run directory;
    rows already there are kept once, never duplicated, and the shards are only read."""
    from sounding.evals.distributed import merge_stores
    from sounding.evals.store import StoreError

    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file, not a run directory")
    sources = [existing_store(r) for r in runs]
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        report = merge_stores(sources, out / "results.sqlite")
    except StoreError as exc:
        if created and not any(out.iterdir()):
            out.rmdir()  # a failed merge into a new run directory leaves nothing behind
        fail(str(exc))
    for r in runs:  # the first shard's manifest describes the merged sweep (commands of every shard)
        manifest = r / "sweep.json"
        if manifest.is_file() and not (out / "sweep.json").is_file():
            (out / "sweep.json").write_text(manifest.read_text())
    console.print(
        f"merged {len(runs)} stores into {out / 'results.sqlite'}: {report.runs} run configs, "
        f"{report.rows_added} rows added, {report.rows_already_there} already there, "
        f"{report.errors_added} errors added"
    )


def fit(
    run_dir: Annotated[Path, typer.Argument(help="A bench run directory.")],
    metric: Annotated[
        str, typer.Option("--metric", help="em | f1 | cover_em | judge, or any scorer of evals/scorers.py")
    ] = "cover_em",
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, max=10000)] = 500,
    by: Annotated[str | None, typer.Option("--by", help="Also fit per 'qtype' or 'hops'.")] = None,
) -> None:
    """Fit accuracy against log(search steps) and log(compute): linear and logistic, R², extrapolation, CIs."""
    from sounding.evals.fit import fits_table

    analysis = _analysis(run_dir, metric, bootstrap, by)
    console.print(fits_table(analysis))
    (run_dir / "fits.json").write_text(analysis.model_dump_json(indent=2))
    console.print(f"wrote {run_dir / 'fits.json'}")


def _check_metric(metric: str) -> None:
    from sounding.evals.scorers import UnknownMetricError, check_metric

    try:
        check_metric(metric)
    except UnknownMetricError as exc:
        fail(str(exc))


def _scored(store: Any, metric: str) -> list[dict[str, Any]]:
    """The store's rows with ``metric``: stored, or scored off the stored traces (evals/scorers.py)."""
    from sounding.evals.scorers import STORED, rescore

    rows = store.results()
    if metric in STORED:
        return list(rows)
    scored = rescore(rows, store.traces(), metric)
    if len(scored) < len(rows):
        err_console.print(
            f"[yellow]note:[/] {len(rows) - len(scored)} of {len(rows)} rows of {store.path} have no stored "
            f"trace and cannot be scored by {metric}: left out"
        )
    return scored


def _analysis(run_dir: Path, metric: str, bootstrap: int, by: str | None = None) -> Analysis:
    from sounding.evals.fit import analyse
    from sounding.evals.store import ResultStore

    store_path = existing_store(run_dir)
    _check_metric(metric)
    from sounding.evals.fit import load_manifest, unanswered_failures
    from sounding.evals.store import StoreError
    from sounding.evals.sweep import manifest_depths

    try:  # read-only: a report never creates, migrates or writes the store it reads
        store = ResultStore.open_read_only(store_path)
        rows = _scored(store, metric)
    except StoreError as exc:
        fail(str(exc))
    if not rows:
        fail(f"{run_dir} has no results yet")
    runs = store.runs()
    manifest = load_manifest(run_dir)
    depths = manifest_depths(manifest) if manifest else None
    from sounding.evals.frontier import frontiers, split_exchanges

    analysis = analyse(rows, runs, metric=metric, n_boot=bootstrap, by=by, depths=depths)
    analysis.frontiers = frontiers(rows, runs, metric=metric, n_boot=bootstrap)
    analysis.split_exchanges = split_exchanges(rows, runs, metric=metric, n_boot=bootstrap)
    checks = store.anytime_checks()
    analysis.manifest = manifest
    analysis.failures = unanswered_failures(store.errors(), rows, runs)
    if checks:
        analysis.anytime = {"checked": len(checks), "agreed": sum(c["agree"] for c in checks)}
    return analysis


def plot(
    run_dir: Annotated[Path, typer.Argument(help="A bench run directory.")],
    metric: Annotated[str, typer.Option("--metric")] = "cover_em",
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, max=10000)] = 500,
) -> None:
    """PNG and SVG figures: accuracy vs search steps and vs compute (with CI bands and fits), spend per round."""
    from sounding.evals.plot import make_exchange_figures, make_figures, make_frontier_figures

    analysis = _analysis(run_dir, metric, bootstrap)
    figures = run_dir / "figures"
    for path in (
        make_figures(analysis, figures)
        + make_frontier_figures(analysis.frontiers, figures)
        + make_exchange_figures(analysis.split_exchanges, figures)
    ):
        console.print(f"wrote {path}")


def report(
    run_dir: Annotated[Path, typer.Argument(help="A bench run directory.")],
    metric: Annotated[str, typer.Option("--metric")] = "cover_em",
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, max=10000)] = 500,
) -> None:
    """A Markdown (and HTML) report and fits.json: tables, figures, fitted laws with uncertainty,
    exchange rates, controller comparison, commands and versions."""
    from sounding.evals.plot import make_exchange_figures, make_figures, make_frontier_figures
    from sounding.evals.report import write_report

    analysis = _analysis(run_dir, metric, bootstrap, by="qtype")
    make_figures(analysis, run_dir / "figures")
    make_frontier_figures(analysis.frontiers, run_dir / "figures")
    make_exchange_figures(analysis.split_exchanges, run_dir / "figures")
    md, html = write_report(analysis, run_dir)
    # the full analysis (every axis, every group) beside the report, so the two never disagree
    (run_dir / "fits.json").write_text(analysis.model_dump_json(indent=2))
    console.print(f"wrote {md}, {html} and {run_dir / 'fits.json'}")


def frontier(
    runs: Annotated[list[Path], typer.Argument(help="Bench run directories with reasoning grids.")],
    metric: Annotated[str, typer.Option("--metric")] = "cover_em",
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, max=10000)] = 500,
    depths: Annotated[
        str | None, typer.Option("--depths", help="Read only these search depths, e.g. 0,1,2.")
    ] = None,
    think: Annotated[str | None, typer.Option("--think", help="Read only these thinking caps.")] = None,
    samples: Annotated[str | None, typer.Option("--samples", help="Read only these sample counts.")] = None,
    figures: Annotated[
        Path | None,
        typer.Option(
            "--figures", help="Also draw each grid's and each pair of models' figures into this directory."
        ),
    ] = None,
) -> None:
    """Search against reasoning, in seconds: each axis alone (slopes, CIs, split-half), the iso-compute
    frontier, composition and, across models of one suite, best split against best split. Prints
    the report's sections as Markdown; reads several run directories as one (no merge needed) and
    writes nothing unless --figures names a directory. --depths/--think/--samples read a sub-grid, so a store swept wider on fewer
    questions (say think 128 on 30) can be compared on the grid it shares with a longer sweep."""
    from sounding.budgets.controllers import MAX_SAMPLES, MAX_THINK
    from sounding.evals.fit import Analysis
    from sounding.evals.frontier import frontiers, split_exchanges
    from sounding.evals.report import frontier_blocks, to_markdown
    from sounding.evals.store import ResultStore, StoreError
    from sounding.evals.sweep import MAX_DEPTH

    _check_metric(metric)
    rows: list[dict[str, Any]] = []
    configs: dict[str, dict[str, Any]] = {}
    for run_dir in runs:
        try:
            store = ResultStore.open_read_only(existing_store(run_dir))
            rows += _scored(store, metric)
            configs |= store.runs()
        except StoreError as exc:
            fail(str(exc))
    if not rows:
        fail("no results yet in " + ", ".join(map(str, runs)))
    # a row's setting: its search round, thinking cap and sample count (older rows lack the last two)
    wanted = [
        (key, default, flag, _ints(text, flag, low=default, high=high) if text is not None else None)
        for key, default, text, flag, high in (
            ("round", 0, depths, "--depths", MAX_DEPTH),
            ("think", 0, think, "--think", MAX_THINK),
            ("samples", 1, samples, "--samples", MAX_SAMPLES),
        )
    ]
    rows = [r for r in rows if all(v is None or r.get(k, d) in v for k, d, _, v in wanted)]
    if not rows:
        asked = " ".join(f"{flag} {','.join(map(str, v))}" for _, _, flag, v in wanted if v is not None)
        fail(f"no results at the settings asked for ({asked}) in " + ", ".join(map(str, runs)))
    analysis = Analysis(metric=metric, n_rows=len(rows), curves=[], exchanges=[])
    analysis.frontiers = frontiers(rows, configs, metric=metric, n_boot=bootstrap)
    analysis.split_exchanges = split_exchanges(rows, configs, metric=metric, n_boot=bootstrap)
    if not analysis.frontiers:
        fail("no reasoning grid here: sweep with --think and/or --samples (a search-only sweep: use report)")
    print(to_markdown(frontier_blocks(analysis)))
    if figures is not None:
        from sounding.evals.plot import make_exchange_figures, make_frontier_figures

        if figures.exists() and not figures.is_dir():
            fail(f"--figures {figures} is a file, not a directory")
        for path in make_frontier_figures(analysis.frontiers, figures) + make_exchange_figures(
            analysis.split_exchanges, figures
        ):
            print(f"wrote {path}", file=sys.stderr)  # stdout stays the Markdown, to redirect into a file


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
    app.command("fit")(fit)
    app.command("frontier")(frontier)
    app.command("plot")(plot)
    app.command("report")(report)
    app.command("merge")(merge)
