"""`sounding tune`: fit a per-question policy on a grid sweep and report its cross-validation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from sounding.cli.common import budget_value, check_writable, console, existing_store, fail

if TYPE_CHECKING:
    from sounding.evals.tune import Grid, TuneReport


def _grid(
    run_dir: Path, unit: str, metric: str, model: str | None, *, also: list[Path] | None = None,
    across: bool = False, only: list[str] | None = None,
) -> Grid:  # fmt: skip
    from typing import Any

    from sounding.evals.compare import select_runs
    from sounding.evals.store import ResultStore, StoreError
    from sounding.evals.tune import TuneError, load_grid, strategy_grid

    rows: list[dict[str, Any]] = []
    runs: dict[str, dict[str, Any]] = {}
    features: dict[tuple[str, str], dict[str, Any]] = {}
    for path in [run_dir, *(also or [])]:
        try:  # read-only: tuning never writes the store it reads
            store = ResultStore.open_read_only(existing_store(path))
            rows += store.results()
            runs |= store.runs()
            features |= store.features()
        except StoreError as exc:
            fail(str(exc))
    try:
        if only:
            runs = select_runs(runs, only)
    except ValueError as exc:
        fail(f"--only: {exc}")
    try:
        if across:
            return strategy_grid(rows, runs, features, unit=unit, metric=metric, model=model)
        return load_grid(rows, runs, features, unit=unit, metric=metric, model=model)
    except TuneError as exc:
        fail(f"{run_dir}: {exc}")


def tune(
    run_dir: Annotated[Path, typer.Argument(help="A `sounding bench` run directory holding a grid.")],
    budget: Annotated[
        float,
        typer.Option("--budget", callback=budget_value, help="Target mean spend per question, in --unit."),
    ],
    out: Annotated[Path, typer.Option("--out", help="The policy file to write (.json).")],
    unit: Annotated[str, typer.Option("--unit", help="tokens | flops | usd | latency")] = "tokens",
    metric: Annotated[str, typer.Option("--metric", help="em | f1 | cover_em")] = "cover_em",
    model: Annotated[
        str | None, typer.Option("--model", help="The model's grid, if the store has several.")
    ] = None,
    folds: Annotated[
        int, typer.Option("--folds", min=2, max=20, help="k of the k-fold cross-validation.")
    ] = 5,
    budgets: Annotated[
        str | None, typer.Option("--budgets", help="Budgets to report (default: half, the budget, double).")
    ] = None,
    test: Annotated[
        Path | None,
        typer.Option(
            "--test",
            help="Another suite's grid run dir: fit on the settings both grids have, score the policy there (transfer).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    across_strategies: Annotated[
        bool,
        typer.Option(
            "--across-strategies",
            help="Choose among every strategy the model was swept with (iterative readings, decompose, "
            "tree, best_of_n with their dials and depths), on the questions they share.",
        ),
    ] = False,
    also: Annotated[
        list[Path] | None,
        typer.Option("--also", help="Another run directory read as part of this one (repeatable)."),
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            help="With --across-strategies: choose among only these strategies (comma-separated, as "
            "`sounding compare --only` takes them) and the iterative readings, so a strategy run on fewer "
            "questions does not cut the others to its questions.",
        ),
    ] = None,
) -> None:
    """Fit a policy mapping each question's probe features to a setting of the grid, maximising
    expected accuracy at mean spend <= --budget; offline, no LLM. Writes the policy (for
    `--controller tuned --policy FILE`) and a report beside it: nested cross-validation against the
    best fixed setting at equal spend, with paired bootstrap CIs, and the oracle."""
    import math

    from sounding.evals.tune import TuneError, common_settings, transfer
    from sounding.evals.tune import tune as fit

    if not math.isfinite(budget) or budget <= 0:
        fail(f"--budget must be a positive number, not {budget}")
    if metric not in ("em", "f1", "cover_em"):
        fail(f"unknown metric {metric!r}: use em, f1 or cover_em")
    if out.suffix != ".json":
        fail(f"--out {out} must be a .json file")
    check_writable(out, "--out")
    try:
        wanted = [float(b) for b in budgets.split(",")] if budgets else None
    except ValueError:
        fail(f"--budgets {budgets!r}: give comma-separated numbers")
    if wanted and any(not math.isfinite(b) or b <= 0 for b in wanted):
        fail("--budgets must be positive numbers")
    if only is not None and not across_strategies:
        fail("--only chooses among strategies: use it with --across-strategies")
    chosen = [w.strip() for w in only.split(",") if w.strip()] if only is not None else None
    if chosen == []:
        fail("--only names no strategy: give one or more, comma-separated (e.g. --only tree,best_of_n)")
    grid = _grid(run_dir, unit, metric, model, also=also, across=across_strategies, only=chosen)
    try:
        other = (
            _grid(test, unit, metric, grid.model, across=across_strategies, only=chosen)
            if test is not None
            else None
        )
        if other is not None:  # fit on the settings both grids have, so the other can score every choice
            grid = common_settings(grid, other)
        policy, report = fit(grid, budget, budgets=wanted, k=folds, seed=seed)
        if other is not None:
            report.transfer = transfer(policy, other)
    except TuneError as exc:
        fail(f"{run_dir}: {exc}")
    out.write_text(policy.model_dump_json(indent=2))
    md = out.with_suffix(".md")
    figure = write_tune_report(report, md, policy_name=out.name)
    _print(report)
    console.print(f"wrote {out} ({policy.fitted['candidate']}), {md} and {figure}")


def _print(report: TuneReport) -> None:
    table = Table(
        title=f"{report.model} on {report.suite}: {report.folds}-fold CV, {report.questions} questions"
    )
    for col in (
        "budget",
        "tuned acc",
        f"tuned {report.unit}",
        "best fixed",
        "fixed acc",
        "gain (95% CI)",
        "oracle",
    ):
        table.add_column(col)
    for r in report.results:
        table.add_row(
            f"{r.budget:,.0f}", f"{r.tuned_acc:.3f}", f"{r.tuned_cost:,.0f}", r.fixed_label, f"{r.fixed_acc:.3f}",
            f"{r.gain:+.3f} [{r.gain_ci[0]:+.3f}, {r.gain_ci[1]:+.3f}]", f"{r.oracle_acc:.3f}",
        )  # fmt: skip
    console.print(table)


def write_tune_report(report: TuneReport, md: Path, *, policy_name: str) -> Path:
    """The Markdown and HTML report and the accuracy-against-spend figure, beside the policy."""
    from sounding.evals.report import to_html, to_markdown

    figure = _figure(report, md.with_suffix(".png"))
    u = report.unit
    blocks: list[tuple[str, object]] = [
        ("h1", f"sounding tune: {report.model} on {report.suite}"),
        (
            "p",
            f"{report.questions} questions, metric {report.metric}, spend in {u} (the probe included). Every "
            f"tuned number is from {report.folds}-fold cross-validation over questions: each question is scored "
            "by a policy fitted without it (the kind of policy and its features chosen by an inner "
            "cross-validation on the training folds). The best fixed setting is the most accurate one whose mean "
            "spend is at most the tuned policy's, chosen on all questions (which favours it). Gains are paired "
            "(same questions), 95% bootstrap CIs over questions.",
        ),
        ("img", figure.name),
        ("h2", "Tuned against the best fixed setting"),
        (
            "table",
            [
                [
                    "budget",
                    "tuned acc. (95% CI)",
                    f"tuned mean {u}",
                    "best fixed",
                    "fixed acc.",
                    f"fixed {u}",
                    "gain (95% CI)",
                    "oracle acc. at that spend",
                    "oracle gap",
                    "policies chosen per fold",
                ],
                *[
                    [
                        f"{r.budget:,.0f}",
                        f"{r.tuned_acc:.3f} [{r.tuned_ci[0]:.3f}, {r.tuned_ci[1]:.3f}]",
                        f"{r.tuned_cost:,.0f}",
                        r.fixed_label,
                        f"{r.fixed_acc:.3f}",
                        f"{r.fixed_cost:,.0f}",
                        f"{r.gain:+.3f} [{r.gain_ci[0]:+.3f}, {r.gain_ci[1]:+.3f}]",
                        f"{r.oracle_acc:.3f}",
                        f"{r.oracle_acc - r.tuned_acc:+.3f}",
                        "; ".join(sorted(set(r.chosen))),
                    ]
                    for r in report.results
                ],
            ],
        ),
        (
            "p",
            f"Oracle (per question the cheapest setting with its best score): accuracy {report.oracle[0]:.3f} at "
            f"mean {report.oracle[1]:,.0f} {u}: no policy over these settings can do better; the gap to it is "
            "what better features could still gain.",
        ),
        ("h2", "Which policy and which features (cross-validated on all questions, at the policy's budget)"),
        (
            "table",
            [["candidate", "CV accuracy", f"CV mean {u}"]]
            + [[s["candidate"], f"{s['acc']:.3f}", f"{s['cost']:,.0f}"] for s in report.selection],
        ),
        (
            "p",
            "Mean probe cost per question, by feature group: "
            + ", ".join(f"{g} {c:,.0f} {u}" for g, c in report.feature_costs.items())
            + f". The policy written ({policy_name}) is the candidate with the best CV accuracy within the budget.",
        ),
        ("h2", "Every fixed setting"),
        (
            "table",
            [["setting", "accuracy", f"mean {u}", "on the envelope"]]
            + [
                [
                    f["setting"],
                    f"{f['acc']:.3f}",
                    f"{f['cost']:,.0f}",
                    "yes" if f["setting"] in report.envelope else "",
                ]
                for f in sorted(report.fixed, key=lambda f: f["cost"])
            ],
        ),
    ]
    if report.transfer:
        t = report.transfer
        blocks += [
            ("h2", f"Transfer: fitted on {report.suite}, scored on {t['suite']}"),
            (
                "p",
                f"{t['questions']} questions: tuned {t['acc']:.3f} at mean {t['cost']:,.0f} {u}; best fixed there at "
                f"that spend {t['best_fixed']} {t['fixed_acc']:.3f}; gain {t['gain']:+.3f} "
                f"[{t['gain_ci'][0]:+.3f}, {t['gain_ci'][1]:+.3f}].",
            ),
        ]
    md.write_text(to_markdown(blocks))
    md.with_suffix(".html").write_text(to_html(blocks))
    return figure


def _figure(report: TuneReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    fixed = sorted(report.fixed, key=lambda f: f["cost"])
    ax.scatter(
        [f["cost"] for f in fixed], [f["acc"] for f in fixed], color="grey", s=14, label="fixed settings"
    )
    env = [f for f in fixed if f["setting"] in report.envelope]
    ax.step(
        [f["cost"] for f in env], [f["acc"] for f in env], where="post", color="black", label="fixed envelope"
    )
    results = sorted(report.results, key=lambda r: r.tuned_cost)
    ax.errorbar(
        [r.tuned_cost for r in results], [r.tuned_acc for r in results],
        yerr=[[r.tuned_acc - r.tuned_ci[0] for r in results], [r.tuned_ci[1] - r.tuned_acc for r in results]],
        color="tab:red", marker="o", capsize=3, label="tuned (cross-validated)",
    )  # fmt: skip
    ax.plot(
        [r.tuned_cost for r in results], [r.oracle_acc for r in results], "g^--", label="oracle at that spend"
    )
    ax.scatter([report.oracle[1]], [report.oracle[0]], marker="*", s=120, color="tab:green", label="oracle")
    ax.set_xscale("log")
    ax.set_xlabel(f"mean spend per question ({report.unit}; log)")
    ax.set_ylabel(report.metric)
    ax.set_title(f"{report.model} on {report.suite}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    fig.savefig(path.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return path


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
