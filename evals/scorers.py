"""Scorers apart from solving: a metric is a function of one answer and its gold answers, applied to
the readings of a stored trace. A new metric re-scores every stored run without re-running it and
without migrating the store.

A row of the store is a reading of one question's run at (round, thinking cap, sample count). Its
answer at (think 0, samples 1) is the round's greedy draft; with N samples its score is the exact mean
over every size-N subset of the stored samples' votes (`_reading`), which is why a score cannot be
recomputed from the row's one representative answer: it is recomputed from the trace's drafts.

Adding a metric: one line in ``SCORERS`` (name -> ``AnswerMetric``). `sounding fit|report|frontier
--metric NAME` then reads it off the traces of any store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sounding.agent.nodes import NO_ANSWER
from sounding.agent.reasoning import Reasoning, vote_subsets
from sounding.evals.metrics import best, cover_exact_match, exact_match, f1_score

#: One answer and its gold aliases -> a score in [0, 1].
AnswerMetric = Callable[[str, list[str]], float]

SCORERS: dict[str, AnswerMetric] = {
    "em": lambda answer, golds: best(exact_match, answer, golds),
    "f1": lambda answer, golds: best(f1_score, answer, golds),
    "cover_em": lambda answer, golds: best(cover_exact_match, answer, golds),
}
#: Metrics scored when the question was solved and stored as columns (the judge needs its LLM).
STORED = ("em", "f1", "cover_em", "judge")


class UnknownMetricError(ValueError):
    """A metric that is neither stored nor registered."""


def check_metric(name: str) -> str:
    if name not in STORED and name not in SCORERS:
        raise UnknownMetricError(
            f"unknown metric {name!r}: use {', '.join(dict.fromkeys([*STORED, *SCORERS]))}"
        )
    return name


def reasoning_of(draft: dict[str, Any]) -> Reasoning | None:
    raw = draft.get("reasoning")
    return Reasoning.model_validate(raw) if raw else None


def reading(
    draft: dict[str, Any], think: int, n: int, golds: list[str], metrics: dict[str, AnswerMetric]
) -> tuple[str, dict[str, float]]:
    """The answer at (think, n samples) of one round's draft and its scores (exact subset mean)."""
    reasoning = reasoning_of(draft)
    if reasoning is None or (think == 0 and n == 1):
        answer = draft.get("greedy", draft["answer"])
        return answer, {name: float(metric(answer, golds)) for name, metric in metrics.items()}
    answer = reasoning.vote_at(think, n).answer or NO_ANSWER
    subsets = vote_subsets(len(reasoning.drawn), n)
    totals = dict.fromkeys(metrics, 0.0)
    for subset in subsets:
        voted = reasoning.vote_at(think, n, subset).answer or ""
        for name, metric in metrics.items():
            totals[name] += float(metric(voted, golds))
    return answer, {name: total / len(subsets) for name, total in totals.items()}


def draft_at(trace: dict[str, Any], depth: int) -> dict[str, Any] | None:
    """The anytime draft a run stopped at ``depth`` would have answered with (the last one by then)."""
    at = [d for d in trace.get("drafts", []) if d["round"] <= depth]
    return max(at, key=lambda d: d["round"]) if at else None


def rescore(
    rows: Iterable[dict[str, Any]], traces: dict[tuple[str, str], dict[str, Any]], metric: str
) -> list[dict[str, Any]]:
    """Rows with ``metric`` scored from their traces (stored metrics are kept as stored). A row whose
    question has no trace (stores from before traces) cannot be re-scored: it is left out, and said so
    by ``RescoreReport``-style callers comparing lengths."""
    check_metric(metric)
    if metric in STORED:
        return list(rows)
    scorer = {metric: SCORERS[metric]}
    out = []
    for row in rows:
        trace = traces.get((row["run_key"], row["question_id"]))
        draft = draft_at(trace, int(row["round"])) if trace else None
        if draft is None:
            continue
        golds = row["golds"] if isinstance(row["golds"], list) else list(row["golds"])
        _, scores = reading(draft, int(row.get("think", 0)), int(row.get("samples", 1)), golds, scorer)
        out.append({**row, metric: scores[metric]})
    return out
