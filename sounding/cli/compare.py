"""`sounding compare`: strategies against each other on one compute axis (evals/compare.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sounding.cli.common import console, err_console, existing_store, fail


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Bench run directories (any strategies, any models).")],
    metric: Annotated[
        str, typer.Option("--metric", help="Any scorer (sounding frontier --help).")
    ] = "cover_em",
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=100, max=10000)] = 1000,
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            help="Compare only these strategies (comma-separated: a bare name such as tree, or a name with "
            "its dials as the tables label it, such as decompose:anchor=True:mode=auto) against the "
            "iterative grid, on the questions they all answered.",
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write every number as JSON to FILE.")
    ] = None,
    pair: Annotated[
        list[str] | None,
        typer.Option(
            "--pair",
            help="Also the paired difference A - B of two settings, as 'A,B' with the labels of the "
            "settings table (repeatable), e.g. 'decompose:anchor=True:mode=auto d2,decompose:mode=auto d2'.",
        ),
    ] = None,
    same_questions: Annotated[
        bool,
        typer.Option(
            "--same-questions",
            help="Every model and suite on the questions every model answered at every setting (so a "
            "strategy's effect on a small and a large model is read on one question set).",
        ),
    ] = False,
) -> None:
    """Strategies on one compute axis, per model and suite: every setting with its CI, the frontier of
    all of them, each strategy against the best iterative setting at equal or lower compute (paired),
    what each answers where no search depth did, accuracy per question type, the value functions'
    AUROC, and each smaller model's best against the larger's. Reads the run directories as one;
    writes nothing but --json."""
    import json

    from sounding.cli.bench import _check_metric, _scored
    from sounding.evals.compare import compare as compare_strategies
    from sounding.evals.compare import markdown, matrices, model_gap, select_runs
    from sounding.evals.store import ResultStore, StoreError
    from sounding.tools.llm.registry import EMBEDDED_MODELS

    _check_metric(metric)
    rows: list[dict[str, Any]] = []
    configs: dict[str, dict[str, Any]] = {}
    traces: dict[tuple[str, str], dict[str, Any]] = {}
    for run_dir in runs:
        try:
            store = ResultStore.open_read_only(existing_store(run_dir))
            rows += _scored(store, metric)
            configs |= store.runs()
            traces |= store.traces()
        except StoreError as exc:
            fail(str(exc))
    if not rows:
        fail("no results yet in " + ", ".join(map(str, runs)))
    if only is not None:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        if not wanted:
            fail("--only names no strategy: give one or more, comma-separated (e.g. --only tree,best_of_n)")
        try:
            configs = select_runs(configs, wanted)
        except ValueError as exc:
            fail(str(exc))
    pairs = []
    for text in pair or []:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2 or not all(parts):
            fail(f"--pair takes two setting labels separated by a comma, not {text!r}")
        pairs.append((parts[0], parts[1]))
    by_model = matrices(rows, configs)
    if same_questions:
        by_model = on_shared_questions(by_model)
    labels_of = {key: {s for by in matrix.values() for s in by} for key, matrix in by_model.items()}
    for p in pairs:
        if not any(set(p) <= labels for labels in labels_of.values()):
            every = sorted(set().union(set(), *labels_of.values()))
            missing = [x for x in p if x not in every] or list(p)
            example = f", e.g. {every[-1]!r}" if every else " (no fixed-controller run without a budget here)"
            fail(f"--pair: no model and suite has the setting(s) {', '.join(map(repr, missing))} "
                 f"(with its partner); the labels are those of the settings table{example}")  # fmt: skip
    comparisons = []
    for (model, suite), matrix in sorted(by_model.items()):
        # a pair is asked of the model and suite whose settings include both of its labels
        own = [p for p in pairs if set(p) <= labels_of[(model, suite)]]
        c = compare_strategies(matrix, model=model, suite=suite, metric=metric, traces=traces, runs=configs,
                               n_boot=bootstrap, pairs=own)  # fmt: skip
        if c is not None:
            comparisons.append(c)
        elif own:
            err_console.print(f"note: {model} on {suite} has fewer than two questions answered at every setting; "
                          f"the pair(s) asked of it are not compared", markup=False, highlight=False)  # fmt: skip
    gaps = []
    size = {name: m.n_params for name, m in EMBEDDED_MODELS.items()}
    suites = sorted({s for _, s in by_model})
    for suite in suites:
        models = sorted((m for m, s in by_model if s == suite), key=lambda m: (size.get(m, 0), m))
        for i, small in enumerate(models):
            for large in models[i + 1 :]:
                gap = model_gap(by_model[(small, suite)], by_model[(large, suite)], suite=suite,
                                names=(small, large), metric=metric, n_boot=bootstrap)  # fmt: skip
                if gap is not None:
                    gaps.append(gap)
    if not comparisons:
        fail("no model and suite has two questions answered at every setting: nothing to compare yet")
    console.print(markdown(comparisons, gaps), markup=False, highlight=False, soft_wrap=True)
    if json_out is not None:
        payload = {
            "comparisons": [c.model_dump() for c in comparisons],
            "gaps": [g.model_dump() for g in gaps],
        }
        json_out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def on_shared_questions(
    by_model: dict[Any, dict[str, dict[str, Any]]],
) -> dict[Any, dict[str, dict[str, Any]]]:
    """Each (model, suite) matrix cut to the questions that every matrix of the same suite answered at
    every one of its settings."""
    complete: dict[Any, set[str]] = {}
    for key, matrix in by_model.items():
        labels = {s for by in matrix.values() for s in by}
        complete[key] = {q for q, by in matrix.items() if labels <= set(by)}
    out = {}
    for (model, suite), matrix in by_model.items():
        shared = set.intersection(*(ids for (_, s), ids in complete.items() if s == suite))
        out[(model, suite)] = {q: by for q, by in matrix.items() if q in shared}
    return out


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
