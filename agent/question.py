"""What a question must be before anything is spent on it: UTF-8 text, not empty, not oversized.
Checked by every entry point (`ask`, `search`, the sweeps) and by the graph's first node (Studio)."""

from __future__ import annotations

MAX_QUESTION_CHARS = 2000


class QuestionError(ValueError):
    """An empty, oversized or non-UTF-8 question."""


def check_question(question: str) -> str:
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as exc:  # bytes that were not UTF-8 reach Python as lone surrogates
        raise QuestionError(f"the question is not valid UTF-8 text (character {exc.start})") from exc
    question = question.strip()
    if not question:
        raise QuestionError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionError(
            f"the question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}"
        )
    return question
