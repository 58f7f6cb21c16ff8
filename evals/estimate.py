"""Measure a model's mean LLM usage per search round from the fixed-controller runs in a result store.

Each stored row is the cumulative spend of one question after ``round`` rounds, so the spend outside
the rounds is the mean of round 0 (the closed-book draft) and round r costs the mean step from row
r-1 to row r, over questions that really did round r. A controller plans with these means instead
of the upper bound its step caps give (see ``UsageEstimate``).
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean
from typing import Any

from sounding.budgets.controllers import UsageEstimate
from sounding.evals.store import ResultStore


class EstimateError(ValueError):
    pass


def measure_usage(store: ResultStore, model: str) -> UsageEstimate:
    all_runs = store.runs()
    runs = sorted(
        key
        for key, cfg in all_runs.items()
        if cfg["model"] == model and cfg["controller"] == "fixed" and cfg.get("budget") is None
    )
    if not runs:
        models = sorted({cfg["model"] for cfg in all_runs.values()})
        raise EstimateError(
            f"no unbudgeted fixed-controller runs of {model!r} in {store.path}; models there: "
            + (", ".join(models) or "none")
        )
    by_question: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for key in runs:
        for row in store.results(key):
            if row["think"] == 0 and row["samples"] == 1:  # the search spend, without reasoning
                by_question[(key, row["question_id"])][row["round"]] = row
    overhead = [q[0] for q in by_question.values() if 0 in q]
    steps: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for rows in by_question.values():
        for r, row in rows.items():
            if r >= 1 and r - 1 in rows and row["rounds_done"] >= r:
                before = rows[r - 1]
                steps[r].append(
                    (
                        row["prompt_tokens"] - before["prompt_tokens"],
                        row["completion_tokens"] - before["completion_tokens"],
                    )
                )
    # Rounds must be consecutive from 1: a sweep storing depths 0,1,2,4,8 only has steps up to 2.
    measured = []
    for r in range(1, max(steps, default=0) + 1):
        if not steps.get(r):
            break
        measured.append(steps[r])
    if not overhead or not measured:
        raise EstimateError(
            f"the runs of {model!r} in {store.path} have no closed-book and first-round answers "
            "to measure (bench with --depths starting 0,1)"
        )
    return UsageEstimate(
        model=model,
        overhead_prompt_tokens=round(fmean(r["prompt_tokens"] for r in overhead)),
        overhead_completion_tokens=round(fmean(r["completion_tokens"] for r in overhead)),
        round_prompt_tokens=[round(fmean(p for p, _ in s)) for s in measured],
        round_completion_tokens=[round(fmean(c for _, c in s)) for s in measured],
        questions=len(by_question),
        source=f"{store.path} runs {', '.join(runs)}",
    )
