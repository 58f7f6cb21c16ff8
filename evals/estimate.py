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

#: One question of one run: (run key, question id).
_QuestionKey = tuple[str, str]
#: A question's stored rows by round.
_RowsByRound = dict[int, dict[str, Any]]
#: The (prompt, completion) tokens one round added to a question's spend.
_TokenStep = tuple[int, int]


class EstimateError(ValueError):
    pass


def measure_usage(store: ResultStore, model: str) -> UsageEstimate:
    all_runs = store.runs()
    runs = _unbudgeted_fixed_runs(all_runs, model)
    if not runs:
        raise _no_runs_error(store, model, all_runs)
    by_question = _search_rows_by_question(store, runs)
    overhead = [q[0] for q in by_question.values() if 0 in q]
    measured = _consecutive_rounds(_round_steps(by_question))
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


def _unbudgeted_fixed_runs(all_runs: dict[str, dict[str, Any]], model: str) -> list[str]:
    """The sorted keys of the model's fixed-controller runs with no budget: the runs measured."""
    return sorted(
        key
        for key, cfg in all_runs.items()
        if cfg["model"] == model and cfg["controller"] == "fixed" and cfg.get("budget") is None
    )


def _no_runs_error(store: ResultStore, model: str, all_runs: dict[str, dict[str, Any]]) -> EstimateError:
    """What to say when the store has nothing to measure for the model: the models it does hold."""
    models = sorted({cfg["model"] for cfg in all_runs.values()})
    return EstimateError(
        f"no unbudgeted fixed-controller runs of {model!r} in {store.path}; models there: "
        + (", ".join(models) or "none")
    )


def _search_rows_by_question(store: ResultStore, runs: list[str]) -> dict[_QuestionKey, _RowsByRound]:
    """Each question's rows by round, only those of the search spend: no thinking and one sample
    (reasoning adds a spend of its own on top of a round's)."""
    by_question: dict[_QuestionKey, _RowsByRound] = defaultdict(dict)
    for key in runs:
        for row in store.results(key):
            if row["think"] == 0 and row["samples"] == 1:
                by_question[(key, row["question_id"])][row["round"]] = row
    return by_question


def _round_steps(by_question: dict[_QuestionKey, _RowsByRound]) -> dict[int, list[_TokenStep]]:
    """Per round r >= 1, the tokens each question spent going from round r-1 to round r, over the
    questions that stored both rows and really did round r (a run can stop before its depth)."""
    steps: dict[int, list[_TokenStep]] = defaultdict(list)
    for rows in by_question.values():
        for r, row in rows.items():
            if r >= 1 and r - 1 in rows and row["rounds_done"] >= r:
                steps[r].append(_token_step(rows[r - 1], row))
    return steps


def _token_step(before: dict[str, Any], after: dict[str, Any]) -> _TokenStep:
    """The (prompt, completion) tokens spent between two cumulative rows of one question."""
    return (
        after["prompt_tokens"] - before["prompt_tokens"],
        after["completion_tokens"] - before["completion_tokens"],
    )


def _consecutive_rounds(steps: dict[int, list[_TokenStep]]) -> list[list[_TokenStep]]:
    """The steps of rounds 1, 2, ... up to the first round with none.

    Rounds must be consecutive from 1: a sweep storing depths 0,1,2,4,8 only has steps up to 2."""
    measured = []
    for r in range(1, max(steps, default=0) + 1):
        if not steps.get(r):
            break
        measured.append(steps[r])
    return measured
