"""Reports for open questions: an outline of sub-questions, one cited paragraph per sub-question, and
a check of every sentence against the notes it cites before anything is printed.

The check has two parts, both needed for a sentence to count as supported:
- a charged model check, one call per section: do the cited notes state what each sentence says, and
  which of them do?
- a lexical check, free: enough of the sentence's content words occur in its cited notes and their
  passages (a sentence about something no cited passage mentions cannot be supported by it).

Before anything is checked, the report keeps only what a reader can use (issue 32):
- whole sentences: quotes are whole sentences of their passage, and a written sentence cut by the
  token cap or the schema's length limit (a fragment, "failed to r.") is dropped and counted, never
  completed with a full stop;
- no repetition: a sentence whose content words repeat an earlier sentence's is dropped and counted;
- relevant notes and sentences: each section's writer is offered only the notes that name the
  question's subject and bear on its sub-question, most relevant first (`relevant_notes`), and a
  written sentence that does not bear on it is dropped and counted. What "bears on" means is the
  cosine of MiniLM embeddings (`tools/relevance.py`); a run without them (``relevance: lexical``)
  ranks notes by shared words and does not filter written sentences;
- the check asks of every sentence whether it helps answer its section's sub-question as well as
  whether its notes support it: a sentence the check says does not help is not printed.

Unsupported sentences are marked (or dropped, with ``unsupported="drop"``), and the report carries its
own supported-sentence share and citation precision. The scorer in ``evals/reports.py`` judges the
printed report again, independently, with another model: solving and scoring stay apart.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from sounding.agent.llm_step import StepResult, budgeted_json
from sounding.agent.state import Note
from sounding.agent.voting import Ballot, VoteResult, first_to_ahead_by_k
from sounding.budgets.controllers import PROMPT_TOKENS, StepCaps
from sounding.budgets.cost import Usage
from sounding.budgets.ledger import Charge, Ledger
from sounding.tools.llm.base import LLM, Message, derive_seed
from sounding.tools.relevance import Relatedness
from sounding.tools.text import content_words, has_terminal, lexical_support, looks_cut, sentences, stems

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
#: The schema's length limits: a string that reaches one was stopped by the grammar, mid-sentence.
SENTENCE_CHARS = 300
TITLE_CHARS = 80
SUBQUESTION_CHARS = 100
#: Notes offered to one section's writer, the most relevant first.
MAX_NOTES_SHOWN = 24
#: Whole sentences a report quotes from each passage it reads, and their joint length at most: a
#: sentence that would not fit is skipped for the next best one, never cut. Five sentences and 800
#: characters hold most of a wiki-vital passage (median 459 characters): two and 360 held the rubric
#: evidence of 30 of the 74 rubric points whose article a report read (docs/reports.md, "Composing").
QUOTE_SENTENCES = 5
QUOTE_CHARS = 800
#: A note is offered to a section when its relevance is at least this share of the best note's: a
#: note matching under a third of what the best one matches shares a word or two with the
#: sub-question, not its point (and the best note is kept however weak, so nothing relevant is lost
#: to the ratio alone).
RELEVANCE_FLOOR = 1 / 3
#: Weight of a word of the report's question that the sub-question does not repeat (a sub-question
#: word weighs 1): the question's words place a note in the report's topic, the sub-question's in
#: the section.
TOPIC_WEIGHT = 0.5
#: A sentence repeats an earlier one when the Jaccard similarity of their content words reaches
#: REPEAT_JACCARD, or when REPEAT_CONTAINED of its own content words are the earlier one's. A claim
#: copied or reworded from the same note keeps most of its content words (the issue's "had a
#: profound impact on cities" sentences, said in three sections, share 0.6 to 1 of them), while two
#: claims about one subject share its name and little else ("The Ottoman Empire was founded by
#: Osman I in 1299." / "The Ottoman Empire declined after the siege of Vienna in 1683.": 0.22); and
#: a sentence adding at most one new content word in five to an earlier one tells the reader nothing
#: new, whatever its length (tests/test_report_quality.py pins these cases).
REPEAT_JACCARD = 0.6
REPEAT_CONTAINED = 0.8
#: The budget a report spends where it is thin: while less than this share of it is spent, a section
#: the notes leave unanswered gets one more search round (the thin-section rule), and a section whose
#: draft was red-flagged (every sentence cut, repeated or off topic) gets another draft.
THIN_SPENT_SHARE = 0.5
#: Drafts one section may draw: a red-flagged draft is discarded, not repaired, and another drawn at
#: the sampling temperature with another seed (MAKER's discipline for small models).
SECTION_DRAFTS = 3
#: Cosine floors of the embedding relevance filter (all-MiniLM-L6-v2, the text against the section's
#: sub-question or the report's question, whichever is closer), calibrated on hand-labelled sentences
#: of the committed reports (docs/reports.md, "Relevance"): a note under NOTE_FLOOR is not offered to
#: the section's writer, a written sentence under SENTENCE_FLOOR is dropped.
NOTE_FLOOR = 0.30
SENTENCE_FLOOR = 0.35
#: An extracted sentence from an article that is not about a subject the question names (the Eastern
#: Front's article, for trench warfare on the Western Front) must bear on the question itself at least
#: this closely. Fitted on the first blind off-topic sheet (docs/reports.md, "Off topic"): 0.224 of
#: the extracted sentences were off topic there, and 0.045 of those this floor keeps.
QUESTION_FLOOR = 0.55
_MID_DOCUMENT = re.compile(r"#p[1-9]\d*$")  # a passage window that starts inside its document

Unsupported = Literal["mark", "drop"]
#: How a section is written: "paragraph", one call for the section from all its notes (the writer
#: copies the notes' opening sentences and leaves the rest); "claims", one short call per relevant
#: note, most relevant first, each asking whether that note answers the sub-question and, if it
#: does, for one sentence saying so (a small model's minimal step: one note, one claim, and the
#: claim cites exactly the note it was written from); "select", one first-to-ahead-by-k vote per
#: relevant note on which of its sentences answers the sub-question (or none), the winner printed
#: as the note says it (a 0.5B asked for a sentence of its own restates the sub-question and invents:
#: docs/reports.md).
#: "extract", no model call: the sentences of the section's relevant notes that bear most on its
#: sub-question (the relevance filter's own `bearing`, at least SENTENCE_FLOOR), each citing its
#: note, up to SENTENCES_PER_SECTION, no repeats; measured to state more of a good answer than the
#: 0.5B's own paragraphs from the same notes (docs/reports.md, "Composing").
Composer = Literal["paragraph", "claims", "select", "extract"]
#: The select composer's vote: a sentence number wins when it leads every other by SELECT_VOTE_K
#: ballots (the first greedy, the rest sampled), at most SELECT_VOTE_MAX ballots per note.
SELECT_VOTE_K = 2
SELECT_VOTE_MAX = 5
#: Draws of one claim: a red-flagged one (cut, repeated, off topic) is discarded and drawn again at
#: the sampling temperature, once, while the budget allows.
CLAIM_DRAWS = 2


class Claim(BaseModel):
    """One sentence of the report and the notes (1-based numbers of the run's notes) it cites."""

    text: str
    notes: list[int] = Field(default_factory=list)
    #: The model check's verdict; None when the check could not be paid for.
    model_supported: bool | None = None
    #: The model check's word on whether the sentence helps answer its section's sub-question (None
    #: when unchecked); a sentence it says does not help is never printed.
    helps: bool | None = None
    #: Cited notes that support the sentence (the model names them and the lexical check agrees).
    supporting: list[int] = Field(default_factory=list)
    lexical: float = 0.0
    supported: bool = False

    def shown_notes(self) -> list[int]:
        """The notes the reader sees cited: those the check found to support the sentence (a small
        writer cites every note of its section, "[1][2][3]" on each sentence), or every note it cited
        when the check found none alone (the sentence is then marked, or dropped, as unsupported)."""
        return self.supporting if self.supported and self.supporting else self.notes


class Section(BaseModel):
    question: str
    claims: list[Claim] = Field(default_factory=list)
    #: Why the section has no sentences: "no notes" (the searches found none), "no relevant notes"
    #: (none of them is about its sub-question), "budget", "malformed" output, "repeated" (all it
    #: wrote repeats earlier sentences), "irrelevant" (all it wrote was off topic), "cut" (all it
    #: wrote was cut off) or "nothing written".
    skipped: str | None = None
    #: Sentences dropped: fragments cut by a length limit, repeats of an earlier sentence, and
    #: sentences that do not bear on the sub-question (the embedding filter).
    fragments: int = 0
    repeats: int = 0
    irrelevant: int = 0
    #: The run's note numbers offered to its writer (most relevant first), and how many of the run's
    #: notes were left out as unrelated to its sub-question.
    offered: list[int] = Field(default_factory=list)
    unrelated: int = 0
    #: The notes left the section unanswered when the rounds ended with more than half the budget
    #: unspent, so it got one more search round of its own (the thin-section rule).
    searched_again: bool = False
    #: Drafts drawn for it: more than one when a red-flagged draft was discarded (with the claims and
    #: select composers: calls made; none when extracting).
    drafts: int = 0
    #: Offered notes the claims or select composer found not to answer the sub-question.
    declined: int = 0


class CitationCheck(BaseModel):
    sentences: int = 0
    supported: int = 0
    citations: int = 0
    precise: int = 0
    #: Sentences judged by the lexical check alone (the model check was not affordable).
    lexical_only: int = 0
    #: Sentences the check said do not help answer their section's sub-question (not printed).
    unhelpful: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def supported_share(self) -> float | None:
        return self.supported / self.sentences if self.sentences else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def citation_precision(self) -> float | None:
        return self.precise / self.citations if self.citations else None


#: What the report says about a section it prints nothing for, by the reason.
EMPTY_SECTION = {
    "no notes": "Not covered by the sources found",
    "no relevant notes": "Not covered by the sources found",
    "repeated": "Nothing beyond the above was written for",
    "irrelevant": "Nothing that bears on the question was written for",
    "unhelpful": "Nothing the check found to answer the question was written for",
    "cut": "Only sentences cut off mid-way (dropped) were written for",
    "nothing written": "Nothing was written for",
    "budget": "Not written, the budget ran out first",
    "malformed": "Not written, the model's output did not parse",
    "unsupported": "No sentence its sources support was written for",
}


class Report(BaseModel):
    title: str
    sections: list[Section]
    check: CitationCheck = CitationCheck()
    unsupported: Unsupported = "mark"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dropped(self) -> dict[str, int]:
        """Sentences the writer's output held that the report left out: cut ones, repeats, ones that
        do not bear on their sub-question, and ones the check said do not help answer it."""
        return {
            "fragments": sum(s.fragments for s in self.sections),
            "repeats": sum(s.repeats for s in self.sections),
            "irrelevant": sum(s.irrelevant for s in self.sections),
            "unhelpful": sum(c.helps is False for s in self.sections for c in s.claims),
        }

    def cited_notes(self) -> list[int]:
        """Note numbers in the order the printed report first cites them."""
        seen: list[int] = []
        for claim in self.printed_claims():
            seen += [n for n in claim.shown_notes() if n not in seen]
        return seen

    def printed_claims(self) -> list[Claim]:
        return [c for s in self.sections for c in self.printed(s)]

    def printed(self, section: Section) -> list[Claim]:
        """The section's sentences a reader sees: not one the check said does not help, and (with
        ``unsupported="drop"``) not one its notes do not support."""
        return [
            c for c in section.claims if c.helps is not False and (c.supported or self.unsupported == "mark")
        ]

    def markdown(self, source_of: dict[int, int]) -> str:
        """The report body in Markdown; ``source_of`` maps a note number to its source number."""
        lines = [f"# {self.title}"]
        empty: dict[str, list[str]] = {}
        for section in self.sections:
            claims = self.printed(section)
            if not claims:
                empty.setdefault(why_empty(section), []).append(section.question)
                continue
            sentences = []
            for claim in claims:
                numbers = sorted({source_of[n] for n in claim.shown_notes() if n in source_of})
                marks = "".join(f"[{n}]" for n in numbers)
                flag = "" if claim.supported else " *(unsupported)*"
                sentences.append(f"{claim.text.rstrip()} {marks}{flag}".replace("  ", " ").strip())
            lines += [f"\n### {section.question}\n", " ".join(sentences)]
        for why, questions in empty.items():
            lines.append(f"\n*{why}: " + "; ".join(questions) + "*")
        return "\n".join(lines)


def why_empty(section: Section) -> str:
    """The report's words for a section that prints nothing."""
    if section.skipped:
        reason = section.skipped
    elif section.claims and all(c.helps is False for c in section.claims):
        reason = "unhelpful"
    else:
        reason = "unsupported" if section.claims else "nothing written"
    why = EMPTY_SECTION.get(reason, EMPTY_SECTION["nothing written"])
    notes = [f"in each of {section.drafts} drafts"] if section.drafts > 1 else []
    if section.searched_again:
        notes.append("after a second search of its own, with more than half the budget left")
    if notes:
        why += f" ({'; '.join(notes)})"
    return why


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


def claim_schema() -> dict[str, Any]:
    """One note's claim: whether the note answers the sub-question, then the sentence saying it."""
    return {
        "type": "object",
        "properties": {
            "answers": {"type": "boolean"},
            "sentence": {"type": "string", "maxLength": SENTENCE_CHARS},
        },
        "required": ["answers", "sentence"],
    }


def select_schema(n_sentences: int) -> dict[str, Any]:
    """A ballot of the select composer: the number of the note's sentence that answers, 0 for none."""
    return {
        "type": "object",
        "properties": {"sentence": {"type": "integer", "minimum": 0, "maximum": n_sentences}},
        "required": ["sentence"],
    }


def check_schema(n_claims: int) -> dict[str, Any]:
    verdict = {
        "type": "object",
        "properties": {
            "helps": {"type": "boolean"},
            "supported": {"type": "boolean"},
            "notes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 3},
        },
        "required": ["helps", "supported", "notes"],
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
    live in the notes list), and a fragment cut off by the length limit dropped.

    What the report eval reads its one-shot baseline with; the report's own writer uses the stricter
    `whole_sentences`, which never finishes a cut sentence with a full stop."""
    text = re.sub(r"\s*\[\d+\]", "", " ".join(text.split()))
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", text) if p.strip()]
    if parts and not re.search(r"[.!?][\"')]*$", parts[-1]):
        if len(text) >= SENTENCE_CHARS - 10 and len(parts) > 1:
            parts = parts[:-1]  # cut off by the length limit: drop the fragment
        else:
            parts[-1] += "..." if len(text) >= SENTENCE_CHARS - 10 else "."
    return [p for p in parts if len(p.split()) >= 3]


def whole_sentences(text: str, *, cut: bool = False) -> tuple[list[str], int]:
    """(the whole sentences of a model's "sentence", how many fragments were dropped).

    Inline [n] markers are removed (citations live in the notes list). The last sentence without a
    closing '.', '!' or '?' is a fragment when the text was stopped by the token cap (``cut``) or
    reached the schema's length limit; otherwise the model only left out the full stop, which is
    added. A sentence that reads as cut ("... the father of.", "failed to r.": `looks_cut`) or has
    fewer than three words is a fragment too. Fragments are dropped, never completed."""
    text = re.sub(r"\s*\[\d+\]", "", " ".join(text.split()))
    parts = sentences(text)
    kept: list[str] = []
    for i, part in enumerate(parts):
        if i == len(parts) - 1 and not has_terminal(part):
            if cut or len(text) >= SENTENCE_CHARS - 10:
                continue
            part += "."
        if not looks_cut(part) and len(part.split()) >= 3:
            kept.append(part)
    return kept, len(parts) - len(kept)


def repeats(words: set[str], earlier: list[set[str]]) -> bool:
    """Whether a sentence with these content words repeats one of the earlier sentences' (see
    REPEAT_JACCARD); a sentence without content words repeats nothing."""
    for seen in earlier:
        shared = len(words & seen)
        if words and (
            shared / len(words | seen) >= REPEAT_JACCARD or shared / len(words) >= REPEAT_CONTAINED
        ):
            return True
    return False


def subject_phrases(text: str) -> list[set[str]]:
    """The proper names of a question (runs of capitalised words after its first word), each as the
    stems of its content words: "How did the Panama Canal change world trade?" -> [{panama, canal}].
    None from a text in Title Case ("The Decline of the Ottoman Empire": no word of four letters or
    more in lower case), whose capitals name nothing."""
    words = re.findall(r"[^\W_][\w'’-]*", text)
    if len(words) >= 3 and not any(len(w) >= 4 and w[0].islower() for w in words):
        return []
    runs: list[list[str]] = [[]]
    for i, word in enumerate(words):
        if i > 0 and word[0].isupper():
            runs[-1].append(word)
        elif runs[-1]:
            runs.append([])
    phrases: list[set[str]] = []
    for run in runs:
        words_of = stems(" ".join(run))
        if words_of and words_of not in phrases:
            phrases.append(words_of)
    return phrases


def note_text(note: Note) -> str:
    """What the relevance filter reads of a note: its passage's title and its quoted sentences."""
    return f"{note.title}: {note.fact}"


_LEADING_PRONOUN = re.compile(r"^(It|He|She|Its|His|Her)\b(?=\s)")


def named_subject(sentence: str, title: str) -> str:
    """A quoted sentence that opens with a pronoun, with its article's title in its place: out of
    its passage, "It is located at the confluence of the Sava and Danube" names nothing (an
    encyclopedia article's "it", "he" or "she" is its subject; "Its", "His", "Her" its subject's)."""
    return _LEADING_PRONOUN.sub(
        lambda m: title if m[1] in ("It", "He", "She") else f"{title}'s", sentence, count=1
    )


def bearing(
    related: Relatedness,
    texts: list[str],
    subquestion: str,
    question: str,
    to_section: list[float] | None = None,
) -> list[float]:
    """How closely each text bears on a section: its cosine with the sub-question or with the report's
    question, whichever is closer (a sentence that answers the report but was filed under another of
    its sections still tells the reader something; the ranking within a section uses the former, which
    a caller that already has it passes as ``to_section``)."""
    if to_section is None:
        to_section = related.similarity(subquestion, texts)
    if subquestion == question:
        return to_section
    return [max(a, b) for a, b in zip(to_section, related.similarity(question, texts), strict=True)]


def off_subject(
    related: Relatedness, candidates: list[tuple[str, int]], notes: list[Note], question: str
) -> list[bool]:
    """For each (sentence, note number): whether it is out of place in the report even though it
    bears on a section: its article is not about any subject the question names (`subject_phrases`:
    the Eastern Front's article answering for the Western Front) and the sentence itself bears on the
    question less than QUESTION_FLOOR. Every article is "about" nothing for a question naming no
    subject, so there the question floor decides alone."""
    subjects = subject_phrases(question)
    to_question = related.similarity(question, [text for text, _ in candidates])
    return [
        not any(p <= stems(notes[number - 1].title) for p in subjects) and close < QUESTION_FLOOR
        for (_, number), close in zip(candidates, to_question, strict=True)
    ]


def relevant_notes(
    notes: list[Note], subquestion: str, question: str, related: Relatedness | None = None
) -> list[int]:
    """The run's note numbers worth offering to the writer of ``subquestion``, most relevant first.

    A note is unrelated when it names none of the subjects (`subject_phrases`) of the question and
    the sub-question that some note names (all of a subject's words, in the note or its passage's
    title: "canal" alone also names the Suez Canal). Of the rest, with embeddings (``related``), a
    note whose `bearing` is under NOTE_FLOOR is unrelated and the others are ranked by their cosine
    with the sub-question. Without, content words decide (as stems, so that "dissolve" meets
    "dissolution" and "economy" "economic"): a note is unrelated when it shares no word with the
    question and the sub-question or its score (sub-question words 1, other question words
    TOPIC_WEIGHT) is under RELEVANCE_FLOOR of the best note's."""
    texts = [stems(f"{note.title} {note.fact}") for note in notes]
    subjects = [
        phrase
        for phrase in subject_phrases(question) + subject_phrases(subquestion)
        if any(phrase <= words for words in texts)  # a subject no note names is named otherwise
    ]
    named = [n for n, words in enumerate(texts, 1) if not subjects or any(p <= words for p in subjects)]
    if related is not None:
        shown = [note_text(notes[n - 1]) for n in named]
        to_section = related.similarity(subquestion, shown)
        closest = bearing(related, shown, subquestion, question, to_section)
        kept = [(n, s) for n, s, c in zip(named, to_section, closest, strict=True) if c >= NOTE_FLOOR]
        return [n for n, _ in sorted(kept, key=lambda x: (-x[1], x[0]))]
    target = stems(subquestion)
    topic = stems(question) - target
    scores: dict[int, float] = {}
    for number in named:
        words = texts[number - 1]
        score = len(words & target) + TOPIC_WEIGHT * len(words & topic)
        if score > 0:
            scores[number] = score
    if not scores:
        return []
    floor = RELEVANCE_FLOOR * max(scores.values())
    return sorted((n for n, score in scores.items() if score >= floor), key=lambda n: (-scores[n], n))


def thin_section(
    notes: list[Note], subquestion: str, question: str, related: Relatedness | None = None
) -> bool:
    """Whether the notes leave this sub-question unanswered: none is relevant to it, or none of the
    relevant ones shares a word of its point (its content words other than the subjects' names: for
    "Why did the Ottoman Empire decline?", "decline"), so its writer could only repeat the topic."""
    offered = relevant_notes(notes, subquestion, question, related)
    named = set().union(*subject_phrases(question), *subject_phrases(subquestion))
    point = stems(subquestion) - named
    if not offered or not point:
        return not offered
    return not any(point & stems(f"{notes[n - 1].title} {notes[n - 1].fact}") for n in offered)


def quotable(doc_id: str, text: str) -> list[tuple[int, str]]:
    """The whole sentences of a passage, with their positions: not the first one of a window that
    starts inside its document (``ID#pN``, N > 0) or that starts in lower case, not a last one left
    without its full stop (the window or the page ended), none that reads as cut, none longer than
    QUOTE_CHARS."""
    parts = sentences(text)
    whole = []
    for i, sentence in enumerate(parts):
        opens_mid = i == 0 and (bool(_MID_DOCUMENT.search(doc_id)) or sentence[:1].islower())
        ends_open = i == len(parts) - 1 and not has_terminal(sentence)
        if not (opens_mid or ends_open or looks_cut(sentence) or len(sentence) > QUOTE_CHARS):
            whole.append((i, sentence))
    return whole


def passage_quote(
    doc_id: str, text: str, wanted: set[str], score: Callable[[list[str]], list[float]] | None = None
) -> str:
    """A report's note from one passage: its QUOTE_SENTENCES whole sentences sharing the most words
    with ``wanted`` (or, given ``score``, scoring highest: the embedding `bearing` on what the report
    searched for), in passage order, together at most QUOTE_CHARS long ("" when none is whole)."""
    whole = quotable(doc_id, text)
    if score is not None and whole:
        scores = score([sentence for _, sentence in whole])
        ranked = [x for _, x in sorted(zip(scores, whole, strict=True), key=lambda y: (-y[0], y[1][0]))]
    else:
        ranked = sorted(whole, key=lambda x: (-len(content_words(x[1]) & wanted), x[0]))
    chosen: list[tuple[int, str]] = []
    size = 0
    for i, sentence in ranked:
        if len(chosen) < QUOTE_SENTENCES and size + len(sentence) <= QUOTE_CHARS:
            chosen.append((i, sentence))
            size += len(sentence) + 1
    return " ".join(sentence for _, sentence in sorted(chosen))


def whole_title(title: str, question: str) -> str:
    """The outline's title unless a length limit or the token cap cut it; else the question, whole."""
    if not title or len(title) >= TITLE_CHARS or looks_cut(title):
        return question
    return title


def whole_subquestions(raw: list[str], cut: bool) -> list[str]:
    """The outline's distinct sub-questions that are whole: the last of an outline stopped by the
    token cap goes unless it closed with its '?', and one that reached its length limit or reads as
    cut goes too."""
    if cut and raw and not raw[-1].endswith("?"):
        raw = raw[:-1]
    kept: list[str] = []
    for text in raw:
        whole = text and len(text) < SUBQUESTION_CHARS and not looks_cut(text)
        if whole and text.lower() not in {x.lower() for x in kept}:
            kept.append(text)
    return kept


def numbered(notes: list[Note], numbers: list[int]) -> str:
    return "\n".join(f"[{n}] ({notes[n - 1].title}) {notes[n - 1].fact}" for n in numbers)


def numbered_from_one(notes: list[Note], numbers: list[int]) -> str:
    """The notes ``numbers`` renumbered 1, 2, ... in that order (what one section's writer sees)."""
    return "\n".join(f"[{i}] ({notes[n - 1].title}) {notes[n - 1].fact}" for i, n in enumerate(numbers, 1))


def cited_numbers(item: dict[str, Any], offered: list[int]) -> list[int]:
    """The run's note numbers a written sentence cites (its numbers count from 1 in ``offered``)."""
    cited: list[int] = []
    for n in item.get("notes") or []:
        if isinstance(n, int) and 1 <= n <= len(offered) and offered[n - 1] not in cited:
            cited.append(offered[n - 1])
    return cited


@dataclass
class ReportWriter:
    """Outline, write and check a report; every call charged through the ledger."""

    llm: LLM
    ledger: Ledger
    prompts: dict[str, dict[str, str]]
    caps: StepCaps
    seed: int = 0
    #: Embeddings for the relevance filter (shared words when None).
    related: Relatedness | None = None
    #: Temperature of a section's second and later drafts (the first is greedy).
    sample_temperature: float = 0.7
    #: How a section is written (``Composer``): one call, one claim or one vote per note, or extraction.
    composer: Composer = "paragraph"
    charges: list[Charge] = field(default_factory=list)

    def _messages(self, step: str, **fields: Any) -> list[Message]:
        prompt = self.prompts[step]
        return [
            {"role": "system", "content": prompt["system"]},
            {"role": "user", "content": prompt["user"].format(**fields)},
        ]

    def _call(
        self, step: str, schema: dict[str, Any], cap: int, sample: int = 0, **fields: Any
    ) -> StepResult:
        """One charged call; ``sample`` > 0 draws again, at the sampling temperature."""
        msgs = self._messages(step, **fields)
        seed = derive_seed(self.seed, msgs[-1]["content"], step, sample)
        temperature = self.sample_temperature if sample else None
        result = budgeted_json(
            self.llm, self.ledger, msgs, schema, cap=cap, node=step, round=0, seed=seed, min_tokens=24,
            temperature=temperature,
        )  # fmt: skip
        self.charges += result.charges
        return result

    def outline(self, question: str, n: int = 3) -> tuple[str, list[str]]:
        """(title, sub-questions); the question itself when the outline cannot be had. A title or a
        sub-question cut by a length limit or the token cap is not used (never printed cut)."""
        result = self._call("outline", outline_schema(n), self.caps.outline, question=question, n=n)
        value = result.value or {}
        raw = [" ".join(str(s).split()) for s in value.get("sections", [])]
        title = " ".join(str(value.get("title", "")).split())
        if result.cut and not raw:
            title = ""  # the token cap stopped the outline in (or just after) its title
        return whole_title(title, question), whole_subquestions(raw, result.cut)[:n] or [question]

    def write(self, question: str, subquestions: list[str], notes: list[Note]) -> list[Section]:
        """One paragraph per sub-question, each from the notes relevant to it; sentences that are cut
        or repeat an earlier one (in any section) are dropped and counted."""
        written: list[set[str]] = []  # the content words of every sentence kept so far
        n = len(subquestions)
        return [
            self._write_section(question, sub, notes, written, left=n - i, sections=n)
            for i, sub in enumerate(subquestions)
        ]

    def _redraft_affordable(self, left: int, sections: int) -> bool:
        """Another draft only while less than THIN_SPENT_SHARE of the budget is spent and it leaves
        room for one draft of each of the ``left`` sections (this one included) and the check of all
        ``sections``: a redraft never takes what a later section or the check needs."""
        return self.ledger.spent_share() < THIN_SPENT_SHARE and self._leaves_room(left, sections)

    def _leaves_room(self, left: int, sections: int) -> bool:
        """Whether the budget pays a write call for each of the ``left`` sections (the one about to be
        made for this section included) and the check of all ``sections``."""
        if self.composer in ("claims", "select"):
            write = Usage(prompt_tokens=PROMPT_TOKENS["claim"], completion_tokens=self.caps.claim)
        else:
            write = Usage(prompt_tokens=PROMPT_TOKENS["write"], completion_tokens=self.caps.write)
        check = Usage(prompt_tokens=PROMPT_TOKENS["check"], completion_tokens=self.caps.check)
        needed = Usage()
        for _ in range(left):
            needed = needed + write
        for _ in range(sections):
            needed = needed + check
        return self.ledger.can_afford(needed)

    def _write_section(
        self,
        question: str,
        sub: str,
        notes: list[Note],
        written: list[set[str]],
        *,
        left: int = 1,
        sections: int = 1,
    ) -> Section:
        relevant = relevant_notes(notes, sub, question, self.related)
        section = Section(
            question=sub, offered=relevant[:MAX_NOTES_SHOWN], unrelated=len(notes) - len(relevant)
        )
        if not section.offered:
            section.skipped = "no relevant notes" if notes else "no notes"
            return section
        if self.composer == "claims":
            self._compose_claims(section, question, notes, written, left=left, sections=sections)
        elif self.composer == "extract":
            self._extract_sentences(section, question, notes, written)
        elif self.composer == "select":
            self._select_sentences(section, question, notes, written, left=left, sections=sections)
        else:
            self._write_paragraph(section, question, notes, written, left=left, sections=sections)
        if not section.claims and not section.skipped:  # say why: repeats, then off topic, then cut
            dropped = [
                ("repeated", section.repeats),
                ("irrelevant", section.irrelevant),
                ("cut", section.fragments),
            ]
            section.skipped = next((why for why, count in dropped if count), "nothing written")
        return section

    def _write_paragraph(
        self, section: Section, question: str, notes: list[Note], written: list[set[str]], *, left: int,
        sections: int,
    ) -> None:  # fmt: skip
        """The section in one call from all its notes; a draft every sentence of which is dropped
        (red-flagged) is discarded and drawn again while the budget allows (SECTION_DRAFTS)."""
        sub = section.question
        for draft in range(SECTION_DRAFTS):
            if draft and not self._redraft_affordable(left, sections):
                break  # most of the budget spent, or a redraft would take what the rest needs
            result = self._call(
                "write",
                write_schema(len(section.offered), SENTENCES_PER_SECTION),
                self.caps.write,
                sample=draft,
                question=question,
                section=sub,
                notes=numbered_from_one(notes, section.offered),
                n=SENTENCES_PER_SECTION,
            )
            if result.value is None:
                if not draft:
                    section.skipped = result.failure or "malformed"
                    return
                break  # a later draft unaffordable or malformed: the first draft's reasons stand
            section.drafts += 1
            self._keep_draft(section, result, written, question)
            if section.claims:
                break  # kept something: no red flag on every sentence

    def _compose_claims(
        self, section: Section, question: str, notes: list[Note], written: list[set[str]], *, left: int,
        sections: int,
    ) -> None:  # fmt: skip
        """One claim per offered note, most relevant first, up to SENTENCES_PER_SECTION kept: each
        call sees the sub-question and that one note and says whether the note answers it and, if
        so, one sentence saying what it says; the sentence cites that note. A claim that is cut,
        repeats an earlier sentence or is off topic is discarded and drawn once more (CLAIM_DRAWS).
        Every call after the section's first leaves room for one call of each later section and the
        check of every section."""
        for number in section.offered:
            if len(section.claims) >= SENTENCES_PER_SECTION:
                break
            for draw in range(CLAIM_DRAWS):
                if section.drafts and not self._leaves_room(left, sections):
                    return  # what is left pays the later sections and the check
                result = self._call(
                    "claim",
                    claim_schema(),
                    self.caps.claim,
                    sample=draw,
                    question=question,
                    section=section.question,
                    note=numbered_from_one(notes, [number]),
                )
                if result.value is None:
                    if not section.drafts:
                        section.skipped = result.failure or "malformed"
                        return
                    break  # this note's claim is lost; the next note may still be paid for
                section.drafts += 1
                if result.value.get("answers") is False:
                    section.declined += 1
                    break  # the note does not answer the sub-question: no claim, no red flag
                kept = len(section.claims)
                item = {"text": str(result.value.get("sentence", "")), "notes": [1]}
                self._keep(section, item, result.cut, written, question, offered=[number])
                if len(section.claims) > kept:
                    break

    def _extract_sentences(
        self, section: Section, question: str, notes: list[Note], written: list[set[str]]
    ) -> None:
        """The offered notes' sentences that bear most on the sub-question, as the notes say them, up to
        SENTENCES_PER_SECTION, none under SENTENCE_FLOOR (by embeddings; by shared words with the
        sub-question when the run has none) or `off_subject` (counted as irrelevant), none repeating
        an earlier sentence; no model call."""
        candidates = [
            (named_subject(text, notes[n - 1].title), n)
            for n in section.offered
            for text in sentences(notes[n - 1].fact)
        ]
        if not candidates:
            return
        texts = [text for text, _ in candidates]
        if self.related is not None:
            scores = bearing(self.related, texts, section.question, question)
            floor = SENTENCE_FLOOR
            aside = off_subject(self.related, candidates, notes, question)
            section.irrelevant += sum(aside[i] and scores[i] >= floor for i in range(len(candidates)))
            scores = [0.0 if far else score for score, far in zip(scores, aside, strict=True)]
        else:
            point = stems(section.question)
            scores = [len(stems(text) & point) / max(len(point), 1) for text in texts]
            floor = 1e-9  # shares at least one word with the sub-question
        ranked = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
        for i in ranked:
            if len(section.claims) >= SENTENCES_PER_SECTION or scores[i] < floor:
                break
            text, number = candidates[i]
            add_unless_repeated(section, text, [number], written)

    def _select_sentences(
        self, section: Section, question: str, notes: list[Note], written: list[set[str]], *, left: int,
        sections: int,
    ) -> None:  # fmt: skip
        """For each offered note, most relevant first, until SENTENCES_PER_SECTION are kept: a
        first-to-ahead-by-k vote on which of its sentences answers the sub-question (0: none); the
        winner, as the note says it, cites that note. A ballot that does not parse is a red flag,
        discarded; every ballot after the section's first leaves room for one call of each later
        section and the check of every section."""
        for number in section.offered:
            if len(section.claims) >= SENTENCES_PER_SECTION:
                break
            note = notes[number - 1]
            parts = sentences(note.fact)
            vote = self._sentence_vote(section, question, note, parts, left=left, sections=sections)
            if vote.winner is None:
                if vote.ended == "budget":
                    if not section.drafts:
                        section.skipped = "budget"
                    return
                continue  # every ballot malformed: this note gives nothing
            chosen = int(vote.winner)
            if chosen == 0:
                section.declined += 1
                continue
            item = {"text": parts[chosen - 1], "notes": [1]}
            self._keep(section, item, False, written, question, offered=[number])

    def _sentence_vote(
        self, section: Section, question: str, note: Note, parts: list[str], *, left: int, sections: int
    ) -> VoteResult:
        listed = "\n".join(f"{i}. {text}" for i, text in enumerate(parts, 1))

        def draw(i: int) -> Ballot | None:
            if section.drafts and not self._leaves_room(left, sections):
                return None
            result = self._call(
                "select", select_schema(len(parts)), self.caps.claim, sample=i, question=question,
                section=section.question, title=note.title, sentences=listed,
            )  # fmt: skip
            if result.value is None and result.failure == "budget":
                return None
            section.drafts += 1
            chosen = (result.value or {}).get("sentence")
            if not isinstance(chosen, int) or isinstance(chosen, bool) or not 0 <= chosen <= len(parts):
                return Ballot(flag="malformed")
            return Ballot(answer=str(chosen))

        return first_to_ahead_by_k(draw, k=SELECT_VOTE_K, max_samples=SELECT_VOTE_MAX)

    def _keep_draft(
        self, section: Section, result: StepResult, written: list[set[str]], question: str
    ) -> None:
        """Keep a draft's whole, new, relevant sentences; count the rest."""
        items = (result.value or {}).get("sentences", [])
        for i, item in enumerate(items[:SENTENCES_PER_SECTION]):
            if isinstance(item, dict):
                # only the last sentence of a completion stopped by its token cap can be cut by it
                cut = result.cut and i == len(items) - 1
                self._keep(section, item, cut, written, question)

    def _keep(
        self, section: Section, item: dict[str, Any], cut: bool, written: list[set[str]], question: str,
        offered: list[int] | None = None,
    ) -> None:  # fmt: skip
        """Add one written item's whole, new, relevant sentences to the section; count what is dropped.
        Its note numbers count from 1 in ``offered`` (default: the notes the section offered)."""
        cited = cited_numbers(item, section.offered if offered is None else offered)
        kept, fragments = whole_sentences(str(item.get("text", "")), cut=cut)
        section.fragments += fragments
        if self.related is not None and kept:
            close = bearing(self.related, kept, section.question, question)
            section.irrelevant += sum(c < SENTENCE_FLOOR for c in close)
            kept = [text for text, c in zip(kept, close, strict=True) if c >= SENTENCE_FLOOR]
        for text in kept:
            if len(section.claims) < MAX_CLAIMS_PER_SECTION:
                add_unless_repeated(section, text, cited, written)

    def check(self, sections: list[Section], notes: list[Note], passages: dict[str, str]) -> CitationCheck:
        """Judge every sentence (model + lexical), in place; the totals."""
        totals = CitationCheck()
        for section in sections:
            claims = [c for c in section.claims if c.notes]
            # one charged call per section, and none for a section that cites nothing
            verdicts = self._check_verdicts(section.question, claims, notes) if claims else []
            for i, claim in enumerate(claims):
                verdict = _verdict_at(verdicts, i)
                if verdict is None:
                    totals.lexical_only += 1
                _check_claim(claim, verdict, notes, passages)
            _add_section_totals(totals, section)
        return totals

    def _check_verdicts(self, sub: str, claims: list[Claim], notes: list[Note]) -> list[Any]:
        """The model check of one section's cited claims (do they help answer ``sub``, do their notes
        support them): its verdicts, in claim order (none when the call cannot be paid for or its
        output does not parse)."""
        numbers = sorted({n for c in claims for n in c.notes})
        lines = "\n".join(
            f"Claim {i}: {c.text} (cites {', '.join(f'[{n}]' for n in c.notes)})"
            for i, c in enumerate(claims, 1)
        )
        result = self._call(
            "check",
            check_schema(len(claims)),
            self.caps.check,
            section=sub,
            notes=numbered(notes, numbers),
            claims=lines,
        )
        return list((result.value or {}).get("claims", []))


def add_unless_repeated(section: Section, text: str, cited: list[int], written: list[set[str]]) -> None:
    """The sentence joins the section citing ``cited``, unless it repeats one written before, in this
    section or an earlier one (small models repeat themselves, and so do overlapping notes): then it
    is counted as a repeat. ``written`` holds every kept sentence's content words."""
    words = content_words(text)
    if repeats(words, written):
        section.repeats += 1
        return
    written.append(words)
    section.claims.append(Claim(text=text, notes=cited))


def _verdict_at(verdicts: list[Any], i: int) -> dict[str, Any] | None:
    """The model's verdict on the i-th claim, or None when its answer has no usable one there."""
    return verdicts[i] if i < len(verdicts) and isinstance(verdicts[i], dict) else None


def _evidence(note: Note, passages: dict[str, str]) -> list[str]:
    """What one cited note offers the lexical check: its fact, its title and its source's passage."""
    return [note.fact, note.title, passages.get(note.doc_id, "")]


def _check_claim(
    claim: Claim, verdict: dict[str, Any] | None, notes: list[Note], passages: dict[str, str]
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
    helps = verdict.get("helps")
    claim.helps = helps if isinstance(helps, bool) else None
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
        totals.unhelpful += claim.helps is False
