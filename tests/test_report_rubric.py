"""The rubric of the open-question suite (issue 32): for each question the key points a good report makes,
each tied to a verbatim passage of a wiki-vital article, so a point can be checked from the corpus alone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sounding.evals.reports import DEFAULT_QUESTIONS, load_open_questions
from sounding.tools.corpus import load_wiki_vital

RUBRIC = DEFAULT_QUESTIONS.with_name("wiki_vital_open_rubric.jsonl")
MAX_POINT_WORDS = 25
MIN_EVIDENCE_WORDS = 6


@pytest.fixture(scope="module")
def rubric() -> list[dict[str, Any]]:
    lines = RUBRIC.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def articles() -> dict[str, str]:
    return {doc.title: doc.text for doc in load_wiki_vital()}


def test_rubric_follows_the_suite_question_by_question(rubric):
    assert [line["id"] for line in rubric] == [q.id for q in load_open_questions(DEFAULT_QUESTIONS)]


def test_every_question_has_four_to_six_points_unless_a_note_says_the_corpus_covers_less(rubric):
    for line in rubric:
        count = len(line["points"])
        if "note" in line:
            assert line["note"].startswith("corpus covers only"), line["id"]
            assert 2 <= count <= 6, line["id"]
        else:
            assert 4 <= count <= 6, line["id"]


def test_a_thin_question_has_a_note_and_a_full_one_does_not(rubric):
    for line in rubric:
        assert ("note" in line) == (len(line["points"]) < 4), line["id"]


def test_points_are_short_non_empty_and_distinct_within_a_question(rubric):
    for line in rubric:
        points = [p["point"].strip() for p in line["points"]]
        assert all(points), line["id"]
        assert all(len(p.split()) <= MAX_POINT_WORDS for p in points), line["id"]
        assert len({p.casefold() for p in points}) == len(points), line["id"]


def test_every_point_cites_a_corpus_article_and_quotes_it_verbatim(rubric, articles):
    for line in rubric:
        for point in line["points"]:
            source, evidence = point["source"], point["evidence"]
            assert source in articles, f"{line['id']}: no wiki-vital article titled {source!r}"
            assert len(evidence.split()) >= MIN_EVIDENCE_WORDS, (
                f"{line['id']}: evidence too short: {evidence!r}"
            )
            assert evidence in articles[source], f"{line['id']}: not in {source!r}: {evidence!r}"
