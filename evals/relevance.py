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


# --- blind labelling of printed sentences across runs ----------------------------------------------


class SheetItem(BaseModel):
    """One printed sentence to label, with nothing that says which run wrote it."""

    item: str
    question: str
    section: str
    sentence: str
    #: Filled in by the labeller: is the sentence about its section's sub-question?
    on_topic: bool | None = None


class SheetKey(BaseModel):
    """Where a sheet item came from (kept in a file of its own, read after labelling)."""

    item: str
    run: str
    id: str


def printed_by_section(markdown: str) -> list[tuple[str, str]]:
    """(sub-question, sentence) for every sentence a report prints under a section heading."""
    from sounding.evals.reader import printed_sentences

    pairs: list[tuple[str, str]] = []
    section = ""
    for line in markdown.splitlines():
        if line.startswith("### "):
            section = line[4:].strip()
        elif section:
            pairs += [(section, s) for s in printed_sentences(line)]
    return pairs


def blind_sheet(
    runs: dict[str, list[tuple[str, str, str]]], seed: int = 0, prefix: str = "s"
) -> tuple[list[SheetItem], list[SheetKey]]:
    """A labelling sheet of every printed sentence of several runs, shuffled together so the labeller
    cannot tell which run wrote a sentence, and its key. ``runs``: run name -> (id, question,
    markdown) per report. Item names are ``prefix`` and a number (several sheets are read together
    when their prefixes differ)."""
    rows = [
        (run, rid, question, section, sentence)
        for run, reports in runs.items()
        for rid, question, markdown in reports
        for section, sentence in printed_by_section(markdown)
    ]
    order = np.random.default_rng(seed).permutation(len(rows))
    items, keys = [], []
    for i, j in enumerate(order, 1):
        run, rid, question, section, sentence = rows[int(j)]
        name = f"{prefix}{i:04d}"
        items.append(SheetItem(item=name, question=question, section=section, sentence=sentence))
        keys.append(SheetKey(item=name, run=run, id=rid))
    return items, keys


class OffTopicShare(BaseModel):
    run: str
    sentences: int
    off_topic: int
    ci: tuple[float, float]
    reports: int
    reports_with_any: int


def off_topic_shares(items: list[SheetItem], keys: list[SheetKey]) -> list[OffTopicShare]:
    """Per run: the share of labelled sentences labelled off topic (Wilson CI) and the reports with
    at least one. Every item must be labelled and keyed."""
    key = {k.item: k for k in keys}
    missing = [x.item for x in items if x.on_topic is None or x.item not in key]
    if missing:
        raise RelevanceLabelError(
            f"{len(missing)} sheet items unlabelled or not in the key, e.g. {missing[0]}"
        )
    out = []
    for run in sorted({k.run for k in keys}):
        mine = [x for x in items if key[x.item].run == run]
        off = [x for x in mine if x.on_topic is False]
        reports = {key[x.item].id for x in mine}
        with_any = {key[x.item].id for x in off}
        out.append(
            OffTopicShare(
                run=run,
                sentences=len(mine),
                off_topic=len(off),
                ci=wilson(len(off), len(mine)) if mine else (0.0, 1.0),
                reports=len(reports),
                reports_with_any=len(with_any),
            )
        )
    return out
