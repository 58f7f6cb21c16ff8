"""The helpers `frontiers`, `split_exchanges`, `composition` and `load_grid` were split into (issue 29):
each keeps the behaviour of the code it came from, down to the random draws."""

from __future__ import annotations

import numpy as np
import pytest

from sounding.evals import frontier, tune


def test_resample_draws_what_one_generator_draws_resample_by_resample() -> None:
    # split_exchanges used to draw each resample inside its bootstrap loop: the same numbers
    ids = [f"q{i}" for i in range(7)]
    rng = np.random.default_rng(13)
    inline = [[ids[j] for j in rng.integers(0, len(ids), len(ids))] for _ in range(25)]
    assert frontier._resample(ids, 25, 13) == inline
    assert frontier._resample(ids, 0, 13) == []


def test_flops_frontier_and_best_setting() -> None:
    # rows: (accuracy, FLOPs)
    table = np.array([[0.2, 10.0], [0.2, 5.0], [0.5, 20.0], [0.4, 30.0], [0.5, 15.0]])
    assert frontier._flops_frontier(table) == [1, 4]
    assert frontier._best_setting(table) == 4  # the cheaper of the two most accurate
    assert frontier._cheapest_reaching(table, 0.45) == 4
    assert frontier._cheapest_reaching(table, 0.6) is None


def test_prespecified_settings_reason_and_are_unique() -> None:
    grid = [(0, 0, 1), (0, 64, 1), (2, 0, 1), (2, 64, 1)]
    # no samples axis: "most samples" is 1, so three of the four wanted settings are (2, 64, 1)
    assert frontier._prespecified_settings(grid) == [(2, 64, 1), (0, 64, 1)]
    assert frontier._prespecified_settings([(0, 0, 1), (1, 0, 1)]) == []


def test_question_groups_keep_all_first_then_types_and_hops() -> None:
    matrix: frontier.Matrix = {
        "a": {(0, 0, 1): {"qtype": "bridge", "hops": 2}},
        "b": {(0, 0, 1): {"qtype": "comparison"}},
        "c": {(0, 0, 1): {"hops": 2}},
    }
    groups = frontier._question_groups(matrix, ["a", "b", "c"], (0, 0, 1))
    assert list(groups.items()) == [
        ("all", ["a", "b", "c"]),
        ("type bridge", ["a"]),
        ("2 hops", ["a", "c"]),
        ("type comparison", ["b"]),
    ]


def test_r_squared_is_none_for_flat_accuracy() -> None:
    x = np.array([1.0, 2.0, 4.0])
    assert frontier._r_squared(x, np.array([0.3, 0.3, 0.3]), 0.0, 0.3) is None
    y = 0.1 + 0.2 * np.log(x)
    assert frontier._r_squared(x, y, 0.2, 0.1) == pytest.approx(1.0)


def _readings(answers: list[str]) -> dict[tuple[int, int, int], dict[str, object]]:
    return {(d, 0, 1): {"answer": a} for d, a in enumerate(answers)}


def test_agreement_stop() -> None:
    assert tune._agreement_stop(_readings(["x", "Rome", "Oslo", "oslo.", "Bern"]), 4, 0, 1) == 3
    assert tune._agreement_stop(_readings(["x", "Rome", "Rome", "Oslo"]), 3, 0, 1) == 2
    # answers empty once normalised ("the") agree with nothing
    assert tune._agreement_stop(_readings(["x", "", "", "Oslo"]), 3, 0, 1) == 3
    assert tune._agreement_stop(_readings(["x", "the", "The", "Oslo"]), 3, 0, 1) == 3
    assert tune._agreement_stop(_readings(["x", "Rome", "Oslo", "Bern"]), 3, 0, 1) == 3


def _row(answer: str, score: float, cost: float) -> dict[str, object]:
    return {"answer": answer, "cover_em": score, "cost": {"tokens": cost}}


def test_early_stop_columns() -> None:
    grid = [(d, 0, 1) for d in range(4)] + [(0, 0, 3), (3, 0, 3)]
    matrix: frontier.Matrix = {
        "q1": {(d, t, n): _row("Rome" if d >= 1 else "Oslo", float(d), 10.0 * d) for d, t, n in grid},
        "q2": {(d, t, n): _row(f"city {d}", 1.0 - d / 10, 100.0 * d) for d, t, n in grid},
    }
    settings, accs, costs = tune._early_stop_columns(matrix, ["q1", "q2"], grid, 2, "cover_em", "tokens")
    # (0, 3) lacks depths 1 and 2: only (think 0, 1 sample) gets an early-stop setting
    assert [(s.depth, s.breadth, s.think, s.samples, s.stop_on_agree) for s in settings] == [
        (3, 2, 0, 1, True)
    ]
    assert accs == [[2.0, 0.7]]  # q1 stops at depth 2 (rounds 1 and 2 agree), q2 runs to 3
    assert costs == [[20.0, 300.0]]
    shallow = [s for s in grid if s[0] <= 2]
    assert tune._early_stop_columns(matrix, ["q1"], shallow, 1, "cover_em", "tokens") == ([], [], [])


def test_features_by_question_keeps_the_first_of_the_grids_runs() -> None:
    features = {
        ("other", "q1"): {"n": 0},
        ("k2", "q1"): {"n": 1},
        ("k1", "q1"): {"n": 2},
        ("k1", "q2"): {"n": 3},
    }
    assert tune._features_by_question(features, ["k1", "k2"]) == {"q1": {"n": 1}, "q2": {"n": 3}}
