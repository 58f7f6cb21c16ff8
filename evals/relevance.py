"""How well a report's relevance filter tells on-topic sentences from off-topic ones, against hand labels.

The labels (one JSON object per line: ``question``, ``section``, ``sentence``, ``on_topic``) are
sentences of stored reports, each read with its section's sub-question and labelled off-topic when it
is about another subject (a film, a definition of sociology, another war). The filter scores a
sentence by its `bearing` (agent/report.py) on its section: the closer of its embedding cosines with
the sub-question and the report's question. Reported: the AUROC of that score for "on topic", and at
each candidate floor the on-topic sentences lost and the off-topic ones dropped, with Wilson CIs (the
off-topic sentences are few).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel
from scipy.stats import binomtest

from sounding.agent.report import bearing
from sounding.evals.reports import ReportEvalError
from sounding.evals.rubric import read_jsonl
from sounding.tools.relevance import Relatedness


class RelevanceLabel(BaseModel):
    question: str
    section: str
    sentence: str
    on_topic: bool


class FloorRow(BaseModel):
    floor: float
    on_topic_lost: int
    on_topic: int
    off_topic_dropped: int
    off_topic: int
    #: Wilson 95% CIs of the two shares.
    lost_ci: tuple[float, float]
    dropped_ci: tuple[float, float]


class RelevanceCalibration(BaseModel):
    labels: int
    on_topic: int
    auroc: float
    rows: list[FloorRow]


class RelevanceLabelError(ValueError):
    """A labels file that cannot be read as relevance labels."""


def read_labels(path: Path) -> list[RelevanceLabel]:
    try:
        labels = list(read_jsonl(path, RelevanceLabel, "relevance label"))
    except ReportEvalError as exc:
        raise RelevanceLabelError(str(exc)) from exc
    if not any(label.on_topic for label in labels) or all(label.on_topic for label in labels):
        raise RelevanceLabelError(f"{path} needs both on-topic and off-topic sentences")
    return labels


def auroc(positives: list[float], negatives: list[float]) -> float:
    """The chance that a random on-topic sentence scores above a random off-topic one (ties half)."""
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (round(float(ci.low), 3), round(float(ci.high), 3))


def calibrate(
    labels: list[RelevanceLabel], related: Relatedness, floors: list[float]
) -> RelevanceCalibration:
    scores = [bearing(related, [x.sentence], x.section, x.question)[0] for x in labels]
    on = [s for s, x in zip(scores, labels, strict=True) if x.on_topic]
    off = [s for s, x in zip(scores, labels, strict=True) if not x.on_topic]
    rows = []
    for floor in floors:
        lost = sum(s < floor for s in on)
        dropped = sum(s < floor for s in off)
        rows.append(
            FloorRow(
                floor=floor,
                on_topic_lost=lost,
                on_topic=len(on),
                off_topic_dropped=dropped,
                off_topic=len(off),
                lost_ci=wilson(lost, len(on)),
                dropped_ci=wilson(dropped, len(off)),
            )
        )
    return RelevanceCalibration(
        labels=len(labels), on_topic=len(on), auroc=round(auroc(on, off), 3), rows=rows
    )


def calibration_markdown(result: RelevanceCalibration, chosen: float) -> str:
    lines = [
        f"{result.labels} labelled sentences ({result.on_topic} on topic, "
        f"{result.labels - result.on_topic} off topic); AUROC of the score: {result.auroc:.3f}",
        "",
        "| floor | on-topic sentences lost [95% CI] | off-topic sentences dropped [95% CI] |",
        "|---|---|---|",
    ]
    for row in result.rows:
        mark = " (the report's)" if abs(row.floor - chosen) < 1e-9 else ""
        lines.append(
            f"| {row.floor:.2f}{mark} | {row.on_topic_lost}/{row.on_topic} "
            f"[{row.lost_ci[0]:.2f}, {row.lost_ci[1]:.2f}] | {row.off_topic_dropped}/{row.off_topic} "
            f"[{row.dropped_ci[0]:.2f}, {row.dropped_ci[1]:.2f}] |"
        )
    return "\n".join(lines)
