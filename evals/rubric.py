"""Rubric coverage of stored reports (issue 32): how much of what a good answer says a report says.

Each open question has a rubric beside it (``suites/wiki_vital_open_rubric.jsonl``): key points, each a
short claim tied to a verbatim passage of the corpus. A judge model reads one stored answer (the
report, or the one-shot answer from the same notes) and says, point by point, whether the answer
states it. Scoring stays apart from solving: this reads ``records.jsonl`` of an `eval-reports` folder
and writes its verdicts beside it (``rubric-<judge>.jsonl``, resumable), so a new judge or a new rubric
re-scores without re-running a report.

A small judge says yes to anything: asked only "is the point stated?", Qwen2.5-Coder-1.5B said yes to
every point of the first 15 answers, an empty report's included. So a verdict must be grounded: for
each point the judge quotes the answer's words that state it, and a point counts as stated only when
the judge says so *and* its quote is in the answer (a yes with an empty or invented quote is not).
The verdicts are checked against hand labels stored beside the records (``rubric-labels.jsonl``):
agreement, Cohen's kappa and both yes-rates, and a label is only compared with a verdict on the very
text it was made on (a digest of the text).
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from sounding.agent.llm_step import budgeted_json
from sounding.evals.reports import ReportEvalError, ReportRecord, append_line, drop_cut_line
from sounding.evals.stats import mean_ci
from sounding.tools.llm.base import LLM, Message
from sounding.tools.text import lexical_support, sentences

RUBRIC_PROMPT = tomllib.loads(
    resources.files("sounding.evals").joinpath("prompts/judge.toml").read_text(encoding="utf-8")
)["rubric"]
#: The answers a rubric is applied to: the report as printed, and the one-shot answer from its notes.
Arm = Literal["report", "one_shot"]
RUBRIC_ARMS: tuple[Arm, ...] = ("report", "one_shot")
#: Completion tokens per point of the judge's answer (a quote of at most QUOTE_CHARS and the verdict).
TOKENS_PER_POINT = 60
QUOTE_CHARS = 200
#: A quote shorter than this (in words) grounds nothing ("the", "Budapest").
MIN_QUOTE_WORDS = 3
#: The lexical reading: a point is stated when one sentence of the answer holds this share of its content words.
LEXICAL_STATED = 0.5


class RubricPoint(BaseModel):
    point: str = Field(min_length=1)
    source: str
    evidence: str


class Rubric(BaseModel):
    id: str
    points: list[RubricPoint] = Field(min_length=1)
    #: what the corpus does not cover of the question, when it supports fewer points than a good answer makes
    note: str | None = None


class Coverage(BaseModel):
    """One judge's verdicts on one stored answer: ``stated[i]`` for the rubric's i-th point (None when
    the judge's answer had no usable verdict there)."""

    id: str
    arm: Arm
    text_sha: str
    judge_model: str
    #: the grounded verdicts: the judge said stated and quoted the answer's words that state it
    stated: list[bool | None]
    #: the judge's own yes/no, before its quote is checked (None: no usable verdict)
    claimed: list[bool | None] = []
    #: model-free: some sentence of the answer holds at least LEXICAL_STATED of the point's content words
    lexical: list[bool] = []
    tokens: int = 0

    @property
    def share(self) -> float:
        """Points stated over the rubric's points (a point without a verdict counts as not stated)."""
        return sum(1 for s in self.stated if s) / len(self.stated)


class Label(BaseModel):
    """A hand label: does the answer ``arm`` of question ``id`` (the text with digest ``text_sha``)
    state rubric point ``point`` (0-based)?"""

    id: str
    arm: Arm
    point: int = Field(ge=0)
    text_sha: str
    stated: bool


def rubric_path(questions: Path) -> Path:
    """The rubric beside a questions file: ``x.jsonl`` -> ``x_rubric.jsonl``."""
    return questions.with_name(questions.stem + "_rubric.jsonl")


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def answer_text(record: ReportRecord, arm: Arm) -> str:
    return record.report_markdown if arm == "report" else record.one_shot_text


def read_jsonl(path: Path, model: type[BaseModel], what: str) -> Iterator[Any]:
    """Each non-blank line of a JSONL file as ``model``; a clear error naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportEvalError(f"cannot read {what} {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield model.model_validate_json(line)
        except ValidationError as exc:
            raise ReportEvalError(f"{path}, line {number}: not a {what} ({exc.errors()[0]['msg']})") from exc


def load_rubric(path: Path) -> dict[str, Rubric]:
    rubrics: dict[str, Rubric] = {}
    for rubric in read_jsonl(path, Rubric, "rubric"):
        if rubric.id in rubrics:
            raise ReportEvalError(f"{path}: the question {rubric.id!r} has two rubrics")
        rubrics[rubric.id] = rubric
    return rubrics


def load_labels(path: Path, rubrics: dict[str, Rubric]) -> list[Label]:
    labels = list(read_jsonl(path, Label, "hand label"))
    for label in labels:
        rubric = rubrics.get(label.id)
        if rubric is None or label.point >= len(rubric.points):
            raise ReportEvalError(
                f"{path}: a label for {label.id!r} point {label.point} has no such rubric point"
            )
    return labels


# --- the judge -------------------------------------------------------------------------------------


def coverage_schema(n: int) -> dict[str, Any]:
    verdict = {
        "type": "object",
        "properties": {"quote": {"type": "string", "maxLength": QUOTE_CHARS}, "stated": {"type": "boolean"}},
        "required": ["quote", "stated"],
    }
    return {
        "type": "object",
        "properties": {"points": {"type": "array", "items": verdict, "minItems": n, "maxItems": n}},
        "required": ["points"],
    }


def coverage_messages(question: str, text: str, points: list[RubricPoint]) -> list[Message]:
    listed = "\n".join(f"Point {i}: {p.point}" for i, p in enumerate(points, 1))
    return [
        {"role": "system", "content": RUBRIC_PROMPT["system"]},
        {
            "role": "user",
            "content": RUBRIC_PROMPT["user"].format(question=question, answer=text, points=listed),
        },
    ]


def judge_coverage(judge: LLM, ledger: Any, record: ReportRecord, arm: Arm, rubric: Rubric) -> Coverage:
    """One judge call: which of the rubric's points the stored answer states. An empty answer states
    none, without a call."""
    text = answer_text(record, arm).strip()
    n = len(rubric.points)
    base = Coverage(id=record.id, arm=arm, text_sha=text_sha(answer_text(record, arm)), judge_model=judge.name,
                    stated=[False] * n, lexical=[lexically_stated(p.point, text) for p in rubric.points])  # fmt: skip
    if not text:
        return base
    result = budgeted_json(
        judge,
        ledger,
        coverage_messages(record.question, text, rubric.points),
        coverage_schema(n),
        cap=TOKENS_PER_POINT * n + 20,
        node="rubric",
        round=0,
        seed=0,
        temperature=0.0,
    )
    verdicts = list((result.value or {}).get("points", []))[:n]
    claimed: list[bool | None] = [
        v["stated"] if isinstance(v, dict) and isinstance(v.get("stated"), bool) else None for v in verdicts
    ]
    claimed += [None] * (n - len(claimed))
    quotes = [str(v.get("quote") or "") if isinstance(v, dict) else "" for v in verdicts] + [""] * n
    stated = [None if c is None else bool(c and quoted(quotes[i], text)) for i, c in enumerate(claimed)]
    tokens = sum(c.usage.tokens for c in result.charges)
    return base.model_copy(update={"stated": stated, "claimed": claimed, "tokens": tokens})


def lexically_stated(point: str, text: str) -> bool:
    """Whether one sentence of ``text`` holds at least LEXICAL_STATED of the point's content words."""
    return any(lexical_support(point, [s]) >= LEXICAL_STATED for s in sentences(text))


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def quoted(quote: str, text: str) -> bool:
    """Whether ``quote`` is words of ``text`` (case, punctuation and spacing aside) and long enough
    to ground a verdict; a quote cut at the schema's length limit counts by what it holds."""
    words = _normal(quote)
    return len(words.split()) >= MIN_QUOTE_WORDS and words in _normal(text)


class CoverageStore:
    """``rubric-<judge>.jsonl`` beside the records: one verdict line per (question, arm, text); a rerun
    skips what is judged, a line cut by a crash is dropped and redone."""

    def __init__(self, folder: Path, judge_model: str) -> None:
        self.path = folder / f"rubric-{judge_model}.jsonl"
        drop_cut_line(self.path)

    def coverages(self) -> list[Coverage]:
        return list(read_jsonl(self.path, Coverage, "rubric verdict")) if self.path.exists() else []

    def append(self, coverage: Coverage) -> None:
        append_line(self.path, coverage.model_dump_json())


def check_rubrics(records: list[ReportRecord], rubrics: dict[str, Rubric]) -> None:
    """ReportEvalError naming the records whose question has no rubric."""
    missing = [r.id for r in records if r.id not in rubrics]
    if missing:
        raise ReportEvalError(f"no rubric for the question(s) {', '.join(missing)}")


def score_records(
    records: list[ReportRecord],
    rubrics: dict[str, Rubric],
    store: CoverageStore,
    judge: Callable[[ReportRecord, Arm, Rubric], Coverage],
    *,
    on_coverage: Callable[[Coverage], None] = lambda c: None,
) -> list[Coverage]:
    """Every (record, arm) judged once against its question's rubric; returns the verdicts on the
    records' current texts (a record whose text changed is judged again)."""
    check_rubrics(records, rubrics)
    done = {(c.id, c.arm, c.text_sha): c for c in store.coverages()}
    out = []
    for record in records:
        for arm in RUBRIC_ARMS:
            key = (record.id, arm, text_sha(answer_text(record, arm)))
            if key not in done:
                done[key] = judge(record, arm, rubrics[record.id])
                store.append(done[key])
                on_coverage(done[key])
            if not done[key].lexical:  # a verdict stored before the lexical reading: it needs no model
                text = answer_text(record, arm)
                lexical = [lexically_stated(p.point, text) for p in rubrics[record.id].points]
                done[key] = done[key].model_copy(update={"lexical": lexical})
            out.append(done[key])
    return out


# --- the summary -----------------------------------------------------------------------------------


def coverage_summary(coverages: list[Coverage], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per arm: mean rubric coverage over questions with its 95% percentile-bootstrap CI; the report
    minus the one-shot answer, paired on the questions both were judged on."""
    by = {(c.id, c.arm): c.share for c in coverages}
    ids = sorted({c.id for c in coverages})
    out: dict[str, Any] = {"questions": len(ids), "arms": {}}
    for arm in RUBRIC_ARMS:
        shares = np.array([by[(q, arm)] for q in ids if (q, arm) in by])
        out["arms"][arm] = _mean_ci(shares, n_boot, seed)
    both = [q for q in ids if (q, "report") in by and (q, "one_shot") in by]
    diffs = np.array([by[(q, "report")] - by[(q, "one_shot")] for q in both])
    out["paired"] = _mean_ci(diffs, n_boot, seed)
    return {**out, **_judged_counts(coverages)}


def _judged_counts(coverages: list[Coverage]) -> dict[str, int]:
    """Points judged and left unjudged, the judge's yeses, and its yeses without words of the answer
    that state the point (what grounding took away)."""
    return {
        "points_judged": sum(len(c.stated) for c in coverages),
        "points_unjudged": sum(1 for c in coverages for s in c.stated if s is None),
        "claimed_yes": sum(1 for c in coverages for x in c.claimed if x),
        "ungrounded_yes": sum(
            1 for c in coverages for x, s in zip(c.claimed, c.stated, strict=False) if x and not s
        ),
    }


def lexical_summary(
    records: list[ReportRecord], rubrics: dict[str, Rubric], n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """The model-free reading over every record: per arm, the share of rubric points one sentence of
    the answer holds (see `lexically_stated`), mean over questions with its CI; report minus one-shot
    paired. Raises ReportEvalError when a record's question has no rubric."""
    check_rubrics(records, rubrics)
    # a report-only run (`eval-reports --report-only`) wrote no one-shot answer: that arm is absent,
    # not an answer that states nothing
    shares = {
        (r.id, arm): float(
            np.mean([lexically_stated(p.point, answer_text(r, arm)) for p in rubrics[r.id].points])
        )
        for r in records
        for arm in RUBRIC_ARMS
        if arm != "one_shot" or r.one_shot_text.strip()
    }
    ids = sorted({q for q, _ in shares})
    out: dict[str, Any] = {"questions": len(ids), "arms": {}}
    for arm in RUBRIC_ARMS:
        out["arms"][arm] = _mean_ci(
            np.array([shares[(q, arm)] for q in ids if (q, arm) in shares]), n_boot, seed
        )
    both = [q for q in ids if (q, "one_shot") in shares]
    out["paired"] = _mean_ci(
        np.array([shares[(q, "report")] - shares[(q, "one_shot")] for q in both]), n_boot, seed
    )
    return out


def lexical_markdown(summary: dict[str, Any]) -> str:
    arms, p = summary["arms"], summary["paired"]

    def row(label: str, a: dict[str, Any]) -> str:
        if a["mean"] is None:
            return f"| {label} | 0 | n/a |"
        return f"| {label} | {a['n']} | {a['mean']:.2f} [{a['ci'][0]:.2f}, {a['ci'][1]:.2f}] |"

    lines = [
        f"Rubric coverage, lexical reading (no model), {summary['questions']} questions: the share of a "
        f"question's key points that one sentence of the answer holds half the content words of.",
        "",
        "| answer | questions | lexical rubric coverage [95% CI] |",
        "|---|---|---|",
        row("sounding report", arms["report"]),
        row("one-shot answer from the same notes", arms["one_shot"]),
        "",
    ]
    if p["mean"] is not None:
        lines.append(
            f"- report minus one-shot: {p['mean']:+.2f} [{p['ci'][0]:+.2f}, {p['ci'][1]:+.2f}] (paired, {p['n']} questions)"
        )
    return "\n".join(lines) + "\n"


def _mean_ci(values: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    if not len(values):
        return {"n": 0, "mean": None, "ci": None}
    return {"n": len(values), "mean": float(values.mean()), "ci": mean_ci(values, seed, n_boot)}


def agreement(
    coverages: list[Coverage],
    labels: list[Label],
    *,
    verdict: Literal["stated", "claimed", "lexical"] = "stated",
) -> dict[str, Any]:
    """A reading against the hand labels on the same texts: agreement, Cohen's kappa, both yes-rates
    (a judge saying yes far more often than the labels is yes-biased), and how many labels had no
    verdict to compare with (another text, or no usable verdict). ``verdict``: the grounded verdict,
    the judge's own yes/no before its quotes are checked, or the model-free lexical reading."""
    verdicts: dict[tuple[str, str, str], list[Any]] = {
        (c.id, c.arm, c.text_sha): list(getattr(c, verdict)) for c in coverages
    }
    pairs: list[tuple[bool, bool]] = []
    for label in labels:
        stated = verdicts.get((label.id, label.arm, label.text_sha))
        if stated is not None and label.point < len(stated) and stated[label.point] is not None:
            pairs.append((bool(stated[label.point]), label.stated))
    out: dict[str, Any] = {"labels": len(labels), "compared": len(pairs)}
    if not pairs:
        return out | {"agreement": None, "kappa": None, "judge_yes": None, "label_yes": None}
    judge = np.array([p[0] for p in pairs], dtype=float)
    hand = np.array([p[1] for p in pairs], dtype=float)
    observed = float((judge == hand).mean())
    chance = float(judge.mean() * hand.mean() + (1 - judge.mean()) * (1 - hand.mean()))
    kappa = None if chance == 1.0 else (observed - chance) / (1 - chance)
    return out | {
        "agreement": observed,
        "kappa": kappa,
        "judge_yes": float(judge.mean()),
        "label_yes": float(hand.mean()),
    }


def lexical_agreement(
    records: list[ReportRecord], rubrics: dict[str, Rubric], labels: list[Label]
) -> dict[str, Any]:
    """The model-free lexical reading against the hand labels of the same texts (no judge needed):
    agreement, Cohen's kappa and both yes-rates, as `agreement` gives for a judge."""
    coverages = []
    for record in records:
        for arm in RUBRIC_ARMS:
            text = answer_text(record, arm)
            if arm == "one_shot" and not text.strip():
                continue
            lexical = [lexically_stated(p.point, text) for p in rubrics[record.id].points]
            coverages.append(
                Coverage(
                    id=record.id,
                    arm=arm,
                    text_sha=text_sha(text),
                    judge_model="",
                    stated=list(lexical),
                    lexical=lexical,
                )
            )
    return agreement(coverages, labels, verdict="lexical")


def lexical_agreement_line(agreed: dict[str, Any]) -> str:
    if not agreed.get("compared"):
        return f"- no hand label matches these texts ({agreed['labels']} labels)"
    kappa = "n/a" if agreed["kappa"] is None else f"{agreed['kappa']:.2f}"
    return (
        f"- against {agreed['compared']} hand labels: agreement {agreed['agreement']:.2f}, Cohen's kappa "
        f"{kappa}; says stated on {agreed['judge_yes']:.2f}, the labels on {agreed['label_yes']:.2f}"
    )


def summary_markdown(summary: dict[str, Any], agreed: dict[str, Any] | None, judge_model: str) -> str:
    def num(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    def ci(pair: Any, signed: bool = False) -> str:
        if not pair:
            return ""
        f = "{:+.2f}" if signed else "{:.2f}"
        return f" [{f.format(pair[0])}, {f.format(pair[1])}]"

    arms = summary["arms"]
    lines = [
        f"Rubric coverage, judged by {judge_model}, {summary['questions']} questions: the share of a question's "
        "key points its answer states (mean over questions, 95% percentile-bootstrap CI).",
        "",
        "| answer | questions | rubric coverage [95% CI] |",
        "|---|---|---|",
        f"| sounding report | {arms['report']['n']} | {num(arms['report']['mean'])}{ci(arms['report']['ci'])} |",
        f"| one-shot answer from the same notes | {arms['one_shot']['n']} | "
        f"{num(arms['one_shot']['mean'])}{ci(arms['one_shot']['ci'])} |",
        "",
    ]
    p = summary["paired"]
    if p["mean"] is not None:
        lines.append(
            f"- report minus one-shot: {p['mean']:+.2f}{ci(p['ci'], True)} (paired, {p['n']} questions)"
        )
    lines.append(
        f"- points judged: {summary['points_judged']}, without a usable verdict: {summary['points_unjudged']}"
    )
    if summary.get("claimed_yes"):
        lines.append(
            f"- the judge said 'stated' {summary['claimed_yes']} times; {summary['ungrounded_yes']} of those came "
            "without words of the answer that state the point and do not count"
        )
    if agreed is not None:
        if agreed["agreement"] is None:
            lines.append(f"- hand labels: {agreed['labels']}, none on the texts judged here")
        else:
            kappa = "n/a" if agreed["kappa"] is None else f"{agreed['kappa']:.2f}"
            lines.append(
                f"- the judge against {agreed['compared']} hand labels (of {agreed['labels']}): agreement "
                f"{agreed['agreement']:.2f}, Cohen's kappa {kappa}; says 'stated' on {agreed['judge_yes']:.2f} "
                f"of them, the labels on {agreed['label_yes']:.2f}"
            )
            for key, what in (("ungrounded", "the judge's own yes/no before its quotes are checked"),
                              ("lexical", "the lexical reading (no model)")):  # fmt: skip
                raw = agreed.get(key)
                if raw and raw["agreement"] is not None:
                    raw_kappa = "n/a" if raw["kappa"] is None else f"{raw['kappa']:.2f}"
                    lines.append(
                        f"- {what}: agreement {raw['agreement']:.2f}, kappa {raw_kappa}, "
                        f"'stated' on {raw['judge_yes']:.2f}"
                    )
    return "\n".join(lines) + "\n"


def dump_summary(
    folder: Path, judge_model: str, summary: dict[str, Any], agreed: dict[str, Any] | None
) -> str:
    text = summary_markdown(summary, agreed, judge_model)
    payload = {"judge_model": judge_model, "coverage": summary, "agreement": agreed}
    (folder / f"rubric-{judge_model}-summary.json").write_text(
        json.dumps(payload, indent=2) + "\n", encoding="utf-8"
    )
    (folder / f"rubric-{judge_model}-summary.md").write_text(text, encoding="utf-8")
    return text
