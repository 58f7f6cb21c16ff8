"""One budgeted, structured LLM call: reserve -> complete -> settle -> parse (repair or retry once).

Every LLM call of the graph goes through `budgeted_json`, so nothing reaches a model without the
ledger's consent, and malformed output costs at most one retry, also charged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sounding.budgets.cost import Usage
from sounding.budgets.ledger import BudgetExceeded, Charge, Ledger
from sounding.tools.llm.base import LLM, Completion, Message


@dataclass
class StepResult:
    value: dict[str, Any] | None
    charges: list[Charge] = field(default_factory=list)
    repaired: bool = False
    retried: bool = False
    #: Why no value: "budget" (not affordable) or "malformed" (no valid JSON after the retry).
    failure: str | None = None


def repair_json(text: str) -> Any:
    """Best-effort repair of JSON cut off by the token cap: close open strings, arrays and objects."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    candidate = text + ('"' if in_string else "")
    candidate = re.sub(r",\s*$", "", candidate)
    candidate = re.sub(r":\s*$", ": null", candidate)
    candidate += "".join(reversed(stack))
    return json.loads(candidate)


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
) -> tuple[Completion | None, Charge | None]:
    """One LLM call within the budget: the completion cap shrinks to what is affordable (never below
    ``min_tokens``); returns (None, None) without calling the model when even that is not affordable."""
    prompt_bound = llm.prompt_token_bound(messages)
    max_tokens = ledger.max_completion_tokens(prompt_bound, cap)
    if max_tokens < min_tokens:
        return None, None
    try:
        reservation = ledger.reserve(
            Usage(prompt_tokens=prompt_bound, completion_tokens=max_tokens),
            event="llm",
            node=node,
            round=round,
        )
    except BudgetExceeded:
        return None, None
    try:
        completion = llm.complete(messages, max_tokens=max_tokens, schema=schema, temperature=temperature)
    except BaseException:
        # the call failed before reporting usage: nothing provably spent, release and re-raise
        ledger.release(reservation)
        raise
    charge = ledger.settle(
        reservation,
        Usage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens),
    )
    return completion, charge


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
) -> StepResult:
    """One schema-constrained call within the budget, parsed; ``failure="budget"`` when unaffordable,
    ``"malformed"`` when neither the answer nor its one (charged) retry is JSON after repair."""
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
            temperature=None if attempt == 0 else 0.3,
        )
        if completion is None or charge is None:
            result.failure = "budget"
            return result
        result.charges.append(charge)
        try:
            value = json.loads(completion.text)
        except json.JSONDecodeError:
            try:
                value = repair_json(completion.text)
                result.repaired = True
            except (json.JSONDecodeError, ValueError):
                result.retried = True
                continue
        if isinstance(value, dict):
            result.value = value
            return result
        result.retried = True
    result.failure = "malformed"
    return result
