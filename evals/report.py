"""The run report in Markdown and HTML, rendered from one list of blocks so the two never disagree."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sounding.evals.fit import Analysis, ControllerComparison, Exchange, LawFit, ModelGap, Point

Block = tuple[str, Any]  # ("h1"|"h2"|"p"|"table"|"img"|"code", content)
# usd and latency are rescalings of these; fits.json has the fits on every axis
REPORTED_AXES = ("steps", "tokens", "flops")


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1e4 or (abs(value) < 1e-3 and value != 0):
        return f"{value:.{digits}g}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"


def format_amount(value: float | None) -> str:
    """A compute amount (tokens, FLOPs, spend): three significant digits, no padding zeros, so a
    closed-book 77.9 token-equivalents does not print as "77.900" beside an integer 1098."""
    if value is None:
        return "-"
    if abs(value) >= 1e4 or (abs(value) < 1e-3 and value != 0):
        return f"{value:.3g}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _ratio(e: Exchange) -> str:
    if e.ratio is None:
        return "not reached"
    ci = (
        f" [{e.ratio_ci[0]:.2f}, {e.ratio_ci[1]:.2f}]"
        if e.ratio_ci
        else " [CI: not reached in many resamples]"
    )
    return f"{e.ratio:.2f}x{ci}"


def _intro_blocks(analysis: Analysis) -> list[Block]:
    return [
        ("h1", "sounding bench report"),
        (
            "p",
            f"Metric: **{analysis.metric}**; {analysis.n_rows} result rows; generated "
            f"{time.strftime('%Y-%m-%d %H:%M')}. Accuracy CIs are 95% percentile bootstrap intervals "
            "over questions. Search steps are the steps *given* (depth x breadth); compute is the mean "
            "spend *realised* at that depth.",
        ),
    ]


def _provenance_blocks(manifest: dict[str, Any]) -> list[Block]:
    """The commands that produced the run and the versions and machine they ran on (from sweep.json)."""
    if not manifest:
        return []
    commands = manifest.get("commands") or [manifest.get("command", [])]
    versions = ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items())
    return [
        ("h2", "How this was produced"),
        ("code", "\n".join(" ".join(c) for c in commands)),
        (
            "p",
            f"Suite {manifest.get('suite')} (each table's n counts the questions behind a point); "
            f"Python {manifest.get('python')}; "
            f"{versions}; machine {manifest.get('machine')}.",
        ),
    ]


def _accuracy_header(metric: str) -> list[str]:
    return [
        "depth",
        "steps given",
        "n",
        metric,
        "95% CI",
        "EM",
        "F1",
        "searches",
        "tokens",
        "token-eq.",
        "FLOPs",
        "LLM calls",
        "support recall",
    ]


def _accuracy_row(p: Point) -> list[str]:
    return [
        str(p.depth),
        str(p.steps_given),
        str(p.n),
        f"{p.acc:.3f}",
        f"[{p.ci[0]:.3f}, {p.ci[1]:.3f}]",
        _fmt(p.metrics.get("em")),
        _fmt(p.metrics.get("f1")),
        f"{p.searches:.2f}",
        f"{p.tokens:.0f}",
        format_amount(p.cost.get("tokens")),
        format_amount(p.cost.get("flops")),
        f"{p.llm_calls:.1f}",
        _fmt(p.recall),
    ]


def _accuracy_blocks(analysis: Analysis) -> list[Block]:
    """One table per curve over all questions: every depth's accuracy, CI and spend."""
    blocks: list[Block] = [("h2", "Accuracy by depth")]
    for c in analysis.curves:
        if c.group != "all":
            continue
        seeds = f", {c.seeds} seeds averaged per question" if c.seeds > 1 else ""
        blocks.append(("p", f"**{c.label}**" + seeds + f" — run {', '.join(c.run_keys)}"))
        blocks.append(("table", [_accuracy_header(analysis.metric), *(_accuracy_row(p) for p in c.points)]))
    return blocks


def _group_blocks(analysis: Analysis) -> list[Block]:
    """Accuracy per question type: one row per curve and group, one column per depth."""
    groups = [c for c in analysis.curves if c.group != "all"]
    if not groups:
        return []
    # runs may stop at different depths (a tuned sweep to 3 beside a fixed one to 8): one column
    # per depth any of them has, blank where a run has none
    depths = sorted({p.depth for c in groups for p in c.points})
    rows = [["run", "group", *[f"d={d}" for d in depths]]]
    for c in groups:
        at = {p.depth: f"{p.acc:.2f} (n={p.n})" for p in c.points}
        rows.append([c.label, c.group, *[at.get(d, "") for d in depths]])
    return [("h2", "By question type"), ("table", rows)]


def _law_params(f: LawFit) -> str:
    """A law's parameters, each with its 95% CI when the bootstrap gave one."""
    return "; ".join(
        f"{k} = {v:.3g}"
        + (f" [{f.params_ci[k][0]:.3g}, {f.params_ci[k][1]:.3g}]" if k in f.params_ci else "")
        for k, v in f.params.items()
    )


def _fit_blocks(analysis: Analysis) -> list[Block]:
    """Every curve's fitted laws on the reported axes."""
    rows = [["model", "group", "axis", "law", "parameters [95% CI]", "R²", "holdout error", "split-half"]]
    for c in analysis.curves:
        for f in c.fits:
            if f.axis not in REPORTED_AXES:
                continue
            split = "-" if f.split_half is None else f"{f.split_half:.2f}"
            rows.append(
                [c.label, c.group, f.axis, f.form, _law_params(f), _fmt(f.r2), _fmt(f.holdout_error), split]
            )
    return [
        ("h2", "Fitted laws"),
        (
            "p",
            "linear: acc = a + b·ln C; logistic: acc = 1/(1+exp(-(α + β·ln C))). Holdout error: a fit "
            "on all but the largest budget, predicting the largest (predicted − observed). Axes: search "
            "steps given, token-equivalents and FLOPs spent; the fits against usd and latency are in "
            "fits.json (`sounding fit`). Split-half: the share of 200 random half-splits of the questions "
            "in which the linear slope fitted on each half has the whole curve's sign (1.00: every half "
            "shows the trend; lower: it rests on some of the questions; coin flips give about 0.5-0.8). "
            "It cannot see past the sample: only other questions can.",
        ),
        ("table", rows),
    ]


def _exchange_row(e: Exchange) -> list[str]:
    return [
        e.small,
        e.large,
        e.group,
        e.axis,
        str(e.depth),
        str(e.n),
        format_amount(e.large_compute),
        f"{e.large_acc:.3f}",
        format_amount(e.small_compute),
        _ratio(e),
    ]


def _exchange_blocks(analysis: Analysis) -> list[Block]:
    """Exchange rates between models: a table over all questions, another per question type."""
    if not analysis.exchanges:
        return []
    blocks: list[Block] = [
        ("h2", "Exchange rates"),
        (
            "p",
            "At each depth of the larger model: the search calls (axis *searches*) or compute the "
            "smaller model needs to match its accuracy, interpolated in log spend along the smaller "
            "model's curve, as a multiple of what the larger model spent. Both sides are measured on "
            "the n questions both models answered; the CI is a paired bootstrap over those questions.",
        ),
    ]
    for title, wanted in (("All questions", "all"), ("By question type", None)):
        chosen = [e for e in analysis.exchanges if (e.group == "all") == (wanted == "all")]
        if not chosen:
            continue
        blocks.append(("p", f"**{title}**"))
        header = [
            "small",
            "large",
            "group",
            "axis",
            "depth",
            "n",
            "large spends",
            "large acc",
            "small needs",
            "ratio [95% CI]",
        ]
        blocks.append(("table", [header, *(_exchange_row(e) for e in chosen)]))
    return blocks


def _gap_row(g: ModelGap) -> list[str]:
    return [
        f"{g.small} ({g.small_depth})",
        g.large,
        g.group,
        str(g.depth),
        str(g.n),
        f"{g.small_acc:.3f}",
        f"{g.large_acc:.3f}",
        f"{g.diff:+.3f} [{g.diff_ci[0]:+.3f}, {g.diff_ci[1]:+.3f}]",
    ]


def _gap_blocks(analysis: Analysis) -> list[Block]:
    """The smaller model at its deepest point against the larger model at each depth."""
    if not analysis.gaps:
        return []
    header = [
        "small (depth)",
        "large",
        "group",
        "large depth",
        "n",
        "small acc",
        "large acc",
        "difference [95% CI]",
    ]
    return [
        ("h2", "Does searching more close the gap?"),
        (
            "p",
            "The smaller model at its deepest point (most search) against the larger model at each "
            "depth, on the n questions both answered: accuracy difference (small − large) with a "
            "paired bootstrap CI. A CI above zero means the smaller model that searched more beat "
            "the larger one at that depth; below zero, it did not catch up.",
        ),
        ("table", [header, *(_gap_row(g) for g in analysis.gaps)]),
    ]


def _comparison_row(cmp: ControllerComparison) -> list[str]:
    # without a difference (spend outside the fixed curve's range) the cell says why
    if cmp.diff is None:
        diff = cmp.note
    else:
        ci = f" [{cmp.diff_ci[0]:+.3f}, {cmp.diff_ci[1]:+.3f}]" if cmp.diff_ci else ""
        diff = f"{cmp.diff:+.3f}" + ci
    return [
        cmp.model,
        cmp.controller,
        "-" if cmp.budget is None else f"{cmp.budget:g} {cmp.unit}",
        f"{format_amount(cmp.spend)} {cmp.unit}",
        f"{cmp.acc:.3f}",
        _fmt(cmp.fixed_acc),
        diff,
        str(cmp.n),
    ]


def _comparison_blocks(analysis: Analysis) -> list[Block]:
    """Adaptive (or tuned) runs against the fixed controller at the same mean spend."""
    if not analysis.comparisons:
        return []
    header = [
        "model",
        "controller",
        "budget",
        "mean spend",
        "accuracy",
        "fixed at same spend",
        "difference [95% CI]",
        "n",
    ]
    return [
        ("h2", "Adaptive vs fixed controller at equal mean spend"),
        (
            "p",
            "Each adaptive (or tuned) run's final accuracy against the fixed-controller curve of the "
            "same model, interpolated (linear in log spend) at the adaptive run's mean spend, both on the "
            "n questions the two runs answered; the CI is a paired bootstrap over those questions.",
        ),
        ("table", [header, *(_comparison_row(cmp) for cmp in analysis.comparisons)]),
    ]


def _failure_blocks(analysis: Analysis) -> list[Block]:
    """Questions left out of every accuracy because they failed and no retry answered them."""
    if not analysis.failures:
        return []
    rows = [["model", "controller", "budget", "failed", "first error"]]
    for failed in analysis.failures:
        budget = "-" if failed.budget is None else f"{failed.budget:g}"
        rows.append(
            [failed.model, failed.controller, budget, str(failed.questions), failed.first_error[:120]]
        )
    return [
        ("h2", "Failed questions"),
        (
            "p",
            "Questions that failed (a backend error, or a bug) and were not answered by a retry "
            "(`sounding bench ... --retry-errors`): they are left out of every accuracy above.",
        ),
        ("table", rows),
    ]


def _anytime_blocks(analysis: Analysis) -> list[Block]:
    if not analysis.anytime:
        return []
    a = analysis.anytime
    return [
        ("h2", "Anytime answers vs independent runs"),
        (
            "p",
            f"{a['agreed']} of {a['checked']} independent runs at smaller depths gave the same "
            "(normalised) answer as the anytime answer of the deeper run.",
        ),
    ]


def _figure_blocks(figures: list[str]) -> list[Block]:
    if not figures:
        return []
    return [("h2", "Figures"), *(("img", fig) for fig in figures)]


def build_blocks(analysis: Analysis, figures: list[str]) -> list[Block]:
    """The whole report, section by section, in reading order."""
    return [
        *_intro_blocks(analysis),
        *_provenance_blocks(analysis.manifest or {}),
        *_accuracy_blocks(analysis),
        *_group_blocks(analysis),
        *frontier_blocks(analysis),
        *_fit_blocks(analysis),
        *_exchange_blocks(analysis),
        *_gap_blocks(analysis),
        *_comparison_blocks(analysis),
        *_failure_blocks(analysis),
        *_anytime_blocks(analysis),
        *_figure_blocks(figures),
    ]


def frontier_blocks(analysis: Analysis) -> list[Block]:
    """Search against reasoning: each axis alone (slope per e-fold of compute, with its CI) and the
    iso-compute frontier, per family of grid runs."""
    from sounding.evals.frontier import Frontier

    blocks: list[Block] = []
    for f in analysis.frontiers:
        assert isinstance(f, Frontier)
        blocks.append(("h2", f"Search against reasoning: {f.model}, {f.suite.split(':')[0]}"))
        blocks.append(
            (
                "p",
                f"{f.questions} questions with every reading of the grid (depth x think x samples, read "
                "off one run per question). Each axis alone: search = depth at think 0 and 1 sample; "
                "thinking = thinking caps at depth 0 and 1 sample; samples = voted answer samples at "
                "depth 0, think 0. Slope = accuracy gained per e-fold of mean compute (linear in log), "
                "95% bootstrap CI over questions; split-half = share of 200 random half-splits of the "
                "questions in which both halves' slopes keep its sign (how widely the sample shares it).",
            )
        )
        rows = [
            [
                "axis",
                "compute",
                "points",
                "slope per e-fold (95% CI)",
                "split-half",
                "R²",
                "peaks at",
                "peak acc.",
            ]
        ]
        for fit in f.fits:
            ci = f" [{fit.slope_ci[0]:+.3f}, {fit.slope_ci[1]:+.3f}]" if fit.slope_ci else ""
            slope = "-" if fit.slope is None else f"{fit.slope:+.3f}{ci}"
            half = "-" if fit.split_half is None else f"{fit.split_half:.2f}"
            rows.append(
                [
                    fit.axis,
                    fit.unit,
                    str(fit.points),
                    slope,
                    half,
                    _fmt(fit.r2),
                    fit.best,
                    f"{fit.best_acc:.3f}",
                ]
            )
        blocks.append(("table", rows))
        front = {s.label: s for s in f.settings}
        rows = [["setting (depth, think, samples)", "token-eq.", "FLOPs", "searches", "accuracy (95% CI)"]]
        for label in f.envelope:
            s = front[label]
            rows.append(
                [
                    label,
                    format_amount(s.tokens),
                    format_amount(s.flops),
                    f"{s.searches:.2f}",
                    f"{s.acc:.3f} [{s.ci[0]:.3f}, {s.ci[1]:.3f}]",
                ]
            )
        blocks.append(
            ("p", "The iso-compute frontier (token-equivalents): the settings no cheaper setting matches.")
        )
        blocks.append(("table", rows))
        rows = [["setting", "token-eq.", "accuracy (95% CI)", "on frontier"]]
        for s in sorted(f.settings, key=lambda s: s.tokens):
            rows.append(
                [
                    s.label,
                    format_amount(s.tokens),
                    f"{s.acc:.3f} [{s.ci[0]:.3f}, {s.ci[1]:.3f}]",
                    "yes" if s.label in f.envelope else "",
                ]
            )
        blocks.append(("p", "Every setting of the grid, cheapest first."))
        blocks.append(("table", rows))
        if f.composition and not f.composition[0].search_failed:
            blocks.append(("p", "Composition: search alone answered every question at some depth."))
        elif f.composition:
            blocks.append(
                (
                    "p",
                    "Composition: on the questions search alone never answered (wrong at every depth "
                    "with think 0 and one sample), the accuracy of reasoning settings fixed in advance "
                    "(not the grid's best, which chance would favour), with a 95% bootstrap CI over those "
                    "questions; per question type and hop count where the suite has them.",
                )
            )
            rows = [["questions", "search never answered", *[r.setting for r in f.composition[0].rescues]]]
            for c in f.composition:
                cells = {r.setting: f"{r.share:.3f} [{r.ci[0]:.3f}, {r.ci[1]:.3f}]" for r in c.rescues}
                rows.append(
                    [
                        f"{c.group} ({c.questions})",
                        str(c.search_failed),
                        *[cells.get(r.setting, "-") for r in f.composition[0].rescues],
                    ]
                )
            blocks.append(("table", rows))
    return blocks + split_exchange_blocks(analysis)


def split_exchange_blocks(analysis: Analysis) -> list[Block]:
    """Best split against best split between two models' grids on one suite, priced in FLOPs."""
    from sounding.evals.frontier import SplitExchange

    blocks: list[Block] = []
    for x in analysis.split_exchanges:
        assert isinstance(x, SplitExchange)
        blocks.append(
            ("h2", f"Best split against best split: {x.small} vs {x.large}, {x.suite.split(':')[0]}")
        )
        blocks.append(
            (
                "p",
                f"{x.questions} questions both models answered at each of the {x.settings} settings both "
                f"grids have. Best of each (most accurate setting): {x.small} {x.small_best} "
                f"{x.small_best_acc:.3f} at {x.small_best_flops:.3g} FLOPs; {x.large} {x.large_best} "
                f"{x.large_best_acc:.3f} at {x.large_best_flops:.3g} FLOPs. Smaller best minus larger "
                f"best: {x.gap:+.3f} [{x.gap_ci[0]:+.3f}, {x.gap_ci[1]:+.3f}] (95% paired bootstrap, "
                "both bests chosen again in each resample). Below, each setting on the larger model's "
                "FLOPs frontier and the cheapest setting of the smaller model at least as accurate; "
                "'reached' is the share of resamples in which one exists.",
            )
        )
        rows = [
            [
                "larger model",
                "FLOPs",
                "accuracy",
                "smaller model's cheapest match",
                "FLOPs",
                "ratio (95% CI)",
                "reached",
            ]
        ]
        for p in x.points:
            ci = f" [{p.ratio_ci[0]:.2f}, {p.ratio_ci[1]:.2f}]" if p.ratio_ci else ""
            rows.append(
                [
                    p.large_setting,
                    format_amount(p.large_flops),
                    f"{p.large_acc:.3f}",
                    p.small_setting or "never",
                    format_amount(p.small_flops),
                    "-" if p.ratio is None else f"{p.ratio:.2f}{ci}",
                    f"{p.reached:.2f}",
                ]
            )
        blocks.append(("table", rows))
    return blocks


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for kind, content in blocks:
        if kind == "h1":
            out.append(f"# {content}\n")
        elif kind == "h2":
            out.append(f"## {content}\n")
        elif kind == "p":
            out.append(f"{content}\n")
        elif kind == "code":
            out.append(f"```\n{content}\n```\n")
        elif kind == "img":
            out.append(f"![{Path(content).stem}]({content})\n")
        elif kind == "table":
            # a cell may hold free text (an error message): its pipes and newlines must not split rows
            header, *rows = [[c.replace("|", "\\|").replace("\n", " ") for c in r] for r in content]
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def to_html(blocks: list[Block]) -> str:
    """The blocks as one standalone HTML page: their Markdown (``to_markdown``) rendered by markdown-it,
    so the page and the .md file can never say different things."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(to_markdown(blocks))
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}pre{background:#f4f4f4;padding:8px}"
        "img{max-width:640px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>sounding report</title><style>{style}</style>"
        f"</head><body>{body}</body></html>"
    )


def write_report(analysis: Analysis, run_dir: Path) -> tuple[Path, Path]:
    figures = sorted(str(p.relative_to(run_dir)) for p in (run_dir / "figures").glob("*.png"))
    blocks = build_blocks(analysis, figures)
    md, page = run_dir / "report.md", run_dir / "report.html"
    md.write_text(to_markdown(blocks))
    page.write_text(to_html(blocks))
    (run_dir / "fits.json").write_text(analysis.model_dump_json(indent=2))
    return md, page
