"""Reports for open questions: an outline of sub-questions, one cited paragraph per sub-question, and
a check of every sentence against the notes it cites before anything is printed.

The check has two parts, both needed for a sentence to count as supported:
- a charged model check, one call per section: do the cited notes state what each sentence says, and
  which of them do?
- a lexical check, free: enough of the sentence's content words occur in its cited notes and their
  passages (a sentence about something no cited passage mentions cannot be supported by it).

Unsupported sentences are marked (or dropped, with ``unsupported="drop"``), and the report carries its
own supported-sentence share and citation precision. The scorer in ``evals/reports.py`` judges the
printed report again, independently, with another model: solving and scoring stay apart.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from sounding.agent.llm_step import budgeted_json
from sounding.budgets.controllers import StepCaps
from sounding.budgets.ledger import Charge, Ledger
from sounding.tools.llm.base import LLM, Message, derive_seed
from sounding.tools.text import lexical_support

REPORT_PROMPTS: dict[str, dict[str, str]] = tomllib.loads(
    resources.files("sounding.agent").joinpath("prompts/report.toml").read_text(encoding="utf-8")
)
#: A sentence needs this share of its content words in its cited notes and passages.
SENTENCE_LEXICAL = 0.5
#: One citation needs this share of the sentence's content words in that note and its passage.
CITATION_LEXICAL = 0.3
MAX_SECTIONS = 4
SENTENCES_PER_SECTION = 4
MAX_CLAIMS_PER_SECTION = 6
SENTENCE_CHARS = 300
MAX_NOTES_SHOWN = 24

Unsupported = Literal["mark", "drop"]


class Claim(BaseModel):
    """One sentence of the report and the notes (1-based numbers of the run's notes) it cites."""

    text: str
    notes: list[int] = Field(default_factory=list)
    #: The model check's verdict; None when the check could not be paid for.
    model_supported: bool | None = None
    #: Cited notes that support the sentence (the model names them and the lexical check agrees).
    supporting: list[int] = Field(default_factory=list)
    lexical: float = 0.0
    supported: bool = False


class Section(BaseModel):
    question: str
    claims: list[Claim] = Field(default_factory=list)
    #: Why the section has no sentences: "no notes", "budget", "malformed" output, or "repeated" (all
    #: it wrote repeats earlier sections).
    skipped: str | None = None


class CitationCheck(BaseModel):
    sentences: int = 0
    supported: int = 0
    citations: int = 0
    precise: int = 0
    #: Sentences judged by the lexical check alone (the model check was not affordable).
    lexical_only: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def supported_share(self) -> float | None:
        return self.supported / self.sentences if self.sentences else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def citation_precision(self) -> float | None:
        return self.precise / self.citations if self.citations else None


class Report(BaseModel):
    title: str
    sections: list[Section]
    check: CitationCheck = CitationCheck()
    unsupported: Unsupported = "mark"

    def cited_notes(self) -> list[int]:
        """Note numbers in the order the printed report first cites them."""
        seen: list[int] = []
        for claim in self.printed_claims():
            seen += [n for n in claim.notes if n not in seen]
        return seen

    def printed_claims(self) -> list[Claim]:
        return [c for s in self.sections for c in s.claims if c.supported or self.unsupported == "mark"]

    def markdown(self, source_of: dict[int, int]) -> str:
        """The report body in Markdown; ``source_of`` maps a note number to its source number."""
        lines = [f"# {self.title}"]
        uncovered: list[str] = []
        repeated: list[str] = []
        for section in self.sections:
            claims = [c for c in section.claims if c.supported or self.unsupported == "mark"]
            if not claims:
                (repeated if section.skipped == "repeated" else uncovered).append(section.question)
                continue
            sentences = []
            for claim in claims:
                numbers = sorted({source_of[n] for n in claim.notes if n in source_of})
                marks = "".join(f"[{n}]" for n in numbers)
                flag = "" if claim.supported else " *(unsupported)*"
                sentences.append(f"{claim.text.rstrip()} {marks}{flag}".replace("  ", " ").strip())
            lines += [f"\n### {section.question}\n", " ".join(sentences)]
        if uncovered:
            lines.append("\n*Not covered by the sources found: " + "; ".join(uncovered) + "*")
        if repeated:
            lines.append("\n*Nothing beyond the above was written for: " + "; ".join(repeated) + "*")
        return "\n".join(lines)


# --- schemas -------------------------------------------------------------------------------------


def outline_schema(n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 80},
            "sections": {
                "type": "array",
                "items": {"type": "string", "maxLength": 100},
                "minItems": 1,
                "maxItems": n,
            },
        },
        "required": ["title", "sections"],
    }


def write_schema(n_notes: int, n: int) -> dict[str, Any]:
    sentence = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "maxLength": SENTENCE_CHARS},
            "notes": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": max(n_notes, 1)},
                "maxItems": 3,
            },
        },
        "required": ["text", "notes"],
    }
    return {
        "type": "object",
        "properties": {"sentences": {"type": "array", "items": sentence, "minItems": 1, "maxItems": n}},
        "required": ["sentences"],
    }


def check_schema(n_claims: int) -> dict[str, Any]:
    verdict = {
        "type": "object",
        "properties": {
            "supported": {"type": "boolean"},
            "notes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 3},
        },
        "required": ["supported", "notes"],
    }
    return {
        "type": "object",
        "properties": {
            "claims": {"type": "array", "items": verdict, "minItems": n_claims, "maxItems": n_claims}
        },
        "required": ["claims"],
    }


# --- the writer ----------------------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    """A model's "sentence" as real sentences: one claim each, inline [n] markers removed (citations
    live in the notes list), and a fragment cut off by the length limit dropped."""
    text = re.sub(r"\s*\[\d+\]", "", " ".join(text.split()))
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", text) if p.strip()]
    if parts and not re.search(r"[.!?][\"')]*$", parts[-1]):
        if len(text) >= SENTENCE_CHARS - 10 and len(parts) > 1:
            parts = parts[:-1]  # cut off by the length limit: drop the fragment
        else:
            parts[-1] += "..." if len(text) >= SENTENCE_CHARS - 10 else "."
    return [p for p in parts if len(p.split()) >= 3]


def normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def numbered(notes: list[dict[str, Any]], numbers: list[int]) -> str:
    return "\n".join(f"[{n}] ({notes[n - 1]['title']}) {notes[n - 1]['fact']}" for n in numbers)


@dataclass
class ReportWriter:
    """Outline, write and check a report; every call charged through the ledger."""

    llm: LLM
    ledger: Ledger
    prompts: dict[str, dict[str, str]]
    caps: StepCaps
    seed: int = 0
    charges: list[Charge] = field(default_factory=list)

    def _messages(self, step: str, **fields: Any) -> list[Message]:
        prompt = self.prompts[step]
        return [
            {"role": "system", "content": prompt["system"]},
            {"role": "user", "content": prompt["user"].format(**fields)},
        ]

    def _call(self, step: str, schema: dict[str, Any], cap: int, **fields: Any) -> tuple[Any, str | None]:
        msgs = self._messages(step, **fields)
        seed = derive_seed(self.seed, msgs[-1]["content"], step, 0)
        result = budgeted_json(
            self.llm, self.ledger, msgs, schema, cap=cap, node=step, round=0, seed=seed, min_tokens=24
        )
        self.charges += result.charges
        return result.value, result.failure

    def outline(self, question: str, n: int = 3) -> tuple[str, list[str]]:
        """(title, sub-questions); the question itself when the outline cannot be had."""
        value, _ = self._call("outline", outline_schema(n), self.caps.outline, question=question, n=n)
        value = value or {}
        sections: list[str] = []
        for s in value.get("sections", []):
            text = " ".join(str(s).split())
            if text and text.lower() not in {x.lower() for x in sections}:
                sections.append(text)
        title = " ".join(str(value.get("title", "")).split()) or question
        return title[:80], sections[:n] or [question]

    def write(self, question: str, subquestions: list[str], notes: list[dict[str, Any]]) -> list[Section]:
        """One paragraph per sub-question, from all notes (numbered as in the run)."""
        shown = list(range(1, min(len(notes), MAX_NOTES_SHOWN) + 1))
        sections = []
        written: set[str] = set()
        for sub in subquestions:
            if not shown:
                sections.append(Section(question=sub, skipped="no notes"))
                continue
            value, failure = self._call(
                "write",
                write_schema(len(shown), SENTENCES_PER_SECTION),
                self.caps.write,
                question=question,
                section=sub,
                notes=numbered(notes, shown),
                n=SENTENCES_PER_SECTION,
            )
            if value is None:
                sections.append(Section(question=sub, skipped=failure or "malformed"))
                continue
            claims = []
            for item in value.get("sentences", [])[:SENTENCES_PER_SECTION]:
                if not isinstance(item, dict):
                    continue
                cited = []
                for n in item.get("notes") or []:
                    if isinstance(n, int) and 1 <= n <= len(shown) and n not in cited:
                        cited.append(n)
                for text in split_sentences(str(item.get("text", ""))):
                    if normalise(text) not in written:  # small models repeat themselves
                        written.add(normalise(text))
                        claims.append(Claim(text=text, notes=cited))
            claims = claims[:MAX_CLAIMS_PER_SECTION]
            sections.append(Section(question=sub, claims=claims, skipped=None if claims else "repeated"))
        return sections

    def check(
        self, sections: list[Section], notes: list[dict[str, Any]], passages: dict[str, str]
    ) -> CitationCheck:
        """Judge every sentence (model + lexical), in place; the totals."""
        totals = CitationCheck()
        for section in sections:
            claims = [c for c in section.claims if c.notes]
            # one charged call per section, and none for a section that cites nothing
            verdicts = self._check_verdicts(claims, notes) if claims else []
            for i, claim in enumerate(claims):
                verdict = _verdict_at(verdicts, i)
                if verdict is None:
                    totals.lexical_only += 1
                _check_claim(claim, verdict, notes, passages)
            _add_section_totals(totals, section)
        return totals

    def _check_verdicts(self, claims: list[Claim], notes: list[dict[str, Any]]) -> list[Any]:
        """The model check of one section's cited claims: its verdicts, in claim order (none when the
        call cannot be paid for or its output does not parse)."""
        numbers = sorted({n for c in claims for n in c.notes})
        lines = "\n".join(
            f"Claim {i}: {c.text} (cites {', '.join(f'[{n}]' for n in c.notes)})"
            for i, c in enumerate(claims, 1)
        )
        value, _ = self._call(
            "check",
            check_schema(len(claims)),
            self.caps.check,
            notes=numbered(notes, numbers),
            claims=lines,
        )
        return list((value or {}).get("claims", []))


def _verdict_at(verdicts: list[Any], i: int) -> dict[str, Any] | None:
    """The model's verdict on the i-th claim, or None when its answer has no usable one there."""
    return verdicts[i] if i < len(verdicts) and isinstance(verdicts[i], dict) else None


def _evidence(note: dict[str, Any], passages: dict[str, str]) -> list[str]:
    """What one cited note offers the lexical check: its fact, its title and its source's passage."""
    return [note["fact"], note["title"], passages.get(note["doc_id"], "")]


def _check_claim(
    claim: Claim, verdict: dict[str, Any] | None, notes: list[dict[str, Any]], passages: dict[str, str]
) -> None:
    """Set the claim's lexical share, model verdict, supported flag and supporting notes."""
    claim.lexical = lexical_support(
        claim.text, [t for n in claim.notes for t in _evidence(notes[n - 1], passages)]
    )
    model_notes = _record_model_verdict(claim, verdict)
    claim.supported = claim.lexical >= SENTENCE_LEXICAL and claim.model_supported is not False
    claim.supporting = [
        n
        for n in model_notes
        if lexical_support(claim.text, _evidence(notes[n - 1], passages)) >= CITATION_LEXICAL
    ]


def _record_model_verdict(claim: Claim, verdict: dict[str, Any] | None) -> list[int]:
    """Set the claim's model verdict; the cited notes the model vouches for. With no verdict (the
    check could not be paid for, or its answer had none for this claim) every cited note is left to
    the lexical check alone."""
    if verdict is None:
        return claim.notes
    claim.model_supported = bool(verdict.get("supported"))
    named = [n for n in verdict.get("notes") or [] if n in claim.notes]
    # a "yes" that names none of its notes vouches for all of them
    return named or (claim.notes if claim.model_supported else [])


def _add_section_totals(totals: CitationCheck, section: Section) -> None:
    """Count every sentence of the section, cited or not, into the report's totals."""
    for claim in section.claims:
        totals.sentences += 1
        totals.supported += claim.supported
        totals.citations += len(claim.notes)
        totals.precise += len(claim.supporting)
