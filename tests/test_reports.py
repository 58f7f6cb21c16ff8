"""Reports for open questions (scripted LLM: outline, write, check), the report eval's store and
scoring, rendering, and hybrid search before the dense index exists (the real MiniLM)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sounding.agent.report import split_sentences
from sounding.agent.runner import run_research
from sounding.budgets.controllers import FixedController
from sounding.budgets.features import answer_format
from sounding.cli.render import render_html, render_result, write_answer
from sounding.evals.reports import (
    OpenQuestion,
    RecordStore,
    ReportEvalError,
    evaluate_question,
    load_open_questions,
    parse_cited_text,
    summarise,
)
from sounding.settings import load_settings
from sounding.tools.corpus import parse_corpus_spec
from sounding.tools.search.reranked import RerankedBM25Search
from sounding.tools.search.store import IndexStore
from tests.scripted import ScriptedLLM
from tests.test_agent_nodes import deps

OPEN_Q = "How did the Danube shape the history of Budapest?"
SUPPORTED = "The Danube flows through Budapest."
UNSUPPORTED = "Budapest hosted the first modern Olympic marathon in 1850."


def report_script(**overrides):
    base = {
        "outline": {
            "title": "The Danube and Budapest",
            "sections": ["Danube Budapest river", "capital Hungary"],
        },
        # the first section: one sentence its notes support, one they do not; the second: supported
        "write": lambda n, m: {
            "sentences": [{"text": SUPPORTED, "notes": [1, 2]}, {"text": UNSUPPORTED, "notes": [1]}]
            if n == 1
            else [{"text": "Budapest is the capital of Hungary.", "notes": [1, 2, 3]}]
        },
        # the model check says yes to everything: the lexical check must still catch the invention
        "check": lambda n, m: {
            "claims": [{"supported": True, "notes": []} for _ in range(m[-1]["content"].count("Claim "))]
        },
    }
    base.update(overrides)
    return base


def test_answer_format_tells_open_questions_from_factoids():
    assert answer_format(OPEN_Q)[0] == "report"
    assert answer_format("Why did the Roman Empire split?")[0] == "report"
    assert answer_format("Explain how vaccines work.")[0] == "report"
    assert answer_format("Which river flows through the capital of Hungary?")[0] == "short"
    assert answer_format("How many people live in Budapest?")[0] == "short"
    assert answer_format("Why did the director of film The Knife die?")[0] == "short"
    assert answer_format("What role did Ben Keaton play in the film East is East?")[0] == "short"


def test_open_question_gets_a_checked_cited_report():
    llm = ScriptedLLM(report_script())
    d = deps(llm, controller=FixedController(1, 1), answer_format="auto")
    result = run_research(OPEN_Q, d)
    assert result.format == "report"
    steps = [c[0] for c in llm.calls]
    assert steps[0] == "outline" and "extract" not in steps and "reflect" not in steps  # notes are quotes
    assert steps.count("write") == 2 and steps.count("check") == 2
    report = result.report
    assert report is not None
    claims = [c for s in report["sections"] for c in s["claims"]]
    by_text = {c["text"]: c for c in claims}
    assert by_text[SUPPORTED]["supported"] is True
    assert by_text[UNSUPPORTED]["supported"] is False  # the model said yes; the words are not there
    assert report["check"]["sentences"] == 3 and report["check"]["supported"] == 2
    assert 0 < report["check"]["citation_precision"] < 1
    # the printed body: sentences with source numbers, the invented one marked
    assert result.answer.startswith("# The Danube and Budapest")
    assert f"{UNSUPPORTED} [" in result.answer and "*(unsupported)*" in result.answer
    assert [s.doc_id for s in result.sources] == result.citations
    assert all(s.doc_id in {n.doc_id for n in result.notes} for s in result.sources)
    assert d.ledger.spent_in("tokens") <= d.ledger.budget.limit
    text = render_result(result)
    assert "citation check: 2 of 3 sentences supported" in text and "## Sources" in text


def test_dropped_unsupported_sentences_are_not_printed():
    d = deps(
        ScriptedLLM(report_script()),
        controller=FixedController(1, 1),
        answer_format="report",
        unsupported="drop",
    )
    result = run_research(OPEN_Q, d)
    assert UNSUPPORTED not in result.answer and SUPPORTED in result.answer
    assert "(unsupported)" not in result.answer


def test_factoid_keeps_its_short_answer_and_format_can_be_forced():
    from tests.test_agent_nodes import Q, script

    result = run_research(Q, deps(ScriptedLLM(script()), answer_format="auto"))
    assert result.format == "short" and result.answer == "The Danube" and result.report is None
    forced = run_research(OPEN_Q, deps(ScriptedLLM(script()), answer_format="short"))
    assert forced.format == "short" and forced.answer == "The Danube"


def test_report_within_a_small_budget_never_overspends():
    from sounding.budgets.ledger import Budget

    d = deps(ScriptedLLM(report_script()), budget=Budget(limit=2500, unit="tokens"), answer_format="report")
    result = run_research(OPEN_Q, d)
    assert d.ledger.spent_in("tokens") <= 2500
    assert result.format == "report"


def test_a_report_whose_query_step_fails_ends_in_its_own_write_and_check():
    """A failure in a report's loop ends in the report's write and check (an empty, degraded report
    saying why), never in the short answer's node."""
    llm = ScriptedLLM(report_script(queries={"queries": ["Danube history"]}), fail_on="queries")
    result = run_research(OPEN_Q, deps(llm, controller=FixedController(2, 1), answer_format="report"))
    kinds = [e["kind"] for e in result.events]
    assert result.degraded and result.format == "report" and result.report is not None
    assert "check" in kinds and "answer" not in kinds
    assert "scripted failure" in (result.error or "")


def test_split_sentences_and_cited_text_parsing():
    assert split_sentences("Budapest lies on the Danube [2]") == ["Budapest lies on the Danube."]
    assert split_sentences("One two three. Four five six [1].") == ["One two three.", "Four five six."]
    claims = parse_cited_text(
        "The Danube flows through Budapest [2]. Budapest is big. [1][3] Paris [9] is far.", 3
    )
    assert [(c.text, c.notes) for c in claims] == [
        ("The Danube flows through Budapest.", [2]),
        ("Budapest is big.", [1, 3]),
        ("Paris is far.", []),  # [9] names no note
    ]


def test_html_links_every_citation_to_its_source(tmp_path):
    result = run_research(
        OPEN_Q, deps(ScriptedLLM(report_script()), controller=FixedController(1, 1), answer_format="report")
    )
    out = tmp_path / "report.html"
    write_answer(result, out)
    page = out.read_text()
    assert '<a href="#source-1">[1]</a>' in page and 'id="source-1"' in page
    assert "<h1>The Danube and Budapest</h1>" in page
    md = tmp_path / "report.md"
    write_answer(result, md)
    assert md.read_text().startswith("# The Danube and Budapest")
    assert render_html(result).count('id="source-') == len(result.sources)


def test_html_pages_are_their_markdown_rendered_and_a_models_html_stays_text():
    from sounding.evals.report import to_html, to_markdown

    blocks = [("h1", "Fit"), ("p", "A **bold** claim <script>x</script>"),
              ("table", [["setting", "error"], ["d1", "failed: a|b\nc"]])]  # fmt: skip
    page = to_html(blocks)
    assert "<strong>bold</strong>" in page and "&lt;script&gt;" in page and "<script>" not in page
    assert "<td>failed: a|b c</td>" in page  # the cell's pipe and newline did not split the row
    assert "| failed: a\\|b c |" in to_markdown(blocks)
    result = run_research(
        OPEN_Q, deps(ScriptedLLM(report_script()), controller=FixedController(1, 1), answer_format="report")
    )
    result = result.model_copy(update={"answer": result.answer + "\n\n<img src=x onerror=alert(1)>"})
    assert "<img src=x" not in render_html(result) and "&lt;img src=x" in render_html(result)


# --- the report eval -----------------------------------------------------------------------------


def test_report_eval_scores_with_the_judge_and_resumes(tmp_path):
    writer = ScriptedLLM(
        report_script(one_shot=f"{SUPPORTED} [2] {UNSUPPORTED} Budapest is the capital of Hungary. [1]")
    )
    # the judge: only sentences about the Danube or the capital are supported
    judge = ScriptedLLM(
        {
            "support": lambda n, m: {
                "sentences": [
                    {"supported": "Olympic" not in line, "sources": []}
                    for line in m[-1]["content"].splitlines()
                    if line.startswith("Sentence ")
                ]
            }
        }
    )
    from sounding.budgets.cost import make_cost_model
    from sounding.budgets.ledger import Budget, Ledger
    from sounding.settings import BudgetSettings

    def new_ledger():
        return Ledger(
            Budget(limit=None, unit="tokens"), make_cost_model("tokens", BudgetSettings(), n_params=None)
        )

    def research(question):
        return run_research(question, deps(writer, controller=FixedController(1, 1), answer_format="report"))

    q = OpenQuestion(id="open-01", question=OPEN_Q, topics=["Danube"])
    record = evaluate_question(q, research, writer, judge, new_ledger)
    written, kept, one = (record.scores[a] for a in ("report_written", "report_checked", "one_shot"))
    assert (written.sentences, written.supported) == (3, 2)
    assert (kept.sentences, kept.supported) == (2, 2)  # the agent's own check dropped the invention
    assert (one.sentences, one.supported, one.uncited) == (3, 2, 1)
    assert record.topic_read is True
    assert set(record.dropped) == {"fragments", "repeats", "irrelevant", "unhelpful"}  # kept with the record

    store = RecordStore(tmp_path / "run", {"model": "a"})
    store.append(record)
    with (tmp_path / "run" / "records.jsonl").open("a") as f:
        f.write('{"id": "open-02", "quest')  # a crash mid-write
    store = RecordStore(tmp_path / "run", {"model": "a"})
    assert [r.id for r in store.records()] == ["open-01"]
    with pytest.raises(ReportEvalError, match="another configuration"):
        RecordStore(tmp_path / "run", {"model": "b"})
    summary = summarise(store.records())
    assert summary["arms"]["report_checked"]["supported_share"] == 1.0
    assert summary["arms"]["one_shot"]["supported_share"] == pytest.approx(2 / 3)


def test_open_questions_file_is_checked(tmp_path):
    from sounding.evals.reports import DEFAULT_QUESTIONS

    assert len(load_open_questions(DEFAULT_QUESTIONS)) == 30
    assert all(answer_format(q.question)[0] == "report" for q in load_open_questions(DEFAULT_QUESTIONS))
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "a", "question": "Why?"}\n{"id": "a", "question": "Why not?"}\n')
    with pytest.raises(ReportEvalError, match="line 2: duplicate id 'a'"):
        load_open_questions(bad)
    bad.write_text('{"id": "a"}\n')
    with pytest.raises(ReportEvalError, match="line 1: not an open question"):
        load_open_questions(bad)


# --- a first answer before the dense index exists (real MiniLM, real files) -----------------------


def test_hybrid_before_the_dense_index_reranks_bm25_and_seeds_the_full_build(tmp_path, small_corpus):
    settings = load_settings(home=tmp_path / "home")
    spec = parse_corpus_spec(f"jsonl:{small_corpus}")
    store = IndexStore(settings)
    early = store.open(spec, "hybrid", wait_for_dense=False)
    assert isinstance(early, RerankedBM25Search)
    assert not store.folder(spec, "dense").exists()  # nothing embedded but BM25's candidates
    assert early.search("capital of Hungary", 2)[0].title == "Budapest"
    cache = store.folder(spec, "dense-partial")
    cached_rows = np.load(cache / "rows.npy")
    assert len(cached_rows) > 0
    # the full build reuses those vectors, then drops the partial cache
    full = store.open(spec, "hybrid")
    assert full.name == "hybrid" and not cache.exists()
    vectors = np.load(store.folder(spec, "dense") / "embeddings.npy")
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)  # every row embedded
    assert store.open(spec, "hybrid", wait_for_dense=False).name == "hybrid"  # built: no fallback
    assert full.search("capital of Hungary", 1)[0].title == "Budapest"
    json.dumps([h.model_dump() for h in early.search("highest mountain", 1)])


def test_a_report_with_no_parsable_paragraph_says_why():
    result = run_research(
        OPEN_Q,
        deps(
            ScriptedLLM(report_script(write="not json")),
            controller=FixedController(1, 1),
            answer_format="report",
        ),
    )
    assert result.no_answer_reason == "malformed"
    assert result.answer.startswith("No answer: the model's output did not parse")


def test_a_report_only_eval_writes_the_report_and_neither_a_baseline_nor_verdicts():
    from sounding.budgets.cost import make_cost_model
    from sounding.budgets.ledger import Budget, Ledger
    from sounding.settings import BudgetSettings

    writer = ScriptedLLM(report_script())

    def new_ledger():
        return Ledger(
            Budget(limit=None, unit="tokens"), make_cost_model("tokens", BudgetSettings(), n_params=None)
        )

    def research(question):
        return run_research(question, deps(writer, controller=FixedController(1, 1), answer_format="report"))

    q = OpenQuestion(id="open-01", question=OPEN_Q, topics=["Danube"])
    record = evaluate_question(q, research, writer, None, new_ledger)
    assert "one_shot" not in [s for s, _, _ in writer.calls]  # no baseline written
    assert record.one_shot_text == "" and record.scores["one_shot"].sentences == 0
    written = record.scores["report_written"]
    assert written.sentences == 3 and written.unjudged == 3 and written.supported == 0
    assert record.report_markdown.startswith("# The Danube and Budapest") and record.tokens["judge"] == 0
    assert all(c.lexical > 0 for c in record.claims["report_written"])  # the lexical share is still read
