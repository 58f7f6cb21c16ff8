"""What is known about a question before its research spends: the features a controller plans from
and ``sounding tune`` fits a policy on.

Four groups, each with its own price (the probe in ``agent/probe.py`` measures them and the ledger
charges them):

- ``form``: the question's wording alone (free): comparison, yes/no, wh-word, entities, length.
- ``closed_book``: a greedy closed-book answer with its mean token log-probability, plus samples of
  the same prompt: how much do they agree? (one call, and one request of ``k - 1`` samples)
- ``retrieval``: one search of the question: the top score and the gap to the second.
- ``decomposition``: how many sub-questions the model splits the question into (one call).

Pure: no LLM, no search here; ``vector`` turns measured features into named numbers.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel, Field

from sounding.tools.text import normalize_answer

FEATURE_GROUPS = ("form", "closed_book", "retrieval", "decomposition")

_COMPARISON = re.compile(
    r"\b(which|who)\b.*\b(first|older|younger|earlier|later|longer|shorter|larger|smaller|bigger|"
    r"higher|lower|more|less|fewer|greater|closer|farther|further)\b|\bboth\b|\bsame\b|\bor\b",
    re.IGNORECASE,
)
_YES_NO = re.compile(
    r"^(is|are|was|were|do|does|did|can|could|has|have|had|will|would|should)\b", re.IGNORECASE
)
_WH = ("who", "what", "when", "where", "which", "how")
# A capitalised run of words not at the question's start, or a quoted span: a named entity, roughly.
_ENTITY = re.compile(r'"[^"]+"|(?<![.?!]\s)(?<!^)\b[A-Z][\w\'-]*(?:\s+(?:of|the|de|von|[A-Z][\w\'-]*))*')


class Features(BaseModel):
    """One question's probe results; a group not measured leaves its fields empty."""

    question: str
    groups: list[str] = Field(default_factory=list, description="the feature groups measured")
    probe_answers: list[str] = Field(default_factory=list, description="greedy closed-book answer first")
    probe_logprob: float | None = Field(default=None, description="mean token log-prob of the greedy answer")
    retrieval_scores: list[float] = Field(default_factory=list)
    subquestions: int | None = None
    #: What measuring each group cost, in every unit the ledger reports.
    cost: dict[str, dict[str, float]] = Field(default_factory=dict)

    @property
    def agreement(self) -> bool | None:
        """Do all closed-book samples give the same answer? (None with fewer than two)"""
        if len(self.probe_answers) < 2:
            return None
        return len({normalize_answer(a) for a in self.probe_answers}) == 1

    @property
    def agreement_share(self) -> float | None:
        """Share of closed-book samples giving the most common answer (abstentions count against)."""
        if not self.probe_answers:
            return None
        counts = Counter(normalize_answer(a) for a in self.probe_answers if normalize_answer(a))
        return (counts.most_common(1)[0][1] if counts else 0) / len(self.probe_answers)

    @property
    def margin(self) -> float | None:
        """Relative gap between the best and second-best first-round retrieval scores."""
        s = sorted(self.retrieval_scores, reverse=True)
        if len(s) < 2 or s[0] <= 0:
            return None
        return (s[0] - s[1]) / s[0]

    def cost_of(self, groups: list[str] | tuple[str, ...], unit: str) -> float:
        """What measuring ``groups`` cost in ``unit`` (0 for the free form group)."""
        return sum(self.cost.get(g, {}).get(unit, 0.0) for g in groups)


def question_form(question: str) -> dict[str, float]:
    """The wording's features: no model needed."""
    text = question.strip()
    first = text.split()[0].lower() if text.split() else ""
    entities = _ENTITY.findall(text)
    form = {
        "form_comparison": float(bool(_COMPARISON.search(text))),
        "form_yes_no": float(bool(_YES_NO.match(text))),
        "form_entities": float(len(entities)),
        "form_words": float(len(text.split())),
    }
    for wh in _WH:
        form[f"form_{wh}"] = float(
            first == wh or (first in ("in", "on", "at", "of") and wh in text.lower()[:20])
        )
    return form


# An open question wants an explained answer of a few paragraphs; a factoid wants a name, a number, a
# date or yes/no. Checked on the questions in evals/suites (see docs/reports.md for the measurement).
_OPEN_START = re.compile(
    r"^(why|explain|describe|discuss|compare|contrast|summari[sz]e|outline|analy[sz]e|evaluate|assess|"
    r"tell me about|give an overview|what (are|were) the (main |major |key )?(causes|effects|consequences|"
    r"reasons|differences|similarities|advantages|disadvantages|benefits|risks|arguments|factors|"
    r"characteristics|features|impacts?|roles?|origins|ideas|principles|stages|types)|"
    r"what (role|impact|influence|effect)|in what ways?|to what extent|how (did|does|do|has|have|was|were|"
    r"is|are|can|could|might|would|should)\b)",
    re.IGNORECASE,
)
# "How many ...?" and "Why did X die?" are still factoids: a short answer names a number or a cause.
_SHORT_HOW = re.compile(
    r"^how (many|much|old|long|tall|far|big|large|high|deep|often)\b|^(why|how) did .{1,80}\bdie\b",
    re.IGNORECASE,
)


# "What role did X play in the film Y?" asks for a character's name.
_CAST_ROLE = re.compile(
    r"^what role\b.*\b(film|movie|series|show|sitcom|episode|play(ed)? by)\b", re.IGNORECASE
)


def answer_format(question: str) -> tuple[str, str]:
    """("short" | "report", why): does the question want a short answer or a cited report? Free: the
    wording alone decides (``--format`` overrides)."""
    text = question.strip()
    if _SHORT_HOW.match(text):
        return "short", "asks for a quantity"
    if _OPEN_START.match(text) and not _CAST_ROLE.search(text):
        return "report", f"an open question ({text.split()[0].lower()} ...)"
    return "short", "a factoid (who / what / when / where / which / yes-no)"


def vector(features: Features, groups: list[str] | tuple[str, ...]) -> dict[str, float]:
    """Named numeric features of the given groups; a group that was not measured is an error, a
    measured one with no value (no hits, no answer) gets a neutral number."""
    missing = [g for g in groups if g != "form" and g not in features.groups]
    if missing:
        raise ValueError(f"features of {', '.join(missing)} were not measured for {features.question!r}")
    out: dict[str, float] = {}
    if "form" in groups:
        out |= question_form(features.question)
    if "closed_book" in groups:
        greedy = features.probe_answers[0] if features.probe_answers else ""
        out["cb_logprob"] = features.probe_logprob if features.probe_logprob is not None else -5.0
        out["cb_agreement"] = features.agreement_share or 0.0
        out["cb_abstained"] = float(not normalize_answer(greedy))
        out["cb_answer_words"] = float(len(greedy.split()))
    if "retrieval" in groups:
        scores = sorted(features.retrieval_scores, reverse=True)
        out["ret_top"] = scores[0] if scores else 0.0
        out["ret_margin"] = features.margin or 0.0
    if "decomposition" in groups:
        out["decomp_subquestions"] = float(features.subquestions or 1)
    return out
