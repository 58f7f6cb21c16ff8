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
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from sounding.evals.fit import collapse_seeds, split_half_agreement, split_halves
from sounding.evals.stats import percentile_ci

AXES = ("search", "think", "samples")


class MeasuredSetting(BaseModel):
    """One setting of a sweep as measured: accuracy with its CI over n questions, and its mean spend."""

    depth: int
    n: int
    acc: float
    ci: tuple[float, float]
    tokens: float
    flops: float | None
    searches: float


class Setting(MeasuredSetting):
    """A setting of the iterative strategy's grid (depth x thinking cap x samples)."""

    think: int
    samples: int

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


SettingKey = tuple[int, int, int]  # (depth, think, samples): one reading of a question
Matrix = dict[str, dict[SettingKey, dict[str, Any]]]  # question -> reading -> its (seed-averaged) row
#: per bootstrap resample of the questions: a setting's mean accuracy, tokens and FLOPs
ResampledMeans = list[tuple[float, float, float | None]]


def _question_matrix(
    rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]
) -> dict[tuple[str, str, str], Matrix]:
    from sounding.evals.sweep import setting_identity

    raw: dict[tuple[str, str, str], dict[str, dict[SettingKey, list[dict[str, Any]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
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
    matrix: Matrix, ids: list[str], setting: SettingKey, metric: str
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


_ci95 = percentile_ci


def _label(s: SettingKey) -> str:
    return f"d{s[0]} T{s[1]} N{s[2]}"


def _resample(ids: list[str], n_boot: int, seed: int) -> list[list[str]]:
    """``n_boot`` bootstrap resamples of ``ids``, from a generator of their own (so a family's or a
    pair's CIs do not depend on what was analysed before it)."""
    rng = np.random.default_rng(seed)
    return [[ids[i] for i in rng.integers(0, len(ids), len(ids))] for _ in range(n_boot)]


def _readings(matrix: Matrix) -> set[SettingKey]:
    """Every reading taken of at least one question of ``matrix``."""
    return {s for by in matrix.values() for s in by}


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


# --- composition -----------------------------------------------------------------------------------


def _prespecified_settings(grid: list[SettingKey]) -> list[SettingKey]:
    """The reasoning settings `composition` reads, fixed before any accuracy is seen: the deepest
    search with the most thinking, with the most samples, with both, and both without search (each
    once, and only those the grid has that do reason)."""
    depth, think, samples = (max(g[i] for g in grid) for i in range(3))
    wanted = [(depth, think, 1), (depth, 0, samples), (depth, think, samples), (0, think, samples)]
    return list(dict.fromkeys(s for s in wanted if s in grid and (s[1] > 0 or s[2] > 1)))


def _question_groups(matrix: Matrix, ids: list[str], reading: SettingKey) -> dict[str, list[str]]:
    """``ids`` as one group "all", then by question type and by number of hops (as ``reading``'s row
    records them; every reading of a question carries the same ones)."""
    groups: dict[str, list[str]] = {"all": list(ids)}
    for q in ids:
        for g in _group_of(matrix[q][reading]):
            groups.setdefault(g, []).append(q)
    return groups


def _rescues(
    matrix: Matrix,
    failed: list[str],
    settings: list[SettingKey],
    metric: str,
    rng: np.random.Generator,
    n_boot: int,
) -> list[Rescue]:
    """Each of ``settings`` on the ``failed`` questions (none when there are none), with a bootstrap
    CI over them drawn from ``rng``."""
    rescues = []
    for s in settings:
        values = np.array([matrix[q][s][metric] or 0.0 for q in failed], dtype=float)
        if not len(values):
            continue
        boots = [float(values[rng.integers(0, len(values), len(values))].mean()) for _ in range(n_boot)]
        rescues.append(Rescue(setting=_label(s), share=float(values.mean()), ci=_ci95(boots)))
    return rescues


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
    prespecified = _prespecified_settings(grid)
    search_axis = [g for g in grid if g[1] == 0 and g[2] == 1]
    if not prespecified or not search_axis:
        return []
    groups = _question_groups(matrix, ids, grid[0])
    # one generator for every group and setting, drawn in order: the CIs are reproducible as a set
    rng = np.random.default_rng(seed)
    out = []
    for group, members in groups.items():
        failed = [q for q in members if max(matrix[q][g][metric] or 0.0 for g in search_axis) == 0.0]
        rescues = _rescues(matrix, failed, prespecified, metric, rng, n_boot)
        out.append(
            Composition(group=group, questions=len(members), search_failed=len(failed), rescues=rescues)
        )
    return out


# --- the axes alone and the iso-compute frontier ----------------------------------------------------


@dataclass(frozen=True)
class _Family:
    """One family's grid on the questions that have every reading of it, with the question resamples
    and half-splits that all of its CIs and split-half checks share."""

    matrix: Matrix
    ids: list[str]
    grid: list[SettingKey]
    metric: str
    boots: list[list[str]]
    splits: list[tuple[list[str], list[str]]]


def _measured_settings(family: _Family) -> tuple[list[Setting], dict[SettingKey, ResampledMeans]]:
    """Each setting of the grid with its accuracy CI, and its means in every resample (the axis fits
    refit their slopes on those)."""
    settings = []
    resampled_means: dict[SettingKey, ResampledMeans] = {}
    for s in family.grid:
        acc, tokens, flops, searches = _means(family.matrix, family.ids, s, family.metric)
        resampled = [_means(family.matrix, b, s, family.metric)[:3] for b in family.boots]
        resampled_means[s] = resampled
        accs = [r[0] for r in resampled]
        ci = _ci95(accs) if accs else (acc, acc)
        settings.append(
            Setting(
                depth=s[0], think=s[1], samples=s[2], n=len(family.ids), acc=acc, ci=ci,
                tokens=tokens, flops=flops, searches=searches,
            )
        )  # fmt: skip
    return settings, resampled_means


def _r_squared(x: np.ndarray, y: np.ndarray, slope: float, intercept: float) -> float | None:
    """R² of the linear-in-log fit; None when accuracy does not vary (nothing to explain)."""
    pred = intercept + slope * np.log(x)
    total = float(np.sum((y - y.mean()) ** 2))
    return None if total < 1e-12 else 1 - float(np.sum((y - pred) ** 2)) / total


def _resampled_slope_ci(
    resampled_means: dict[SettingKey, ResampledMeans], keys: list[SettingKey], unit: str, n_resamples: int
) -> tuple[float, float] | None:
    """Percentile CI of the slope refitted in every resample; a resample whose costs do not spread
    over two positive values has no slope and is left out (None when none has one)."""
    cost_at = 1 if unit == "tokens" else 2
    slopes = []
    for j in range(n_resamples):
        xb = np.array([resampled_means[k][j][cost_at] for k in keys], dtype=float)
        yb = np.array([resampled_means[k][j][0] for k in keys])
        if len(np.unique(xb)) >= 2 and np.all(xb > 0):
            slopes.append(_slope(xb, yb)[0])
    return _ci95(slopes) if slopes else None


def _split_half_stability(
    family: _Family, keys: list[SettingKey], x: np.ndarray, slope: float
) -> float | None:
    """Share of the family's half-splits of the questions in which both halves keep ``slope``'s sign."""
    halves = [
        tuple(
            {i: _means(family.matrix, half, k, family.metric)[0] for i, k in enumerate(keys)} for half in pair
        )
        for pair in family.splits
    ]
    return split_half_agreement(x, list(range(len(keys))), slope, halves)  # type: ignore[arg-type]


def _axis_fit(
    family: _Family,
    axis: str,
    unit: str,
    on: list[tuple[int, Setting]],
    resampled_means: dict[SettingKey, ResampledMeans],
) -> AxisFit | None:
    """The linear-in-log fit of accuracy against ``unit`` along the settings ``on`` one axis (each with
    its index in the grid); None when a setting has no cost in that unit, or the costs do not spread
    over two positive values."""
    if unit == "flops" and any(st.flops is None for _, st in on):
        return None
    x = np.array([st.tokens if unit == "tokens" else st.flops for _, st in on], dtype=float)
    y = np.array([st.acc for _, st in on])
    if len(np.unique(x)) < 2 or np.any(x <= 0):
        return None
    slope, intercept = _slope(x, y)
    r2 = _r_squared(x, y, slope, intercept)
    keys = [family.grid[i] for i, _ in on]
    slope_ci = _resampled_slope_ci(resampled_means, keys, unit, len(family.boots))
    stable = _split_half_stability(family, keys, x, slope)
    best = max(on, key=lambda p: (p[1].acc, -p[1].tokens))[1]
    return AxisFit(
        axis=axis, unit=unit, points=len(on), slope=slope, slope_ci=slope_ci, intercept=intercept,
        r2=r2, best=best.label, best_acc=best.acc, split_half=stable,
    )  # fmt: skip


def _axis_fits(
    family: _Family, settings: list[Setting], resampled_means: dict[SettingKey, ResampledMeans]
) -> list[AxisFit]:
    """Per axis with two settings or more, its fit in tokens and (when every setting has them) FLOPs."""
    fits = []
    for axis in AXES:
        on = [(i, st) for i, st in enumerate(settings) if axis in st.axes()]
        if len(on) < 2:
            continue
        for unit in ("tokens", "flops"):
            fit = _axis_fit(family, axis, unit, on, resampled_means)
            if fit is not None:
                fits.append(fit)
    return fits


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
    for (model, suite, family_name), matrix in sorted(_question_matrix(rows, runs).items()):
        grid = sorted(_readings(matrix))
        if all(t == 0 and n == 1 for _, t, n in grid):
            continue  # a search-only sweep: the ordinary report covers it
        # only questions with every reading, so every setting is measured on the same questions
        ids = sorted(q for q, by in matrix.items() if all(s in by for s in grid))
        if len(ids) < 2:
            continue
        family = _Family(
            matrix=matrix,
            ids=ids,
            grid=grid,
            metric=metric,
            boots=_resample(ids, n_boot, seed),
            splits=split_halves(ids, 200) if len(ids) >= 4 else [],
        )
        settings, resampled_means = _measured_settings(family)
        out.append(
            Frontier(
                model=model,
                suite=suite,
                family=family_name,
                questions=len(ids),
                settings=settings,
                envelope=_envelope(settings, "tokens"),
                envelope_flops=_envelope(settings, "flops") if all(s.flops for s in settings) else [],
                fits=_axis_fits(family, settings, resampled_means),
                composition=composition(matrix, ids, grid, metric, n_boot=n_boot),
            )
        )
    return out


# --- best split against best split, across models ---------------------------------------------------


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


def _table(matrix: Matrix, ids: list[str], grid: list[SettingKey], metric: str) -> np.ndarray:
    """(settings x 2): mean accuracy and mean FLOPs of each setting on ``ids``."""
    return np.array([_means(matrix, ids, s, metric)[::2] for s in grid], dtype=float)


def _cheapest_reaching(table: np.ndarray, target: float) -> int | None:
    reaching = np.flatnonzero(table[:, 0] >= target - 1e-12)
    return None if not len(reaching) else int(reaching[np.argmin(table[reaching, 1])])


def _best_setting(table: np.ndarray) -> int:
    """The row of ``table`` (see `_table`) of the most accurate setting, the cheaper one on ties."""
    return int(max(range(len(table)), key=lambda i: (table[i, 0], -table[i, 1])))


def _flops_frontier(table: np.ndarray) -> list[int]:
    """The rows of ``table`` (see `_table`) on its FLOPs frontier, cheapest first: the settings no
    cheaper setting matches."""
    frontier, best = [], -1.0
    for i in sorted(range(len(table)), key=lambda i: (table[i, 1], -table[i, 0])):
        if table[i, 0] > best + 1e-12:
            frontier.append(i)
            best = table[i, 0]
    return frontier


def _shared_questions(small: Matrix, large: Matrix, grid: list[SettingKey]) -> list[str]:
    """The questions both models read at every setting of ``grid``, sorted."""
    return sorted(q for q in set(large) & set(small) if all(s in large[q] and s in small[q] for s in grid))


def _priced_in_flops(small: Matrix, large: Matrix, ids: list[str], grid: list[SettingKey]) -> bool:
    """Whether every reading of both models on ``ids`` and ``grid`` has a FLOPs cost."""
    return all("flops" in large[q][s]["cost"] and "flops" in small[q][s]["cost"] for q in ids for s in grid)


@dataclass
class _ExchangeResamples:
    """What the bootstrap of one pair of models collects, resample by resample."""

    #: the smaller model's best accuracy minus the larger model's, both bests chosen in the resample
    gaps: list[float]
    #: per frontier setting (a row of the tables): smaller / larger model's FLOPs, when it is reached
    ratios: dict[int, list[float]]
    #: per frontier setting: in how many resamples the smaller model reaches its accuracy
    reached: dict[int, int]
    #: per resample, each setting's accuracy for the smaller and the larger model
    small_accs: list[np.ndarray]
    large_accs: list[np.ndarray]


def _resample_exchange(
    small: Matrix,
    large: Matrix,
    ids: list[str],
    grid: list[SettingKey],
    metric: str,
    frontier: list[int],
    *,
    n_boot: int,
    seed: int,
) -> _ExchangeResamples:
    """The bootstrap over the shared questions: both models' tables, the gap between their bests and
    the price of the larger model's ``frontier`` settings in the smaller model, per resample."""
    out = _ExchangeResamples(
        gaps=[],
        ratios={i: [] for i in frontier},
        reached={i: 0 for i in frontier},
        small_accs=[],
        large_accs=[],
    )
    for b in _resample(ids, n_boot, seed):
        lb, sb = _table(large, b, grid, metric), _table(small, b, grid, metric)
        out.large_accs.append(lb[:, 0])
        out.small_accs.append(sb[:, 0])
        out.gaps.append(float(sb[:, 0].max() - lb[:, 0].max()))
        for i in frontier:
            j = _cheapest_reaching(sb, lb[i, 0])
            if j is not None:
                out.reached[i] += 1
                out.ratios[i].append(float(sb[j, 1] / lb[i, 1]))
    return out


def _exchange_point(
    grid: list[SettingKey],
    i: int,
    large_table: np.ndarray,
    small_table: np.ndarray,
    resamples: _ExchangeResamples,
    n_boot: int,
) -> ExchangePoint:
    """The larger model's setting ``i`` (on its FLOPs frontier) priced in the smaller model's FLOPs."""
    lt, st = large_table, small_table
    j = _cheapest_reaching(st, lt[i, 0])
    ratios = resamples.ratios[i]
    # the ratios come only from the resamples that reach the setting: too few of them, and no CI
    enough = len(ratios) >= max(10, n_boot // 2)
    return ExchangePoint(
        large_setting=_label(grid[i]), large_flops=float(lt[i, 1]), large_acc=float(lt[i, 0]),
        small_setting=None if j is None else _label(grid[j]),
        small_flops=None if j is None else float(st[j, 1]),
        ratio=None if j is None else float(st[j, 1] / lt[i, 1]),
        ratio_ci=_ci95(ratios) if enough else None,
        reached=resamples.reached[i] / n_boot if n_boot else float(j is not None),
    )  # fmt: skip


def _split_exchange(
    suite: str,
    small_model: str,
    small: Matrix,
    large_model: str,
    large: Matrix,
    *,
    metric: str,
    n_boot: int,
    seed: int,
) -> SplitExchange | None:
    """`SplitExchange` of two models' grids on one suite; None when they share fewer than two
    settings or questions, or a shared reading has no FLOPs cost."""
    grid = sorted(_readings(large) & _readings(small))
    ids = _shared_questions(small, large, grid)
    if len(ids) < 2 or len(grid) < 2 or not _priced_in_flops(small, large, ids, grid):
        return None
    lt, st = _table(large, ids, grid, metric), _table(small, ids, grid, metric)
    frontier = _flops_frontier(lt)
    resamples = _resample_exchange(small, large, ids, grid, metric, frontier, n_boot=n_boot, seed=seed)
    points = [_exchange_point(grid, i, lt, st, resamples, n_boot) for i in frontier]
    li, si = _best_setting(lt), _best_setting(st)
    gap = float(st[si, 0] - lt[li, 0])
    return SplitExchange(
        suite=suite, small=small_model, large=large_model, questions=len(ids), settings=len(grid),
        small_best=_label(grid[si]), small_best_acc=float(st[si, 0]), small_best_flops=float(st[si, 1]),
        large_best=_label(grid[li]), large_best_acc=float(lt[li, 0]), large_best_flops=float(lt[li, 1]),
        gap=gap,
        gap_ci=_ci95(resamples.gaps) if resamples.gaps else (gap, gap),
        points=points,
        small_settings=_settings_on(small, ids, grid, metric, resamples.small_accs),
        large_settings=_settings_on(large, ids, grid, metric, resamples.large_accs),
    )  # fmt: skip


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
            exchange = _split_exchange(
                suite, small_model, small, large_model, large, metric=metric, n_boot=n_boot, seed=seed
            )
            if exchange is not None:
                out.append(exchange)
    return out


def _settings_on(
    matrix: Matrix, ids: list[str], grid: list[SettingKey], metric: str, boots: list[np.ndarray]
) -> list[Setting]:
    """Each setting of ``grid`` on ``ids``, with the percentile CI of its accuracy over ``boots``
    (one array of per-setting accuracies per resample)."""
    stacked = np.array(boots) if boots else None
    out = []
    for i, s in enumerate(grid):
        acc, tokens, flops, searches = _means(matrix, ids, s, metric)
        ci = _ci95(stacked[:, i]) if stacked is not None else (acc, acc)
        out.append(
            Setting(depth=s[0], think=s[1], samples=s[2], n=len(ids), acc=acc, ci=ci, tokens=tokens,
                    flops=flops, searches=searches)
        )  # fmt: skip
    return out
