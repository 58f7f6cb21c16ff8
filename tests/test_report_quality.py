"""Reports a reader would keep (issue 32), on scripted models: whole sentences only (quotes and written
sentences cut at sentence boundaries, fragments dropped and counted), no repeated claims, only notes
relevant to a section offered to its writer, and one more search round for a section the notes leave
unanswered while more than half the budget is unspent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sounding.agent.report import (
    QUOTE_CHARS,
    REPEAT_CONTAINED,
    REPEAT_JACCARD,
    REPORT_PROMPTS,
    SECTION_DRAFTS,
    THIN_SPENT_SHARE,
    Claim,
    Report,
    ReportWriter,
    Section,
    named_subject,
    passage_quote,
    relevant_notes,
    repeats,
    subject_phrases,
    thin_section,
    whole_sentences,
)
from sounding.agent.runner import run_research
from sounding.agent.state import Note
from sounding.budgets.controllers import FixedController, StepCaps
from sounding.budgets.cost import Usage, make_cost_model
from sounding.budgets.ledger import Budget, Ledger
from sounding.cli.render import check_line
from sounding.settings import BudgetSettings
from sounding.tools.llm.base import Completion, Message
from sounding.tools.search.base import Hit
from sounding.tools.text import content_words, looks_cut, sentences, stems
from tests.scripted import ScriptedLLM, step_of
from tests.test_agent_nodes import deps

# --- whole sentences -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cut",
    [
        "The Ottoman Empire failed to r.",  # the issue's cases, each finished with a full stop
        "Soviet historians debate the historiography of the.",
        "The disease was spread principally P.",
        "The revolution marked the beginning a.",
        "Herodotus is often called the father of.",
        "Trade grew between Europe and.",
        "Its land and sea routes connected China with the West, connecting Ce.",  # the Silk Road report's
        "Industrial robots are used for manufacturing,.",
        "The empire's decline continued...",
    ],
)
def test_a_sentence_ending_on_an_article_preposition_or_lone_letter_reads_as_cut(cut):
    assert looks_cut(cut)


@pytest.mark.parametrize(
    "whole",
    [
        "The empire fell in 1453.",
        "It was the largest conflict before World War I.",
        "The plague broke out.",
        "Its armies marched on.",
        "What did the canal lead to?",  # a question may end on a preposition
        "Many of them moved to the U.S.",
        "It borders the US.",
        "The Yellow River flows past the city of Xi.",  # a whole two-letter name
        "Its founder was Henry V.",
        "He marched with Martin Luther King Jr.",
        "The field was sold to Exxon Mobil Co.",
    ],
)
def test_whole_sentences_do_not_read_as_cut(whole):
    assert not looks_cut(whole)


def test_sentences_split_at_boundaries_not_at_abbreviations():
    text = "Osman I founded it c. 1299 in Anatolia. The U.S. Navy was not there. J. S. Bach was born later! Was he"
    assert sentences(text) == [
        "Osman I founded it c. 1299 in Anatolia.",
        "The U.S. Navy was not there.",
        "J. S. Bach was born later!",
        "Was he",
    ]


def test_written_fragments_are_dropped_and_counted_never_finished_with_a_stop():
    # the model left out the full stop of a whole sentence: added
    assert whole_sentences("Budapest lies on the Danube [2]") == (["Budapest lies on the Danube."], 0)
    # the token cap stopped the text: its open last sentence is a fragment
    assert whole_sentences("The empire grew. It failed to r", cut=True) == (["The empire grew."], 1)
    # ... but a sentence closed before the cap is whole
    assert whole_sentences("The empire grew. It declined slowly.", cut=True) == (
        ["The empire grew.", "It declined slowly."],
        0,
    )
    # the schema's length limit stopped it (no full stop at 300 characters)
    long = "The Silk Road connected China with the Mediterranean " + "and many cities along the way " * 9
    assert len(long.strip()) >= 290
    assert whole_sentences(long.strip()) == ([], 1)
    # a sentence ending on an article is cut wherever it stands
    assert whole_sentences("It ended the historiography of the. Trade grew fast.") == (
        ["Trade grew fast."],
        1,
    )


def test_a_quote_is_whole_sentences_of_its_passage_never_cut_at_a_character_limit():
    wanted = content_words("Silk Road trade China")
    first = "The Silk Road was a network of trade routes connecting China with the West."
    long = (
        "Along the Silk Road "
        + "merchants and pilgrims carried silk, spices, paper and ideas, " * 14
        + "for centuries."
    )
    assert len(long) > QUOTE_CHARS
    text = f"{first} {long} Trade along it declined after the fifteenth century. It ended in Ce"
    quote = passage_quote("doc", text, wanted)
    assert quote == f"{first} Trade along it declined after the fifteenth century."
    for sentence in sentences(quote):
        assert sentence in text and sentence.endswith(".")
    assert len(quote) <= QUOTE_CHARS
    # a window that starts inside its document: its first sentence is left out (it may be a tail)
    window = "trade routes with China. The Silk Road carried silk to Rome."
    assert passage_quote("doc#p3", window, wanted) == "The Silk Road carried silk to Rome."
    assert passage_quote("doc#p0", "Trade with China grew. Silk Road trade grew.", wanted) == (
        "Trade with China grew. Silk Road trade grew."
    )


# --- a written paragraph cut by the token cap ----------------------------------------------------


NOTES = [
    Note(doc_id="d1", title="Ottoman Empire", fact="The Ottoman Empire was founded by Osman I around 1299."),
    Note(doc_id="d2", title="Ottoman Empire", fact="The Ottoman Empire captured Constantinople in 1453."),
]
OTTOMAN_Q = "How did the Ottoman Empire rise to power?"


def writer_for(llm: Any) -> ReportWriter:
    ledger = Ledger(
        Budget(limit=None, unit="tokens"), make_cost_model("tokens", BudgetSettings(), n_params=None)
    )
    return ReportWriter(llm, ledger, REPORT_PROMPTS, StepCaps())


def test_the_last_sentence_of_a_paragraph_cut_by_the_token_cap_is_dropped_and_counted():
    cut_json = (
        '{"sentences": [{"text": "The Ottoman Empire was founded by Osman I around 1299.", "notes": [1]}, '
        '{"text": "It captured Constantinople in 1453 and failed to r'
    )
    writer = writer_for(ScriptedLLM({"write": cut_json}))
    [section] = writer.write(OTTOMAN_Q, ["How did the Ottoman Empire rise?"], NOTES)
    assert [c.text for c in section.claims] == ["The Ottoman Empire was founded by Osman I around 1299."]
    assert section.fragments == 1 and section.claims[0].notes == [section.offered[0]]


class LengthCapped(ScriptedLLM):
    """A backend that reports every write as stopped by its token cap ("length"), its JSON complete."""

    def complete(self, messages: list[Message], **kwargs: Any) -> Completion:
        completion = super().complete(messages, **kwargs)
        if step_of(messages) == "write":
            return completion.model_copy(update={"finish_reason": "length"})
        return completion


def test_a_length_finish_reason_marks_the_last_open_sentence_as_cut():
    write = {
        "sentences": [
            {"text": "The Ottoman Empire captured Constantinople in 1453.", "notes": [1]},
            {"text": "The empire was founded by Osman I around 1299 and grew", "notes": [2]},
        ]
    }
    [section] = writer_for(LengthCapped({"write": write})).write(OTTOMAN_Q, ["How did it rise?"], NOTES)
    assert [c.text for c in section.claims] == ["The Ottoman Empire captured Constantinople in 1453."]
    assert section.fragments == 1
    # the same words from a backend that finished on its own: the full stop was only left out
    [section] = writer_for(ScriptedLLM({"write": write})).write(OTTOMAN_Q, ["How did it rise?"], NOTES)
    assert len(section.claims) == 2 and section.fragments == 0


def test_an_outline_cut_by_a_limit_is_never_printed_cut():
    cut = '{"title": "The Rise of the Ottoman Empire", "sections": ["How did the Ottoman Empire rise?", "What did Mehmed II conq'
    title, sections = writer_for(ScriptedLLM({"outline": cut})).outline(OTTOMAN_Q)
    assert title == "The Rise of the Ottoman Empire" and sections == ["How did the Ottoman Empire rise?"]
    long_title = {
        "title": "The Rise of the Ottoman Empire from a Small Anatolian Principality to a World Po",
        "sections": ["x y z"],
    }
    title, _ = writer_for(ScriptedLLM({"outline": long_title})).outline(OTTOMAN_Q)
    assert title == OTTOMAN_Q  # a title stopped by its length limit gives way to the question, whole
    title, _ = writer_for(ScriptedLLM({"outline": {"title": "The Rise of the", "sections": []}})).outline(
        OTTOMAN_Q
    )
    assert title == OTTOMAN_Q


# --- no repetition -------------------------------------------------------------------------------


def jaccard(a: str, b: str) -> float:
    x, y = content_words(a), content_words(b)
    return len(x & y) / len(x | y)


def test_the_repeat_thresholds_separate_the_issues_repeats_from_distinct_claims():
    impact = "The Industrial Revolution had a profound impact on cities."
    # the issue's repeated claim, as a small model rewrites it in later sections
    for again in [
        impact,
        "The Industrial Revolution had a profound impact on cities and their growth.",
        "Cities felt the profound impact of the Industrial Revolution.",
    ]:
        assert jaccard(impact, again) >= REPEAT_JACCARD and repeats(
            content_words(again), [content_words(impact)]
        )
    # two claims about one subject
    founded = "The Ottoman Empire was founded by Osman I in 1299."
    declined = "The Ottoman Empire declined after the siege of Vienna in 1683."
    assert jaccard(founded, declined) == pytest.approx(2 / 9)
    assert not repeats(content_words(declined), [content_words(founded)])
    # a sentence adding nothing new to a longer earlier one, whatever its length
    longer = "In the nineteenth century the Industrial Revolution had a profound impact on cities, leading to urbanisation."
    assert jaccard(longer, impact) < REPEAT_JACCARD
    shared = content_words(impact) & content_words(longer)
    assert len(shared) / len(content_words(impact)) >= REPEAT_CONTAINED
    assert repeats(content_words(impact), [content_words(longer)])
    assert not repeats(set(), [content_words(impact)])


def test_a_claim_repeated_in_a_later_section_is_dropped_counted_and_the_report_says_so():
    impact = "The Industrial Revolution had a profound impact on cities."

    def write(n: int, m: list[Message]) -> dict[str, Any]:
        if n == 1:
            return {"sentences": [{"text": impact, "notes": [1]}]}
        if n == 2:  # a new claim, then the first section's claim again in other words
            return {
                "sentences": [
                    {"text": "Factories drew workers from the countryside into towns.", "notes": [1]},
                    {
                        "text": "The Industrial Revolution had a profound impact on cities and their growth.",
                        "notes": [1],
                    },
                ]
            }
        return {"sentences": [{"text": impact, "notes": [1]}]}  # nothing new at all

    notes = [
        Note(
            doc_id="d1",
            title="Industrial Revolution",
            fact="The Industrial Revolution had a profound impact on cities. Factories drew workers from the countryside into towns.",
        )
    ]
    writer = writer_for(ScriptedLLM({"write": write}))
    q = "How did the Industrial Revolution change cities?"
    sections = writer.write(
        q,
        ["Industrial Revolution cities", "Industrial Revolution towns", "Industrial Revolution impact"],
        notes,
    )
    assert [len(s.claims) for s in sections] == [1, 1, 0]
    # the third section's every draft (SECTION_DRAFTS of them) repeats the first's claim
    assert [s.repeats for s in sections] == [0, 1, SECTION_DRAFTS] and sections[2].skipped == "repeated"
    assert [s.drafts for s in sections] == [1, 1, SECTION_DRAFTS]
    report = Report(title="t", sections=sections)
    assert report.dropped == {"fragments": 0, "repeats": 1 + SECTION_DRAFTS, "irrelevant": 0, "unhelpful": 0}
    body = report.markdown({1: 1})
    assert body.count("profound impact") == 1
    assert (
        f"*Nothing beyond the above was written for (in each of {SECTION_DRAFTS} drafts): Industrial Revolution impact*"
        in body
    )


# --- relevance before writing --------------------------------------------------------------------


SOVIET_Q = "Why did the Soviet Union collapse?"
SOVIET_NOTES = [
    Note(
        doc_id="b",
        title="Late Bronze Age collapse",
        fact="The Late Bronze Age collapse ended many societies.",
    ),
    Note(doc_id="r", title="Fall of the Western Roman Empire", fact="Rome's collapse had many causes."),
    Note(doc_id="s", title="Soviet Union", fact="The economy of the Soviet Union stagnated in the 1970s."),
    Note(doc_id="d", title="Dissolution of the Soviet Union", fact="The Soviet Union dissolved in 1991."),
]


def test_notes_that_name_none_of_the_questions_subjects_are_not_offered():
    assert subject_phrases(SOVIET_Q) == [{"soviet", "union"}]
    assert subject_phrases("The Decline Of The Ottoman Empire") == []  # Title Case names nothing
    assert subject_phrases("The Decline of the Ottoman Empire") == []  # short words stay in lower case
    # a question of names and short words is not a title
    assert subject_phrases("How did the Black Death change Europe?") == [{"black", "death"}, stems("Europe")]
    ranked = relevant_notes(SOVIET_NOTES, "What caused the collapse of the Soviet Union?", SOVIET_Q)
    assert ranked == [3, 4]  # the Bronze Age and Rome's collapses are not about the Soviet Union
    assert relevant_notes(SOVIET_NOTES, "Why did the Soviet economy stagnate?", SOVIET_Q)[0] == 3


def test_a_subject_the_sources_name_otherwise_filters_nothing():
    notes = [Note(doc_id="d", title="Dissolution of the Soviet Union", fact="It dissolved in 1991.")]
    assert relevant_notes(notes, "When did the USSR dissolve?", "Why did the USSR collapse?") == [1]


def test_canal_alone_does_not_name_the_panama_canal():
    notes = [
        Note(
            doc_id="s",
            title="Suez Canal",
            fact="The Suez Canal connects the Mediterranean Sea to the Red Sea.",
        ),
        Note(doc_id="c", title="Central America", fact="Central America includes Panama and Costa Rica."),
        Note(
            doc_id="p",
            title="Panama Canal",
            fact="The Panama Canal shortened shipping routes between oceans.",
        ),
    ]
    q = "What role has the Panama Canal played in world trade?"
    assert relevant_notes(notes, "How did the canal change shipping routes?", q) == [3]


def test_the_writer_is_offered_only_relevant_notes_renumbered_most_relevant_first():
    seen: list[str] = []

    def write(n: int, m: list[Message]) -> dict[str, Any]:
        seen.append(m[-1]["content"])
        return {"sentences": [{"text": "The Soviet Union dissolved in 1991.", "notes": [1]}]}

    writer = writer_for(ScriptedLLM({"write": write}))
    [section] = writer.write(SOVIET_Q, ["When did the Soviet Union dissolve?"], SOVIET_NOTES)
    assert "Bronze Age" not in seen[0] and "Rome" not in seen[0]
    assert "[1] (Dissolution of the Soviet Union)" in seen[0] and "[2] (Soviet Union)" in seen[0]
    assert section.offered == [4, 3] and section.unrelated == 2
    assert section.claims[0].notes == [4]  # the writer's [1] is the run's note 4


def test_a_section_with_no_relevant_note_is_not_written_and_says_why():
    # no note names the Soviet Union, so the subject filters nothing; both share "collapse"
    assert sorted(relevant_notes(SOVIET_NOTES[:2], "What caused the Soviet collapse?", SOVIET_Q)) == [1, 2]
    llm = ScriptedLLM({})
    paris = [Note(doc_id="p", title="Paris", fact="Paris is the capital of France.")]
    [section] = writer_for(llm).write(SOVIET_Q, ["Which reforms came first?"], paris)
    assert section.skipped == "no relevant notes" and section.unrelated == 1 and llm.calls == []
    [section] = writer_for(llm).write(SOVIET_Q, ["Which reforms came first?"], [])
    assert section.skipped == "no notes"


def test_a_thin_section_is_one_whose_point_no_relevant_note_touches():
    rise = [Note(doc_id="o", title="Ottoman Empire", fact="The Ottoman Empire rose to power under Osman I.")]
    q = "How did the Ottoman Empire rise to power and why did it decline?"
    assert not thin_section(rise, "How did the Ottoman Empire rise to power?", q)
    assert thin_section(rise, "Why did the Ottoman Empire decline?", q)  # only the topic, not its point
    assert thin_section([], "Why did the Ottoman Empire decline?", q)


# --- the thin-section rule, end to end -----------------------------------------------------------


class KeyedSearch:
    """Hits by trigger word: a query finds the documents whose trigger words it contains."""

    name = "keyed"

    def __init__(self, docs: dict[str, tuple[str, str, set[str]]]) -> None:
        self.docs = docs
        self.queries: list[str] = []

    def search(self, query: str, k: int) -> list[Hit]:
        self.queries.append(query)
        words = set(query.lower().split())
        return [
            Hit(doc_id=doc_id, title=title, text=text, score=1.0)
            for doc_id, (title, text, keys) in self.docs.items()
            if words & keys
        ][:k]


SOVIET_DOCS = {
    "su": (
        "Soviet Union",
        "The Soviet Union had a planned economy. Its economy stagnated in the 1970s.",
        {"economy"},
    ),
    "bronze": (
        "Late Bronze Age collapse",
        "The Late Bronze Age collapse ended many societies.",
        {"perestroika"},
    ),
    "per": (
        "Perestroika",
        "Perestroika was a reform movement in the Soviet Union led by Mikhail Gorbachev. It loosened central control of the economy.",
        {"gorbachev"},
    ),
}
OUTLINE = {
    "title": "The collapse of the Soviet Union",
    "sections": ["What weakened the Soviet economy?", "What did perestroika change?"],
}


def number_of(prompt: str, title: str) -> int:
    """The number a writer's prompt gives the note from the passage titled ``title``."""
    return next(int(line[1 : line.index("]")]) for line in prompt.splitlines() if f"] ({title})" in line)


def soviet_script(thin_query: str = "Gorbachev reform movement", **overrides: Any) -> dict[str, Any]:
    def write(n: int, m: list[Message]) -> dict[str, Any]:
        prompt = m[-1]["content"]
        if "answers: What did perestroika change?" in prompt and "(Perestroika)" in prompt:
            text, title = "Perestroika loosened central control of the economy.", "Perestroika"
        else:  # the economy section, and a perestroika section with nothing but the economy note
            text, title = "The Soviet economy stagnated in the 1970s.", "Soviet Union"
        return {"sentences": [{"text": text, "notes": [number_of(prompt, title)]}]}

    script = {
        "outline": OUTLINE,
        "queries": {"queries": [thin_query]},
        "write": write,
        "check": lambda n, m: {
            "claims": [{"supported": True, "notes": []}] * m[-1]["content"].count("Claim ")
        },
    }
    return script | overrides


def test_a_section_the_notes_leave_unanswered_gets_one_more_search_round():
    llm = ScriptedLLM(soviet_script())
    search = KeyedSearch(SOVIET_DOCS)
    d = deps(llm, search, controller=FixedController(1, 1), answer_format="report")
    result = run_research(SOVIET_Q, d)
    # round 1 searched both sub-questions; perestroika's search found only the Bronze Age collapse
    thin_prompts = [m[-1]["content"] for step, m, _ in llm.calls if step == "queries"]
    assert len(thin_prompts) == 1 and "Question: What did perestroika change?" in thin_prompts[0]
    assert search.queries[-1] == "Gorbachev reform movement"
    rounds = [e for e in result.events if e["kind"] == "round"]
    assert [e["thin"] for e in rounds] == [["What did perestroika change?"], []]
    report = result.report
    assert report is not None
    economy, perestroika = report["sections"]
    assert not economy["searched_again"] and perestroika["searched_again"]
    assert [c["text"] for c in perestroika["claims"]] == [
        "Perestroika loosened central control of the economy."
    ]
    assert result.notes[perestroika["claims"][0]["notes"][0] - 1].doc_id == "per"
    assert "Bronze Age" not in result.answer
    assert d.ledger.spent_in("tokens") <= d.ledger.budget.limit
    assert result.stop_reason == "depth"


def test_a_section_that_stays_empty_after_its_round_says_why():
    llm = ScriptedLLM(soviet_script(thin_query="Brezhnev era"))  # finds nothing new
    result = run_research(
        SOVIET_Q,
        deps(llm, KeyedSearch(SOVIET_DOCS), controller=FixedController(1, 1), answer_format="report"),
    )
    report = result.report
    assert report is not None
    perestroika = report["sections"][1]
    # its writer saw only the economy note and could only repeat the first section
    assert perestroika["searched_again"] and perestroika["skipped"] == "repeated"
    assert (
        f"*Nothing beyond the above was written for (in each of {SECTION_DRAFTS} drafts; after a second search of its own, with more than half "
        "the budget left): What did perestroika change?*" in result.answer
    )
    assert sum(1 for step, _, _ in llm.calls if step == "queries") == 1  # one extra round, no more


def test_no_extra_round_once_half_the_budget_is_spent():
    llm = ScriptedLLM(soviet_script())
    budget = Budget(limit=50_000, unit="tokens", max_searches=4)  # round 1's two searches are half
    d = deps(
        llm, KeyedSearch(SOVIET_DOCS), budget=budget, controller=FixedController(1, 1), answer_format="report"
    )
    result = run_research(SOVIET_Q, d)
    assert not any(step == "queries" for step, _, _ in llm.calls)
    assert [e["thin"] for e in result.events if e["kind"] == "round"] == [[]]
    assert result.report is not None and not result.report["sections"][1]["searched_again"]


def test_the_check_line_counts_what_was_left_out():
    report = {
        "check": {"sentences": 2, "supported": 2, "supported_share": 1.0},
        "dropped": {"fragments": 1, "repeats": 2},
    }
    assert check_line(report).endswith("left out before the check: 1 cut, 2 repeated sentences")
    assert "left out" not in check_line({**report, "dropped": {"fragments": 0, "repeats": 0}})


def test_report_dump_round_trips_with_its_counts():
    report = Report(title="t", sections=[Section(question="q", fragments=2)])
    again = Report.model_validate(json.loads(report.model_dump_json()))
    assert again.dropped == {"fragments": 2, "repeats": 0, "irrelevant": 0, "unhelpful": 0}
    assert again.sections[0].fragments == 2


def test_a_sentence_cites_the_notes_that_support_it_not_every_note_it_was_given():
    vouched = Claim(text="Osman I founded it.", notes=[1, 2, 3], supporting=[2], supported=True)
    unchecked = Claim(text="It grew.", notes=[1, 3], supporting=[], supported=True)
    doubtful = Claim(text="It fell in 1299.", notes=[1, 2], supporting=[1], supported=False)
    report = Report(title="t", sections=[Section(question="q", claims=[vouched, unchecked, doubtful])])
    assert report.cited_notes() == [2, 1, 3]
    body = report.markdown({2: 1, 1: 2, 3: 3})
    assert "Osman I founded it. [1]" in body  # note 2 is source 1; notes 1 and 3 are not cited here
    assert "It grew. [2][3]" in body  # no single note vouched for: every cited note is shown
    assert "It fell in 1299. [1][2] *(unsupported)*" in body


# --- a red-flagged draft is discarded and another drawn ---------------------------------------------


CUT_DRAFT = '{"sentences": [{"text": "The Ottoman Empire failed to r'
WHOLE_DRAFT = {"sentences": [{"text": "The Ottoman Empire captured Constantinople in 1453.", "notes": [1]}]}


def test_a_draft_whose_every_sentence_is_cut_is_discarded_and_another_drawn_at_temperature():
    drafts = iter([CUT_DRAFT, WHOLE_DRAFT])
    llm = ScriptedLLM({"write": lambda n, m: next(drafts)})
    writer = writer_for(llm)
    [section] = writer.write(OTTOMAN_Q, ["How did the Ottoman Empire rise?"], NOTES)
    assert [c.text for c in section.claims] == ["The Ottoman Empire captured Constantinople in 1453."]
    assert section.drafts == 2 and section.fragments == 1 and section.skipped is None
    (_, first_seed, _, first_t), (_, second_seed, _, second_t) = llm.seeds
    assert first_t is None and second_t == writer.sample_temperature and first_seed != second_seed


def test_no_second_draft_once_half_the_budget_is_spent():
    llm = ScriptedLLM({"write": CUT_DRAFT})
    ledger = Ledger(
        Budget(limit=20_000, unit="tokens"), make_cost_model("tokens", BudgetSettings(), n_params=None)
    )
    writer = ReportWriter(llm, ledger, REPORT_PROMPTS, StepCaps())
    spent = Usage(prompt_tokens=int(20_000 * THIN_SPENT_SHARE))
    reservation = ledger.reserve(spent, event="research", node="earlier")
    ledger.settle(reservation, spent)
    [section] = writer.write(OTTOMAN_Q, ["How did the Ottoman Empire rise?"], NOTES)
    assert section.drafts == 1 and section.skipped == "cut" and len(llm.calls) == 1


def test_a_later_draft_the_budget_cannot_pay_for_leaves_the_first_drafts_reason():
    drafts = iter([CUT_DRAFT])

    def write(n: int, m: list[Message]) -> Any:
        return next(drafts, "no draft at all")  # the later drafts never parse

    writer = writer_for(ScriptedLLM({"write": write}))
    [section] = writer.write(OTTOMAN_Q, ["How did the Ottoman Empire rise?"], NOTES)
    assert section.claims == [] and section.skipped == "cut" and section.drafts == 1


def test_a_redraft_never_takes_what_later_sections_and_the_check_need():
    # a budget that pays one draft of each of two sections and their checks, and little more
    caps = StepCaps()
    from sounding.budgets.controllers import PROMPT_TOKENS

    one_each = 2 * (PROMPT_TOKENS["write"] + caps.write + PROMPT_TOKENS["check"] + caps.check)
    llm = ScriptedLLM({"write": CUT_DRAFT})
    ledger = Ledger(
        Budget(limit=one_each * 2.2, unit="tokens"),
        make_cost_model("tokens", BudgetSettings(), n_params=None),
    )
    writer = ReportWriter(llm, ledger, REPORT_PROMPTS, caps)
    sections = writer.write(OTTOMAN_Q, ["How did the Ottoman Empire rise?", "Who founded it?"], NOTES)
    assert all(s.skipped != "budget" for s in sections)  # the second section was still written
    assert writer._redraft_affordable(left=1, sections=2) is (
        ledger.spent_share() < THIN_SPENT_SHARE
        and ledger.can_afford(
            Usage(
                prompt_tokens=PROMPT_TOKENS["write"] + 2 * PROMPT_TOKENS["check"],
                completion_tokens=caps.write + 2 * caps.check,
            )
        )
    )


def test_a_report_whose_every_sentence_was_left_out_says_so_not_that_nothing_was_found():
    from sounding.agent.report_nodes import report_no_answer_reason

    hidden = Section(question="q", claims=[Claim(text="Films were made.", notes=[1], helps=False)])
    off = Section(question="r", skipped="irrelevant")
    assert (
        report_no_answer_reason(Report(title="t", sections=[hidden, off]), failed=False) == "nothing printed"
    )
    nothing = [Section(question="q", skipped="no notes"), Section(question="r", skipped="no relevant notes")]
    assert report_no_answer_reason(Report(title="t", sections=nothing), failed=False) == "no notes"


# --- the claims composer: one note, one claim ------------------------------------------------------

THREE_NOTES = [
    *NOTES,
    Note(
        doc_id="d3", title="Ottoman Empire", fact="The Ottoman Empire expanded into the Balkans in the 1300s."
    ),
]


def claims_writer(llm: Any, limit: float | None = None) -> ReportWriter:
    ledger = Ledger(
        Budget(limit=limit, unit="tokens"), make_cost_model("tokens", BudgetSettings(), n_params=None)
    )
    return ReportWriter(llm, ledger, REPORT_PROMPTS, StepCaps(), composer="claims")


def note_of(messages: list[Message]) -> str:
    """The one note a claim call shows (its line after "Note:")."""
    return messages[-1]["content"].split("Note:\n", 1)[1].split("\n", 1)[0]


def test_the_claims_composer_writes_one_claim_per_note_each_citing_exactly_that_note():
    def claim(n: int, m: list[Message]) -> Any:
        note = note_of(m)
        if "Balkans" in note:
            return {"answers": False, "sentence": ""}
        fact = note.split(") ", 1)[1]
        return {"answers": True, "sentence": fact.replace("The Ottoman Empire", "The empire")}

    llm = ScriptedLLM({"claim": claim})
    writer = claims_writer(llm)
    [section] = writer.write(OTTOMAN_Q, ["How did the Ottoman Empire rise?"], THREE_NOTES)
    # one call per offered note, each showing that note alone, most relevant first
    assert [s for s, _, _ in llm.calls] == ["claim"] * len(section.offered) and len(section.offered) == 3
    assert [note_of(m).count("[1]") for _, m, _ in llm.calls] == [1, 1, 1]
    assert all("[2]" not in note_of(m) for _, m, _ in llm.calls)
    by_text = {c.text: c.notes for c in section.claims}
    assert by_text == {
        "The empire was founded by Osman I around 1299.": [1],
        "The empire captured Constantinople in 1453.": [2],
    }
    # the note its writer said does not answer the sub-question gives no claim, and is counted
    assert section.declined == 1 and section.drafts == 3 and section.skipped is None


def test_a_red_flagged_claim_is_discarded_and_drawn_once_more_at_temperature():
    draws = iter(
        [
            '{"answers": true, "sentence": "The Ottoman Empire failed to r',  # cut by the token cap
            {"answers": True, "sentence": "The Ottoman Empire was founded by Osman I around 1299."},
            {"answers": True, "sentence": "The Ottoman Empire was founded by Osman I around 1299."},
            {"answers": True, "sentence": "Osman I founded the Ottoman Empire around 1299."},
        ]
    )
    llm = ScriptedLLM({"claim": lambda n, m: next(draws)})
    writer = claims_writer(llm)
    [section] = writer.write(OTTOMAN_Q, ["How did the Ottoman Empire rise?"], NOTES)
    # note 1: cut, then whole; note 2: a repeat of note 1's claim, then a repeat again (both draws used)
    assert [c.text for c in section.claims] == ["The Ottoman Empire was founded by Osman I around 1299."]
    assert section.fragments == 1 and section.repeats == 2 and section.drafts == 4
    temperatures = [t for _, _, _, t in llm.seeds]
    assert temperatures == [None, writer.sample_temperature, None, writer.sample_temperature]
    assert len({seed for _, seed, _, _ in llm.seeds}) == 4


def test_claims_stop_where_the_later_sections_and_the_check_need_the_budget():
    caps = StepCaps()
    from sounding.budgets.controllers import PROMPT_TOKENS

    claim = PROMPT_TOKENS["claim"] + caps.claim
    check = PROMPT_TOKENS["check"] + caps.check
    llm = ScriptedLLM({"claim": lambda n, m: {"answers": True, "sentence": note_of(m).split(") ", 1)[1]}})
    writer = claims_writer(llm, limit=10_000)
    # what is left pays a claim of each of two sections and their two checks, less one token
    earlier = Usage(prompt_tokens=int(10_000 - (2 * claim + 2 * check - 1)))
    writer.ledger.settle(writer.ledger.reserve(earlier, event="research", node="earlier"), earlier)
    subs = ["How did the Ottoman Empire rise?", "When did the Ottoman Empire take Constantinople?"]
    sections = writer.write(OTTOMAN_Q, subs, NOTES)
    # the first section's second claim would have taken what the second section and the checks need
    assert sections[0].drafts == 1 and sections[1].drafts >= 1 and sections[1].claims
    assert writer.ledger.spent_in("tokens") <= 10_000


def test_an_open_question_with_the_claims_composer_gets_a_checked_report_from_claims():
    script = {
        "outline": {"title": "The Danube", "sections": ["How does the Danube flow through Budapest?"]},
        "claim": lambda n, m: {"answers": True, "sentence": note_of(m).split(") ", 1)[1]},
        "check": lambda n, m: {
            "claims": [
                {"helps": True, "supported": True, "notes": []}
                for _ in range(m[-1]["content"].count("Claim "))
            ]
        },
    }
    llm = ScriptedLLM(script)
    d = deps(llm, controller=FixedController(1, 1), answer_format="report", composer="claims")
    result = run_research("How did the Danube shape the history of Budapest?", d)
    steps = [s for s, _, _ in llm.calls]
    assert "write" not in steps and steps.count("claim") >= 1 and steps.count("check") == 1
    assert result.report is not None and result.report["check"]["sentences"] >= steps.count("claim")
    assert all(len(c["notes"]) == 1 for s in result.report["sections"] for c in s["claims"])
    assert d.ledger.spent_in("tokens") <= d.ledger.budget.limit


# --- the select composer: a vote per note on which sentence answers --------------------------------

TWO_SENTENCE_NOTES = [
    Note(
        doc_id="d1",
        title="Ottoman Empire",
        fact="The Ottoman Empire was a state in Anatolia. It was founded by Osman I around 1299.",
    ),
    Note(doc_id="d2", title="Ottoman Empire", fact="The Ottoman Empire captured Constantinople in 1453."),
]


def composer_writer(llm: Any, composer: str, related: Any = None) -> ReportWriter:
    ledger = Ledger(
        Budget(limit=None, unit="tokens"), make_cost_model("tokens", BudgetSettings(), n_params=None)
    )
    return ReportWriter(llm, ledger, REPORT_PROMPTS, StepCaps(), composer=composer, related=related)  # type: ignore[arg-type]


def test_the_select_composer_prints_the_sentence_a_vote_chose_as_the_note_says_it():
    from sounding.agent.report import SELECT_VOTE_K

    ballots = iter([2, 1, 2, 2, 0, 0])  # note 1: 2, 1, 2, 2 (2 leads by k=2); note 2: 0, 0 (none answers)
    llm = ScriptedLLM({"select": lambda n, m: {"sentence": next(ballots)}})
    writer = composer_writer(llm, "select")
    [section] = writer.write(OTTOMAN_Q, ["Who founded the Ottoman Empire?"], TWO_SENTENCE_NOTES)
    assert SELECT_VOTE_K == 2
    assert [(c.text, c.notes) for c in section.claims] == [("It was founded by Osman I around 1299.", [1])]
    assert section.declined == 1 and section.drafts == 6
    # the first ballot of each vote greedy, the rest sampled with seeds of their own
    assert [t for _, _, _, t in llm.seeds] == [None] + [writer.sample_temperature] * 3 + [
        None,
        writer.sample_temperature,
    ]
    # each ballot lists the note's sentences by number
    assert (
        "1. The Ottoman Empire was a state in Anatolia.\n2. It was founded" in llm.calls[0][1][-1]["content"]
    )


def test_a_ballot_that_does_not_parse_is_discarded_not_counted():
    ballots = iter(
        [{"sentence": 7}, {"sentence": 1}, {"sentence": 1}, {"sentence": 1}, {"sentence": 1}]
    )  # 7: no such sentence
    llm = ScriptedLLM({"select": lambda n, m: next(ballots)})
    writer = composer_writer(llm, "select")
    [section] = writer.write(OTTOMAN_Q, ["How did the Ottoman Empire rise?"], NOTES)
    assert [c.notes for c in section.claims] == [[1], [2]] and section.drafts == 5


# --- the extract composer: the notes' most relevant sentences, no model call ------------------------


def test_the_extract_composer_prints_the_notes_most_relevant_sentences_without_a_model_call():
    from tests.test_report_relevance import CosineTable

    table = {
        "Ottoman Empire: The Ottoman Empire was a state in Anatolia. It was founded by Osman I around 1299.": 0.8,
        "Ottoman Empire: The Ottoman Empire captured Constantinople in 1453.": 0.7,
        "The Ottoman Empire was a state in Anatolia.": 0.36,
        "Ottoman Empire was founded by Osman I around 1299.": 0.9,
        "The Ottoman Empire captured Constantinople in 1453.": 0.6,
    }
    llm = ScriptedLLM({})
    writer = composer_writer(llm, "extract", related=CosineTable(table))
    [section] = writer.write(OTTOMAN_Q, ["Who founded the Ottoman Empire?"], TWO_SENTENCE_NOTES)
    assert llm.calls == []
    # most relevant first; "It" named by its article's title; each sentence cites its own note
    assert [(c.text, c.notes) for c in section.claims] == [
        ("Ottoman Empire was founded by Osman I around 1299.", [1]),
        ("The Ottoman Empire captured Constantinople in 1453.", [2]),
        ("The Ottoman Empire was a state in Anatolia.", [1]),
    ]
    # under the sentence floor: left out
    low = CosineTable({**table, "The Ottoman Empire was a state in Anatolia.": 0.2})
    [section] = composer_writer(llm, "extract", related=low).write(
        OTTOMAN_Q, ["Who founded the Ottoman Empire?"], TWO_SENTENCE_NOTES
    )
    assert len(section.claims) == 2


def test_an_extracted_sentence_repeating_an_earlier_section_is_dropped_and_counted():
    llm = ScriptedLLM({})
    writer = composer_writer(llm, "extract")  # no embeddings: shared words with the sub-question
    subs = ["Who founded the Ottoman Empire?", "When did Osman I found the Ottoman Empire?"]
    first, second = writer.write(OTTOMAN_Q, subs, NOTES)
    assert "The Ottoman Empire was founded by Osman I around 1299." in [c.text for c in first.claims]
    assert all(c.text != "The Ottoman Empire was founded by Osman I around 1299." for c in second.claims)
    assert second.repeats >= 1


def test_an_extracted_sentence_from_an_article_off_the_questions_subject_must_bear_on_the_question():
    from tests.test_report_relevance import CosineTable, note

    question = "How did the Black Death change Europe?"
    notes = [
        note("bd", "Black Death", "Labour shortages after the Black Death raised wages."),
        note("ss", "The Seventh Seal", "The Seventh Seal is a 1957 film set during the Black Death."),
    ]
    shown = {f"{n.title}: {n.fact}": 0.8 for n in notes}
    wages, film = (n.fact for n in notes)
    llm = ScriptedLLM({})

    def extracted(cosines: dict[str, float], asked: str = question) -> tuple[list[str], int]:
        writer = composer_writer(llm, "extract", related=CosineTable({**shown, **cosines}))
        [section] = writer.write(asked, [asked], notes)
        return [c.text for c in section.claims], section.irrelevant

    # the film's sentence bears on the section (0.5 >= the sentence floor) but its article is not about
    # the Black Death and it bears on the question under the question floor: left out, and counted
    assert extracted({wages: 0.5, film: 0.5}) == ([wages], 1)
    # the Black Death's own article speaks on its subject at any bearing over the sentence floor
    assert extracted({wages: 0.4, film: 0.5}) == ([wages], 1)
    # a sentence off the subject's article that bears closely on the question itself is kept
    assert extracted({wages: 0.5, film: 0.6}) == ([film, wages], 0)
    # a question naming no subject: every sentence must reach the question floor
    assert extracted({wages: 0.5, film: 0.6}, "why do wages rise after plagues?") == ([film], 1)
    assert llm.calls == []


def test_a_quoted_sentence_opening_with_a_pronoun_names_its_articles_subject():
    assert named_subject("It stands on the Danube.", "Budapest") == "Budapest stands on the Danube."
    assert (
        named_subject("Its population is 1.7 million.", "Budapest") == "Budapest's population is 1.7 million."
    )
    assert named_subject("He abdicated in 1848.", "Louis Philippe I") == "Louis Philippe I abdicated in 1848."
    assert (
        named_subject("His reign saw the Black Death.", "Edward III")
        == "Edward III's reign saw the Black Death."
    )
    assert named_subject("She wrote novels.", "Jane Austen") == "Jane Austen wrote novels."
    # only a whole leading pronoun: "Italy" and "Hence" are not "It" and "He"
    assert named_subject("Italy joined in 1915.", "World War I") == "Italy joined in 1915."
    assert named_subject("Hence the war.", "World War I") == "Hence the war."
