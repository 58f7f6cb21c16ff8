"""Answer metrics with SQuAD normalisation (max over gold aliases), cover-EM, retrieval recall, LLM judge."""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from importlib import resources
from typing import Any

from pydantic import BaseModel

from sounding.tools.llm.base import LLM, LLMError
from sounding.tools.text import normalize_answer as normalize_answer  # re-exported

SPECIAL = ("yes", "no", "noanswer")


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token F1 as in the HotpotQA evaluation: yes/no/noanswer must match exactly."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if (pred in SPECIAL or ref in SPECIAL) and pred != ref:
        return 0.0
    pred_tokens, ref_tokens = pred.split(), ref.split()
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def cover_exact_match(prediction: str, gold: str) -> float:
    """1 when the normalised gold answer occurs in the normalised prediction (on word boundaries)."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if not ref:
        return 0.0
    return float(re.search(rf"(^| ){re.escape(ref)}( |$)", pred) is not None)


def best(metric: Any, prediction: str, golds: list[str]) -> float:
    return max((metric(prediction, g) for g in golds), default=0.0)


def supporting_recall(gold_titles: list[str], read_titles: list[str]) -> float | None:
    """Share of the gold supporting titles among everything the agent read; None without gold titles."""
    if not gold_titles:
        return None
    read = {t.strip().lower() for t in read_titles}
    return sum(1 for t in gold_titles if t.strip().lower() in read) / len(gold_titles)


class Scores(BaseModel):
    em: float
    f1: float
    cover_em: float


def score_answer(prediction: str, golds: list[str]) -> Scores:
    return Scores(
        em=best(exact_match, prediction, golds),
        f1=best(f1_score, prediction, golds),
        cover_em=best(cover_exact_match, prediction, golds),
    )


JUDGE_PROMPT: dict[str, str] = tomllib.loads(
    resources.files("sounding.evals").joinpath("prompts/judge.toml").read_text(encoding="utf-8")
)["judge"]
JUDGE_SCHEMA = {"type": "object", "properties": {"correct": {"type": "boolean"}}, "required": ["correct"]}


class Judgement(BaseModel):
    correct: bool | None
    judge_model: str
    error: str | None = None


def llm_judge(llm: LLM, question: str, prediction: str, golds: list[str]) -> Judgement:
    """Ask a model whether the prediction means the same as a gold answer; the judge is recorded."""
    messages: list[Any] = [
        {"role": "system", "content": JUDGE_PROMPT["system"]},
        {
            "role": "user",
            "content": JUDGE_PROMPT["user"].format(
                question=question, gold=" | ".join(golds), prediction=prediction
            ),
        },
    ]
    try:
        value = llm.complete(messages, max_tokens=16, schema=JUDGE_SCHEMA, temperature=0.0).json_value()
        return Judgement(correct=bool(value["correct"]), judge_model=llm.name)
    except (LLMError, KeyError, TypeError) as exc:
        return Judgement(correct=None, judge_model=llm.name, error=str(exc))
