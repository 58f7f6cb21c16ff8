"""The ledger: the only way the agent spends.

Reserve before an action (an LLM call reserves its prompt-token bound plus ``max_tokens`` of
completion), settle after with the usage the backend reported, and the unused part is released.
Invariant, under any interleaving of threads: ``spent + outstanding reservations <= budget`` in the
budget's unit and under each explicit cap, hence ``spent <= budget`` always. A settle never charges
more than was reserved; usage beyond the reservation (a backend exceeding its bound) is recorded on
the charge as ``overrun`` for audit instead of breaking the invariant.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, model_validator

from sounding.budgets.cost import CostModel, Usage

EPS = 1e-9


class Budget(BaseModel):
    """A limit in one cost unit and/or explicit caps; the tightest binds. ``None`` means unlimited."""

    limit: float | None = None
    unit: str = "tokens"
    max_searches: int | None = None
    max_tokens: int | None = None

    def describe(self) -> str:
        parts = []
        if self.limit is not None:
            parts.append(f"{self.limit:g} {self.unit}")
        if self.max_searches is not None:
            parts.append(f"<= {self.max_searches} searches")
        if self.max_tokens is not None:
            parts.append(f"<= {self.max_tokens} tokens")
        return ", ".join(parts) or "unlimited"


class BudgetExceeded(RuntimeError):
    """A step could not be afforded; carries what remains so the caller can shrink the step or stop."""

    def __init__(self, message: str, remaining: Remaining) -> None:
        super().__init__(message)
        self.remaining = remaining


class Remaining(BaseModel):
    cost: float | None
    searches: int | None
    tokens: int | None


class Reservation(BaseModel):
    id: int
    usage: Usage
    cost: float
    event: str
    node: str
    round: int
    reasoning: bool = False
    started: float


#: The node names that marked a reasoning step's charge before charges carried `reasoning` themselves:
#: traces and checkpoints written then are read with the flag set from them (and only they are).
LEGACY_REASONING_NODES = frozenset({"think", "think_answer", "vote", "verify"})


class Charge(BaseModel):
    """One audited spend: what happened, where, how much (in every unit), and when."""

    event: str
    node: str
    round: int
    usage: Usage
    cost: dict[str, float]
    #: A reasoning step's charge (thinking, a voted answer, a verification): the harness reads a run's
    #: smaller settings by taking these out of its spend, so the step says so where it is charged
    #: rather than the harness recognising it by node name.
    reasoning: bool = False
    overrun: Usage | None = None
    started: float
    seconds: float

    @model_validator(mode="before")
    @classmethod
    def _legacy_reasoning(cls, data: Any) -> Any:
        if isinstance(data, dict) and "reasoning" not in data and data.get("node") in LEGACY_REASONING_NODES:
            return {**data, "reasoning": True}
        return data


class Ledger:
    def __init__(
        self,
        budget: Budget,
        cost_model: CostModel,
        *,
        report_models: Mapping[str, CostModel] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cost_model.unit != budget.unit:
            raise ValueError(f"budget is in {budget.unit} but the cost model prices in {cost_model.unit}")
        self.budget = budget
        self.cost_model = cost_model
        self.report_models = dict(report_models or {})
        self.report_models.setdefault(cost_model.unit, cost_model)
        self._clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._open: dict[int, Reservation] = {}
        self._spent = Usage()
        self._spent_cost = 0.0
        self._reserved = Usage()
        self._reserved_cost = 0.0
        self.charges: list[Charge] = []

    # -- queries ----------------------------------------------------------------------------------

    @property
    def spent(self) -> Usage:
        with self._lock:
            return self._spent.model_copy()

    @property
    def spent_cost(self) -> float:
        with self._lock:
            return self._spent_cost

    def spent_share(self) -> float:
        """The largest share of any of the budget's limits spent so far (0 when nothing is limited)."""
        budget, spent = self.budget, self.spent
        shares = [0.0]
        if budget.limit:
            shares.append(self.spent_cost / budget.limit)
        if budget.max_searches:
            shares.append(spent.searches / budget.max_searches)
        if budget.max_tokens:
            shares.append(spent.tokens / budget.max_tokens)
        return max(shares)

    def spent_in(self, unit: str) -> float:
        with self._lock:
            return sum(c.cost.get(unit, 0.0) for c in self.charges)

    def remaining(self) -> Remaining:
        with self._lock:
            return self._remaining()

    def _remaining(self) -> Remaining:
        b = self.budget
        committed = self._spent + self._reserved
        return Remaining(
            cost=None if b.limit is None else max(0.0, b.limit - self._spent_cost - self._reserved_cost),
            searches=None if b.max_searches is None else max(0, b.max_searches - committed.searches),
            tokens=None if b.max_tokens is None else max(0, b.max_tokens - committed.tokens),
        )

    def can_afford(self, usage: Usage) -> bool:
        with self._lock:
            return self._fits(usage, self.cost_model.price(usage))

    def _fits(self, usage: Usage, cost: float) -> bool:
        r = self._remaining()
        if r.cost is not None and cost > r.cost + EPS:
            return False
        if r.searches is not None and usage.searches > r.searches:
            return False
        return not (r.tokens is not None and usage.tokens > r.tokens)

    def max_completion_tokens(self, prompt_tokens: int, ceiling: int) -> int:
        """The largest completion (<= ceiling) affordable after a prompt of ``prompt_tokens``; 0 if none."""
        with self._lock:
            r = self._remaining()
            best = ceiling
            if r.tokens is not None:
                best = min(best, r.tokens - prompt_tokens)
            if r.cost is not None:
                base = self.cost_model.price(Usage(prompt_tokens=prompt_tokens))
                per = self.cost_model.price(Usage(completion_tokens=1))
                if base > r.cost + EPS:
                    return 0
                if per > 0:
                    best = min(best, int((r.cost - base + EPS) / per))
            return max(0, best)

    # -- spending ---------------------------------------------------------------------------------

    def reserve(
        self, usage: Usage, *, event: str, node: str, round: int = 0, reasoning: bool = False
    ) -> Reservation:
        """Hold ``usage`` against the budget, or raise `BudgetExceeded` (nothing held) if it does not fit;
        ``reasoning`` marks a reasoning step's spend (see `Charge.reasoning`)."""
        cost = self.cost_model.price(usage)
        with self._lock:
            if not self._fits(usage, cost):
                remaining = self._remaining()
                raise BudgetExceeded(
                    f"{node}: cannot afford {event} costing {cost:g} {self.budget.unit} "
                    f"({usage.searches} searches, {usage.tokens} tokens); remaining {remaining.model_dump()}",
                    remaining,
                )
            reservation = Reservation(
                id=next(self._ids),
                usage=usage,
                cost=cost,
                event=event,
                node=node,
                round=round,
                reasoning=reasoning,
                started=self._clock(),
            )
            self._open[reservation.id] = reservation
            self._reserved = self._reserved + usage
            self._reserved_cost += cost
            return reservation

    def settle(self, reservation: Reservation, actual: Usage) -> Charge:
        """Charge the real usage (at most what was reserved) and release the rest of the reservation."""
        with self._lock:
            held = self._take(reservation)
            charged = actual.clip(held.usage)
            overrun = actual - charged if actual.exceeds(held.usage) else None
            cost = min(self.cost_model.price(charged), held.cost)
            self._spent = self._spent + charged
            self._spent_cost += cost
            prices = {unit: model.price(charged) for unit, model in self.report_models.items()}
            prices[self.cost_model.unit] = cost
            charge = Charge(
                event=held.event,
                node=held.node,
                round=held.round,
                usage=charged,
                cost=prices,
                reasoning=held.reasoning,
                overrun=overrun,
                started=held.started,
                seconds=self._clock() - held.started,
            )
            self.charges.append(charge)
            return charge

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back untouched (the action was not taken or failed before using anything)."""
        with self._lock:
            self._take(reservation)

    def _take(self, reservation: Reservation) -> Reservation:
        held = self._open.pop(reservation.id, None)
        if held is None:
            raise ValueError(f"reservation {reservation.id} is not open (already settled or released)")
        self._reserved = self._reserved - held.usage
        self._reserved_cost -= held.cost
        if not self._open:  # clear float drift when nothing is outstanding
            self._reserved_cost = 0.0
        return held

    def restore(self, charges: list[Charge]) -> None:
        """Re-apply the charges of a checkpointed run being resumed (only into an unused ledger)."""
        with self._lock:
            if self.charges or self._open:
                raise ValueError("can only restore charges into an unused ledger")
            for charge in charges:
                self._spent = self._spent + charge.usage
                self._spent_cost += charge.cost.get(self.cost_model.unit, self.cost_model.price(charge.usage))
                self.charges.append(charge)

    # -- reporting --------------------------------------------------------------------------------

    def summary(self) -> dict[str, object]:
        with self._lock:
            by_event: dict[str, dict[str, float]] = {}
            by_round: dict[int, dict[str, float]] = {}
            for c in self.charges:
                for bucket in (by_event.setdefault(c.event, {}), by_round.setdefault(c.round, {})):
                    for unit, value in c.cost.items():
                        bucket[unit] = bucket.get(unit, 0.0) + value
            return {
                "budget": self.budget.model_dump(),
                "spent": self._spent.model_dump(),
                "spent_cost": self._spent_cost,
                "spent_by_unit": {
                    u: sum(c.cost.get(u, 0.0) for c in self.charges) for u in self.report_models
                },
                "by_event": by_event,
                "by_round": {str(k): v for k, v in sorted(by_round.items())},
                "llm_calls": sum(1 for c in self.charges if c.usage.tokens > 0),
                "overruns": sum(1 for c in self.charges if c.overrun is not None),
            }
