"""Metrics on hand-checked examples, including SQuAD normalisation edge cases."""

import pytest

from sounding.evals.metrics import (
    cover_exact_match,
    exact_match,
    f1_score,
    normalize_answer,
    score_answer,
    supporting_recall,
)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("The  Danube!", "danube"),
        ("An apple, a day", "apple day"),
        ("U.S.A.", "usa"),
        ("theatre", "theatre"),  # 'the' inside a word stays
        ("  A  ", ""),
        ("Ünïcode Straße", "ünïcode straße"),
    ],
)
def test_squad_normalisation(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match():
    assert exact_match("the Danube", "Danube") == 1.0
    assert exact_match("Danube river", "Danube") == 0.0


def test_f1_hand_checked():
    assert f1_score("Danube River", "the Danube") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert f1_score("Budapest Hungary", "Budapest, Hungary") == 1.0
    assert f1_score("Paris", "London") == 0.0


def test_yes_no_must_match_exactly():
    assert f1_score("yes", "no") == 0.0
    assert f1_score("yes it is", "yes") == 0.0  # HotpotQA's rule: a yes/no gold needs the exact token
    assert f1_score("no", "no") == 1.0
    assert f1_score("noanswer", "the answer") == 0.0


def test_cover_em_on_word_boundaries():
    assert cover_exact_match("It is the Danube river.", "Danube") == 1.0
    assert cover_exact_match("Danubes", "Danube") == 0.0
    assert cover_exact_match("anything", "") == 0.0
    assert cover_exact_match("He was born in New York City", "new york") == 1.0


def test_max_over_aliases():
    s = score_answer("NYC", ["New York City", "NYC"])
    assert (s.em, s.f1, s.cover_em) == (1.0, 1.0, 1.0)
    s = score_answer("Big Apple city", ["New York City", "Big Apple"])
    assert s.em == 0.0 and s.cover_em == 1.0 and s.f1 == pytest.approx(0.8)


def test_supporting_recall():
    assert supporting_recall(["Ed Wood", "Scott Derrickson"], ["ed wood", "Other"]) == 0.5
    assert supporting_recall([], ["x"]) is None
