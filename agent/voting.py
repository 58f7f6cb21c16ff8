"""First-to-ahead-by-k voting with red flags, after MAKER (Meyerson et al., 2025, "Solving a
million-step LLM task with zero errors"): small models become reliable on one minimal step when samples
are drawn one at a time until one answer leads every other by ``k`` votes, and a sample that shows a
red flag (malformed output, an empty or over-long answer, an answer that only repeats its question) is
discarded rather than repaired: a malformed sample is evidence that the model was confused, and
counting it would correlate the errors.

The voter does not call a model itself: ``draw(i)`` returns the i-th ballot (or None when the budget
cannot pay for another), so the same vote runs on scripted ballots in tests and on charged LLM calls in
the agent (agent/strategies/decompose.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

from sounding.tools.text import normalize_answer, question_options

RedFlag = Literal["malformed", "empty", "too_long", "echo"]


class Ballot(BaseModel):
    """One sample's answer, or the red flag it was discarded for."""

    answer: str = ""
    flag: RedFlag | None = None


class VoteResult(BaseModel):
    """How a first-to-ahead-by-k vote ended."""

    #: The answer that led (as first written), or None when no valid ballot was cast.
    winner: str | None
    #: Valid votes per normalised answer, in the order the answers first appeared.
    votes: dict[str, int]
    #: Every ballot drawn, valid or flagged, in order (what a smaller k would have read).
    ballots: list[Ballot]
    #: Discarded ballots per red flag.
    red_flags: dict[str, int]
    #: "ahead" (a leader by k), "max_samples" (the cap came first: the plurality wins) or "budget".
    ended: Literal["ahead", "max_samples", "budget"]

    @property
    def drawn(self) -> int:
        return len(self.ballots)


def red_flag(answer: str | None, *, max_words: int, echo_of: str | None = None) -> RedFlag | None:
    """Why a sample's answer must be discarded, if it must: no parsable answer, an empty one, one
    longer than a short answer can be (a model that rambles has lost the format), or, given the
    question it answers (``echo_of``), an echo: the answer is words of that question ("Who was Ed
    Wood?" -> "Ed Wood"), which answers nothing. Yes/no, and one of the options a question offers
    ("Who is older, A or B?" -> "B"), are never echoes."""
    if answer is None:
        return "malformed"
    key = normalize_answer(answer)
    if not key:
        return "empty"
    if len(answer.split()) > max_words:
        return "too_long"
    echo = echo_of is not None and f" {key} " in f" {normalize_answer(echo_of)} "
    if echo and key not in ("yes", "no") and not question_options(echo_of or ""):
        return "echo"
    return None


def leader(votes: Counter[str], order: list[str]) -> tuple[str | None, int]:
    """The answer with most votes (the earliest among equals) and its lead over the runner-up."""
    if not votes:
        return None, 0
    ranked = sorted(order, key=lambda key: (-votes[key], order.index(key)))
    runner_up = votes[ranked[1]] if len(ranked) > 1 else 0
    return ranked[0], votes[ranked[0]] - runner_up


def first_to_ahead_by_k(draw: Callable[[int], Ballot | None], *, k: int, max_samples: int) -> VoteResult:
    """Draw ballots until one answer leads every other by ``k`` valid votes; stop at ``max_samples``
    ballots (the plurality wins) or when ``draw`` returns None (the budget ran out)."""
    if k < 1 or max_samples < 1:
        raise ValueError(f"k and max_samples must be at least 1, got k={k}, max_samples={max_samples}")
    votes: Counter[str] = Counter()
    order: list[str] = []
    written: dict[str, str] = {}
    ballots: list[Ballot] = []
    flags: Counter[str] = Counter()
    ended: Literal["ahead", "max_samples", "budget"] = "max_samples"
    for i in range(max_samples):
        ballot = draw(i)
        if ballot is None:
            ended = "budget"
            break
        ballots.append(ballot)
        if ballot.flag is not None:
            flags[ballot.flag] += 1
            continue
        key = normalize_answer(ballot.answer)
        if key not in votes:
            order.append(key)
            written[key] = ballot.answer.strip()
        votes[key] += 1
        if leader(votes, order)[1] >= k:
            ended = "ahead"
            break
    top, _ = leader(votes, order)
    return VoteResult(
        winner=written[top] if top is not None else None,
        votes={key: votes[key] for key in order},
        ballots=ballots,
        red_flags=dict(flags),
        ended=ended,
    )
