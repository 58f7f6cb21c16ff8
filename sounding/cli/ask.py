"""`sounding ask`: research one question under a joint budget, with a live view of the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from sounding.cli.common import (
    EXIT_DEGRADED,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    StrategyHelp,
    VoteKOpt,
    VoteMaxOpt,
    budget_value,
    check_strategies,
    check_writable,
    console,
    err_console,
    fail,
    settings_from,
)
from sounding.cli.progress import rich_progress
from sounding.cli.render import render_result, write_answer


class LiveView:
    """Rounds, queries, hits read and a spend/budget bar per unit, redrawn on every graph event."""

    def __init__(self, budget: dict[str, Any]) -> None:
        self.budget = budget
        self.lines: list[Text] = []
        self.spend: dict[str, Any] = {}
        self.live: Live | None = None
        #: Where to log lines when stderr is not a terminal (a redraw would print nothing useful).
        self.log: Console | None = None
        self._logged = 0

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        self.spend = event.get("spend", self.spend)
        if kind == "plan":
            plan = event["plan"]
            extra = (
                f", difficulty {event['difficulty']}"
                if event.get("difficulty") and not plan.get("why")
                else ""
            )
            if plan.get("think") or plan.get("samples", 1) > 1:
                extra += f", think {plan['think']}, samples {plan['samples']}"
            self.lines.append(
                Text(
                    f"plan: {plan['controller']} depth {plan['depth']}, breadth {plan['breadth']}{extra}",
                    "bold",
                )
            )
            if plan.get("why"):  # a tuned policy says which setting it chose and why
                self.lines.append(Text(f"  chosen: {plan['why']}"))
            if plan.get("format") == "report":
                self.lines.append(Text(f"  outline: {event.get('title')}", "bold"))
                for i, sub in enumerate(event.get("subquestions", []), 1):
                    self.lines.append(Text(f"    {i}. {sub}"))
        elif kind == "reasoning":
            if event.get("thinking"):
                thought = " ".join(event["thinking"].split())
                self.lines.append(
                    Text(f"  thinking (sample 1 of {event['samples']}): {thought[:300]}", "dim")
                )
            votes = ", ".join(f"{answer} x{n}" for answer, n in event.get("votes", {}).items())
            abstained = f", {event['abstained']} abstained" if event.get("abstained") else ""
            checked = event.get("verified") or {}
            verified = (", supported: " + ", ".join(a for a, ok in checked.items() if ok)) if checked else ""
            self.lines.append(
                Text(
                    f"  vote: {votes or 'no answer'}{abstained}{verified} -> {event.get('answer')}", "magenta"
                )
            )
        elif kind == "split":  # the decompose strategy's chain, then each step and its vote
            self.lines.append(Text(f"decompose into {len(event['subquestions'])} sub-questions:", "bold"))
            for i, sub in enumerate(event["subquestions"], 1):
                self.lines.append(Text(f"    {i}. {sub}"))
        elif kind in ("step", "compose"):
            votes = ", ".join(f"{answer} x{n}" for answer, n in event.get("votes", {}).items())
            flags = ", ".join(f"{n} {flag}" for flag, n in event.get("red_flags", {}).items())
            wave = f" (wave {event['wave']})" if event.get("wave") else ""
            where = f"step {event['step']}{wave}: {event['question']}" if kind == "step" else "compose"
            self.lines.append(Text(where, "cyan"))
            if event.get("hits"):
                self.lines.append(Text(f"  search -> {', '.join(event['hits'][:5])}"))
            self.lines.append(
                Text(
                    f"  vote: {votes or 'no valid ballot'}"
                    + (f" (discarded: {flags})" if flags else "")
                    + f" -> {event.get('answer')} ({event.get('ended')})",
                    "magenta",
                )
            )
        elif kind == "route":  # a policy tuned across strategies chose this question's strategy
            self.lines.append(Text(f"route: {event['setting']} ({event['why']})", "bold"))
        elif kind == "candidates":  # the tree / best_of_n strategies: each child, its values, kept or not
            self.lines.append(
                Text(
                    f"round {event['round']}: {len(event['candidates'])} branches, by {event['value']}",
                    "cyan",
                )
            )
            for c in event["candidates"]:
                logprob = f"{c['logprob']:.2f}" if c.get("logprob") is not None else "-"
                support = f", support {c['support']:.0f}" if c.get("support") is not None else ""
                mark = "*" if c["id"] == event["chosen"] else ("+" if c["kept"] else " ")
                self.lines.append(
                    Text(
                        f"  {mark} {c['queries'][-1]!r} -> {c['answer'] or '(no answer)'} (logprob {logprob}, "
                        f"agreement {c['agreement']:.2f}{support})"
                    )
                )
        elif kind == "queries":
            self.lines.append(Text(f"round {event['round']}: queries {event['queries']}", "cyan"))
        elif kind == "search":
            self.lines.append(Text(f"  search {event['query']!r} -> {', '.join(event['hits'][:5])}"))
        elif kind == "read":
            self.lines.append(Text(f"  read {', '.join(event['passages'])} -> {event['facts']} notes"))
        elif kind == "draft":
            self.lines.append(
                Text(
                    f"  draft: {event['answer']} (supported: {event['supported']}; {event['decision']})",
                    "green",
                )
            )
        elif kind == "round":
            self.lines.append(Text(f"  {event['notes']} notes so far ({event['decision']})", "green"))
        elif kind == "write":
            self.lines.append(
                Text(f"write: {event['sentences']} sentences in {event['sections']} sections", "bold")
            )
        elif kind == "check":
            precision = event.get("citation_precision")
            self.lines.append(
                Text(
                    f"check: {event['supported']} of {event['sentences']} sentences supported, citation "
                    f"precision {precision:.2f}"
                    if precision is not None
                    else "check: nothing to check",
                    "green",
                )
            )
        elif kind.endswith("skipped"):
            self.lines.append(Text(f"  {kind.replace('_', ' ')}: {event.get('reason')}", "yellow"))
        elif kind == "error":
            self.lines.append(Text(f"  {event['node']} failed: {event['message']}", "red"))
        if self.live is not None:
            self.live.update(self.render())
        elif self.log is not None:  # not a terminal: the lines as a log, as they come
            for line in self.lines[self._logged :]:
                self.log.print(line)
            self._logged = len(self.lines)

    def render(self) -> Group:
        bars = Table.grid(padding=(0, 1))
        limit, unit = self.budget.get("limit"), self.budget.get("unit")
        spent_cost = self.spend.get("cost", {}).get(unit, 0.0)
        rows = []
        if limit:
            rows.append((unit, spent_cost, limit))
        if self.budget.get("max_searches") is not None:
            rows.append(("searches", self.spend.get("searches", 0), self.budget["max_searches"]))
        if self.budget.get("max_tokens") is not None:
            rows.append(("tokens", self.spend.get("tokens", 0), self.budget["max_tokens"]))
        for name, used, cap in rows:
            bars.add_row(
                name,
                ProgressBar(total=float(cap), completed=float(used), width=40),
                f"{used:,.6g} / {cap:,.6g}",
            )
        return Group(*self.lines[-14:], bars)


def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The research question.", metavar="QUESTION")],
    corpus: Annotated[
        str | None, typer.Option("--corpus", help="wiki-vital | hotpotqa:PATH | jsonl:PATH | dir:PATH ...")
    ] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="hybrid | bm25 | dense | web")] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Embedded model name or GGUF path (or served name with --llm-url)."),
    ] = None,
    llm_url: Annotated[
        str | None,
        typer.Option("--llm-url", help="OpenAI-compatible endpoint (vllm serve, llama.cpp server)."),
    ] = None,
    controller: Annotated[
        str | None, typer.Option("--controller", help="fixed | adaptive | calibrated | tuned")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Policy file: `sounding tune` output for --controller tuned, a per-bin allocation for calibrated.",
        ),
    ] = None,
    depth: Annotated[
        int | None, typer.Option("--depth", min=0, max=64, help="Search rounds (fixed controller).")
    ] = None,
    breadth: Annotated[
        int | None, typer.Option("--breadth", min=1, max=16, help="Queries per round (fixed).")
    ] = None,
    budget: Annotated[
        float | None, typer.Option("--budget", callback=budget_value, help="Budget in --unit.")
    ] = None,
    unit: Annotated[str | None, typer.Option("--unit", help="tokens | flops | usd | latency")] = None,
    max_searches: Annotated[
        int | None, typer.Option("--max-searches", min=0, help="Cap on search calls.")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=0, help="Cap on LLM tokens.")] = None,
    think: Annotated[
        int | None,
        typer.Option("--think", min=0, max=4096, help="Thinking tokens before each round's answer."),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option("--samples", min=1, max=64, help="Answer samples per round, majority-voted."),
    ] = None,
    verify_vote: Annotated[
        bool | None,
        typer.Option("--verify-vote", help="Check each voted candidate against its notes (charged)."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Seed of every sampled call.")] = None,
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help=StrategyHelp + " --depth caps decompose's sub-questions and is the rounds of the others.",
        ),
    ] = "iterative",
    vote_k: Annotated[int, VoteKOpt] = 2,
    vote_max_samples: Annotated[int, VoteMaxOpt] = 8,
    searxng_url: Annotated[
        str | None, typer.Option("--searxng-url", help="SearXNG base URL (web backend).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full result (with anytime drafts) as JSON.")
    ] = False,
    trace: Annotated[
        Path | None, typer.Option("--trace", help="Write the full trace as JSON to FILE.")
    ] = None,
    answer_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto: the question decides; short: a few words; report: cited paragraphs, each sentence checked.",
        ),
    ] = "auto",
    unsupported: Annotated[
        str,
        typer.Option("--unsupported", help="mark | drop: a report's sentences its sources do not support."),
    ] = "mark",
    composer: Annotated[
        str | None,
        typer.Option(
            "--composer",
            help="paragraph | claims: a report section in one call from its notes, or one claim per note.",
        ),
    ] = None,
    wait_index: Annotated[
        bool,
        typer.Option(
            "--wait-index",
            help="Build a missing dense index before answering (else: BM25 with dense re-ranking until it is built).",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Also write the answer to FILE: Markdown, or HTML (sources linked) for .html."
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="SQLite file for LangGraph checkpoints.")
    ] = None,
    thread_id: Annotated[
        str | None, typer.Option("--thread-id", help="Resume (or name) a checkpointed run.")
    ] = None,
) -> None:
    """Research a question: search, read and reason under one joint budget; answer with citations.

    Exit codes: 0 answered; 1 answered degraded (a backend failed mid-run); 2 bad input;
    3 a backend or model is unavailable.
    """
    from sounding.agent.runner import (
        CheckpointError,
        InterruptedRun,
        QuestionError,
        check_question,
        run_research,
        sqlite_checkpointer,
    )
    from sounding.budgets.controllers import PolicyError
    from sounding.factory import build_deps, spec_from_settings
    from sounding.research import check_think_fits, settings_controller
    from sounding.tools.corpus import CorpusError, parse_corpus_spec
    from sounding.tools.llm.base import LLMError, UnknownModelError
    from sounding.tools.search.base import SearchError
    from sounding.tools.search.factory import make_search

    try:
        question = check_question(question)
    except QuestionError as exc:
        fail(str(exc))
    if controller is None and any(v is not None for v in (depth, breadth, think, samples)):
        controller = "fixed"  # --depth/--breadth/--think/--samples mean a fixed plan
    if answer_format not in ("auto", "short", "report"):
        fail(f"--format must be auto, short or report, not {answer_format!r}")
    if unsupported not in ("mark", "drop"):
        fail(f"--unsupported must be mark or drop, not {unsupported!r}")
    from sounding.agent.report import Composer  # lazily: the CLI starts without the agent

    if composer is not None and composer not in get_args(Composer):
        fail(f"--composer must be one of {', '.join(get_args(Composer))}, not {composer!r}")
    if trace is not None:
        check_writable(trace, "--trace")
    if out is not None:
        check_writable(out, "--out")
    settings = settings_from(
        ctx,
        search__corpus=corpus,
        search__backend=backend,
        search__searxng_url=searxng_url,
        llm__model=model,
        llm__base_url=llm_url,
        llm__backend="http" if llm_url else None,
        budget__controller=controller,
        budget__policy_file=policy,
        budget__depth=depth,
        budget__breadth=breadth,
        budget__budget=budget,
        budget__unit=unit,
        budget__max_searches=max_searches,
        budget__max_tokens=max_tokens,
        budget__think=think,
        budget__samples=samples,
        budget__verify=verify_vote,
        llm__seed=seed,
    )
    if settings.search.backend != "web":
        try:
            parse_corpus_spec(settings.search.corpus)
        except CorpusError as exc:
            fail(str(exc))
    from sounding.tools.llm import make_llm

    (variant,) = check_strategies(strategy, one=True)
    if variant.name != "iterative" and answer_format == "report":
        fail(f"--strategy {variant.name} answers short questions: use --format short (or auto)")
    if settings.budget.controller != "fixed" and (think is not None or samples is not None or verify_vote):
        fail(
            f"--think, --samples and --verify set the fixed controller's reasoning; the "
            f"{settings.budget.controller} controller takes its own from its policy"
        )
    try:  # the run spec; a bad policy file is bad input, said before a model loads or an index is built
        run_spec = spec_from_settings(
            settings,
            format=answer_format,
            unsupported=unsupported,
            composer=composer,
            strategy=variant.name,
            vote_k=vote_k,
            vote_max_samples=vote_max_samples,
            dials=variant.dials,
        )
        settings_controller(settings)
    except PolicyError as exc:
        fail(str(exc))
    try:
        saver = sqlite_checkpointer(checkpoint) if checkpoint else None
    except CheckpointError as exc:
        fail(str(exc))
    try:
        llm = make_llm(settings)
        if llm_url:  # fail fast, with one line, when the endpoint is unreachable
            llm.complete([{"role": "user", "content": "ping"}], max_tokens=1)
        check_think_fits(llm, settings.budget.think)  # before an index build, not after it
        with rich_progress() as progress:
            search = make_search(settings, progress=progress, wait_for_dense=wait_index)
        if search.name == "hybrid-reranked":
            err_console.print(
                "[yellow]note:[/] the dense index of this corpus is not built yet: searching with BM25 and "
                "dense re-ranking of its candidates. Build it once (about 10 min on 2 cores for wiki-vital) "
                "with: sounding index build"
            )
        view = LiveView(settings.budget.model_dump() | {"limit": settings.budget.budget})
        deps = build_deps(run_spec, settings, llm, search, on_event=view.on_event)
    except (CorpusError, PolicyError, UnknownModelError, ValueError) as exc:
        fail(str(exc))
    except (LLMError, SearchError) as exc:
        fail(str(exc).splitlines()[0] if "\n" in str(exc) else str(exc), EXIT_UNAVAILABLE)
    report_skipped(settings)
    interrupted = False
    try:
        if err_console.is_terminal:
            with Live(view.render(), console=err_console, refresh_per_second=4, transient=False) as live:
                view.live = live
                result = run_research(
                    question, deps, thread_id=thread_id, checkpointer=saver, strategy=run_spec.strategy
                )
        else:
            view.log = err_console
            result = run_research(
                question, deps, thread_id=thread_id, checkpointer=saver, strategy=run_spec.strategy
            )
            err_console.print(view.render().renderables[-1])
    except InterruptedRun as stop:  # Ctrl-C: the paid draft is still printed, then exit 130
        result, interrupted = stop.result, True
        err_console.print("\n[yellow]interrupted:[/] the best draft so far follows")
    err_console.print()
    payload = result.model_dump(mode="json")
    # the paid answer is printed first; optional files come after and cannot lose it
    if as_json:
        print(json.dumps(payload, indent=2))
    else:
        console.print(Markdown(render_result(result)))
        if checkpoint:
            console.print(f"thread id: {escape(result.thread_id)}")
    if out is not None:
        try:
            write_answer(result, out)
            err_console.print(f"answer written to {escape(str(out))}")
        except OSError as exc:
            err_console.print(f"[yellow]warning:[/] could not write {out}: {exc.strerror or exc}")
    if trace is not None:
        try:
            trace.write_text(json.dumps(payload, indent=2))
        except OSError as exc:
            err_console.print(f"[yellow]warning:[/] could not write the trace {trace}: {exc.strerror or exc}")
    if interrupted:
        if checkpoint:
            err_console.print(
                f"resume with: --checkpoint {escape(str(checkpoint))} --thread-id {escape(result.thread_id)}"
            )
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.degraded:
        raise typer.Exit(EXIT_DEGRADED)
    if result.no_answer_reason == "malformed":
        err_console.print(
            "[yellow]no answer:[/] the model's output did not parse on any try (not the budget)"
        )
        raise typer.Exit(EXIT_DEGRADED)


def report_skipped(settings: Any) -> None:
    """Lines or files of the corpus that were skipped when its passages were built: say so every time."""
    if settings.search.backend == "web":
        return
    from sounding.tools.corpus import parse_corpus_spec
    from sounding.tools.search.store import IndexStore, read_manifest

    manifest = read_manifest(
        IndexStore(settings).folder(parse_corpus_spec(settings.search.corpus), "passages")
    )
    if manifest is not None and manifest.skipped:
        first = "; ".join(manifest.skipped_examples[:3])
        err_console.print(
            f"[yellow]corpus {escape(manifest.corpus)}:[/] {manifest.skipped} lines or files were skipped "
            f"(first: {escape(first)})",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
