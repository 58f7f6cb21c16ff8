"""One budgeted, structured LLM call: reserve -> complete -> settle -> parse (complete a cut-off object or retry once).

Every LLM call of the graph goes through `budgeted_json`, so nothing reaches a model without the
ledger's consent, and malformed output costs at most one retry, also charged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from partial_json_parser import loads as partial_json_loads

from sounding.budgets.cost import Usage
from sounding.budgets.ledger import BudgetExceeded, Charge, Ledger
from sounding.tools.llm.base import LLM, Completion, LLMResponseError, Message


@dataclass
class StepResult:
    value: dict[str, Any] | None
    charges: list[Charge] = field(default_factory=list)
    repaired: bool = False
    retried: bool = False
    #: Why no value: "budget" (not affordable) or "malformed" (no valid JSON after the retry).
    failure: str | None = None
    #: The value's completion stopped at its token cap (the backend said "length", or the JSON had to
    #: be completed): its last string may end mid-sentence.
    cut: bool = False


def _lenient_loads(text: str) -> Any:
    # llama.cpp's JSON grammar lets control characters (a raw newline) through inside strings
    return json.loads(text, strict=False)


def complete_json(text: str) -> Any:
    """The JSON value of ``text``, completed if a token cap cut it off (open strings, arrays, objects,
    a dangling key or number closed) by partial-json-parser. Raises ValueError when it is not JSON.

    Chosen by measurement over the hand-written repair it replaces and json-repair, on every prefix of
    real outputs (benchmarks/bench_partial_json.py): it completes more of them and never invents
    content; json-repair completes about as many but rewrites some (a cut string becomes another
    value), which here would be a wrong answer instead of a retry."""
    return partial_json_loads(text.strip(), parser=_lenient_loads)


def charged_completion(
    llm: LLM,
    ledger: Ledger,
    messages: list[Message],
    *,
    cap: int,
    node: str,
    round: int,
    min_tokens: int,
    schema: dict[str, Any] | None = None,
    temperature: float | None = None,
    n: int = 1,
    seed: int | None = None,
    logprobs: bool = False,
    reasoning: bool = False,
) -> tuple[Completion | None, Charge | None]:
    """One LLM call of ``n`` samples within the budget, reserved as one (the prompt once, every
    sample's completion cap): the cap shrinks to what is affordable (never below ``min_tokens``), then
    the number of samples; returns (None, None) without calling the model when one sample of
    ``min_tokens`` is not affordable."""
    prompt_bound = llm.prompt_token_bound(messages)
    total = ledger.max_completion_tokens(prompt_bound, cap * n)
    while n > 1 and total // n < min_tokens:
        n -= 1
    max_tokens = min(cap, total // n)
    if max_tokens < min_tokens:
        return None, None
    try:
        reservation = ledger.reserve(
            Usage(prompt_tokens=prompt_bound, completion_tokens=max_tokens * n),
            event="llm",
            node=node,
            round=round,
            reasoning=reasoning,
        )
    except BudgetExceeded:
        return None, None
    try:
        completion = llm.complete(
            messages,
            max_tokens=max_tokens,
            schema=schema,
            temperature=temperature,
            n=n,
            seed=seed,
            logprobs=logprobs,
        )
        if completion.prompt_tokens < 0 or completion.completion_tokens < 0:
            raise LLMResponseError(
                f"{llm.name} reported negative token usage ({completion.prompt_tokens} prompt, "
                f"{completion.completion_tokens} completion)"
            )
    except BaseException:
        # the call failed before reporting usage: nothing provably spent, release and re-raise
        ledger.release(reservation)
        raise
    charge = ledger.settle(
        reservation,
        Usage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens),
    )
    return completion, charge


def parse_json_object(text: str, required: Sequence[str] = ()) -> tuple[dict[str, Any] | None, bool]:
    """(the JSON object in ``text`` or None, whether it had to be completed). An object with none of the
    keys in ``required`` (the step's schema's) is None too: the cut came inside the first key, the step
    got nothing it asked for, and that is worth the retry."""
    try:
        value = _lenient_loads(text)
        repaired = False
    except json.JSONDecodeError:
        try:
            value = complete_json(text)
            repaired = True
        except ValueError:
            return None, False
    if not isinstance(value, dict) or (required and not any(key in value for key in required)):
        return None, repaired
    return value, repaired


def budgeted_json(
    llm: LLM,
    ledger: Ledger,
    messages: list[Message],
    schema: dict[str, Any],
    *,
    cap: int,
    node: str,
    round: int,
    min_tokens: int = 8,
    seed: int | None = None,
    temperature: float | None = None,
) -> StepResult:
    """One schema-constrained call within the budget, parsed; ``failure="budget"`` when unaffordable,
    ``"malformed"`` when neither the answer nor its one (charged) retry is a JSON object with the keys the schema requires, after completion."""
    result = StepResult(value=None)
    for attempt in range(2):
        completion, charge = charged_completion(
            llm,
            ledger,
            messages,
            cap=cap,
            node=node,
            round=round,
            min_tokens=min_tokens,
            schema=schema,
            temperature=temperature if attempt == 0 else 0.3,
            seed=None if seed is None else seed + attempt,
        )
        if completion is None or charge is None:
            result.failure = "budget"
            return result
        result.charges.append(charge)
        value, repaired = parse_json_object(completion.text, schema.get("required", []))
        result.repaired = result.repaired or repaired
        if value is not None:
            result.value = value
            result.cut = repaired or completion.finish_reason == "length"
            return result
        result.retried = True
    result.failure = "malformed"
    return result
