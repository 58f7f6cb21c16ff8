"""``sounding tune``: fit a per-question allocation policy on a grid sweep, offline, and measure it
honestly (every question scored by a policy fitted without it).

The data: for each question of a fixed-controller grid run (depth x think x samples, read off one
run per question) its score and spend at every setting, and its probe features (stored by the sweep
with their cost). Three kinds of policy, chosen between by cross-validation inside the training
questions:

- ``fixed``: the best single setting whose mean spend fits the budget;
- ``bins`` (Snell et al. 2024): a regularised logistic model predicts a question's accuracy from its
  features; quantile bins of that prediction each get the setting that maximises accuracy at the
  bins' joint mean spend <= budget (a Lagrangian choice);
- ``per-setting``: one regularised logistic accuracy model per setting, and per question the
  setting maximising predicted accuracy - lambda x spend, lambda set so the mean spend fits.

Early stopping is learned as settings too: "run to depth D but stop when two consecutive rounds
agree" is read off the stored answers like any other setting. The probe's price is part of every
policy's spend (a policy reading no model-made feature pays nothing for it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from sounding.budgets.features import FEATURE_GROUPS, Features, vector
from sounding.budgets.tuned import LinearModel, Setting, TunedPolicy
from sounding.evals.metrics import normalize_answer
from sounding.evals.stats import mean_ci

if TYPE_CHECKING:
    from sounding.evals.frontier import Matrix

#: Feature subsets tried, cheapest first (form is free; the others cost a probe each).
GROUP_SETS: tuple[tuple[str, ...], ...] = (
    ("form",),
    ("form", "retrieval"),
    ("form", "closed_book"),
    ("form", "closed_book", "retrieval"),
    tuple(FEATURE_GROUPS),
)
MIN_QUESTIONS_PER_FOLD = 3


class TuneError(ValueError):
    """The store cannot be tuned on (no grid, too few questions, no features): says what is missing."""


@dataclass
class Grid:
    """One model's grid on one suite: score and spend per (question, setting), features per question."""

    model: str
    model_id: str | None
    suite: str
    unit: str
    metric: str
    run_keys: list[str]
    question_ids: list[str]
    settings: list[Setting]
    acc: np.ndarray  # [questions, settings]
    cost: np.ndarray  # [questions, settings], in unit
    features: list[Features]

    def feature_cost(self, groups: Sequence[str]) -> np.ndarray:
        return np.array([f.cost_of(list(groups), self.unit) for f in self.features])

    def matrix(self, groups: Sequence[str]) -> tuple[list[str], np.ndarray]:
        vectors = [vector(f, list(groups)) for f in self.features]
        names = sorted(vectors[0])
        return names, np.array([[v[n] for n in names] for v in vectors], dtype=float)

    @property
    def groups(self) -> list[str]:
        """Groups measured for every question."""
        return [g for g in FEATURE_GROUPS if g == "form" or all(g in f.groups for f in self.features)]


def _setting_key(s: Setting) -> tuple[Any, ...]:
    return (
        s.depth,
        s.breadth,
        s.think,
        s.samples,
        s.stop_on_agree,
        s.strategy,
        tuple(sorted(s.dials.items())),
    )


def _only_grid(
    rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]], model: str | None
) -> tuple[tuple[str, str, str], Matrix]:
    """The store's one fixed-controller grid (of ``model`` when given) as its family (model, suite,
    setting identity) and question matrix; a `TuneError` when there is none, or several to choose from."""
    from sounding.evals.frontier import _question_matrix

    families = _question_matrix(rows, runs)
    if model is not None:
        families = {f: m for f, m in families.items() if f[0] == model}
    if not families:
        raise TuneError(
            "no fixed-controller grid in the store"
            + (f" for model {model}" if model else "")
            + ": sweep one with `sounding bench SUITE --depths 0,1,2 --think 0,64 --samples 1,3 --out RUN_DIR`"
        )
    if len(families) > 1:
        names = "; ".join(f"{m} on {s}" for m, s, _ in families)
        raise TuneError(f"the store holds several grids ({names}): choose one with --model")
    (family, matrix), *_ = families.items()
    return family, matrix


def _grid_run_keys(runs: dict[str, dict[str, Any]], identity: str) -> list[str]:
    """The fixed-controller runs of the grid whose setting identity is ``identity``, in store order."""
    from sounding.evals.sweep import setting_identity

    return [
        k for k, cfg in runs.items() if cfg.get("controller") == "fixed" and setting_identity(cfg) == identity
    ]


def _features_by_question(
    features: dict[tuple[str, str], dict[str, Any]], run_keys: list[str]
) -> dict[str, dict[str, Any]]:
    """Each question's probe features, the first stored by one of ``run_keys`` (the grid's runs)."""
    by_question: dict[str, dict[str, Any]] = {}
    for (k, q), f in features.items():
        if k in run_keys:
            by_question.setdefault(q, f)
    return by_question


def _check_tunable(
    model: str, matrix: Matrix, grid: list[tuple[int, int, int]], featured: list[str], unit: str
) -> None:
    """A `TuneError` saying what is missing when the grid has one setting only, no question with
    features, or no spend in ``unit``."""
    if len(grid) < 2:
        raise TuneError(
            f"the run of {model} has one setting only ({grid[0]}): a policy needs a grid "
            "(several depths, thinking caps or sample counts)"
        )
    if not featured:
        raise TuneError(
            f"no question of the {model} grid has probe features: rerun the same `sounding bench` "
            "command into the run directory (done questions are not rerun; only their features are measured)"
        )
    if unit not in matrix[featured[0]][grid[0]]["cost"]:
        raise TuneError(f"the rows hold no spend in unit {unit!r}")


def _agreement_stop(
    readings: dict[tuple[int, int, int], dict[str, Any]], deepest: int, think: int, samples: int
) -> int:
    """The depth where "stop once two consecutive rounds agree" stops a question: the first round
    whose (non-empty) answer equals the round before's, else ``deepest``."""
    for d in range(2, deepest + 1):
        a, b = readings[(d, think, samples)]["answer"], readings[(d - 1, think, samples)]["answer"]
        if normalize_answer(a) and normalize_answer(a) == normalize_answer(b):
            return d
    return deepest


def _early_stop_columns(
    matrix: Matrix,
    questions: list[str],
    grid: list[tuple[int, int, int]],
    breadth: int,
    metric: str,
    unit: str,
) -> tuple[list[Setting], list[list[Any]], list[list[Any]]]:
    """Early stopping, learned as settings: for each (think, samples) the grid reads at every depth
    from 1 to its deepest, the setting "to the deepest depth, stopping once two rounds agree", with
    each question's score and spend under it (one list per setting, in ``questions`` order)."""
    deepest = max(d for d, _, _ in grid)
    settings: list[Setting] = []
    accs: list[list[Any]] = []
    costs: list[list[Any]] = []
    # below depth 3 the rule always ends at the deepest depth (2 at most): a copy of a plain setting
    if deepest < 3:
        return settings, accs, costs
    for t, n in sorted({(t, n) for _, t, n in grid}):
        if not all((d, t, n) in grid for d in range(1, deepest + 1)):
            continue
        settings.append(Setting(depth=deepest, breadth=breadth, think=t, samples=n, stop_on_agree=True))
        stopped = [matrix[q][(_agreement_stop(matrix[q], deepest, t, n), t, n)] for q in questions]
        accs.append([row[metric] for row in stopped])
        costs.append([row["cost"][unit] for row in stopped])
    return settings, accs, costs


def load_grid(
    rows: list[dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    features: dict[tuple[str, str], dict[str, Any]],
    *,
    unit: str = "tokens",
    metric: str = "cover_em",
    model: str | None = None,
) -> Grid:
    """The grid of one model from a store's rows; clear errors when there is none to tune on."""
    (model_name, suite, identity), matrix = _only_grid(rows, runs, model)
    keys = _grid_run_keys(runs, identity)
    config = runs[keys[0]]
    breadth = int(config.get("breadth", 1))
    by_question = _features_by_question(features, keys)
    all_settings = sorted({s for by in matrix.values() for s in by})
    complete = [q for q, by in matrix.items() if all(s in by for s in all_settings)]
    featured = [q for q in complete if q in by_question]
    _check_tunable(model_name, matrix, all_settings, featured, unit)
    settings = [Setting(depth=d, breadth=breadth, think=t, samples=n) for d, t, n in all_settings]
    acc = np.array([[matrix[q][s][metric] for s in all_settings] for q in featured], dtype=float)
    cost = np.array([[matrix[q][s]["cost"][unit] for s in all_settings] for q in featured], dtype=float)
    stop_settings, stop_acc, stop_cost = _early_stop_columns(
        matrix, featured, all_settings, breadth, metric, unit
    )
    if stop_settings:
        settings += stop_settings
        acc = np.hstack([acc, np.array(stop_acc).T])
        cost = np.hstack([cost, np.array(stop_cost).T])
    return Grid(
        model=model_name,
        model_id=config.get("model_id"),
        suite=suite,
        unit=unit,
        metric=metric,
        run_keys=keys,
        question_ids=featured,
        settings=settings,
        acc=acc,
        cost=cost,
        features=[Features.model_validate(by_question[q]) for q in featured],
    )


#: strategy, dials (JSON), the run's identity (seeds of one run share it), breadth, depth, think, samples
SettingId = tuple[str, str, str, int, int, int, int]


def strategy_grid(
    rows: list[dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    features: dict[tuple[str, str], dict[str, Any]],
    *,
    unit: str = "tokens",
    metric: str = "cover_em",
    model: str | None = None,
) -> Grid:
    """One model's settings across every strategy it was swept with (iterative grid readings, decompose,
    tree, best_of_n, each with its dials and depths) on the questions that have all of them and
    features: what a policy tuned across strategies chooses from."""
    import json

    fixed = {k: c for k, c in runs.items() if c.get("controller") == "fixed" and c.get("budget") is None}
    model_name, suite = _one_family(fixed, model)
    keys = [k for k, c in fixed.items() if (c["model"], c["suite"]) == (model_name, suite)]
    matrix = _strategy_matrix(rows, {k: fixed[k] for k in keys})
    ids = sorted({s for by in matrix.values() for s in by})
    by_question = _features_by_question(features, keys)
    featured = _complete_questions(matrix, ids, by_question, model_name)
    if unit not in matrix[featured[0]][ids[0]]["cost"]:
        raise TuneError(f"the rows hold no spend in unit {unit!r}")
    settings = [
        Setting(depth=d, breadth=b, think=t, samples=n, strategy=s, dials=json.loads(dials))
        for s, dials, _, b, d, t, n in ids
    ]
    return Grid(
        model=model_name, model_id=fixed[keys[0]].get("model_id"), suite=suite, unit=unit, metric=metric,
        run_keys=keys, question_ids=featured, settings=settings,
        acc=np.array([[matrix[q][s][metric] for s in ids] for q in featured], dtype=float),
        cost=np.array([[matrix[q][s]["cost"][unit] for s in ids] for q in featured], dtype=float),
        features=[Features.model_validate(by_question[q]) for q in featured],
    )  # fmt: skip


def _complete_questions(
    matrix: dict[str, dict[SettingId, dict[str, Any]]],
    ids: list[SettingId],
    by_question: dict[str, dict[str, Any]],
    model_name: str,
) -> list[str]:
    """The questions with every setting and features, or a TuneError when fewer than two settings or
    no such question."""
    featured = [q for q, by in sorted(matrix.items()) if all(s in by for s in ids) and q in by_question]
    if len(ids) < 2 or not featured:
        strategies = sorted({s[0] for s in ids})
        raise TuneError(
            f"{len(ids)} settings and {len(featured)} questions with every setting and features for "
            f"{model_name} ({', '.join(strategies)}): sweep the strategies on the same questions"
        )
    return featured


def _one_family(fixed: dict[str, dict[str, Any]], model: str | None) -> tuple[str, str]:
    """The one (model, suite) the fixed runs hold (of ``model`` when given), or a TuneError saying
    what to choose."""
    families = sorted({(c["model"], c["suite"]) for c in fixed.values() if model in (None, c["model"])})
    if not families:
        raise TuneError("no fixed-controller runs" + (f" of {model}" if model else "") + " to tune across")
    if len(families) > 1:
        names = "; ".join(f"{m} on {s}" for m, s in families)
        raise TuneError(f"the stores hold several models or suites ({names}): choose one with --model")
    return families[0]


def _strategy_matrix(
    rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]
) -> dict[str, dict[SettingId, dict[str, Any]]]:
    """question -> setting -> its row (seeds collapsed), for the rows of ``runs``."""
    import json

    from sounding.evals.fit import collapse_seeds
    from sounding.evals.sweep import setting_identity

    table: dict[str, dict[SettingId, list[dict[str, Any]]]] = {}
    for row in rows:
        cfg = runs.get(row["run_key"])
        if cfg is None:
            continue
        sid = (cfg.get("strategy", "iterative"), json.dumps(cfg.get("dials") or {}, sort_keys=True),
               setting_identity(cfg), int(cfg.get("breadth", 1)), row["round"], row.get("think", 0),
               row.get("samples", 1))  # fmt: skip
        table.setdefault(row["question_id"], {}).setdefault(sid, []).append(row)
    return {q: {s: collapse_seeds(rs) for s, rs in by.items()} for q, by in table.items()}


def common_settings(grid: Grid, other: Grid) -> Grid:
    """``grid`` restricted to the settings ``other`` also has (a policy meant to transfer may only
    choose what the other grid can score)."""
    keys = {_setting_key(s) for s in other.settings}
    keep = [j for j, s in enumerate(grid.settings) if _setting_key(s) in keys]
    if len(keep) < 2:
        raise TuneError(f"{grid.suite} and {other.suite} share fewer than two settings: nothing to transfer")
    return Grid(
        model=grid.model, model_id=grid.model_id, suite=grid.suite, unit=grid.unit, metric=grid.metric,
        run_keys=grid.run_keys, question_ids=grid.question_ids, settings=[grid.settings[j] for j in keep],
        acc=grid.acc[:, keep], cost=grid.cost[:, keep], features=grid.features,
    )  # fmt: skip


# --- fitting --------------------------------------------------------------------------------------


def _logistic(x: np.ndarray, y: np.ndarray, names: list[str], c: float) -> LinearModel:
    """Ridge-regularised logistic regression on fractional targets (each question twice, weighted
    y and 1 - y), on standardised features; a constant model when the targets do not vary."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - mean) / scale
    p = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    if np.ptp(y) < 1e-9:
        return LinearModel(
            features=names, mean=mean.tolist(), scale=scale.tolist(), coef=[0.0] * len(names),
            intercept=math.log(p / (1 - p)),
        )  # fmt: skip
    xs = np.vstack([z, z])
    ys = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    ws = np.concatenate([y, 1 - y]) + 1e-6
    model = LogisticRegression(C=c, max_iter=500).fit(xs, ys, sample_weight=ws)
    return LinearModel(
        features=names, mean=mean.tolist(), scale=scale.tolist(), coef=model.coef_[0].tolist(),
        intercept=float(model.intercept_[0]),
    )  # fmt: skip


def _lagrangian(
    value: np.ndarray, cost: np.ndarray, weight: np.ndarray, budget: float
) -> tuple[np.ndarray, float]:
    """Per row i, the column maximising value - lam x cost, with the smallest lam >= 0 whose weighted
    mean cost fits the budget (the cheapest column everywhere when none does)."""

    def choose(lam: float) -> np.ndarray:
        score = value - lam * cost
        best = score.max(axis=1, keepdims=True)
        # ties go to the cheaper column
        masked = np.where(score >= best - 1e-12, cost, np.inf)
        return masked.argmin(axis=1)

    def spend(choice: np.ndarray) -> float:
        return float(np.sum(weight * cost[np.arange(len(choice)), choice]) / np.sum(weight))

    choice = choose(0.0)
    if spend(choice) <= budget:
        return choice, 0.0
    lo, hi = 0.0, 1.0
    while spend(choose(hi)) > budget and hi < 1e12:
        hi *= 4
    if spend(choose(hi)) > budget:
        return np.argmin(cost, axis=1), hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if spend(choose(mid)) <= budget:
            hi = mid
        else:
            lo = mid
    return choose(hi), hi


class Candidate(BaseModel):
    method: str
    groups: tuple[str, ...] = ()
    bins: int = 0

    @property
    def label(self) -> str:
        if self.method == "fixed":
            return "fixed"
        extra = f", {self.bins} bins" if self.method == "bins" else ""
        return f"{self.method} ({'+'.join(self.groups)}{extra})"


def candidates(groups: list[str]) -> list[Candidate]:
    sets = [s for s in GROUP_SETS if set(s) <= set(groups)]
    out = [Candidate(method="fixed")]
    for s in sets:
        out += [Candidate(method="bins", groups=s, bins=b) for b in (2, 3)]
        out.append(Candidate(method="per-setting", groups=s))
    return out


def fit_policy(
    grid: Grid, train: np.ndarray, candidate: Candidate, budget: float, *, c: float = 0.5
) -> TunedPolicy:
    """Fit one candidate on the training questions for mean spend <= budget (probe included)."""
    settings = [
        s.model_copy(update={"mean_cost": float(grid.cost[train, j].mean())})
        for j, s in enumerate(grid.settings)
    ]
    base = {
        "model": grid.model, "model_id": grid.model_id, "suite": grid.suite, "unit": grid.unit,
        "metric": grid.metric, "budget": budget, "settings": settings,
    }  # fmt: skip
    mean_acc = grid.acc[train].mean(axis=0)
    mean_cost = grid.cost[train].mean(axis=0)
    if candidate.method == "fixed":
        fits = np.flatnonzero(mean_cost <= budget)
        choice = int(fits[np.argmax(mean_acc[fits])]) if len(fits) else int(np.argmin(mean_cost))
        return TunedPolicy(**base, groups=[], method="fixed", choice=choice)
    groups = list(candidate.groups)
    left = budget - float(grid.feature_cost(groups)[train].mean())
    names, x = grid.matrix(groups)
    x = x[train]
    if candidate.method == "bins":
        difficulty = _logistic(x, grid.acc[train].mean(axis=1), names, c)
        p = np.array([difficulty.probability(dict(zip(names, row, strict=True))) for row in x])
        thresholds = sorted(
            set(np.quantile(p, [i / candidate.bins for i in range(1, candidate.bins)]).tolist())
        )
        bin_of = np.array([sum(1 for t in thresholds if v >= t) for v in p])
        nb = len(thresholds) + 1
        weight = np.array([max(np.sum(bin_of == b), 1e-9) for b in range(nb)], dtype=float)
        value = np.array(
            [
                grid.acc[train][bin_of == b].mean(axis=0) if np.any(bin_of == b) else mean_acc
                for b in range(nb)
            ]
        )
        cost = np.array(
            [
                grid.cost[train][bin_of == b].mean(axis=0) if np.any(bin_of == b) else mean_cost
                for b in range(nb)
            ]
        )
        per_bin, _ = _lagrangian(value, cost, weight, left)
        return TunedPolicy(
            **base, groups=groups, method="bins", difficulty=difficulty, thresholds=thresholds,
            bin_settings=[int(i) for i in per_bin],
        )  # fmt: skip
    models = [_logistic(x, grid.acc[train, j], names, c) for j in range(len(settings))]
    predicted = np.array([[m.probability(dict(zip(names, row, strict=True))) for m in models] for row in x])
    cost = np.tile(mean_cost, (len(x), 1))
    _, lam = _lagrangian(predicted, cost, np.ones(len(x)), left)
    return TunedPolicy(**base, groups=groups, method="per-setting", accuracy=models, lam=lam)


def apply_policy(
    grid: Grid, policy: TunedPolicy, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Per question of ``rows``: the score and spend (probe included) of the setting the policy chooses."""
    chosen = []
    for q in rows:
        x = vector(grid.features[q], policy.groups) if policy.groups else {}
        chosen.append(policy.choose_vector(x)[0])
    idx = np.array(chosen)
    probe = grid.feature_cost(policy.groups)[rows] if policy.groups else np.zeros(len(rows))
    return grid.acc[rows, idx], grid.cost[rows, idx] + probe, chosen


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    from sklearn.model_selection import KFold

    return [test for _, test in KFold(n_splits=k, shuffle=True, random_state=seed).split(np.arange(n))]


def cross_validate(
    grid: Grid, questions: np.ndarray, candidate: Candidate, budget: float, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """k-fold over ``questions``: each one's score and spend under a policy fitted without it."""
    acc, cost = np.zeros(len(questions)), np.zeros(len(questions))
    for test in _folds(len(questions), k, seed):
        train = np.setdiff1d(np.arange(len(questions)), test)
        policy = fit_policy(grid, questions[train], candidate, budget)
        acc[test], cost[test], _ = apply_policy(grid, policy, questions[test])
    return acc, cost


def select(
    grid: Grid, questions: np.ndarray, budget: float, k: int, seed: int
) -> tuple[Candidate, list[dict[str, Any]]]:
    """The candidate with the best inner cross-validated accuracy among those whose mean spend fits
    (5% slack for the noise of a mean); the fixed policy when none does."""
    table: list[dict[str, Any]] = []
    for cand in candidates(grid.groups):
        acc, cost = cross_validate(grid, questions, cand, budget, k, seed)
        table.append({"candidate": cand, "acc": float(acc.mean()), "cost": float(cost.mean())})
    feasible = [r for r in table if r["cost"] <= budget * 1.05] or [table[0]]
    best = max(feasible, key=lambda r: (round(r["acc"], 9), -r["cost"]))
    return best["candidate"], table


class BudgetResult(BaseModel):
    budget: float
    tuned_acc: float
    tuned_ci: tuple[float, float]
    tuned_cost: float
    fixed_label: str
    fixed_acc: float
    fixed_cost: float
    gain: float
    gain_ci: tuple[float, float]
    oracle_acc: float
    oracle_cost: float
    chosen: list[str]
    settings_used: dict[str, int]


_paired_ci = mean_ci


def oracle_at(grid: Grid, budget: float) -> tuple[float, float]:
    """Knowing every question's score: the best accuracy at mean spend <= budget (no probe needed)."""
    choice, _ = _lagrangian(grid.acc, grid.cost, np.ones(len(grid.acc)), budget)
    rows = np.arange(len(grid.acc))
    return float(grid.acc[rows, choice].mean()), float(grid.cost[rows, choice].mean())


def oracle_point(grid: Grid) -> tuple[float, float]:
    """Per question, the cheapest setting with its best score."""
    best = grid.acc.max(axis=1, keepdims=True)
    masked = np.where(grid.acc >= best - 1e-12, grid.cost, np.inf)
    choice = masked.argmin(axis=1)
    rows = np.arange(len(grid.acc))
    return float(grid.acc[rows, choice].mean()), float(grid.cost[rows, choice].mean())


def evaluate(grid: Grid, budget: float, *, k: int = 5, seed: int = 0) -> BudgetResult:
    """Nested cross-validation at one budget: for each outer fold, the candidate is selected by inner
    CV on the training questions, fitted on them, and scored on the held-out ones. Compared, on the
    same questions, with the best fixed setting whose mean spend is at most the tuned policy's."""
    n = len(grid.question_ids)
    if n < k * MIN_QUESTIONS_PER_FOLD:
        raise TuneError(
            f"{n} questions with features and every setting: {k}-fold cross-validation needs at least "
            f"{k * MIN_QUESTIONS_PER_FOLD} (use --folds {max(2, n // MIN_QUESTIONS_PER_FOLD)} or sweep more questions)"
        )
    acc, cost = np.zeros(n), np.zeros(n)
    chosen: list[str] = []
    used: dict[str, int] = {}
    inner_k = max(2, min(3, (n - n // k) // MIN_QUESTIONS_PER_FOLD))
    for test in _folds(n, k, seed):
        train = np.setdiff1d(np.arange(n), test)
        cand, _ = select(grid, train, budget, inner_k, seed + 1)
        policy = fit_policy(grid, train, cand, budget)
        acc[test], cost[test], picks = apply_policy(grid, policy, test)
        chosen.append(cand.label)
        for j in picks:
            used[grid.settings[j].label] = used.get(grid.settings[j].label, 0) + 1
    mean_acc, mean_cost = grid.acc.mean(axis=0), grid.cost.mean(axis=0)
    fits = np.flatnonzero(mean_cost <= cost.mean() + 1e-9)
    j = int(fits[np.argmax(mean_acc[fits])]) if len(fits) else int(np.argmin(mean_cost))
    diff = acc - grid.acc[:, j]
    oracle_acc, oracle_cost = oracle_at(grid, float(cost.mean()))
    return BudgetResult(
        budget=budget,
        tuned_acc=float(acc.mean()),
        tuned_ci=_paired_ci(acc, seed),
        tuned_cost=float(cost.mean()),
        fixed_label=grid.settings[j].label,
        fixed_acc=float(mean_acc[j]),
        fixed_cost=float(mean_cost[j]),
        gain=float(diff.mean()),
        gain_ci=_paired_ci(diff, seed + 7),
        oracle_acc=oracle_acc,
        oracle_cost=oracle_cost,
        chosen=chosen,
        settings_used=used,
    )


def default_budgets(grid: Grid, budget: float) -> list[float]:
    """The budget asked for and two around it, inside the grid's range of mean spend."""
    mean_cost = grid.cost.mean(axis=0)
    lo, hi = float(mean_cost.min()), float(mean_cost.max())
    out = sorted({round(min(max(b, lo), hi), 6) for b in (budget / 2, budget, budget * 2)})
    return out


class TuneReport(BaseModel):
    model: str
    suite: str
    unit: str
    metric: str
    questions: int
    folds: int
    fixed: list[dict[str, Any]]
    envelope: list[str]
    oracle: tuple[float, float]
    results: list[BudgetResult]
    selection: list[dict[str, Any]]
    feature_costs: dict[str, float]
    transfer: dict[str, Any] | None = None


def tune(
    grid: Grid, budget: float, *, budgets: list[float] | None = None, k: int = 5, seed: int = 0
) -> tuple[TunedPolicy, TuneReport]:
    """The policy fitted on every question (candidate chosen by CV on all of them) and the report of
    its nested cross-validation at each budget."""
    budgets = budgets or default_budgets(grid, budget)
    results = [evaluate(grid, b, k=k, seed=seed) for b in budgets]
    everyone = np.arange(len(grid.question_ids))
    cand, table = select(grid, everyone, budget, k, seed)
    policy = fit_policy(grid, everyone, cand, budget)
    mean_acc, mean_cost = grid.acc.mean(axis=0), grid.cost.mean(axis=0)
    fixed: list[dict[str, Any]] = [
        {"setting": s.label, "acc": float(mean_acc[j]), "cost": float(mean_cost[j])}
        for j, s in enumerate(grid.settings)
    ]
    envelope: list[str] = []
    best = -1.0
    for f in sorted(fixed, key=lambda f: (f["cost"], -f["acc"])):
        if f["acc"] > best + 1e-12:
            envelope.append(f["setting"])
            best = f["acc"]
    at_budget = next((r for r in results if abs(r.budget - budget) < 1e-6), results[len(results) // 2])
    policy.fitted = {
        "questions": len(grid.question_ids),
        "run_keys": grid.run_keys,
        "candidate": cand.label,
        "cv_folds": k,
        "cv_accuracy": at_budget.tuned_acc,
        "cv_mean_spend": at_budget.tuned_cost,
        "best_fixed": at_budget.fixed_label,
        "gain_over_best_fixed": at_budget.gain,
        "gain_ci": list(at_budget.gain_ci),
    }
    report = TuneReport(
        model=grid.model,
        suite=grid.suite,
        unit=grid.unit,
        metric=grid.metric,
        questions=len(grid.question_ids),
        folds=k,
        fixed=fixed,
        envelope=envelope,
        oracle=oracle_point(grid),
        results=results,
        selection=[{"candidate": r["candidate"].label, "acc": r["acc"], "cost": r["cost"]} for r in table],
        feature_costs={g: float(grid.feature_cost([g]).mean()) for g in grid.groups},
    )
    return policy, report


def transfer(policy: TunedPolicy, grid: Grid) -> dict[str, Any]:
    """A policy fitted on one suite, scored on another grid of the same model (its settings must be
    there; the other grid's spend is used)."""
    index = {_setting_key(s): j for j, s in enumerate(grid.settings)}
    missing = [s.label for s in policy.reachable() if _setting_key(s) not in index]
    if missing:
        raise TuneError(f"the test grid lacks settings the policy chooses: {', '.join(missing)}")
    missing_groups = [g for g in policy.groups if g not in grid.groups]
    if missing_groups:
        raise TuneError(f"the test grid lacks features the policy reads: {', '.join(missing_groups)}")
    rows = np.arange(len(grid.question_ids))
    remapped = grid.settings
    acc, cost = np.zeros(len(rows)), np.zeros(len(rows))
    probe = grid.feature_cost(policy.groups) if policy.groups else np.zeros(len(rows))
    for q in rows:
        i, _ = policy.choose_vector(vector(grid.features[q], policy.groups) if policy.groups else {})
        j = index[_setting_key(policy.settings[i])]
        acc[q], cost[q] = grid.acc[q, j], grid.cost[q, j] + probe[q]
    mean_acc, mean_cost = grid.acc.mean(axis=0), grid.cost.mean(axis=0)
    fits = np.flatnonzero(mean_cost <= cost.mean() + 1e-9)
    j = int(fits[np.argmax(mean_acc[fits])]) if len(fits) else int(np.argmin(mean_cost))
    diff = acc - grid.acc[:, j]
    return {
        "suite": grid.suite,
        "questions": len(rows),
        "acc": float(acc.mean()),
        "cost": float(cost.mean()),
        "best_fixed": remapped[j].label,
        "fixed_acc": float(mean_acc[j]),
        "gain": float(diff.mean()),
        "gain_ci": list(_paired_ci(diff, 11)),
    }
