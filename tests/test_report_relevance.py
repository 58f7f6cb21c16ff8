"""A report's relevance filter (issue 32): notes and written sentences that do not bear on their
section are never shown to the writer or the reader; the check's "does it help answer?" verdict keeps
an unhelpful sentence out of print. Scripted models and a table of cosines here; the real embedding
model on the issue's own off-topic sentences at the end."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest

from sounding.agent.report import (
    NOTE_FLOOR,
    QUOTE_SENTENCES,
    SECTION_DRAFTS,
    SENTENCE_FLOOR,
    Report,
    passage_quote,
    relevant_notes,
    thin_section,
)
from sounding.agent.state import Note
from sounding.cli.render import check_line
from sounding.factory import build_deps, spec_from_settings
from sounding.settings import Settings
from sounding.tools.relevance import EmbeddingRelatedness
from tests.scripted import ScriptedLLM
from tests.test_report_quality import writer_for

BLACK_DEATH_Q = "How did the Black Death change European society?"


class CosineTable:
    """A test double for `Relatedness`: each text's cosine from a table (unlisted texts 0), whatever
    the query; it records the queries it was asked about."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.queries: list[str] = []

    def similarity(self, query: str, texts: Sequence[str]) -> list[float]:
        self.queries.append(query)
        return [self.table.get(text, 0.0) for text in texts]


def note(doc_id: str, title: str, fact: str) -> Note:
    return Note(doc_id=doc_id, title=title, fact=fact)


NOTES = [
    note("bd", "Black Death", "The Black Death killed up to half of Europe's population."),
    note("ss", "The Seventh Seal", "The Seventh Seal is a 1957 film set during the Black Death."),
    note("lab", "Black Death", "Labour shortages after the Black Death raised peasants' wages."),
]


def text_of(n: Note) -> str:
    return f"{n.title}: {n.fact}"


def test_notes_under_the_floor_are_not_offered_and_the_rest_are_ranked_by_cosine():
    related = CosineTable(
        {text_of(NOTES[0]): 0.55, text_of(NOTES[1]): NOTE_FLOOR - 0.05, text_of(NOTES[2]): 0.7}
    )
    sub = "What did the Black Death do to wages?"
    assert relevant_notes(NOTES, sub, BLACK_DEATH_Q, related) == [3, 1]
    assert sub in related.queries and BLACK_DEATH_Q in related.queries  # section and report both count
    # without embeddings, words decide: the film names the Black Death and shares its words
    assert 2 in relevant_notes(NOTES, "What did the Black Death do?", BLACK_DEATH_Q)


def test_a_section_whose_notes_are_all_under_the_floor_is_thin():
    related = CosineTable({})
    assert thin_section(NOTES, "What did the Black Death do to wages?", BLACK_DEATH_Q, related)


def write_reply(*texts: str) -> dict[str, Any]:
    return {"sentences": [{"text": t, "notes": [1]} for t in texts]}


def test_written_sentences_that_do_not_bear_on_the_section_are_dropped_and_counted():
    wages = "Labour shortages after the Black Death raised peasants' wages."
    film = "The Seventh Seal is a 1957 Swedish film by Ingmar Bergman."
    related = CosineTable(
        {
            text_of(NOTES[2]): 0.7,
            wages: 0.8,
            film: SENTENCE_FLOOR - 0.01,
        }
    )
    writer = writer_for(ScriptedLLM({"write": write_reply(wages, film)}))
    writer.related = related
    [section] = writer.write(BLACK_DEATH_Q, ["What did the Black Death do to wages?"], NOTES)
    assert [c.text for c in section.claims] == [wages]
    assert section.irrelevant == 1 and section.offered == [3]
    report = Report(title="t", sections=[section])
    assert report.dropped["irrelevant"] == 1
    assert "Seventh Seal" not in report.markdown({3: 1})
    summary = {"check": {"sentences": 1, "supported": 1}, "dropped": report.dropped}
    assert check_line(summary).endswith("left out before the check: 1 off-topic sentences")


def test_a_section_with_only_off_topic_sentences_prints_nothing_and_says_why():
    film = "The Seventh Seal is a 1957 Swedish film by Ingmar Bergman."
    related = CosineTable({text_of(NOTES[0]): 0.6})
    writer = writer_for(ScriptedLLM({"write": write_reply(film)}))
    writer.related = related
    [section] = writer.write(BLACK_DEATH_Q, ["How many died?"], NOTES)
    assert section.claims == [] and section.skipped == "irrelevant"
    body = Report(title="t", sections=[section]).markdown({})
    assert (
        f"*Nothing that bears on the question was written for (in each of {SECTION_DRAFTS} drafts): How many died?*"
        in body
    )
    assert section.irrelevant == SECTION_DRAFTS


def test_a_sentence_the_check_says_does_not_help_is_not_printed_and_is_counted():
    died = "The Black Death killed up to half of Europe's population."
    bergman = "The Black Death appears in films."
    prompts: list[str] = []

    def check(n: int, messages: list[dict[str, str]]) -> dict[str, Any]:
        prompts.append(messages[-1]["content"])
        return {
            "claims": [
                {"helps": True, "supported": True, "notes": [1]},
                {"helps": False, "supported": True, "notes": [1]},
            ]
        }

    writer = writer_for(ScriptedLLM({"write": write_reply(died, bergman), "check": check}))
    sub = "How many people did the Black Death kill?"
    sections = writer.write(BLACK_DEATH_Q, [sub], NOTES[:1])
    totals = writer.check(sections, NOTES[:1], {"bd": NOTES[0].fact})
    assert prompts and f"This paragraph answers: {sub}" in prompts[0]
    report = Report(title="t", sections=sections, check=totals)
    assert [c.text for c in report.printed_claims()] == [died]
    assert report.dropped["unhelpful"] == 1 and totals.unhelpful == 1
    assert bergman not in report.markdown({1: 1})
    again = Report.model_validate(json.loads(report.model_dump_json()))
    assert again.sections[0].claims[1].helps is False


def test_a_section_the_check_finds_wholly_unhelpful_says_so():
    off = "The Black Death appears in films."
    writer = writer_for(
        ScriptedLLM(
            {
                "write": write_reply(off),
                "check": {"claims": [{"helps": False, "supported": True, "notes": [1]}]},
            }
        )
    )
    sub = "How many people did the Black Death kill?"
    sections = writer.write(BLACK_DEATH_Q, [sub], NOTES[:1])
    writer.check(sections, NOTES[:1], {})
    body = Report(title="t", sections=sections).markdown({1: 1})
    assert f"*Nothing the check found to answer the question was written for: {sub}*" in body


def test_quotes_are_chosen_by_the_score_when_there_is_one():
    # more whole sentences than a quote holds (QUOTE_SENTENCES): the lowest-scoring one is left out
    rest = " ".join(f"The plague reached port {i}." for i in range(1, QUOTE_SENTENCES))
    text = f"Bergman filmed The Seventh Seal. Wages rose after the plague. {rest}"
    score = {"Bergman filmed The Seventh Seal.": 0.1, "Wages rose after the plague.": 0.9}
    quote = passage_quote("doc", text, {"seventh", "seal"}, lambda texts: [score.get(t, 0.5) for t in texts])
    assert quote == f"Wages rose after the plague. {rest}"  # passage order kept
    assert passage_quote("doc", text, {"seventh", "seal"}).startswith("Bergman")  # words, without


def test_a_report_spec_judges_relevance_by_embeddings_and_a_short_one_by_words(tmp_path):
    settings = Settings(home=tmp_path)
    report = spec_from_settings(settings, format="report")
    short = spec_from_settings(settings, format="short")
    assert report.relevance == "embedding" and short.relevance == "lexical"
    assert spec_from_settings(settings, format="auto").relevance == "embedding"
    shared = CosineTable({})
    llm = ScriptedLLM({})
    deps = build_deps(report, settings, llm, search=None, relatedness=shared)  # type: ignore[arg-type]
    assert deps.relatedness is shared
    fresh = build_deps(report, settings, llm, search=None)  # type: ignore[arg-type]
    assert isinstance(fresh.relatedness, EmbeddingRelatedness)
    assert build_deps(short, settings, llm, search=None).relatedness is None  # type: ignore[arg-type]


# --- the real embedding model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> EmbeddingRelatedness:
    return EmbeddingRelatedness()


@pytest.mark.slow
def test_the_embedding_filter_drops_the_issues_off_topic_sentences(minilm):
    """The committed Black Death report's off-topic quotes fall under the floor; its on-topic ones
    stay above it (with the report's question, as its "Introduction" section asks nothing)."""
    off = [
        "The Seventh Seal is a 1957 Swedish historical fantasy film written and directed by Ingmar Bergman.",
        "Sociological theory is a supposition that intends to consider, analyze, and/or explain objects "
        "of social reality from a sociological perspective.",
    ]
    on = [
        "The Black Death was a plague pandemic that occurred in Europe from 1346 to 1353.",
        "It was one of the most fatal pandemics in human history, leading to the death of up to 50 "
        "million people, or 50% of Europe's 14th-century population.",
    ]
    question = "How did the Black Death change European society?"
    scores = [max(a, b) for a, b in zip(
        minilm.similarity("Introduction", off + on), minilm.similarity(question, off + on), strict=True
    )]  # fmt: skip
    assert all(s < SENTENCE_FLOOR for s in scores[:2]), scores
    assert all(s >= SENTENCE_FLOOR for s in scores[2:]), scores


@pytest.mark.slow
def test_embeddings_are_cached_and_the_model_loads_once():
    loads: list[int] = []
    calls: list[int] = []

    def load() -> Any:
        from sounding.tools.search.dense import Embedder

        loads.append(1)
        embedder = Embedder()
        encode = embedder.encode

        def counted(texts: Sequence[str], **kw: Any) -> Any:
            calls.append(len(texts))
            return encode(texts, **kw)

        embedder.encode = counted  # type: ignore[method-assign]
        return embedder

    related = EmbeddingRelatedness(load)
    first = related.similarity("plague", ["The plague killed many.", "Bergman made films."])
    again = related.similarity("plague", ["Bergman made films.", "The plague killed many."])
    assert loads == [1] and calls == [3]  # the second call encoded nothing
    assert again == pytest.approx(first[::-1])
    assert first[0] > first[1]


# --- the calibration command ---------------------------------------------------------------------


def test_score_relevance_refuses_labels_it_cannot_use(tmp_path):
    from typer.testing import CliRunner

    from sounding.cli import app

    one_sided = tmp_path / "labels.jsonl"
    one_sided.write_text(
        json.dumps({"question": "q", "section": "s", "sentence": "x", "on_topic": True}) + "\n"
    )
    result = CliRunner().invoke(app, ["score-relevance", str(one_sided)])
    assert result.exit_code == 2 and "needs both on-topic and off-topic" in result.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "q"}\n')
    result = CliRunner().invoke(app, ["score-relevance", str(broken)])
    assert result.exit_code == 2 and "broken.jsonl, line 1: not a relevance label" in result.output
    result = CliRunner().invoke(app, ["score-relevance", str(broken), "--floors", "x"])
    assert result.exit_code == 2 and "--floors must be comma-separated numbers" in result.output


def test_calibration_counts_what_each_floor_loses_and_drops():
    from sounding.evals.relevance import RelevanceLabel, calibrate

    labels = [
        RelevanceLabel(question="q", section="q", sentence=s, on_topic=on)
        for s, on in (("a", True), ("b", True), ("c", False), ("d", False))
    ]
    table = CosineTable({"a": 0.6, "b": 0.3, "c": 0.2, "d": 0.5})
    result = calibrate(labels, table, [0.25, 0.4])
    assert result.auroc == 0.75  # a beats both, b beats c only
    low, high = result.rows
    assert (low.on_topic_lost, low.off_topic_dropped) == (0, 1)
    assert (high.on_topic_lost, high.off_topic_dropped) == (1, 1)


class CountingEmbedder:
    """A test double for the embedder: a text's vector is a fixed unit vector from its length."""

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str]) -> Any:
        import numpy as np

        self.encoded += list(texts)
        return np.array([[np.cos(len(t)), np.sin(len(t))] for t in texts])


def test_the_vector_cache_is_bounded_and_shared_by_threads():
    from concurrent.futures import ThreadPoolExecutor

    embedder = CountingEmbedder()
    related = EmbeddingRelatedness(lambda: embedder, cache_size=3)  # type: ignore[arg-type,return-value]
    assert related.similarity("q", ["aa", "bbb"]) == pytest.approx([math.cos(1), math.cos(2)])
    related.similarity("q", ["cccc", "ddddd"])  # five texts seen, three kept
    assert len(related._cache) == 3
    before = len(embedder.encoded)
    related.similarity("q", ["ddddd"])  # still cached: nothing encoded
    assert len(embedder.encoded) == before
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: related.similarity("q", [t]), ["x" * n for n in range(1, 40)]))
    assert [r[0] for r in results] == pytest.approx([math.cos(n - 1) for n in range(1, 40)])
    assert len(related._cache) == 3


# --- a blind labelling sheet across runs -----------------------------------------------------------

REPORT_A = """# The Danube

### How does the Danube flow?

The Danube flows through Budapest. [1] The Seventh Seal is a film. [2] *(unsupported)*

*Not covered by the sources found: Why is it blue?*"""
REPORT_B = """# Budapest

### What is Budapest?

Budapest is the capital of Hungary. [1]"""


def write_run(folder, markdowns):
    from sounding.evals.reports import RecordStore
    from tests.test_rubric import record

    store = RecordStore(folder, {"model": "m"})
    for i, md in enumerate(markdowns, 1):
        store.append(record(md, "", id=f"open-{i:02d}"))


def test_a_blind_sheet_holds_every_printed_sentence_shuffled_and_keyed_apart(tmp_path):
    from typer.testing import CliRunner

    from sounding.cli import app
    from sounding.evals.relevance import SheetItem, SheetKey

    write_run(tmp_path / "old", [REPORT_A])
    write_run(tmp_path / "new", [REPORT_B, REPORT_A])
    sheet = tmp_path / "sheet.jsonl"
    args = ["relevance-sheet", str(tmp_path / "old"), str(tmp_path / "new"), "--out", str(sheet)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    items = [SheetItem.model_validate_json(x) for x in sheet.read_text().splitlines()]
    keys = [
        SheetKey.model_validate_json(x) for x in (tmp_path / "sheet.jsonl.key.jsonl").read_text().splitlines()
    ]
    # headings, citations, marks and empty-section lines are not sentences; nothing names the run
    assert sorted(x.sentence for x in items) == sorted(
        ["The Danube flows through Budapest.", "The Seventh Seal is a film."] * 2
        + ["Budapest is the capital of Hungary."]
    )
    assert {x.section for x in items if "Seal" in x.sentence} == {"How does the Danube flow?"}
    assert all("run" not in x.model_dump() and x.on_topic is None for x in items)
    assert sorted((k.run, k.id) for k in keys) == sorted(
        [("old", "open-01")] * 2 + [("new", "open-01")] + [("new", "open-02")] * 2
    )
    # a sheet is never overwritten (it may hold labels)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "exists" in again.output
    # unlabelled: refused; labelled: the share per run
    result = CliRunner().invoke(app, ["off-topic", str(sheet)])
    assert result.exit_code == 2 and "unlabelled" in result.output
    labelled = [x.model_copy(update={"on_topic": "Seal" not in x.sentence}) for x in items]
    sheet.write_text("".join(x.model_dump_json() + "\n" for x in labelled))
    result = CliRunner().invoke(app, ["off-topic", str(sheet)])
    assert result.exit_code == 0, result.output
    assert "| new | 3 | 1 | 0.333" in result.output and "| 1 of 2 |" in result.output
    assert "| old | 2 | 1 | 0.500" in result.output and "| 1 of 1 |" in result.output
    # a second sheet, labelled later, is read together with the first
    later = tmp_path / "later.jsonl"
    assert (
        CliRunner().invoke(app, ["relevance-sheet", str(tmp_path / "old"), "--out", str(later)]).exit_code
        == 0
    )
    more = [SheetItem.model_validate_json(x) for x in later.read_text().splitlines()]
    assert all(x.item.startswith("later-") for x in more)
    later.write_text("".join(x.model_copy(update={"on_topic": True}).model_dump_json() + "\n" for x in more))
    result = CliRunner().invoke(app, ["off-topic", str(sheet), str(later)])
    assert result.exit_code == 0, result.output
    assert "| old | 4 | 1 | 0.250" in result.output
    twice = CliRunner().invoke(app, ["off-topic", str(sheet), str(sheet)])
    assert twice.exit_code == 2 and "same items" in twice.output
