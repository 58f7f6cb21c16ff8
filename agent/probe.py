"""The difficulty probe: measure a question's features (``budgets/features.py``) before its research
spends, every call charged to the ledger it is given.

The agent runs it in its plan step when the controller asks for features (adaptive, tuned); the
sweep runs it for every question on a ledger of its own, so that features are stored with the rows
of any controller's run and ``sounding tune`` can fit a policy on them, with their price.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sounding.agent.llm_step import budgeted_json, charged_completion
from sounding.budgets.cost import Usage
from sounding.budgets.features import Features
from sounding.budgets.ledger import BudgetExceeded, Charge, Ledger
from sounding.tools.llm.base import LLM, Message, derive_seed
from sounding.tools.search.base import SearchBackend

PROBE_CAP = 24  # a closed-book short answer
PROBE_TEMPERATURE = 0.8  # the agreement samples: spread enough that a guess shows as disagreement

DECOMPOSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "subquestions": {
            "type": "array",
            "items": {"type": "string", "maxLength": 120},
            "minItems": 1,
            "maxItems": 3,
        }
    },
    "required": ["subquestions"],
}


@dataclass
class ProbeResult:
    features: Features
    charges: list[Charge] = field(default_factory=list)
    #: The probe's search hits (the question as a query), as the agent's hit records of round 1.
    hits: list[dict[str, Any]] = field(default_factory=list)


def charged_search(
    search: SearchBackend, ledger: Ledger, query: str, k: int, *, node: str, round: int
) -> tuple[list[dict[str, Any]], Charge]:
    """One search within the budget: hit records and the charge. Raises BudgetExceeded / SearchError."""
    reservation = ledger.reserve(Usage(searches=1), event="search", node=node, round=round)
    try:
        hits = search.search(query, k)
    except Exception:
        ledger.release(reservation)
        raise
    charge = ledger.settle(reservation, Usage(searches=1))
    records = [
        {"round": round, "query": query, "rank": rank, **h.model_dump()} for rank, h in enumerate(hits, 1)
    ]
    return records, charge


def run_probe(
    question: str,
    llm: LLM,
    search: SearchBackend,
    ledger: Ledger,
    prompts: dict[str, dict[str, str]],
    *,
    groups: list[str] | tuple[str, ...],
    seed: int = 0,
    samples: int = 3,
    k: int = 5,
) -> ProbeResult:
    """Measure ``groups`` of the question's features; a group the budget cannot pay for is left out
    (``features.groups`` lists what was measured). LLM and search errors propagate."""

    def msgs(step: str, **fields: Any) -> list[Message]:
        prompt = prompts[step]
        return [
            {"role": "system", "content": prompt["system"]},
            {"role": "user", "content": prompt["user"].format(**fields)},
        ]

    features = Features(question=question, groups=["form"] if "form" in groups else [])
    result = ProbeResult(features=features)

    def paid(group: str, charges: list[Charge]) -> None:
        result.charges += charges
        cost: dict[str, float] = {}
        for c in charges:
            for unit, value in c.cost.items():
                cost[unit] = cost.get(unit, 0.0) + value
        features.cost[group] = cost
        features.groups.append(group)

    if "retrieval" in groups:
        try:
            records, charge = charged_search(search, ledger, question, k, node="probe", round=1)
        except BudgetExceeded:
            pass
        else:
            result.hits = records
            features.retrieval_scores = [r["score"] for r in records]
            paid("retrieval", [charge])
    if "closed_book" in groups:
        charges: list[Charge] = []
        base = derive_seed(seed, question, "probe")
        greedy, greedy_charge = charged_completion(
            llm, ledger, msgs("probe", question=question), cap=PROBE_CAP, node="probe", round=0,
            min_tokens=4, temperature=0.0, seed=base, logprobs=True,
        )  # fmt: skip
        if greedy is not None and greedy_charge is not None:
            charges.append(greedy_charge)
            features.probe_answers.append(_first_line(greedy.text))
            features.probe_logprob = greedy.samples()[0].mean_logprob
            if samples > 1:
                drawn, drawn_charge = charged_completion(
                    llm, ledger, msgs("probe", question=question), cap=PROBE_CAP, node="probe", round=0,
                    min_tokens=4, temperature=PROBE_TEMPERATURE, n=samples - 1, seed=derive_seed(base, 1),
                )  # fmt: skip
                if drawn is not None and drawn_charge is not None:
                    charges.append(drawn_charge)
                    features.probe_answers += [_first_line(c.text) for c in drawn.samples()]
            paid("closed_book", charges)
    if "decomposition" in groups:
        step = budgeted_json(
            llm, ledger, msgs("decompose", question=question, n=3), DECOMPOSE_SCHEMA, cap=64,
            node="probe", round=0, seed=derive_seed(seed, question, "probe-decompose"),
        )  # fmt: skip
        if step.value is not None:
            subs = [s for s in step.value.get("subquestions", []) if str(s).strip()]
            features.subquestions = max(len(subs), 1)
            paid("decomposition", step.charges)
        else:
            result.charges += step.charges
    return result


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0].strip() if text else ""
