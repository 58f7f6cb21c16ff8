"""Routing a question to a strategy: a policy tuned across strategies (`sounding tune
--across-strategies`) chooses the strategy, its dials and its plan per question, from the probe.

The choice is made before any graph starts (a strategy's graph is built for one strategy): the probe
is charged to the run's ledger, the policy chooses a setting, and the chosen strategy's graph runs with
a `ChosenPlan` controller that hands every plan node the plan already made (so no graph probes again).
The route is part of the run's state (``route``), so a resumed run takes the same one without probing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from sounding.agent.nodes import PROMPTS, AgentDeps, emit_event
from sounding.agent.probe import run_probe
from sounding.budgets.controllers import Decision, Plan, RoundReport
from sounding.budgets.cost import CostModel
from sounding.budgets.features import Features, answer_format
from sounding.budgets.ledger import Budget


class Route(BaseModel):
    """Where a question was sent: the strategy, its dials and the plan, and why."""

    strategy: str
    dials: dict[str, Any]
    plan: Plan
    why: str


class ChosenPlan:
    """A controller whose plan was made before the graph started (by a routing policy): every plan
    node gets it; rounds end as the policy's controller would end them."""

    needs_probe = False
    probe_samples = 1

    def __init__(self, plan: Plan, decides: Any) -> None:
        self.probe_groups: list[str] = []
        self._plan = plan
        self._decides = decides

    @property
    def name(self) -> str:
        return self._plan.controller

    @property
    def max_depth(self) -> int:
        return self._plan.depth

    def plan(self, features: Features, budget: Budget, cost: CostModel) -> Plan:
        return self._plan

    def after_round(self, report: RoundReport, plan: Plan) -> tuple[Decision, Plan]:
        decision: tuple[Decision, Plan] = self._decides.after_round(report, plan)
        return decision


def routes(deps: AgentDeps, question: str) -> bool:
    """Does this run choose its strategy per question? (A report is always the iterative loop's.)"""
    if not getattr(deps.controller, "chooses_strategy", False):
        return False
    fmt = answer_format(question)[0] if deps.answer_format == "auto" else deps.answer_format
    return fmt != "report"


def route(deps: AgentDeps, question: str) -> tuple[Route, dict[str, Any]]:
    """Probe the question (charged), let the policy choose; returns the route and the state the graph
    starts from (the probe's charges, hits and the route's event)."""
    from sounding.agent.strategies import dials_for

    controller = deps.controller
    probe = run_probe(
        question, deps.llm, deps.search, deps.ledger, PROMPTS, groups=controller.probe_groups,
        seed=deps.seed, samples=controller.probe_samples,
    )  # fmt: skip
    setting, why = controller.choose(probe.features)  # type: ignore[attr-defined]
    plan = controller.plan_for(setting, why, deps.ledger.budget, deps.ledger.cost_model)  # type: ignore[attr-defined]
    chosen = Route(
        strategy=setting.strategy, dials=dials_for(setting.strategy, setting.dials), plan=plan, why=why
    )
    event = emit_event(
        deps, "route", strategy=chosen.strategy, dials=chosen.dials, setting=setting.label, why=why
    )
    start = {
        "route": chosen.model_dump(),
        "charges": [c.model_dump() for c in probe.charges],
        "hits": probe.hits,
        "issued": [question] if probe.hits else [],
        "events": [event],
    }
    return chosen, start


def routed_deps(deps: AgentDeps, chosen: Route) -> AgentDeps:
    """The dependencies the chosen strategy's graph runs with: the chosen plan and dials."""
    return replace(deps, controller=ChosenPlan(chosen.plan, deps.controller), dials=chosen.dials)
