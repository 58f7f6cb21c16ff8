"""`sounding budget explain|calibrate|estimate`: what each controller would plan, the latency cost
table, and an allocation policy that plans with a model's measured spend per round."""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sounding.budgets.cost import Usage
from sounding.cli.common import EXIT_UNAVAILABLE, budget_value, console, existing_store, fail, settings_from

budget_app = typer.Typer(
    help="Joint budgets: explain plans, calibrate the latency cost model, estimate spend per round.",
    no_args_is_help=True,
)


@budget_app.command("explain")
def explain(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question to plan for.")],
    budget: Annotated[
        float | None, typer.Option("--budget", callback=budget_value, help="Budget in --unit.")
    ] = None,
    unit: Annotated[str | None, typer.Option("--unit", help="tokens | flops | usd | latency")] = None,
    max_searches: Annotated[int | None, typer.Option("--max-searches", min=0)] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=0)] = None,
    depth: Annotated[int, typer.Option("--depth", min=0, help="Depth for the fixed controller.")] = 2,
    breadth: Annotated[int, typer.Option("--breadth", min=1, help="Breadth for the fixed controller.")] = 2,
    think: Annotated[
        int, typer.Option("--think", min=0, max=4096, help="Thinking tokens per round (fixed controller).")
    ] = 0,
    samples: Annotated[
        int, typer.Option("--samples", min=1, max=64, help="Answer samples per round (fixed controller).")
    ] = 1,
    margin: Annotated[
        float | None, typer.Option("--margin", help="Assumed first-retrieval score margin (0-1).")
    ] = None,
    agree: Annotated[
        bool | None, typer.Option("--agree/--disagree", help="Assume the probe answers agree.")
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy", help="A policy file: `sounding tune` output or a calibrated per-bin allocation."
        ),
    ] = None,
) -> None:
    """Print the plan each controller would choose for a question and the cost of each planned step.

    The adaptive controller's probe is not run here (no model is loaded): pass --margin and
    --agree/--disagree to see the plan for each difficulty; without them all three bins are shown.
    """
    from pathlib import Path

    from sounding.budgets.controllers import (
        AdaptiveController,
        Controller,
        Features,
        FixedController,
        PolicyError,
        answer_usage,
        check_policy_model,
        load_policy,
        plan_usage,
        reasoning_usage,
        round_usage,
        split_usage,
        step_usage,
    )
    from sounding.budgets.cost import make_cost_model
    from sounding.budgets.tuned import check_tuned_model, is_tuned_policy, load_tuned_policy
    from sounding.research import make_budget
    from sounding.tools.llm.registry import EMBEDDED_MODELS

    settings = settings_from(
        ctx,
        budget__budget=budget,
        budget__unit=unit,
        budget__max_searches=max_searches,
        budget__max_tokens=max_tokens,
    )
    spec = EMBEDDED_MODELS.get(settings.llm.model)
    try:
        cost = make_cost_model(
            settings.budget.unit, settings.budget, n_params=spec.n_params if spec else None
        )
        controllers: list[Controller] = [
            FixedController(depth, breadth, think=think, samples=samples),
            AdaptiveController(),
        ]
        if policy and is_tuned_policy(Path(policy)):
            # a tuned policy picks one of its settings per question from the probe (which needs the
            # model): show each setting it can choose
            tuned = load_tuned_policy(Path(policy))
            check_tuned_model(tuned, settings.llm.model, policy)
            for s in tuned.reachable():
                choice = FixedController(s.depth, s.breadth, think=s.think, samples=s.samples)
                choice.name = f"tuned choice {s.label}"
                controllers.append(choice)
        elif policy:
            calibrated = load_policy(Path(policy))
            check_policy_model(calibrated, settings.llm.model, policy)
            controllers.append(AdaptiveController(calibrated, name="calibrated"))
    except (ValueError, PolicyError) as exc:
        fail(str(exc))
    b = make_budget(settings)
    scenarios: list[tuple[str, Features]]
    if margin is not None or agree is not None:
        answers = ["x", "x"] if agree else ["x", "y"]
        m = margin if margin is not None else 0.1
        scenarios = [
            ("given", Features(question=question, probe_answers=answers, retrieval_scores=[1.0, 1.0 - m]))
        ]
    else:
        scenarios = [
            ("easy", Features(question=question, probe_answers=["x", "x"], retrieval_scores=[1.0, 0.5])),
            ("medium", Features(question=question, probe_answers=["x", "y"], retrieval_scores=[1.0, 0.85])),
            ("hard", Features(question=question, probe_answers=["x", "y"], retrieval_scores=[1.0, 0.99])),
        ]
    console.print(
        f"question: {question}\nbudget: {b.describe()}  (cost model: {cost.unit}, model {settings.llm.model})"
    )
    for controller in controllers:
        cases = scenarios if controller.needs_probe else [("any", scenarios[0][1])]
        for case, features in cases:
            plan = controller.plan(features, b, cost)
            total = plan_usage(plan, probe=controller.needs_probe)
            table = Table(
                title=f"{controller.name} ({case}): depth {plan.depth}, breadth {plan.breadth}, k {plan.k}, "
                f"read {plan.read}; est. {cost.price(total):,.6g} {cost.unit}"
                + (
                    " (over budget: the ledger ends the run early)"
                    if b.limit and cost.price(total) > b.limit
                    else ""
                ),
                title_justify="left",
            )
            for col in ("step", "when", "tokens", "searches", f"{cost.unit}"):
                table.add_column(col, justify="left" if col in ("step", "when") else "right")
            rows: list[tuple[str, str, Usage]] = []
            if controller.needs_probe:
                rows += [
                    (
                        "probe (closed book)",
                        "once, x2",
                        step_usage(plan, "probe") + step_usage(plan, "probe"),
                    ),
                    ("search", "once (probe)", step_usage(plan, "search")),
                ]
            if plan.estimate is not None:  # measured means, round by round
                if plan.decompose and plan.depth > 0:
                    rows.append(("decompose", "once", step_usage(plan, "query")))
                rows += [
                    (f"round {r} (measured)", f"{plan.breadth} searches", round_usage(plan, r))
                    for r in range(1, plan.depth + 1)
                ]
                rows.append(("outside rounds (measured)", "once", answer_usage(plan)))
            else:  # the upper bound: prompt estimates + completion caps, step by step
                d, searches = plan.depth, plan.depth * plan.breadth
                rows += [
                    ("query", f"per round, x{d}", _times(step_usage(plan, "query"), d)),
                    ("search", f"per round, x{searches}", _times(step_usage(plan, "search"), searches)),
                    ("extract", f"per round, x{d}", _times(step_usage(plan, "extract"), d)),
                    ("reflect", f"per round, x{d}", _times(step_usage(plan, "reflect"), d)),
                ]
                if plan.reasons and d > 0:
                    rows.append(
                        (
                            f"reason (think {plan.think}, {plan.samples} samples)",
                            f"per round, x{d}",
                            _times(reasoning_usage(plan), d),
                        )
                    )
                rows.append(("answer", "once", answer_usage(plan)))
            for label, when, usage in rows:
                table.add_row(
                    label, when, f"{usage.tokens:,}", str(usage.searches), f"{cost.price(usage):,.6g}"
                )
            table.add_row(
                "[bold]total[/]",
                f"{plan.depth} rounds",
                f"{total.tokens:,}",
                str(total.searches),
                f"[bold]{cost.price(total):,.6g}[/]",
            )
            console.print(table)
            split = split_usage(plan, probe=controller.needs_probe)
            search_cost, reasoning_cost = cost.price(split["search"]), cost.price(split["reasoning"])
            share = reasoning_cost / (search_cost + reasoning_cost) if search_cost + reasoning_cost else 0.0
            console.print(
                f"split: search {search_cost:,.6g} {cost.unit}, reasoning {reasoning_cost:,.6g} {cost.unit} "
                f"({share:.0%} on reasoning: think {plan.think}, samples {plan.samples})"
            )


def _times(usage: Usage, n: int) -> Usage:
    total = Usage()
    for _ in range(n):
        total = total + usage
    return total


@budget_app.command("calibrate")
def calibrate(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", help="Model to time (default: settings).")] = None,
    llm_url: Annotated[
        str | None, typer.Option("--llm-url", help="Time an OpenAI-compatible endpoint instead.")
    ] = None,
    corpus: Annotated[str | None, typer.Option("--corpus")] = None,
    backend: Annotated[str | None, typer.Option("--backend")] = None,
    repeats: Annotated[int, typer.Option("--repeats", min=1, max=20)] = 3,
) -> None:
    """Measure the LLM backend and search backend in use and write the latency cost table."""
    from sounding.budgets.cost import LatencyTable
    from sounding.tools.llm import make_llm
    from sounding.tools.llm.base import LLMError
    from sounding.tools.search.base import SearchError
    from sounding.tools.search.factory import make_search

    settings = settings_from(
        ctx,
        llm__model=model,
        llm__base_url=llm_url,
        llm__backend="http" if llm_url else None,
        search__corpus=corpus,
        search__backend=backend,
    )
    try:
        llm = make_llm(settings)
        search = make_search(settings)
    except (LLMError, SearchError, ValueError) as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    filler = "The history of the region is long and complicated. " * 40
    prefill, decode, searches = [], [], []
    llm.complete([{"role": "user", "content": "Hi"}], max_tokens=1)  # warm-up
    for _ in range(repeats):
        start = time.perf_counter()
        c = llm.complete([{"role": "user", "content": filler + "Summarise."}], max_tokens=1)
        prefill.append((time.perf_counter() - start) / max(1, c.prompt_tokens))
        start = time.perf_counter()
        c = llm.complete(
            [{"role": "user", "content": "Count from one to one hundred in words."}],
            max_tokens=64,
            temperature=0.0,
        )
        decode.append((time.perf_counter() - start) / max(1, c.completion_tokens))
    for query in (
        "capital of Hungary",
        "history of Rome",
        "largest planet",
        "Nobel prize physics",
        "river Danube",
    ):
        start = time.perf_counter()
        search.search(query, 5)
        searches.append(time.perf_counter() - start)
    table = LatencyTable(
        seconds_per_prompt_token=statistics.median(prefill),
        seconds_per_completion_token=statistics.median(decode),
        seconds_per_search=statistics.median(searches),
        measured_on=f"{platform.node()} {platform.machine()} {time.strftime('%Y-%m-%d')}",
        llm=llm.name,
        search=search.name,
    )
    path = settings.budget.latency_table or settings.home / "latency.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table.model_dump_json(indent=2))
    console.print(
        f"prefill {1 / table.seconds_per_prompt_token:,.0f} tokens/s, decode "
        f"{1 / table.seconds_per_completion_token:,.1f} tokens/s, search {table.seconds_per_search * 1000:,.1f} ms"
    )
    console.print(f"wrote {path}")


@budget_app.command("estimate")
def estimate(
    run_dir: Annotated[
        Path, typer.Argument(help="Run directory of `sounding bench` (holds results.sqlite).")
    ],
    model: Annotated[str, typer.Option("--model", help="Model whose fixed-controller runs to measure.")],
    out: Annotated[Path, typer.Option("--out", help="Policy file to write (.json).")],
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="Keep this policy's bins and thresholds (default: built-in)."),
    ] = None,
) -> None:
    """Measure a model's mean spend per search round from its stored runs and write an allocation
    policy that plans with it (use with --controller tuned --policy OUT)."""
    from sounding.budgets.controllers import DEFAULT_POLICY, PolicyError, load_policy
    from sounding.evals.estimate import EstimateError, measure_usage
    from sounding.evals.store import ResultStore, StoreError

    if out.suffix != ".json":
        fail(f"--out must be a .json file, got {out}")
    store_path = existing_store(run_dir)
    try:
        base = load_policy(policy) if policy else DEFAULT_POLICY
    except PolicyError as exc:
        fail(str(exc))
    try:
        store = ResultStore.open_read_only(store_path)
    except StoreError as exc:
        fail(str(exc))
    try:
        measured = measure_usage(store, model)
    except (EstimateError, StoreError) as exc:
        fail(str(exc))
    finally:
        store.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(base.model_copy(update={"estimate": measured}).model_dump_json(indent=2) + "\n")
    tmp.replace(out)  # atomic: a failed write never leaves half a policy
    rounds = ", ".join(
        f"{measured.round(r).tokens:,}" for r in range(1, len(measured.round_prompt_tokens) + 1)
    )
    console.print(
        f"{model}, {measured.questions} questions: LLM tokens per round {rounds}; outside the rounds "
        f"{measured.overhead_prompt_tokens + measured.overhead_completion_tokens:,}\nwrote {out}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(budget_app, name="budget")
