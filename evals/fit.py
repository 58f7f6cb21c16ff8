"""Scaling-law fits over a run's result rows.

For every curve (model x suite x controller x breadth x budget, optionally per question type) the
points are the depths of the sweep: accuracy with a bootstrap CI over questions, the search steps
*given* (depth x breadth) and the spend *realised* in every cost unit. Two laws are fitted against
log(search steps given) and against log(mean compute realised) in each unit:

* linear-in-log:   acc = a + b * ln C
* logistic-in-log: acc = 1 / (1 + exp(-(alpha + beta * ln C)))   (saturating)

with R², the held-out error of a fit on all but the largest budget predicting the largest, and
percentile bootstrap CIs of the parameters (resampling questions). The exchange rate compares models
on one compute axis: how much compute the smaller model needs to reach the larger model's accuracy.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections import defaultdict
from typing import Any

import numpy as np
from pydantic import BaseModel
from rich.table import Table
from scipy.optimize import curve_fit
from scipy.special import expit

from sounding.evals.stats import percentile_ci
from sounding.tools.llm.registry import EMBEDDED_MODELS

UNITS = ("tokens", "flops", "usd", "latency")


class Point(BaseModel):
    depth: int
    steps_given: int
    n: int
    acc: float
    ci: tuple[float, float]
    searches: float
    tokens: float
    cost: dict[str, float]
    llm_calls: float
    spend_by_event: dict[str, float]
    recall: float | None
    metrics: dict[str, float] = {}  # mean em / f1 / cover_em (/ judge) at this depth, beside ``acc``


class LawFit(BaseModel):
    form: str
    axis: str
    params: dict[str, float]
    params_ci: dict[str, tuple[float, float]]
    r2: float | None
    holdout_error: float | None
    holdout_x: float | None
    n_points: int
    #: How widely the trend is shared: the share of random half-splits of the questions in which the
    #: slope b fitted on *each* half has the sign of the whole curve's (linear law only). 1.0: every
    #: half shows the trend; lower: it rests on some of the questions (pure noise gives ~0.5-0.8). It
    #: cannot see past its sample: a check on other questions can (issue 16's sealed check).
    split_half: float | None = None


class Curve(BaseModel):
    model: str
    suite: str
    controller: str
    breadth: int
    budget: float | None
    unit: str
    group: str
    run_keys: list[str]
    points: list[Point]
    fits: list[LawFit]
    #: The reasoning reading this curve is at (thinking cap, answer samples voted).
    think: int = 0
    samples: int = 1
    #: Hash of every other setting (backend, corpus, k, read, prompts, temperature...): runs that
    #: differ in any of them are never merged into one curve.
    setting: str = ""
    #: Settings that tell this curve apart from others of the same model/suite/controller, for labels.
    distinct: dict[str, Any] = {}
    seeds: int = 1

    @property
    def label(self) -> str:
        parts = [self.model, self.controller, f"B{self.breadth}"]
        if self.think or self.samples > 1:
            parts.append(f"T{self.think} N{self.samples}")
        if self.budget is not None:
            parts.append(f"@ {self.budget:g} {self.unit}")
        parts += [f"{k}={v}" for k, v in sorted(self.distinct.items())]
        return " ".join(parts)


class Exchange(BaseModel):
    """At one depth of the larger model, on the ``n`` questions both models answered: the spend on
    ``axis`` ("searches" or a cost unit) the smaller model needs to match the larger one's accuracy."""

    small: str
    large: str
    axis: str
    group: str
    depth: int
    n: int
    large_compute: float
    large_acc: float
    small_compute: float | None
    ratio: float | None
    ratio_ci: tuple[float, float] | None
    note: str


class ControllerComparison(BaseModel):
    """An adaptive (or tuned) run against the fixed-controller curve of the same model at equal mean spend."""

    model: str
    suite: str
    controller: str
    budget: float | None
    unit: str
    spend: float
    acc: float
    fixed_acc: float | None
    diff: float | None
    diff_ci: tuple[float, float] | None
    n: int
    note: str


class ModelGap(BaseModel):
    """The smaller model at its deepest (most searched) point against the larger model at ``depth``,
    on the ``n`` questions both answered: accuracy difference (small - large) with a paired CI."""

    small: str
    large: str
    group: str
    small_depth: int
    depth: int
    n: int
    small_acc: float
    large_acc: float
    diff: float
    diff_ci: tuple[float, float]


class Failures(BaseModel):
    """Questions of one run that failed and were never answered: excluded from every accuracy."""

    model: str
    controller: str
    budget: float | None
    questions: int
    first_error: str


class Analysis(BaseModel):
    metric: str
    n_rows: int
    curves: list[Curve]
    exchanges: list[Exchange]
    gaps: list[ModelGap] = []
    comparisons: list[ControllerComparison] = []
    anytime: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    failures: list[Failures] = []
    #: Search against reasoning, per family of grid runs (evals/frontier.py); empty without reasoning.
    frontiers: list[Any] = []
    #: Best split against best split between models of one suite (evals/frontier.py:split_exchanges).
    split_exchanges: list[Any] = []


def unanswered_failures(
    errors: list[dict[str, Any]], rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]
) -> list[Failures]:
    """Per run, the failed questions that a later retry did not answer (the store keeps every error)."""
    answered = {(r["run_key"], r["question_id"]) for r in rows}
    by_run: dict[str, dict[str, str]] = defaultdict(dict)
    for e in sorted(errors, key=lambda e: e["created"]):
        if (e["run_key"], e["question_id"]) not in answered and e["run_key"] in runs:
            by_run[e["run_key"]].setdefault(e["question_id"], e["error"])
    return [
        Failures(
            model=runs[key]["model"],
            controller=runs[key]["controller"],
            budget=runs[key]["budget"],
            questions=len(failed),
            first_error=next(iter(failed.values())),
        )
        for key, failed in sorted(by_run.items())
    ]


def linear_law(x: np.ndarray, a: float, b: float) -> np.ndarray:
    return a + b * np.log(x)


def logistic_law(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.asarray(expit(alpha + beta * np.log(x)))


def logistic_jacobian(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """d law / d (alpha, beta): given to the least-squares solver, it saves the two extra law
    evaluations per step a finite-difference Jacobian costs (the bootstrap fits thousands of curves)."""
    p = expit(alpha + beta * np.log(x))
    slope = p * (1.0 - p)
    return np.column_stack([slope, slope * np.log(x)])


LAWS = {"linear": (linear_law, ("a", "b")), "logistic": (logistic_law, ("alpha", "beta"))}


def fit_law(form: str, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Least-squares parameters of one law, or None when there are too few distinct points."""
    if len(x) < 2 or len(np.unique(x)) < 2:
        return None
    law, _ = LAWS[form]
    if form == "linear":
        b, a = np.polyfit(np.log(x), y, 1)
        return np.array([a, b])
    eps = 1e-3
    logit = np.log(np.clip(y, eps, 1 - eps) / (1 - np.clip(y, eps, 1 - eps)))
    beta0, alpha0 = np.polyfit(np.log(x), logit, 1)
    try:
        with (
            warnings.catch_warnings()
        ):  # flat or saturated curves: the estimate stands, the covariance may not
            warnings.simplefilter("ignore")
            params, _ = curve_fit(law, x, y, p0=[alpha0, beta0], jac=logistic_jacobian, maxfev=5000)
    except (RuntimeError, ValueError):
        return np.array([alpha0, beta0])
    return np.asarray(params)


def r_squared(y: np.ndarray, pred: np.ndarray) -> float | None:
    total = float(np.sum((y - y.mean()) ** 2))
    if total < 1e-12:  # a flat curve (up to float noise in its means): nothing to explain
        return None
    return 1.0 - float(np.sum((y - pred) ** 2)) / total


CurveKey = tuple[Any, ...]
QuestionRows = dict[str, dict[int, dict[str, Any]]]  # question (#seed) -> depth -> row


def _point_stats(
    by_question: dict[str, dict[int, dict[str, Any]]], depths: list[int], metric: str, ids: list[str]
) -> dict[int, float]:
    out = {}
    for d in depths:
        values = [
            by_question[q][d][metric]
            for q in ids
            if d in by_question[q] and by_question[q][d][metric] is not None
        ]
        out[d] = float(np.mean(values)) if values else float("nan")
    return out


def _bootstrap_ids(ids: list[str], n_boot: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[ids[i] for i in rng.integers(0, len(ids), len(ids))] for _ in range(n_boot)]


def _axes(points: list[Point], breadth: int) -> dict[str, np.ndarray]:
    axes = {"steps": np.array([p.steps_given for p in points], dtype=float)}
    for unit in UNITS:
        if all(unit in p.cost for p in points):
            axes[unit] = np.array([p.cost[unit] for p in points], dtype=float)
    return axes


def split_halves(ids: list[str], n_splits: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_splits):
        order = [ids[i] for i in rng.permutation(len(ids))]
        out.append((order[: len(ids) // 2], order[len(ids) // 2 :]))
    return out


# Below this a slope of accuracy per e-fold is float noise, not a trend (accuracies are means in [0, 1]).
FLAT_SLOPE = 1e-9


def split_half_agreement(
    xk: np.ndarray,
    kept_depths: list[int],
    slope: float,
    halves: list[tuple[dict[int, float], dict[int, float]]],
) -> float | None:
    """Share of half-splits whose two halves' linear slopes both have the sign of ``slope``; None for
    a flat curve (no trend to share). A flat half keeps no sign: least squares on equal means returns
    float noise (+-1e-17) for its slope, whose sign would otherwise count as agreement at random."""
    if abs(slope) < FLAT_SLOPE:
        return None
    agree = total = 0
    for first, second in halves:
        slopes = []
        for acc in (first, second):
            y = np.array([acc[d] for d in kept_depths])
            params = fit_law("linear", xk, y) if np.all(np.isfinite(y)) else None
            if params is not None:
                slopes.append(float(params[1]))
        if len(slopes) == 2:
            total += 1
            agree += all(abs(b) >= FLAT_SLOPE and np.sign(b) == np.sign(slope) for b in slopes)
    return agree / total if total else None


def fit_curve(
    points: list[Point],
    acc_samples: list[dict[int, float]],
    breadth: int,
    halves: list[tuple[dict[int, float], dict[int, float]]] | None = None,
) -> list[LawFit]:
    """The laws of one curve on each axis; ``acc_samples`` (bootstrap resamples of the questions) give
    the parameters' CIs, ``halves`` (accuracy per depth on each half of random half-splits) the
    split-half stability of the linear slope."""
    fits = []
    depths = [p.depth for p in points]
    y = np.array([p.acc for p in points])
    for axis, x in _axes(points, breadth).items():
        keep = x > 0  # log axes: the closed-book point has no search steps
        xk, yk = x[keep], y[keep]
        order = np.argsort(xk)
        xk, yk = xk[order], yk[order]
        kept_depths = [d for d, k in zip(depths, keep, strict=True) if k]
        kept_depths = [kept_depths[i] for i in order]
        for form, (law, names) in LAWS.items():
            params = fit_law(form, xk, yk)
            if params is None:
                continue
            pred = law(xk, *params)
            holdout_error = holdout_x = None
            if len(xk) >= 3:
                small = fit_law(form, xk[:-1], yk[:-1])
                if small is not None:
                    holdout_error = float(law(xk[-1:], *small)[0] - yk[-1])
                    holdout_x = float(xk[-1])
            boot = []
            for sample in acc_samples:
                yb = np.array([sample[d] for d in kept_depths])
                if np.all(np.isfinite(yb)):
                    pb = fit_law(form, xk, yb)
                    if pb is not None:
                        boot.append(pb)
            ci = {}
            if boot:
                arr = np.array(boot)
                for i, name in enumerate(names):
                    ci[name] = (float(np.percentile(arr[:, i], 2.5)), float(np.percentile(arr[:, i], 97.5)))
            fits.append(
                LawFit(
                    form=form,
                    axis=axis,
                    params={n: float(v) for n, v in zip(names, params, strict=True)},
                    params_ci=ci,
                    r2=r_squared(yk, pred),
                    holdout_error=holdout_error,
                    holdout_x=holdout_x,
                    n_points=len(xk),
                    split_half=split_half_agreement(xk, kept_depths, float(params[1]), halves)
                    if form == "linear" and halves
                    else None,
                )
            )
    return fits


def _group_value(row: dict[str, Any], by: str | None) -> str:
    if by is None:
        return "all"
    return f"{by}={row.get(by)}"


def collapse_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Seeds are repeated measures of one question: their mean is one observation of it (so resampling
    questions, not rows, gives the CI; three seeds never triple n)."""
    if len(rows) == 1:
        return rows[0]
    out = dict(rows[0])
    for field in (
        "em",
        "f1",
        "cover_em",
        "recall",
        "judge",
        "searches",
        "prompt_tokens",
        "completion_tokens",
        "llm_calls",
        "wall_seconds",
    ):
        values = [r[field] for r in rows if r.get(field) is not None]
        out[field] = float(np.mean(values)) if values else None
    out["cost"] = {
        u: float(np.mean([r["cost"][u] for r in rows]))
        for u in set.intersection(*(set(r["cost"]) for r in rows))
    }
    out["spend_by_event"] = _mean_spend_by_event(rows)
    out["seeds"] = len(rows)
    return out


def _distinct_settings(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per setting identity, the config fields whose values differ between settings that would
    otherwise share a label (model, suite, controller): shown in curve labels."""
    from sounding.evals.sweep import CURVE_FREE_FIELDS, setting_identity

    by_setting: dict[str, dict[str, Any]] = {}
    for cfg in runs.values():
        by_setting.setdefault(setting_identity(cfg), cfg)
    labelled = {
        "model",
        "suite",
        "controller",
        "breadth",
        "budget",
        "unit",
        "key_version",
        "sounding_version",
        "model_id",
        "prompts",
        "corpus_fingerprint",
        "policy",
    }
    fields = set().union(*(c.keys() for c in by_setting.values())) - CURVE_FREE_FIELDS - labelled
    varying = {
        f for f in fields if len({json.dumps(c.get(f), sort_keys=True) for c in by_setting.values()}) > 1
    }
    out = {}
    for ident, cfg in by_setting.items():
        out[ident] = {f: cfg.get(f) for f in sorted(varying)}
        for f in ("prompts", "model_id", "corpus_fingerprint", "sounding_version", "policy"):
            if len({json.dumps(c.get(f), sort_keys=True) for c in by_setting.values()}) > 1:
                out[ident][f] = str(cfg.get(f))[:8]
    return out


def _mean_spend_by_event(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each event's spend averaged over ``rows`` (a row without the event adds nothing to its sum)."""
    events: dict[str, float] = defaultdict(float)
    for r in rows:
        for e, v in r["spend_by_event"].items():
            events[e] += v / len(rows)
    return dict(events)


_percentile_ci = percentile_ci


SeedRows = dict[str, dict[int, list[dict[str, Any]]]]  # question -> depth -> the row of each seed


def _rows_by_curve(
    rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]], by: str | None
) -> tuple[dict[CurveKey, SeedRows], dict[CurveKey, set[str]]]:
    """The rows of each curve (by question and depth, every seed's row kept) and the run keys behind
    it. A row counts in the "all" group and, with ``by``, in its own group as well."""
    from sounding.evals.sweep import setting_identity

    raw: dict[CurveKey, SeedRows] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    run_keys: dict[CurveKey, set[str]] = defaultdict(set)
    for row in rows:
        cfg = runs[row["run_key"]]
        ident = setting_identity(cfg)
        for group in {"all", _group_value(row, by)}:
            key = (
                cfg["model"],
                cfg["suite"],
                cfg["controller"],
                cfg["breadth"],
                cfg["budget"],
                cfg["unit"],
                group,
                row.get("think", 0),
                row.get("samples", 1),
                ident,
            )
            raw[key][row["question_id"]][row["round"]].append(row)
            run_keys[key].add(row["run_key"])
    return raw, run_keys


def _mean_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The mean of every stored metric that some of ``rows`` have (beside the analysed one)."""
    return {
        m: float(np.mean(vs))
        for m in ("em", "f1", "cover_em", "judge")
        if (vs := [r[m] for r in rows if r.get(m) is not None])
    }


def _depth_point(
    by_question: QuestionRows,
    qids: list[str],
    depth: int,
    breadth: int,
    metric: str,
    samples: list[dict[int, float]],
) -> Point | None:
    """One depth of a curve: accuracy over the questions scored there, its CI from the bootstrap
    ``samples`` and the mean spend; None when no question has a score at that depth."""
    rows_d = [by_question[q][depth] for q in qids if depth in by_question[q]]
    values = [r[metric] for r in rows_d if r[metric] is not None]
    if not values:
        return None
    boot = [s[depth] for s in samples if math.isfinite(s[depth])]
    ci = _percentile_ci(boot) if boot else (float("nan"), float("nan"))
    cost_units = set.intersection(*(set(r["cost"]) for r in rows_d))
    recalls = [r["recall"] for r in rows_d if r["recall"] is not None]
    return Point(
        depth=depth,
        steps_given=depth * breadth,
        n=len(values),
        acc=float(np.mean(values)),
        ci=ci,
        searches=float(np.mean([r["searches"] for r in rows_d])),
        tokens=float(np.mean([r["prompt_tokens"] + r["completion_tokens"] for r in rows_d])),
        cost={u: float(np.mean([r["cost"][u] for r in rows_d])) for u in sorted(cost_units)},
        llm_calls=float(np.mean([r["llm_calls"] for r in rows_d])),
        spend_by_event=_mean_spend_by_event(rows_d),
        recall=float(np.mean(recalls)) if recalls else None,
        metrics=_mean_metrics(rows_d),
    )


def _max_seeds(by_question: QuestionRows) -> int:
    """The most seeds averaged into any one question's row of a curve."""
    return max((int(r.get("seeds", 1)) for q in by_question.values() for r in q.values()), default=1)


def _build_curve(
    curve_key: CurveKey,
    by_question: QuestionRows,
    run_keys: set[str],
    distinct: dict[str, dict[str, Any]],
    *,
    metric: str,
    n_boot: int,
    n_splits: int,
    depths: dict[str, list[int]] | None,
) -> Curve:
    """One curve: its points (the depths kept), bootstrap CIs, split-half samples and fitted laws."""
    model, suite, controller, breadth, budget, unit, group, think, n_samples, ident = curve_key
    qids = sorted(by_question)
    all_depths = sorted({d for q in by_question.values() for d in q})
    # the depths the sweeps asked for, per controller (rows exist for every round up to the deepest)
    wanted = (depths or {}).get(controller)
    use = [d for d in all_depths if wanted is None or d in wanted]
    samples = [_point_stats(by_question, use, metric, ids) for ids in _bootstrap_ids(qids, n_boot)]
    halves = (
        [
            (_point_stats(by_question, use, metric, a), _point_stats(by_question, use, metric, b))
            for a, b in split_halves(qids, n_splits)
        ]
        if controller == "fixed" and len(qids) >= 4
        else []
    )
    points = [
        point
        for d in use
        if (point := _depth_point(by_question, qids, d, breadth, metric, samples)) is not None
    ]
    return Curve(
        model=model,
        suite=suite,
        controller=controller,
        breadth=breadth,
        budget=budget,
        unit=unit,
        group=group,
        run_keys=sorted(run_keys),
        points=points,
        think=think,
        samples=n_samples,
        setting=ident,
        distinct=distinct.get(ident, {}),
        seeds=_max_seeds(by_question),
        # an adaptive run's rounds are its own choice, not budgets given: no law to fit
        fits=fit_curve(points, samples, breadth, halves) if controller == "fixed" else [],
    )


def analyse(
    rows: list[dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    *,
    metric: str = "cover_em",
    n_boot: int = 500,
    n_splits: int = 200,
    by: str | None = None,
    depths: dict[str, list[int]] | None = None,
) -> Analysis:
    """Curves, fits and exchange rates from result rows (``runs`` maps run keys to their configs).

    A curve is one setting (every config field but depth, seed and the reasoning grid) at one
    (think, samples) reading; its points are depths. Seeds of a setting are averaged per question."""
    distinct = _distinct_settings(runs)
    raw, run_keys = _rows_by_curve(rows, runs, by)
    groups: dict[CurveKey, QuestionRows] = {
        key: {q: {d: collapse_seeds(rs) for d, rs in by_depth.items()} for q, by_depth in questions.items()}
        for key, questions in raw.items()
    }
    curves = [
        _build_curve(
            curve_key,
            by_question,
            run_keys[curve_key],
            distinct,
            metric=metric,
            n_boot=n_boot,
            n_splits=n_splits,
            depths=depths,
        )
        for curve_key, by_question in sorted(groups.items(), key=str)
    ]
    return Analysis(
        metric=metric,
        n_rows=len(rows),
        curves=curves,
        exchanges=exchange_rates(curves, groups, metric, n_boot),
        gaps=model_gaps(curves, groups, metric, n_boot),
        comparisons=compare_controllers(curves, groups, metric, n_boot),
    )


def _interp_compute(points: list[tuple[float, float]], target: float) -> float | None:
    """Smallest compute at which a piecewise-linear-in-log curve reaches ``target`` accuracy."""
    pts = sorted((c, a) for c, a in points if c > 0)
    for (c0, a0), (c1, a1) in itertools.pairwise(pts):
        if a0 >= target:
            return c0
        if a1 >= target > a0:
            t = (target - a0) / (a1 - a0)
            return float(math.exp(math.log(c0) + t * (math.log(c1) - math.log(c0))))
    if pts and pts[-1][1] >= target:
        return pts[-1][0] if len(pts) == 1 or pts[0][1] < target else pts[0][0]
    return None


def model_size(model: str) -> float:
    spec = EMBEDDED_MODELS.get(model)
    return float(spec.n_params) if spec else float("inf")


def _key(c: Curve) -> CurveKey:
    return (
        c.model,
        c.suite,
        c.controller,
        c.breadth,
        c.budget,
        c.unit,
        c.group,
        c.think,
        c.samples,
        c.setting,
    )


def _comparable(c: Curve) -> tuple[Any, ...]:
    """What two curves of different models must share to be compared (all but the model's own identity)."""
    return (
        c.suite,
        c.controller,
        c.breadth,
        c.budget,
        c.group,
        c.think,
        c.samples,
        tuple(sorted((k, str(v)) for k, v in c.distinct.items() if k != "model_id")),
    )


def _axis_value(row: dict[str, Any], axis: str) -> float:
    """A row's spend on one exchange axis: search calls made, or compute in a cost unit."""
    return float(row["searches"]) if axis == "searches" else float(row["cost"][axis])


def _mean_point(
    rows: QuestionRows, ids: list[str], depth: int, axis: str, metric: str
) -> tuple[float, float]:
    spend = float(np.mean([_axis_value(rows[q][depth], axis) for q in ids if depth in rows[q]]))
    return spend, _point_stats(rows, [depth], metric, ids)[depth]


def _exchange_at(
    small: QuestionRows,
    large: QuestionRows,
    ids: list[str],
    depths: list[int],
    depth: int,
    axis: str,
    metric: str,
) -> tuple[float, float, float | None]:
    """On the questions ``ids``: the larger model's (compute, accuracy) at ``depth`` and the compute
    the smaller model's curve needs to reach that accuracy (None when it never does)."""
    large_c, target = _mean_point(large, ids, depth, axis, metric)
    small_pts = [_mean_point(small, ids, d, axis, metric) for d in depths]
    return large_c, target, _interp_compute(small_pts, target)


def _exchange_axes(c_small: Curve, c_large: Curve) -> list[str]:
    """The axes two curves are exchanged on: search calls, and each cost unit every point of both has."""
    points = c_small.points + c_large.points
    return [
        axis
        for axis in ("searches", "tokens", "flops")
        if axis == "searches" or all(axis in p.cost for p in points)
    ]


def _ratio_ci(
    small: QuestionRows,
    large: QuestionRows,
    shared: list[str],
    depths: list[int],
    depth: int,
    axis: str,
    metric: str,
    n_boot: int,
) -> tuple[float, float] | None:
    """Paired bootstrap CI of an exchange ratio over the ``shared`` questions; None when too few
    resamples reach the larger model's accuracy (then there is no finite CI)."""
    ratios = []
    for ids in _bootstrap_ids(shared, min(n_boot, 300), seed=1):
        lc, _, nd = _exchange_at(small, large, ids, depths, depth, axis, metric)
        if nd is not None and lc > 0:
            ratios.append(nd / lc)
    if len(ratios) >= max(10, 0.5 * min(n_boot, 300)):
        return _percentile_ci(ratios)
    return None


def _exchange(
    c_small: Curve,
    c_large: Curve,
    small: QuestionRows,
    large: QuestionRows,
    shared: list[str],
    depths: list[int],
    depth: int,
    axis: str,
    metric: str,
    n_boot: int,
) -> Exchange:
    """The exchange rate at one depth of the larger model on one axis."""
    large_c, large_acc, needed = _exchange_at(small, large, shared, depths, depth, axis, metric)
    ratio = needed / large_c if needed and large_c > 0 else None
    ci = None if ratio is None else _ratio_ci(small, large, shared, depths, depth, axis, metric, n_boot)
    return Exchange(
        small=c_small.model,
        large=c_large.model,
        axis=axis,
        group=c_large.group,
        depth=depth,
        n=len(shared),
        large_compute=large_c,
        large_acc=large_acc,
        small_compute=needed,
        ratio=ratio,
        ratio_ci=ci,
        note="reached" if ratio else "not reached within the budgets tried",
    )


def _pair_exchanges(
    c_small: Curve, c_large: Curve, groups: dict[CurveKey, QuestionRows], metric: str, n_boot: int
) -> list[Exchange]:
    """Every exchange rate of one (smaller, larger) pair: per axis, per depth both curves have."""
    small, large = groups[_key(c_small)], groups[_key(c_large)]
    shared = sorted(set(small) & set(large))
    depths = sorted(set(p.depth for p in c_small.points) & set(p.depth for p in c_large.points))
    if not shared or not depths:
        return []
    out = []
    for axis in _exchange_axes(c_small, c_large):
        for depth in depths:
            if depth == 0 and axis == "searches":
                continue  # the larger model searched nothing: no multiple of it to state
            out.append(_exchange(c_small, c_large, small, large, shared, depths, depth, axis, metric, n_boot))
    return out


def exchange_rates(
    curves: list[Curve], groups: dict[CurveKey, QuestionRows], metric: str, n_boot: int
) -> list[Exchange]:
    """For each pair of models on the same suite/controller/breadth, at each depth of the larger model:
    the search calls or compute the smaller model needs to match its accuracy (interpolated in log),
    on the questions both answered, with a paired bootstrap CI over those questions."""
    out = []
    for c_small, c_large in _model_pairs(curves):
        out += _pair_exchanges(c_small, c_large, groups, metric, n_boot)
    return out


def _model_pairs(curves: list[Curve]) -> list[tuple[Curve, Curve]]:
    """(smaller, larger) model curves of the same suite/controller/breadth/budget/group."""
    return [
        (small, large)
        for large in curves
        for small in curves
        if _comparable(small) == _comparable(large) and model_size(small.model) < model_size(large.model)
    ]


def _paired_accs(
    small: QuestionRows, large: QuestionRows, ids: list[str], small_depth: int, large_depth: int, metric: str
) -> tuple[float, float]:
    return (
        _point_stats(small, [small_depth], metric, ids)[small_depth],
        _point_stats(large, [large_depth], metric, ids)[large_depth],
    )


def model_gaps(
    curves: list[Curve], groups: dict[CurveKey, QuestionRows], metric: str, n_boot: int
) -> list[ModelGap]:
    """Does searching more close the gap? The smaller model at its deepest point against the larger
    model at each depth, paired over shared questions (the deepest point is fixed in advance, not the
    smaller model's best, so there is no selection bias)."""
    out = []
    for small, large in _model_pairs(curves):
        qs, ql = groups[_key(small)], groups[_key(large)]
        shared = sorted(set(qs) & set(ql))
        if not shared or not small.points:
            continue
        deepest = max(p.depth for p in small.points)
        for p in large.points:
            small_acc, large_acc = _paired_accs(qs, ql, shared, deepest, p.depth, metric)
            boot = [
                a - b
                for a, b in (
                    _paired_accs(qs, ql, ids, deepest, p.depth, metric)
                    for ids in _bootstrap_ids(shared, min(n_boot, 500), seed=3)
                )
            ]
            out.append(
                ModelGap(
                    small=small.model,
                    large=large.model,
                    group=large.group,
                    small_depth=deepest,
                    depth=p.depth,
                    n=len(shared),
                    small_acc=small_acc,
                    large_acc=large_acc,
                    diff=small_acc - large_acc,
                    diff_ci=(float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))),
                )
            )
    return out


def _interp_acc(points: list[tuple[float, float]], spend: float) -> float | None:
    """Accuracy of a curve at ``spend``, linear in log spend between its points; None outside its range."""
    pts = sorted((c, a) for c, a in points if c > 0)
    if not pts or not pts[0][0] <= spend <= pts[-1][0]:
        return None
    for (c0, a0), (c1, a1) in itertools.pairwise(pts):
        if c0 <= spend <= c1:
            t = 0.0 if c1 == c0 else (math.log(spend) - math.log(c0)) / (math.log(c1) - math.log(c0))
            return a0 + t * (a1 - a0)
    return pts[0][1]


def _controller_diff(
    adaptive: QuestionRows,
    fixed: QuestionRows,
    ids: list[str],
    final_depth: int,
    fixed_depths: list[int],
    unit: str,
    metric: str,
) -> tuple[float, float, float | None]:
    """On the questions ``ids``: the adaptive run's mean spend and accuracy, and the fixed curve's
    accuracy interpolated at that spend (None outside the fixed curve's range)."""
    spend, acc = _mean_point(adaptive, ids, final_depth, unit, metric)
    fixed_pts = [_mean_point(fixed, ids, d, unit, metric) for d in fixed_depths]
    return spend, acc, _interp_acc(fixed_pts, spend)


def _fixed_reference(adaptive: Curve, curves: list[Curve]) -> Curve | None:
    """The fixed-controller curve an adaptive run is measured against: same model and suite, all
    questions, no budget and no reasoning (think 0, one sample)."""
    return next(
        (
            c
            for c in curves
            if c.controller == "fixed"
            and c.model == adaptive.model
            and c.suite == adaptive.suite
            and c.group == "all"
            and c.budget is None
            and c.think == 0
            and c.samples == 1
        ),
        None,
    )


def _diff_ci(
    adaptive: QuestionRows,
    fixed: QuestionRows,
    shared: list[str],
    final_depth: int,
    fixed_depths: list[int],
    unit: str,
    metric: str,
    n_boot: int,
) -> tuple[float, float] | None:
    """Paired bootstrap CI of (adaptive - fixed) accuracy over the ``shared`` questions; None when
    half the resamples or more put the adaptive spend outside the fixed curve's range."""
    diffs = []
    for ids in _bootstrap_ids(shared, min(n_boot, 500), seed=2):
        _, a, f = _controller_diff(adaptive, fixed, ids, final_depth, fixed_depths, unit, metric)
        if f is not None:
            diffs.append(a - f)
    if len(diffs) >= 0.5 * min(n_boot, 500):
        return _percentile_ci(diffs)
    return None


def _compare_controller(
    adaptive: Curve,
    curves: list[Curve],
    groups: dict[CurveKey, QuestionRows],
    metric: str,
    n_boot: int,
) -> ControllerComparison | None:
    """One adaptive (or tuned) curve against its fixed reference; None when it has nothing to be
    compared with (a fixed or per-group curve, no reference, no spend in its unit, no shared question)."""
    if adaptive.controller == "fixed" or adaptive.group != "all" or not adaptive.points:
        return None
    unit = adaptive.unit
    fixed = _fixed_reference(adaptive, curves)
    final = adaptive.points[-1]
    if fixed is None or unit not in final.cost:
        return None
    qa, qf = groups[_key(adaptive)], groups[_key(fixed)]
    shared = sorted(set(qa) & set(qf))
    if not shared:
        return None
    fixed_depths = [p.depth for p in fixed.points]
    spend, acc, fixed_acc = _controller_diff(qa, qf, shared, final.depth, fixed_depths, unit, metric)
    diff = None if fixed_acc is None else acc - fixed_acc
    ci = None if diff is None else _diff_ci(qa, qf, shared, final.depth, fixed_depths, unit, metric, n_boot)
    return ControllerComparison(
        model=adaptive.model,
        suite=adaptive.suite,
        controller=adaptive.controller,
        budget=adaptive.budget,
        unit=unit,
        spend=spend,
        acc=acc,
        fixed_acc=fixed_acc,
        diff=diff,
        diff_ci=ci,
        n=len(shared),
        note="compared" if diff is not None else "mean spend outside the fixed curve's range",
    )


def compare_controllers(
    curves: list[Curve],
    groups: dict[CurveKey, QuestionRows],
    metric: str,
    n_boot: int,
) -> list[ControllerComparison]:
    """Adaptive/tuned final answers vs the fixed curve interpolated at the same mean spend (in the
    budget's unit), both on the questions the two runs answered, with a paired bootstrap CI."""
    comparisons = (_compare_controller(c, curves, groups, metric, n_boot) for c in curves)
    return [c for c in comparisons if c is not None]


def fits_table(analysis: Analysis) -> Table:
    table = Table(title=f"scaling fits ({analysis.metric}, {analysis.n_rows} rows)")
    for col in (
        "model",
        "suite",
        "ctl",
        "B",
        "group",
        "axis",
        "law",
        "params (95% CI)",
        "R²",
        "holdout err",
        "split-half",
    ):
        table.add_column(col)
    for c in analysis.curves:
        for f in c.fits:
            params = ", ".join(
                f"{k}={v:.3g}"
                + (f" [{f.params_ci[k][0]:.3g}, {f.params_ci[k][1]:.3g}]" if k in f.params_ci else "")
                for k, v in f.params.items()
            )
            table.add_row(
                c.model,
                c.suite.split(":")[0],
                c.controller,
                str(c.breadth),
                c.group,
                f.axis,
                f.form,
                params,
                "-" if f.r2 is None else f"{f.r2:.3f}",
                "-" if f.holdout_error is None else f"{f.holdout_error:+.3f}",
                "-" if f.split_half is None else f"{f.split_half:.2f}",
            )
    return table


def load_manifest(run_dir: Any) -> dict[str, Any] | None:
    path = run_dir / "sweep.json"
    return json.loads(path.read_text()) if path.is_file() else None
