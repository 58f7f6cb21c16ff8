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

from sounding.evals.fit import collapse_seeds

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
                fits.append(
                    AxisFit(
                        axis=axis, unit=unit, points=len(on), slope=slope, slope_ci=slope_ci, intercept=intercept,
                        r2=r2, best=best.label, best_acc=best.acc,
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
