"""Search against reasoning on one compute axis: each axis alone, fitted, and the iso-compute frontier.

A grid run stores one row per (depth, think, samples) reading of each question (see `evals/sweep.py`).
For each family of runs (one model, suite and setting; fixed controller, no budget) this module reads:

* **the axes alone**: search (depth 0..D at think 0, 1 sample), thinking (think caps at depth 0,
  1 sample) and samples (sample counts at depth 0, think 0), each a curve of accuracy against the mean
  compute it cost, with a linear-in-log fit (acc = a + b ln C) whose slope has a bootstrap CI over
  questions: the measured answer to "does search scale like reasoning?";
* **the iso-compute frontier**: every setting of the grid at its mean compute, and the upper envelope
  (a setting is on it when no cheaper setting is as accurate), with accuracy CIs over questions.

Seeds are averaged per question first (repeated measures), so every CI resamples questions.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from pydantic import BaseModel

from sounding.evals.fit import collapse_seeds, split_half_agreement, split_halves

AXES = ("search", "think", "samples")


class Setting(BaseModel):
    depth: int
    think: int
    samples: int
    n: int
    acc: float
    ci: tuple[float, float]
    tokens: float
    flops: float | None
    searches: float

    @property
    def label(self) -> str:
        return f"d{self.depth} T{self.think} N{self.samples}"

    def axes(self) -> list[str]:
        """Which single-axis curves this setting lies on (the plain closed-book answer is on all three)."""
        on = []
        if self.think == 0 and self.samples == 1:
            on.append("search")
        if self.depth == 0 and self.samples == 1:
            on.append("think")
        if self.depth == 0 and self.think == 0:
            on.append("samples")
        return on


class AxisFit(BaseModel):
    axis: str
    unit: str
    points: int
    slope: float | None
    slope_ci: tuple[float, float] | None
    intercept: float | None
    r2: float | None
    best: str  # the setting where the axis peaks
    best_acc: float
    #: share of random half-splits of the questions in which both halves' slopes keep this sign
    split_half: float | None = None


class Rescue(BaseModel):
    """One reasoning setting on the questions search alone never answered."""

    setting: str
    share: float  # mean accuracy of the setting on those questions
    ci: tuple[float, float]


class Composition(BaseModel):
    """Do thinking tokens or samples move the questions that search alone did not? ``search_failed``
    questions (of ``questions`` in the group) are wrong at every depth of the search axis (think 0,
    one sample); each pre-specified setting's accuracy on them, with a bootstrap CI over them. The
    settings are fixed in advance (the deepest search with the most thinking, with the most samples,
    with both; and both without search), not the best of the grid, so chance cannot pick them."""

    group: str  # "all", or a question type / number of hops
    questions: int
    search_failed: int
    rescues: list[Rescue]


class Frontier(BaseModel):
    model: str
    suite: str
    family: str
    questions: int
    settings: list[Setting]
    envelope: list[str]  # labels of the settings on the iso-compute frontier (tokens), cheapest first
    envelope_flops: list[str]
    fits: list[AxisFit]
    composition: list[Composition] = []


def _question_matrix(
    rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]
) -> dict[tuple[str, str, str], dict[str, dict[tuple[int, int, int], dict[str, Any]]]]:
    from sounding.evals.sweep import setting_identity

    raw: dict[tuple[str, str, str], dict[str, dict[tuple[int, int, int], list[dict[str, Any]]]]] = (
        defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    )
    for row in rows:
        cfg = runs[row["run_key"]]
        if cfg.get("controller") != "fixed" or cfg.get("budget") is not None:
            continue
        family = (cfg["model"], cfg["suite"], setting_identity(cfg))
        raw[family][row["question_id"]][(row["round"], row.get("think", 0), row.get("samples", 1))].append(
            row
        )
    return {
        f: {q: {s: collapse_seeds(rs) for s, rs in by.items()} for q, by in qs.items()}
        for f, qs in raw.items()
    }


def _means(
    matrix: dict[str, dict[tuple[int, int, int], dict[str, Any]]],
    ids: list[str],
    setting: tuple[int, int, int],
    metric: str,
) -> tuple[float, float, float | None, float]:
    rows = [matrix[q][setting] for q in ids if setting in matrix[q]]
    acc = float(np.mean([r[metric] for r in rows]))
    tokens = float(
        np.mean([r["cost"].get("tokens", r["prompt_tokens"] + r["completion_tokens"]) for r in rows])
    )
    flops = (
        float(np.mean([r["cost"]["flops"] for r in rows]))
        if all("flops" in r["cost"] for r in rows)
        else None
    )
    searches = float(np.mean([r["searches"] for r in rows]))
    return acc, tokens, flops, searches


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    b, a = np.polyfit(np.log(x), y, 1)
    return float(b), float(a)


def _envelope(settings: list[Setting], unit: str) -> list[str]:
    def cost(s: Setting) -> float:
        return s.tokens if unit == "tokens" else (s.flops or 0.0)

    best = -1.0
    on = []
    for s in sorted(settings, key=lambda s: (cost(s), -s.acc)):
        if s.acc > best + 1e-12:
            on.append(s.label)
            best = s.acc
    return on


def _group_of(row: dict[str, Any]) -> list[str]:
    groups = []
    if row.get("qtype"):
        groups.append(f"type {row['qtype']}")
    if row.get("hops"):
        groups.append(f"{row['hops']} hops")
    return groups


def composition(
    matrix: dict[str, dict[tuple[int, int, int], dict[str, Any]]],
    ids: list[str],
    grid: list[tuple[int, int, int]],
    metric: str,
    *,
    n_boot: int = 500,
    seed: int = 11,
) -> list[Composition]:
    """`Composition` for all questions and for each question type / hop count (see the class)."""
    depth, think, samples = (max(g[i] for g in grid) for i in range(3))
    wanted = [(depth, think, 1), (depth, 0, samples), (depth, think, samples), (0, think, samples)]
    prespecified = list(dict.fromkeys(s for s in wanted if s in grid and (s[1] > 0 or s[2] > 1)))
    search_axis = [g for g in grid if g[1] == 0 and g[2] == 1]
    if not prespecified or not search_axis:
        return []
    groups: dict[str, list[str]] = {"all": list(ids)}
    for q in ids:
        for g in _group_of(matrix[q][grid[0]]):
            groups.setdefault(g, []).append(q)
    rng = np.random.default_rng(seed)
    out = []
    for group, members in groups.items():
        failed = [q for q in members if max(matrix[q][g][metric] or 0.0 for g in search_axis) == 0.0]
        rescues = []
        for s in prespecified:
            values = np.array([matrix[q][s][metric] or 0.0 for q in failed], dtype=float)
            if not len(values):
                continue
            boots = [float(values[rng.integers(0, len(values), len(values))].mean()) for _ in range(n_boot)]
            rescues.append(
                Rescue(
                    setting=f"d{s[0]} T{s[1]} N{s[2]}",
                    share=float(values.mean()),
                    ci=(float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))),
                )
            )
        out.append(
            Composition(group=group, questions=len(members), search_failed=len(failed), rescues=rescues)
        )
    return out


def frontiers(
    rows: list[dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    *,
    metric: str = "cover_em",
    n_boot: int = 500,
    seed: int = 7,
) -> list[Frontier]:
    """One `Frontier` per family of fixed-controller grid runs that read more than the search axis."""
    out = []
    for (model, suite, family), matrix in sorted(_question_matrix(rows, runs).items()):
        grid = sorted({s for q in matrix.values() for s in q})
        if all(t == 0 and n == 1 for _, t, n in grid):
            continue  # a search-only sweep: the ordinary report covers it
        # only questions with every reading, so every setting is measured on the same questions
        ids = sorted(q for q, by in matrix.items() if all(s in by for s in grid))
        if len(ids) < 2:
            continue
        rng = np.random.default_rng(seed)
        boots = [[ids[i] for i in rng.integers(0, len(ids), len(ids))] for _ in range(n_boot)]
        splits = split_halves(ids, 200) if len(ids) >= 4 else []
        settings = []
        boot_means: dict[tuple[int, int, int], list[tuple[float, float, float | None]]] = {}
        for s in grid:
            acc, tokens, flops, searches = _means(matrix, ids, s, metric)
            resampled = [_means(matrix, b, s, metric)[:3] for b in boots]
            boot_means[s] = resampled
            accs = [r[0] for r in resampled]
            ci = (float(np.percentile(accs, 2.5)), float(np.percentile(accs, 97.5))) if accs else (acc, acc)
            settings.append(
                Setting(
                    depth=s[0], think=s[1], samples=s[2], n=len(ids), acc=acc, ci=ci,
                    tokens=tokens, flops=flops, searches=searches,
                )
            )  # fmt: skip
        fits = []
        for axis in AXES:
            on = [(i, st) for i, st in enumerate(settings) if axis in st.axes()]
            if len(on) < 2:
                continue
            best = max(on, key=lambda p: (p[1].acc, -p[1].tokens))[1]
            for unit in ("tokens", "flops"):
                if unit == "flops" and any(st.flops is None for _, st in on):
                    continue
                x = np.array([st.tokens if unit == "tokens" else st.flops for _, st in on], dtype=float)
                y = np.array([st.acc for _, st in on])
                if len(np.unique(x)) < 2 or np.any(x <= 0):
                    continue
                slope, intercept = _slope(x, y)
                pred = intercept + slope * np.log(x)
                total = float(np.sum((y - y.mean()) ** 2))
                r2 = None if total < 1e-12 else 1 - float(np.sum((y - pred) ** 2)) / total
                keys = [grid[i] for i, _ in on]
                slopes = []
                for j in range(len(boots)):
                    xb = np.array([boot_means[k][j][1 if unit == "tokens" else 2] for k in keys], dtype=float)
                    yb = np.array([boot_means[k][j][0] for k in keys])
                    if len(np.unique(xb)) >= 2 and np.all(xb > 0):
                        slopes.append(_slope(xb, yb)[0])
                slope_ci = (
                    (float(np.percentile(slopes, 2.5)), float(np.percentile(slopes, 97.5)))
                    if slopes
                    else None
                )
                halves = [
                    tuple(
                        {i: _means(matrix, half, k, metric)[0] for i, k in enumerate(keys)} for half in pair
                    )
                    for pair in splits
                ]
                stable = split_half_agreement(x, list(range(len(keys))), slope, halves)  # type: ignore[arg-type]
                fits.append(
                    AxisFit(
                        axis=axis, unit=unit, points=len(on), slope=slope, slope_ci=slope_ci, intercept=intercept,
                        r2=r2, best=best.label, best_acc=best.acc, split_half=stable,
                    )
                )  # fmt: skip
        out.append(
            Frontier(
                model=model,
                suite=suite,
                family=family,
                questions=len(ids),
                settings=settings,
                envelope=_envelope(settings, "tokens"),
                envelope_flops=_envelope(settings, "flops") if all(s.flops for s in settings) else [],
                fits=fits,
                composition=composition(matrix, ids, grid, metric, n_boot=n_boot),
            )
        )
    return out


class ExchangePoint(BaseModel):
    """One setting on the larger model's FLOPs frontier and the cheapest setting of the smaller model
    that is at least as accurate on the same questions."""

    large_setting: str
    large_flops: float
    large_acc: float
    small_setting: str | None  # None: no setting of the smaller model reaches it
    small_flops: float | None
    ratio: float | None  # small_flops / large_flops
    ratio_ci: tuple[float, float] | None  # over the resamples in which the smaller model reaches it
    reached: float  # share of bootstrap resamples in which the smaller model reaches it


class SplitExchange(BaseModel):
    """Best split against best split: two models' grids on one suite, on the questions both answered at
    every setting both grids have. ``gap`` is the smaller model's best setting minus the larger
    model's best, with both bests chosen again in every bootstrap resample, so the CI carries the
    selection. ``points`` prices the larger model's FLOPs frontier in the smaller model's FLOPs."""

    suite: str
    small: str
    large: str
    questions: int
    settings: int
    small_best: str
    small_best_acc: float
    small_best_flops: float
    large_best: str
    large_best_acc: float
    large_best_flops: float
    gap: float
    gap_ci: tuple[float, float]
    points: list[ExchangePoint]
    #: every shared setting of each model on the shared questions, bootstrap CIs (what the figure draws)
    small_settings: list[Setting] = []
    large_settings: list[Setting] = []


Matrix = dict[str, dict[tuple[int, int, int], dict[str, Any]]]


def _label(s: tuple[int, int, int]) -> str:
    return f"d{s[0]} T{s[1]} N{s[2]}"


def _table(matrix: Matrix, ids: list[str], grid: list[tuple[int, int, int]], metric: str) -> np.ndarray:
    """(settings x 2): mean accuracy and mean FLOPs of each setting on ``ids``."""
    return np.array([_means(matrix, ids, s, metric)[::2] for s in grid], dtype=float)


def _cheapest_reaching(table: np.ndarray, target: float) -> int | None:
    reaching = np.flatnonzero(table[:, 0] >= target - 1e-12)
    return None if not len(reaching) else int(reaching[np.argmin(table[reaching, 1])])


def split_exchanges(
    rows: list[dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    *,
    metric: str = "cover_em",
    n_boot: int = 500,
    seed: int = 13,
) -> list[SplitExchange]:
    """`SplitExchange` for every pair of models whose reasoning grids share a suite (smaller first, by
    parameter count); FLOPs are the only unit both models' costs share."""
    from sounding.evals.fit import model_size

    families = [(k, m) for k, m in sorted(_question_matrix(rows, runs).items())]
    out = []
    for (large_model, suite, _), large in families:
        for (small_model, small_suite, _), small in families:
            if small_suite != suite or model_size(small_model) >= model_size(large_model):
                continue
            grid = sorted({s for q in large.values() for s in q} & {s for q in small.values() for s in q})
            ids = sorted(
                q for q in set(large) & set(small) if all(s in large[q] and s in small[q] for s in grid)
            )
            if len(ids) < 2 or len(grid) < 2:
                continue
            if not all(
                "flops" in large[q][s]["cost"] and "flops" in small[q][s]["cost"] for q in ids for s in grid
            ):
                continue
            lt, st = _table(large, ids, grid, metric), _table(small, ids, grid, metric)
            # the larger model's FLOPs frontier: settings no cheaper setting of it matches
            frontier, best = [], -1.0
            for i in sorted(range(len(grid)), key=lambda i: (lt[i, 1], -lt[i, 0])):
                if lt[i, 0] > best + 1e-12:
                    frontier.append(i)
                    best = lt[i, 0]
            rng = np.random.default_rng(seed)
            gaps: list[float] = []
            ratios: dict[int, list[float]] = {i: [] for i in frontier}
            reached: dict[int, int] = {i: 0 for i in frontier}
            boot_accs: dict[str, list[np.ndarray]] = {"small": [], "large": []}
            for _ in range(n_boot):
                b = [ids[j] for j in rng.integers(0, len(ids), len(ids))]
                lb, sb = _table(large, b, grid, metric), _table(small, b, grid, metric)
                boot_accs["large"].append(lb[:, 0])
                boot_accs["small"].append(sb[:, 0])
                gaps.append(float(sb[:, 0].max() - lb[:, 0].max()))
                for i in frontier:
                    j = _cheapest_reaching(sb, lb[i, 0])
                    if j is not None:
                        reached[i] += 1
                        ratios[i].append(float(sb[j, 1] / lb[i, 1]))
            points = []
            for i in frontier:
                j = _cheapest_reaching(st, lt[i, 0])
                enough = len(ratios[i]) >= max(10, n_boot // 2)
                points.append(
                    ExchangePoint(
                        large_setting=_label(grid[i]), large_flops=float(lt[i, 1]), large_acc=float(lt[i, 0]),
                        small_setting=None if j is None else _label(grid[j]),
                        small_flops=None if j is None else float(st[j, 1]),
                        ratio=None if j is None else float(st[j, 1] / lt[i, 1]),
                        ratio_ci=(
                            (float(np.percentile(ratios[i], 2.5)), float(np.percentile(ratios[i], 97.5)))
                            if enough else None
                        ),
                        reached=reached[i] / n_boot if n_boot else float(j is not None),
                    )
                )  # fmt: skip
            # the best setting: most accurate, the cheaper one on ties
            li = int(max(range(len(grid)), key=lambda i: (lt[i, 0], -lt[i, 1])))
            si = int(max(range(len(grid)), key=lambda i: (st[i, 0], -st[i, 1])))
            out.append(
                SplitExchange(
                    suite=suite, small=small_model, large=large_model, questions=len(ids), settings=len(grid),
                    small_best=_label(grid[si]), small_best_acc=float(st[si, 0]), small_best_flops=float(st[si, 1]),
                    large_best=_label(grid[li]), large_best_acc=float(lt[li, 0]), large_best_flops=float(lt[li, 1]),
                    gap=float(st[si, 0] - lt[li, 0]),
                    gap_ci=(
                        (float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5)))
                        if gaps else (float(st[si, 0] - lt[li, 0]),) * 2
                    ),
                    points=points,
                    small_settings=_settings_on(small, ids, grid, metric, boot_accs["small"]),
                    large_settings=_settings_on(large, ids, grid, metric, boot_accs["large"]),
                )
            )  # fmt: skip
    return out


def _settings_on(
    matrix: Matrix, ids: list[str], grid: list[tuple[int, int, int]], metric: str, boots: list[np.ndarray]
) -> list[Setting]:
    """Each setting of ``grid`` on ``ids``, with the percentile CI of its accuracy over ``boots``
    (one array of per-setting accuracies per resample)."""
    stacked = np.array(boots) if boots else None
    out = []
    for i, s in enumerate(grid):
        acc, tokens, flops, searches = _means(matrix, ids, s, metric)
        ci = (
            (float(np.percentile(stacked[:, i], 2.5)), float(np.percentile(stacked[:, i], 97.5)))
            if stacked is not None
            else (acc, acc)
        )
        out.append(
            Setting(depth=s[0], think=s[1], samples=s[2], n=len(ids), acc=acc, ci=ci, tokens=tokens,
                    flops=flops, searches=searches)
        )  # fmt: skip
    return out
