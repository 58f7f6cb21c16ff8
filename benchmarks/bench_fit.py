"""How long `sounding fit` / `report` spend fitting laws, before and after the logistic law got an
analytic Jacobian, on a real grid store, both arms in one run (read the ratio: the machine is shared).

    .venv/bin/python benchmarks/bench_fit.py docs/results/reasoning-grid/2wiki --bootstrap 20 --repeats 3 \
        --out benchmarks/results/fit-jacobian.json

The baseline is the law as it was (clipped exp, finite-difference Jacobian), patched into
`evals/fit.py` for its arm. Both arms fit the same curves on the same bootstrap resamples; the
benchmark reports the wall time of `analyse` (where the report spends its time) and how far the two
arms' logistic fits are apart: point estimates as predicted accuracies at the curve's own x, R², and
the 95% CI bounds of both parameters.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import curve_fit

from sounding.evals import fit
from sounding.evals.store import ResultStore


def baseline_logistic_law(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    z = np.clip(alpha + beta * np.log(x), -500, 500)
    return 1.0 / (1.0 + np.exp(-z))


def baseline_fit_law(form: str, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    if len(x) < 2 or len(np.unique(x)) < 2:
        return None
    if form == "linear":
        b, a = np.polyfit(np.log(x), y, 1)
        return np.array([a, b])
    eps = 1e-3
    logit = np.log(np.clip(y, eps, 1 - eps) / (1 - np.clip(y, eps, 1 - eps)))
    beta0, alpha0 = np.polyfit(np.log(x), logit, 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = curve_fit(baseline_logistic_law, x, y, p0=[alpha0, beta0], maxfev=5000)
    except (RuntimeError, ValueError):
        return np.array([alpha0, beta0])
    return np.asarray(params)


def run(rows: list[dict[str, Any]], runs: dict[str, Any], n_boot: int, baseline: bool) -> tuple[float, Any]:
    saved = fit.fit_law, fit.LAWS
    if baseline:
        fit.fit_law = baseline_fit_law  # type: ignore[assignment]
        fit.LAWS = {**fit.LAWS, "logistic": (baseline_logistic_law, ("alpha", "beta"))}
    try:
        start = time.perf_counter()
        analysis = fit.analyse(rows, runs, n_boot=n_boot, by="qtype")
        return time.perf_counter() - start, analysis
    finally:
        fit.fit_law, fit.LAWS = saved


def logistic_fits(analysis: Any) -> dict[tuple[str, ...], tuple[Any, np.ndarray, np.ndarray]]:
    """(curve, axis) -> (the logistic LawFit, the curve's x and accuracy on that axis)."""
    out = {}
    for curve in analysis.curves:
        key = (curve.model, curve.suite, curve.controller, str(curve.budget), curve.group, curve.setting,
               str(curve.think), str(curve.samples), curve.unit)  # fmt: skip
        for law in curve.fits:
            if law.form != "logistic":
                continue
            xs = np.array(
                [p.steps_given if law.axis == "steps" else p.cost.get(law.axis, 0.0) for p in curve.points],
                dtype=float,
            )
            ys = np.array([p.acc for p in curve.points], dtype=float)
            out[(*key, law.axis)] = (law, xs[xs > 0], ys[xs > 0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="alternating (baseline, change) pairs")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    store = ResultStore.open_read_only(args.run_dir / "results.sqlite")
    rows, runs = store.results(), store.runs()
    # the arms alternate (baseline, change, baseline, ...): load drift on a shared machine shows up
    # as spread between the pairs' ratios instead of biasing one arm
    pairs = []
    for _ in range(args.repeats):
        t_base, base = run(rows, runs, args.bootstrap, baseline=True)
        t_new, new = run(rows, runs, args.bootstrap, baseline=False)
        pairs.append((t_base, t_new))
    old_fits, new_fits = logistic_fits(base), logistic_fits(new)
    pred_diff, r2_diff, ci_diff, sse_change = [], [], [], []
    for key, (old, xs, ys) in old_fits.items():
        new_law = new_fits[key][0]
        p_old = fit.logistic_law(xs, *old.params.values())
        p_new = fit.logistic_law(xs, *new_law.params.values())
        pred_diff.append(float(np.max(np.abs(p_old - p_new))))
        # least squares: the smaller residual is the better fit of the same law to the same points
        sse_change.append(float(np.sum((p_new - ys) ** 2) - np.sum((p_old - ys) ** 2)))
        if old.r2 is not None and new_law.r2 is not None:
            r2_diff.append(abs(old.r2 - new_law.r2))
        for name, (lo, hi) in old.params_ci.items():
            lo2, hi2 = new_law.params_ci[name]
            ci_diff.append(max(abs(lo - lo2), abs(hi - hi2)) / max(1.0, abs(lo), abs(hi)))
    result = {
        "store": str(args.run_dir),
        "bootstrap": args.bootstrap,
        "logistic_fits": len(old_fits),
        "seconds_baseline": [round(b, 2) for b, _ in pairs],
        "seconds_jacobian": [round(n, 2) for _, n in pairs],
        "ratio_per_pair": [round(n / b, 3) for b, n in pairs],
        "median_ratio_jacobian_to_baseline": round(float(np.median([n / b for b, n in pairs])), 3),
        "max_abs_prediction_difference": max(pred_diff, default=0.0),
        "fits_within_0.01_of_baseline": float(np.mean([d <= 0.01 for d in pred_diff])) if pred_diff else None,
        "fits_with_smaller_or_equal_residual": float(np.mean([c <= 1e-9 for c in sse_change]))
        if sse_change
        else None,
        "largest_residual_increase": max(sse_change, default=0.0),
        "largest_residual_decrease": -min(sse_change, default=0.0),
        "max_abs_r2_difference": max(r2_diff, default=0.0),
        "ci_bounds_within_1pct": float(np.mean([d <= 0.01 for d in ci_diff])) if ci_diff else None,
        "max_relative_ci_bound_difference": max(ci_diff, default=0.0),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
