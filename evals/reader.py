"""What a reader finds in a stored report, and two report runs compared on it, paired (issue 32, item 5).

Read from the printed Markdown of `eval-reports` records, without a model: the sentences printed,
those that read as cut ("failed to r."), those that repeat an earlier one, the sections the report
says it left empty, the spend, and the lexical rubric coverage of the printed sentences
(`evals/rubric.py: lexically_stated`; unlike the rubric's own reading, headings and the lines naming
empty sections, which state nothing, are not read).
Comparing a run with an earlier one (``sounding score-reports NEW --against OLD``) pairs each figure
by question, on the questions both hold, with a percentile-bootstrap CI of the mean difference.
"""

from __future__ import annotations

import re

import numpy as np
from pydantic import BaseModel

from sounding.agent.report import repeats
from sounding.evals.reports import ReportRecord
from sounding.evals.rubric import Rubric, lexically_stated
from sounding.evals.stats import mean_ci
from sounding.tools.text import content_words, looks_cut, sentences

#: A report's line naming the sections it printed nothing for: "*<why> (<notes>): <sub>; <sub>*".
_EMPTY_LINE = re.compile(r"^\*(?P<why>[^:()]+?)(?: \((?P<notes>[^)]*)\))?: (?P<subs>.+)\*$")
_CITATIONS = re.compile(r"(?:\s*\[\d+\])+|\s*\*\(unsupported\)\*")


class ReaderFigures(BaseModel):
    id: str
    sentences: int
    cut: int
    repeated: int
    empty_sections: int
    #: The report printed no paragraph at all ("No answer ...").
    no_answer: bool
    spend: int
    coverage: float
    #: The same reading of the notes the report was written from: what it could have said.
    notes_coverage: float


def printed_sentences(markdown: str) -> list[str]:
    """The sentences of a report's paragraphs, citations and marks removed (titles, headings and the
    empty-section lines are not sentences a reader is asked to believe)."""
    out: list[str] = []
    for line in markdown.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or (line.startswith("*") and line.endswith("*")):
            continue
        if line.startswith("No answer"):
            continue
        out += [s.strip() for s in sentences(_CITATIONS.sub("", line)) if s.strip()]
    return out


def empty_sections(markdown: str) -> int:
    """How many sections the report says it printed nothing for."""
    total = 0
    for line in markdown.splitlines():
        match = _EMPTY_LINE.match(line.strip())
        if match:
            total += len([s for s in match["subs"].split("; ") if s.strip()])
    return total


def reader_figures(record: ReportRecord, rubric: Rubric) -> ReaderFigures:
    printed = printed_sentences(record.report_markdown)
    seen: list[set[str]] = []
    repeated = 0
    for sentence in printed:
        words = content_words(sentence)
        repeated += repeats(words, seen)
        seen.append(words)
    # over the printed sentences only: a heading or an empty-section line states nothing (the rubric's
    # own lexical reading reads the whole Markdown, as its hand labels did)
    text = " ".join(printed)
    coverage = float(np.mean([lexically_stated(p.point, text) for p in rubric.points]))
    notes = " ".join(note.fact for note in record.notes)
    notes_coverage = float(np.mean([lexically_stated(p.point, notes) for p in rubric.points]))
    return ReaderFigures(
        id=record.id,
        sentences=len(printed),
        cut=sum(looks_cut(s) for s in printed),
        repeated=repeated,
        empty_sections=empty_sections(record.report_markdown),
        no_answer=not printed,
        spend=record.tokens.get("report", 0),
        coverage=coverage,
        notes_coverage=notes_coverage,
    )


#: The figures compared, with what the table calls them (per report unless said otherwise).
FIGURES = {
    "coverage": "lexical rubric coverage of the printed sentences",
    "notes_coverage": "the same, of the notes it was written from",
    "sentences": "sentences printed",
    "cut": "sentences that read as cut",
    "repeated": "sentences repeating an earlier one",
    "empty_sections": "sections left empty",
    "no_answer": "reports with no paragraph (share)",
    "spend": "spend, token-equivalents",
}


def compare_runs(
    new: list[ReportRecord],
    old: list[ReportRecord],
    rubrics: dict[str, Rubric],
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, object]]:
    """Each figure's mean in both runs and the paired difference (new - old, 95% CI), on the questions
    both runs answered."""
    old_by = {r.id: r for r in old}
    both = sorted(r.id for r in new if r.id in old_by)
    new_by = {r.id: r for r in new}
    a = [reader_figures(new_by[q], rubrics[q]) for q in both]
    b = [reader_figures(old_by[q], rubrics[q]) for q in both]
    out: dict[str, dict[str, object]] = {}
    for name in FIGURES:
        x = np.array([float(getattr(f, name)) for f in a])
        y = np.array([float(getattr(f, name)) for f in b])
        diff = x - y
        out[name] = {
            "n": len(both),
            "new": float(x.mean()) if len(x) else None,
            "old": float(y.mean()) if len(y) else None,
            "diff": float(diff.mean()) if len(diff) else None,
            "ci": mean_ci(diff, seed, n_boot) if len(diff) > 1 else None,
        }
    return out


def comparison_markdown(result: dict[str, dict[str, object]], new_name: str, old_name: str) -> str:
    n = next(iter(result.values()))["n"] if result else 0
    lines = [
        f"Paired on the {n} questions both runs answered: {new_name} against {old_name}.",
        "",
        f"| per report | {old_name} | {new_name} | difference [95% CI] |",
        "|---|---|---|---|",
    ]
    for name, label in FIGURES.items():
        r = result[name]
        digits = 0 if name == "spend" else 2
        ci = r["ci"]
        ci_text = f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]" if isinstance(ci, tuple) else ""
        lines.append(
            f"| {label} | {r['old']:,.{digits}f} | {r['new']:,.{digits}f} | {r['diff']:+,.{digits}f}{ci_text} |"
        )
    return "\n".join(lines)
