"""Cited reports on open questions, scored apart from how they were written.

For each question of a suite (``evals/suites/wiki_vital_open.jsonl``: 30 open questions over the
wiki-vital corpus, written for this project):

1. the agent researches it and writes a checked report (``agent/report.py``);
2. a plain one-shot baseline writes an answer with ``[n]`` citations from the *same notes*, in one call;
3. a judge model (by default a different, larger model than the writer) reads each sentence with the
   notes it cites and says whether they support it and which of them do; a lexical check runs beside it.

Reported per arm: the share of sentences supported (judge), citation precision (cited notes the judge
names as supporting / all citations), the lexical share, sentences per answer; paired differences with
bootstrap CIs. The agent's report is scored twice: every sentence it wrote, and only those its own
check kept (what ``--unsupported drop`` prints).

Records are appended one question at a time (fsync'd) to ``records.jsonl``; a rerun resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from sounding.agent.llm_step import budgeted_json, charged_completion
from sounding.agent.report import REPORT_PROMPTS, split_sentences
from sounding.agent.state import Note
from sounding.tools.llm.base import LLM, Message
from sounding.tools.text import lexical_support

JUDGE_PROMPT = tomllib.loads(
    resources.files("sounding.evals").joinpath("prompts/judge.toml").read_text(encoding="utf-8")
)["support"]
DEFAULT_QUESTIONS = Path(str(resources.files("sounding.evals").joinpath("suites/wiki_vital_open.jsonl")))
ARMS = ("report_written", "report_checked", "one_shot")
ARM_LABELS = {
    "report_written": "sounding report, every sentence written",
    "report_checked": "sounding report, sentences its check kept",
    "one_shot": "one-shot answer from the same notes",
}
JUDGE_BATCH = 6
LEXICAL_SUPPORTED = 0.5
ONE_SHOT_CAP = 300


class ReportEvalError(ValueError):
    """A questions file or a results folder that cannot be used."""


class OpenQuestion(BaseModel):
    id: str
    question: str = Field(min_length=1)
    #: wiki-vital articles that cover the question (a reading check: did the run read one?)
    topics: list[str] = Field(default_factory=list)


class Claim(BaseModel):
    text: str
    notes: list[int] = Field(default_factory=list)


class JudgedClaim(Claim):
    judge_supported: bool | None = None
    judge_notes: list[int] = Field(default_factory=list)
    lexical: float = 0.0


class ArmScore(BaseModel):
    sentences: int = 0
    supported: int = 0
    citations: int = 0
    precise: int = 0
    lexical_supported: int = 0
    #: supported by the judge and by the lexical check both
    both_supported: int = 0
    uncited: int = 0
    unjudged: int = 0

    @property
    def supported_share(self) -> float | None:
        return self.supported / self.sentences if self.sentences else None

    @property
    def citation_precision(self) -> float | None:
        return self.precise / self.citations if self.citations else None

    @property
    def lexical_share(self) -> float | None:
        return self.lexical_supported / self.sentences if self.sentences else None

    @property
    def both_share(self) -> float | None:
        return self.both_supported / self.sentences if self.sentences else None


class ReportRecord(BaseModel):
    id: str
    question: str
    format: str
    notes: list[Note]
    topic_read: bool | None
    report_markdown: str
    one_shot_text: str
    claims: dict[str, list[JudgedClaim]]
    scores: dict[str, ArmScore]
    tokens: dict[str, int]
    #: What the report left out before printing (cut, repeated, off-topic sentences and those its
    #: check found unhelpful: `Report.dropped`); empty in records written before it was kept.
    dropped: dict[str, int] = {}
    seconds: dict[str, float]


def load_open_questions(path: Path) -> list[OpenQuestion]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportEvalError(f"cannot read questions file {path}: {exc}") from exc
    questions, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            question = OpenQuestion.model_validate_json(line)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise ReportEvalError(f"{path}, line {number}: not an open question record ({reason})") from exc
        if question.id in seen:
            raise ReportEvalError(f"{path}, line {number}: duplicate id {question.id!r}")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise ReportEvalError(f"{path} holds no questions")
    return questions


# --- the baseline and the judge ------------------------------------------------------------------


def numbered_notes(notes: list[Note]) -> str:
    return "\n".join(f"[{i}] ({n.title}) {n.fact}" for i, n in enumerate(notes, 1)) or "(none)"


def parse_cited_text(text: str, n_notes: int) -> list[Claim]:
    """Free text with ``[n]`` markers -> one claim per sentence with the notes it cites (a marker
    right after a sentence's full stop belongs to that sentence)."""
    text = " ".join(text.replace("#", " ").split())
    text = re.sub(
        r"([.!?])\s*((?:\[\d+\](?:,\s*)?)+)", r"\2\1", text
    )  # "... end. [1][2]" -> "... end [1][2]."
    claims = []
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", text):
        cited: list[int] = []
        for n in re.findall(r"\[(\d+)\]", sentence):
            if 1 <= int(n) <= n_notes and int(n) not in cited:
                cited.append(int(n))
        for part in split_sentences(sentence):
            claims.append(Claim(text=part, notes=cited))
    return claims


def one_shot(llm: LLM, ledger: Any, question: str, notes: list[Note]) -> tuple[str, list[Claim]]:
    """The baseline: one free-text call over the same notes, citing ``[n]`` inline."""
    prompt = REPORT_PROMPTS["one_shot"]
    msgs: list[Message] = [
        {"role": "system", "content": prompt["system"]},
        {"role": "user", "content": prompt["user"].format(question=question, notes=numbered_notes(notes))},
    ]
    completion, _ = charged_completion(
        llm, ledger, msgs, cap=ONE_SHOT_CAP, node="one_shot", round=0, min_tokens=32, seed=0
    )
    text = completion.text.strip() if completion is not None else ""
    return text, parse_cited_text(text, len(notes))


def judge_schema(n: int) -> dict[str, Any]:
    verdict = {
        "type": "object",
        "properties": {
            "supported": {"type": "boolean"},
            "sources": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 3},
        },
        "required": ["supported", "sources"],
    }
    return {
        "type": "object",
        "properties": {"sentences": {"type": "array", "items": verdict, "minItems": n, "maxItems": n}},
        "required": ["sentences"],
    }


def judge_claims(judge: LLM | None, ledger: Any, claims: list[Claim], notes: list[Note]) -> list[JudgedClaim]:
    """Every claim judged against the notes it cites (uncited claims are unsupported, unjudged);
    with no judge, only the lexical share is filled in."""
    judged = [JudgedClaim(**c.model_dump()) for c in claims]
    for claim in judged:
        claim.lexical = lexical_support(claim.text, [notes[n - 1].fact for n in claim.notes])
    if judge is None:
        return judged
    cited = [c for c in judged if c.notes]
    for start in range(0, len(cited), JUDGE_BATCH):
        _judge_batch(judge, ledger, cited[start : start + JUDGE_BATCH], notes)
    return judged


def _judge_batch(judge: LLM, ledger: Any, batch: list[JudgedClaim], notes: list[Note]) -> None:
    """One judge call for a batch of cited claims, its verdicts written into them (a claim the
    judge's answer has no verdict for stays unjudged)."""
    result = budgeted_json(
        judge,
        ledger,
        _judge_messages(batch, notes),
        judge_schema(len(batch)),
        cap=40 * len(batch) + 40,
        node="judge",
        round=0,
        seed=0,
    )
    verdicts = list((result.value or {}).get("sentences", []))
    for i, claim in enumerate(batch):
        verdict = _verdict_at(verdicts, i)
        if verdict is not None:
            _apply_verdict(claim, verdict)


def _judge_messages(batch: list[JudgedClaim], notes: list[Note]) -> list[Message]:
    """The judge's prompt: every note the batch cites (once, in number order), then its sentences."""
    numbers = sorted({n for c in batch for n in c.notes})
    sources = "\n".join(f"[{n}] ({notes[n - 1].title}) {notes[n - 1].fact}" for n in numbers)
    sentences = "\n".join(
        f"Sentence {i}: {c.text} (cites {', '.join(f'[{n}]' for n in c.notes)})"
        for i, c in enumerate(batch, 1)
    )
    return [
        {"role": "system", "content": JUDGE_PROMPT["system"]},
        {"role": "user", "content": JUDGE_PROMPT["user"].format(sources=sources, sentences=sentences)},
    ]


def _verdict_at(verdicts: list[Any], i: int) -> dict[str, Any] | None:
    """The judge's verdict on the i-th sentence, or None when its answer has no usable one there."""
    return verdicts[i] if i < len(verdicts) and isinstance(verdicts[i], dict) else None


def _apply_verdict(claim: JudgedClaim, verdict: dict[str, Any]) -> None:
    """Set the judge's verdict on the claim and the cited notes it names as supporting."""
    claim.judge_supported = bool(verdict.get("supported"))
    # only notes the claim cites count; a "yes" that names none of them vouches for all of them
    named = [n for n in verdict.get("sources") or [] if n in claim.notes]
    claim.judge_notes = named or (list(claim.notes) if claim.judge_supported else [])


def score(claims: list[JudgedClaim]) -> ArmScore:
    s = ArmScore()
    for c in claims:
        s.sentences += 1
        s.uncited += not c.notes
        s.unjudged += bool(c.notes) and c.judge_supported is None
        s.supported += bool(c.judge_supported)
        s.citations += len(c.notes)
        s.precise += len(c.judge_notes) if c.judge_supported else 0
        s.lexical_supported += c.lexical >= LEXICAL_SUPPORTED
        s.both_supported += bool(c.judge_supported) and c.lexical >= LEXICAL_SUPPORTED
    return s


# --- the run: resumable, one record per question -------------------------------------------------


class RecordStore:
    """``records.jsonl`` in a results folder, with the run's configuration beside it: a rerun resumes,
    a rerun with another configuration is refused, a line cut by a crash is dropped and redone."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        self.folder = folder
        self.path = folder / "records.jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / "config.json"
        if config_path.exists():
            try:
                stored = json.loads(config_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ReportEvalError(f"{config_path} is not a report-eval configuration: {exc}") from exc
            if stored != config:
                changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
                raise ReportEvalError(
                    f"{folder} holds a run with another configuration ({', '.join(changed)}): "
                    "use another --out folder"
                )
        else:
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        drop_cut_line(self.path)

    def records(self) -> list[ReportRecord]:
        if not self.path.exists():
            return []
        out = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                out.append(ReportRecord.model_validate_json(line))
            except ValidationError as exc:
                raise ReportEvalError(
                    f"{self.path}, line {number}: corrupt record ({exc.errors()[0]['msg']})"
                ) from exc
        return out

    def append(self, record: ReportRecord) -> None:
        append_line(self.path, record.model_dump_json())


def drop_cut_line(path: Path) -> None:
    """An append-only JSONL file whose last line was cut mid-write (a crash) loses that line, to be redone."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def append_line(path: Path, line: str) -> None:
    """One JSONL line appended and on disk before returning (a resumed run trusts every whole line)."""
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def evaluate_question(
    question: OpenQuestion,
    research: Callable[[str], Any],
    writer: LLM,
    judge: LLM | None,
    new_ledger: Callable[[], Any],
) -> ReportRecord:
    """Research and write one report, write the baseline from its notes, judge both. With no judge
    (``eval-reports --report-only``) neither the baseline nor any verdict is made: the record holds
    the report, its notes and its spend, what `score-reports` reads."""
    start = time.perf_counter()
    result = research(question.question)
    report_seconds = time.perf_counter() - start
    notes = result.notes
    report = result.report or {"sections": []}
    written = [Claim(text=c["text"], notes=c["notes"]) for s in report["sections"] for c in s["claims"]]
    # what the check kept: supported sentences, less those it said do not help answer their section
    kept_flags = [
        bool(c["supported"]) and c.get("helps") is not False for s in report["sections"] for c in s["claims"]
    ]
    baseline_ledger = new_ledger()
    start = time.perf_counter()
    text, baseline = one_shot(writer, baseline_ledger, question.question, notes) if judge else ("", [])
    baseline_seconds = time.perf_counter() - start
    judge_ledger = new_ledger()
    judged_written = judge_claims(judge, judge_ledger, written, notes)
    judged_baseline = judge_claims(judge, judge_ledger, baseline, notes)
    kept = [c for c, keep in zip(judged_written, kept_flags, strict=True) if keep]
    claims = {"report_written": judged_written, "report_checked": kept, "one_shot": judged_baseline}
    read_titles = {n.title for n in notes}
    return ReportRecord(
        id=question.id,
        question=question.question,
        format=result.format,
        notes=notes,
        topic_read=bool(read_titles & set(question.topics)) if question.topics else None,
        report_markdown=result.answer,
        one_shot_text=text,
        claims=claims,
        scores={arm: score(c) for arm, c in claims.items()},
        tokens={
            "report": int(result.spend["tokens"]),
            "one_shot": int(baseline_ledger.spent.tokens),
            "judge": int(judge_ledger.spent.tokens),
        },
        seconds={"report": round(report_seconds, 1), "one_shot": round(baseline_seconds, 1)},
        dropped=dict(report.get("dropped") or {}),
    )


def run_report_eval(
    questions: list[OpenQuestion],
    store: RecordStore,
    evaluate: Callable[[OpenQuestion], ReportRecord],
    *,
    on_record: Callable[[ReportRecord], None] = lambda r: None,
) -> Iterator[ReportRecord]:
    """Evaluate every question not yet in the store, appending each record as it is done."""
    done = {r.id for r in store.records()}
    for question in questions:
        if question.id in done:
            continue
        record = evaluate(question)
        store.append(record)
        on_record(record)
        yield record


# --- the summary ---------------------------------------------------------------------------------


def _ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    from scipy.stats import bootstrap

    if len(values) < 2 or np.all(values == values[0]):
        return float(values.mean()), float(values.mean())
    res = bootstrap((values,), np.mean, n_resamples=5000, method="percentile", random_state=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarise(records: list[ReportRecord]) -> dict[str, Any]:
    """Per arm: macro means over questions (with bootstrap CIs) and micro totals; paired differences
    of each report arm against the one-shot baseline on the questions both have sentences for."""
    out: dict[str, Any] = {"questions": len(records), "arms": {}, "paired": {}}
    for arm in ARMS:
        out["arms"][arm] = _arm_summary(arm, [r.scores[arm] for r in records], len(records))
    for arm in ("report_written", "report_checked"):
        out["paired"][arm] = _paired_summary(_paired_supported_diffs(records, arm))
    topic = [r.topic_read for r in records if r.topic_read is not None]
    out["topic_read_share"] = sum(topic) / len(topic) if topic else None
    out["tokens_per_question"] = {
        k: float(np.mean([r.tokens[k] for r in records])) if records else None
        for k in ("report", "one_shot", "judge")
    }
    out["seconds_per_question"] = {
        k: float(np.mean([r.seconds[k] for r in records])) if records else None
        for k in ("report", "one_shot")
    }
    return out


def _arm_summary(arm: str, scores: list[ArmScore], questions: int) -> dict[str, Any]:
    """One arm's row of the summary: macro means of the per-question shares (over the questions
    where a share is defined), their CIs, and the micro totals."""
    shares = _defined(s.supported_share for s in scores)
    precisions = _defined(s.citation_precision for s in scores)
    lexical = _defined(s.lexical_share for s in scores)
    both = _defined(s.both_share for s in scores)
    total = _micro_total(scores)
    return {
        "label": ARM_LABELS[arm],
        "answers_with_sentences": len(shares),
        "sentences_per_answer": total.sentences / max(questions, 1),
        "supported_share": _mean_or_none(shares),
        "supported_share_ci": _ci_or_none(shares),
        "citation_precision": _mean_or_none(precisions),
        "citation_precision_ci": _ci_or_none(precisions),
        "lexical_share": _mean_or_none(lexical),
        "both_share": _mean_or_none(both),
        "both_share_ci": _ci_or_none(both),
        "micro": total.model_dump(),
    }


def _defined(shares: Iterable[float | None]) -> np.ndarray:
    """The shares that are defined (a question with no sentences or no citations has none)."""
    return np.array([x for x in shares if x is not None])


def _micro_total(scores: list[ArmScore]) -> ArmScore:
    """Every count summed over the questions."""
    total = ArmScore()
    for s in scores:
        for field in ArmScore.model_fields:
            setattr(total, field, getattr(total, field) + getattr(s, field))
    return total


def _paired_supported_diffs(records: list[ReportRecord], arm: str) -> list[float]:
    """The arm's supported share minus the one-shot's, per question where both are defined."""
    diffs = []
    for r in records:
        ours, theirs = r.scores[arm].supported_share, r.scores["one_shot"].supported_share
        if ours is not None and theirs is not None:
            diffs.append(ours - theirs)
    return diffs


def _paired_summary(diffs: list[float]) -> dict[str, Any]:
    """A report arm's paired row: how many questions, the mean difference and its CI."""
    diff = np.array(diffs)
    return {"questions": len(diffs), "supported_share_diff": _mean_or_none(diff), "ci": _ci_or_none(diff)}


def _mean_or_none(values: np.ndarray) -> float | None:
    """The mean; None over no questions (rather than numpy's NaN and a warning)."""
    return float(values.mean()) if len(values) else None


def _ci_or_none(values: np.ndarray) -> tuple[float, float] | None:
    """The bootstrap CI of the mean; None over no questions."""
    return _ci(values) if len(values) else None


def summary_markdown(summary: dict[str, Any], config: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    def ci(pair: Any) -> str:
        return "" if not pair else f" [{pair[0]:.2f}, {pair[1]:.2f}]"

    lines = [
        f"{summary['questions']} open questions; writer {config['model']}, judge {config['judge_model']}, "
        f"budget {config['budget']:,} token-eq.",
        "",
        "| arm | answers with sentences | sentences / answer | supported share (judge) [95% CI] "
        "| citation precision [95% CI] | lexical share | judge and lexical [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        a = summary["arms"][arm]
        lines.append(
            f"| {a['label']} | {a['answers_with_sentences']} | {a['sentences_per_answer']:.1f} "
            f"| {pct(a['supported_share'])}{ci(a['supported_share_ci'])} "
            f"| {pct(a['citation_precision'])}{ci(a['citation_precision_ci'])} | {pct(a['lexical_share'])} "
            f"| {pct(a['both_share'])}{ci(a['both_share_ci'])} |"
        )
    lines.append("")
    for arm, p in summary["paired"].items():
        if p["supported_share_diff"] is not None:
            lines.append(
                f"- {ARM_LABELS[arm]} minus one-shot, supported share: {p['supported_share_diff']:+.2f}"
                f"{ci(p['ci'])} (paired, {p['questions']} questions)"
            )
    if summary["topic_read_share"] is not None:
        lines.append(
            f"- runs that read an article on the question's topic: {summary['topic_read_share']:.0%}"
        )
    t = summary["tokens_per_question"]
    sec = summary["seconds_per_question"]
    if t["report"] is not None:
        lines.append(
            f"- tokens per question: report {t['report']:,.0f}, one-shot {t['one_shot']:,.0f} (on top of the "
            f"report's research), judge {t['judge']:,.0f}; seconds: report {sec['report']:.0f}, one-shot {sec['one_shot']:.0f}"
        )
    return "\n".join(lines) + "\n"
