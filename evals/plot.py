"""Figures (PNG and SVG, matplotlib): accuracy vs search steps and vs compute with CI bands and fitted
laws per model, and the spend breakdown per round."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from sounding.evals.fit import LAWS, Analysis, Curve, LawFit
from sounding.evals.frontier import AXES, Frontier, Setting, SplitExchange

CLOSED_BOOK_X = 0.5  # where depth 0 (no search) sits on a log axis of search steps


def _label(c: Curve) -> str:
    return c.label


def _save(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    """PNG and SVG, byte for byte the same for the same data: no date in the SVG and a fixed salt for
    its element ids, so a regenerated figure shows in a diff only when what it draws changed."""
    paths = []
    for ext in ("png", "svg"):
        path = out / f"{name}.{ext}"
        with plt.rc_context({"svg.hashsalt": "sounding"}):
            fig.savefig(path, dpi=130, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def _curves_by_suite(analysis: Analysis) -> dict[str, list[Curve]]:
    out: dict[str, list[Curve]] = {}
    for c in analysis.curves:
        # the search axis; reasoning readings are drawn in the frontier figures
        if c.group == "all" and c.think == 0 and c.samples == 1:
            out.setdefault(_suite_slug(c.suite), []).append(c)
    return out


def _suite_slug(suite: str) -> str:
    """A file-name stem for a suite: its name (run keys v2), or kind-file for a v1 ``kind:path``."""
    if ":" not in suite:
        return suite
    kind, path = suite.split(":", 1)
    return f"{kind}-{Path(path).name.split('.')[0]}"


def _axis_xs(c: Curve, axis: str) -> np.ndarray | None:
    """A curve's x values on ``axis``: search steps given (closed book at CLOSED_BOOK_X, as a log axis
    has no 0) or mean spend in a cost unit; None when some point was not priced in that unit."""
    if axis == "steps":
        return np.array(
            [p.steps_given if p.steps_given > 0 else CLOSED_BOOK_X for p in c.points], dtype=float
        )
    if not all(axis in p.cost for p in c.points):
        return None
    return np.array([p.cost[axis] for p in c.points], dtype=float)


def _plot_law(ax: Axes, f: LawFit, xs: np.ndarray, axis: str, color: str) -> None:
    """A fitted law drawn over the curve's searched range and half as far again (the extrapolation)."""
    law, _ = LAWS[f.form]
    positive = xs[xs > (CLOSED_BOOK_X if axis == "steps" else 0)]
    if len(positive) < 2:
        return
    grid = np.geomspace(positive.min(), positive.max() * 1.5, 60)
    style = "-" if f.form == "linear" else "--"
    r2 = "" if f.r2 is None else f", R²={f.r2:.2f}"
    ax.plot(
        grid,
        law(grid, *f.params.values()),
        style,
        color=color,
        alpha=0.8,
        label=f"  {f.form}-in-log fit{r2}",
    )


def _plot_fixed_curve(ax: Axes, c: Curve, xs: np.ndarray, axis: str, color: str) -> None:
    """A fixed-controller curve: its points with the CI band, then its laws fitted on ``axis``."""
    ys = np.array([p.acc for p in c.points])
    lo = np.array([p.ci[0] for p in c.points])
    hi = np.array([p.ci[1] for p in c.points])
    order = np.argsort(xs)
    ax.plot(xs[order], ys[order], "o", color=color, label=_label(c))
    ax.fill_between(xs[order], lo[order], hi[order], color=color, alpha=0.15, linewidth=0)
    for f in c.fits:
        if f.axis == axis:
            _plot_law(ax, f, xs, axis, color)


def _plot_adaptive_runs(ax: Axes, curves: list[Curve], axis: str, first_color: int) -> None:
    """Adaptive/tuned runs choose their own depth: one marker each at their final mean spend (none on
    the steps axis, where they were given no fixed number of steps)."""
    for j, c in enumerate(c for c in curves if c.controller != "fixed"):
        final = c.points[-1] if c.points else None
        if axis == "steps" or final is None or axis not in final.cost:
            continue
        ax.errorbar(
            [final.cost[axis]],
            [final.acc],
            yerr=[[final.acc - final.ci[0]], [final.ci[1] - final.acc]],
            fmt="*",
            markersize=11,
            color=f"C{(first_color + j) % 10}",
            label=_label(c),
        )


def _plot_axis(analysis: Analysis, curves: list[Curve], axis: str, title: str, xlabel: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    fixed = [c for c in curves if c.controller == "fixed"]
    for i, c in enumerate(fixed):
        # the color follows the curve's place among the fixed ones, drawn or not, so that it does not
        # change between the figures of one suite
        xs = _axis_xs(c, axis)
        if xs is not None:
            _plot_fixed_curve(ax, c, xs, axis, f"C{i % 10}")
    _plot_adaptive_runs(ax, curves, axis, len(fixed))
    ax.set_xscale("log")
    if axis == "steps":
        ax.axvline(0.75, color="grey", linewidth=0.5)
        ax.text(
            CLOSED_BOOK_X, ax.get_ylim()[1], "closed\nbook", ha="center", va="top", fontsize=7, color="grey"
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(analysis.metric.replace("_", "-") + " (95% bootstrap CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    return fig


def _plot_spend(curves: list[Curve], title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / max(1, len(curves))
    events = sorted({e for c in curves for p in c.points for e in p.spend_by_event})
    for i, c in enumerate(curves):
        depths = np.array([p.depth for p in c.points], dtype=float)
        bottom = np.zeros(len(c.points))
        for j, e in enumerate(events):
            values = np.array([p.spend_by_event.get(e, 0.0) for p in c.points])
            ax.bar(
                depths + i * width,
                values,
                width,
                bottom=bottom,
                color=f"C{j}",
                alpha=0.5 + 0.5 * (i % 2),
                label=f"{e}" if i == 0 else None,
            )
            bottom += values
        ax.text(depths[-1] + i * width, bottom[-1], c.model, fontsize=6, rotation=90, va="bottom")
    ax.set_xlabel("search depth (rounds)")
    ax.set_ylabel("mean cumulative spend (token-equivalents)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return fig


def make_figures(analysis: Analysis, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for suite, curves in _curves_by_suite(analysis).items():
        paths += _save(
            _plot_axis(
                analysis,
                curves,
                "steps",
                f"{suite}: accuracy vs search steps given",
                "search steps given (depth x breadth; log)",
            ),
            out,
            f"{suite}-acc-vs-steps",
        )
        for unit, label in (
            ("tokens", "mean token-equivalents spent (log)"),
            ("flops", "mean FLOPs spent (log)"),
        ):
            if any(unit in p.cost for c in curves for p in c.points):
                paths += _save(
                    _plot_axis(analysis, curves, unit, f"{suite}: accuracy vs compute ({unit})", label),
                    out,
                    f"{suite}-acc-vs-{unit}",
                )
        paths += _save(
            _plot_spend(
                [c for c in curves if c.controller == "fixed"] or curves,
                f"{suite}: spend by event, per depth",
            ),
            out,
            f"{suite}-spend-per-round",
        )
    return paths


AXIS_STYLE = {"search": ("tab:blue", "o"), "think": ("tab:orange", "s"), "samples": ("tab:green", "^")}


def _plot_frontier(f: Frontier, unit: str) -> plt.Figure:
    """Each axis alone and the iso-compute frontier on one compute axis."""
    fig, ax = plt.subplots(figsize=(7, 4.5))

    def x(s: Setting) -> float:
        return float(s.tokens if unit == "tokens" else (s.flops or 0.0))

    for s in f.settings:
        ax.scatter(x(s), s.acc, color="0.75", s=12, zorder=1)
    for axis in AXES:
        on = sorted((s for s in f.settings if axis in s.axes()), key=x)
        if len(on) < 2:
            continue
        color, marker = AXIS_STYLE[axis]
        ax.errorbar(
            [x(s) for s in on],
            [s.acc for s in on],
            yerr=[[s.acc - s.ci[0] for s in on], [s.ci[1] - s.acc for s in on]],
            color=color,
            marker=marker,
            capsize=2,
            label=f"{axis} alone",
            zorder=3,
        )
    envelope = f.envelope if unit == "tokens" else f.envelope_flops
    front = sorted((s for s in f.settings if s.label in envelope), key=x)
    ax.step([x(s) for s in front], [s.acc for s in front], where="post", color="black", lw=1.2,
            label="iso-compute frontier", zorder=2)  # fmt: skip
    for s in front:
        ax.annotate(s.label, (x(s), s.acc), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("mean token-equivalents spent (log)" if unit == "tokens" else "mean FLOPs spent (log)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{f.model}, {f.suite}: search vs reasoning (n={f.questions})")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def _plot_grid(f: Frontier, second: str) -> plt.Figure | None:
    """Accuracy over depth x think (1 sample) or depth x samples (no thinking), spend in each cell."""
    other = "samples" if second == "think" else "think"
    fixed = 1 if other == "samples" else 0
    cells = [s for s in f.settings if getattr(s, other) == fixed]
    depths = sorted({s.depth for s in cells})
    values = sorted({getattr(s, second) for s in cells})
    if len(values) < 2:
        return None
    grid = np.full((len(values), len(depths)), np.nan)
    spend = np.full_like(grid, np.nan)
    for s in cells:
        i, j = values.index(getattr(s, second)), depths.index(s.depth)
        grid[i, j], spend[i, j] = s.acc, s.tokens
    fig, ax = plt.subplots(figsize=(1.3 * len(depths) + 2, 0.8 * len(values) + 1.5))
    image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
    for i in range(len(values)):
        for j in range(len(depths)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}\n{spend[i, j]:,.0f}", ha="center", va="center",
                        fontsize=7, color="white" if grid[i, j] < np.nanmax(grid) * 0.7 else "black")  # fmt: skip
    ax.set_xticks(range(len(depths)), [str(d) for d in depths])
    ax.set_yticks(range(len(values)), [str(v) for v in values])
    ax.set_xlabel("search depth")
    ax.set_ylabel("thinking tokens" if second == "think" else "answer samples")
    ax.set_title(f"{f.model}: accuracy (and token-eq. spent) by depth x {second}", fontsize=9)
    fig.colorbar(image, ax=ax, label="accuracy")
    return fig


def make_frontier_figures(frontiers: list[Frontier], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for f in frontiers:
        stem = f"{f.model}-{f.suite.split(':')[0]}-{f.family[:6]}"
        for unit in ("tokens", "flops"):
            if unit == "flops" and not f.envelope_flops:
                continue
            paths += _save(_plot_frontier(f, unit), out, f"{stem}-frontier-{unit}")
        for second in ("think", "samples"):
            fig = _plot_grid(f, second)
            if fig is not None:
                paths += _save(fig, out, f"{stem}-grid-depth-x-{second}")
    return paths


def _flops_frontier(settings: list[Setting]) -> list[Setting]:
    """The settings no cheaper setting matches (FLOPs), cheapest first."""
    front: list[Setting] = []
    for s in sorted(settings, key=lambda s: (s.flops or 0.0, -s.acc)):
        if not front or s.acc > front[-1].acc + 1e-12:
            front.append(s)
    return front


def _flops(s: Setting) -> float:
    return float(s.flops or 0.0)  # a split exchange only holds settings priced in FLOPs


def _plot_split_exchange(x: SplitExchange) -> plt.Figure:
    """Both models' grids on the shared questions against FLOPs: every setting, each model's FLOPs
    frontier with CIs, and each model's best setting starred. The horizontal distance between the
    two frontiers at one accuracy is the exchange rate."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for settings, model, color in (
        (x.small_settings, x.small, "tab:blue"),
        (x.large_settings, x.large, "tab:red"),
    ):
        ax.scatter([_flops(s) for s in settings], [s.acc for s in settings], color=color, alpha=0.25, s=14)
        front = _flops_frontier(settings)
        ax.errorbar(
            [_flops(s) for s in front], [s.acc for s in front],
            yerr=[[s.acc - s.ci[0] for s in front], [s.ci[1] - s.acc for s in front]],
            color=color, marker="o", ms=4, capsize=2, drawstyle="steps-post", label=f"{model} frontier",
        )  # fmt: skip
        for s in front:
            ax.annotate(
                s.label, (s.flops or 0.0, s.acc), fontsize=6, xytext=(3, 3), textcoords="offset points"
            )
        best = max(settings, key=lambda s: (s.acc, -(s.flops or 0.0)))
        ax.scatter([_flops(best)], [best.acc], marker="*", s=140, color=color, edgecolor="black", zorder=4,
                   label=f"{model} best: {best.label} ({best.acc:.3f})")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("mean FLOPs spent per question (log)")
    ax.set_ylabel("accuracy")
    ax.set_title(
        f"{x.suite}: best split {x.gap:+.3f} [{x.gap_ci[0]:+.3f}, {x.gap_ci[1]:+.3f}] (n={x.questions})",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def make_exchange_figures(exchanges: list[SplitExchange], out: Path) -> list[Path]:
    """One figure per pair of models on a suite (``SplitExchange`` read before its settings were kept
    has nothing to draw and is skipped)."""
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for x in exchanges:
        if x.small_settings and x.large_settings:
            stem = f"{_suite_slug(x.suite)}-{x.small}-vs-{x.large}-best-split"
            paths += _save(_plot_split_exchange(x), out, stem)
    return paths
