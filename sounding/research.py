"""Wiring: settings -> budget, ledger, controller and agent dependencies for one question."""

from __future__ import annotations

from typing import Any, cast, get_args

from sounding.agent.nodes import AgentDeps, EventSink
from sounding.agent.report import Composer
from sounding.budgets.controllers import AdaptiveController, Controller, check_policy_model, make_controller
from sounding.budgets.cost import load_latency_table, make_cost_model, make_cost_models
from sounding.budgets.ledger import Budget, Ledger
from sounding.budgets.tuned import TunedController, check_tuned_model
from sounding.settings import Settings
from sounding.tools.llm.base import LLM
from sounding.tools.relevance import Relatedness
from sounding.tools.search.base import SearchBackend


def make_budget(settings: Settings) -> Budget:
    b = settings.budget
    return Budget(limit=b.budget, unit=b.unit, max_searches=b.max_searches, max_tokens=b.max_tokens)


def make_ledger(settings: Settings, llm: LLM) -> Ledger:
    latency = load_latency_table(settings.budget.latency_table or settings.home / "latency.json")
    budget = make_budget(settings)
    cost = make_cost_model(budget.unit, settings.budget, n_params=llm.n_params, latency=latency)
    return Ledger(
        budget, cost, report_models=make_cost_models(settings.budget, n_params=llm.n_params, latency=latency)
    )


def check_think_fits(llm: LLM, think: int) -> None:
    """A thinking cap the model's context cannot hold is bad input, said before anything is spent:
    the thinking prompt, the thought and the forced answer must fit in one context window."""
    from sounding.budgets.controllers import PROMPT_TOKENS, StepCaps

    context = getattr(llm, "context_size", None)
    if not isinstance(context, int) or think <= 0:
        return
    room = context - PROMPT_TOKENS["think"] - StepCaps().answer - 64
    if think > room:
        raise ValueError(
            f"--think {think} does not fit the model's context of {context} tokens with its prompt and "
            f"answer: use --think {max(room, 0)} or less (or a larger llm.n_ctx)"
        )


def settings_controller(settings: Settings) -> Controller:
    """The controller the settings name, its policy file read and checked against the model (a
    PolicyError otherwise): callers run this before loading anything expensive."""
    b = settings.budget
    controller = make_controller(
        b.controller,
        depth=b.depth,
        breadth=b.breadth,
        policy_file=b.policy_file,
        think=b.think,
        samples=b.samples,
        verify=b.verify,
    )
    if isinstance(controller, AdaptiveController):
        check_policy_model(controller.policy, settings.llm.model, b.policy_file)
    if isinstance(controller, TunedController):
        check_tuned_model(controller.policy, settings.llm.model, b.policy_file)
    return controller


def make_deps(
    settings: Settings,
    llm: LLM,
    search: SearchBackend,
    *,
    controller: Controller | None = None,
    on_event: EventSink | None = None,
    closed_book_draft: bool = False,
    improve_final: bool = True,
    think_caps: list[int] | None = None,
    answer_format: str = "short",
    unsupported: str = "mark",
    composer: str = "paragraph",
    vote_k: int = 2,
    vote_max_samples: int = 8,
    dials: dict[str, Any] | None = None,
    workers: int = 1,
    relatedness: Relatedness | None = None,
) -> AgentDeps:
    """The one place the agent is wired: `sounding ask`, the sweep harness and LangGraph Studio all
    build their dependencies here (the harness passes its run's own controller). ``answer_format``:
    "short", "report" or "auto" (the question's wording decides; what `ask` uses)."""
    if controller is None:
        controller = settings_controller(settings)
    check_think_fits(llm, max([controller_think(controller), *(think_caps or [])]))
    return AgentDeps(
        llm=llm,
        search=search,
        ledger=make_ledger(settings, llm),
        controller=controller,
        on_event=on_event or (lambda e: None),
        closed_book_draft=closed_book_draft,
        improve_final=improve_final,
        seed=settings.llm.seed,
        reasoning_temperature=settings.llm.sample_temperature,
        think_caps=list(think_caps or []),
        answer_format=answer_format,
        unsupported="drop" if unsupported == "drop" else "mark",
        composer=check_composer(composer),
        rrf_k=settings.search.rrf_k,
        vote_k=vote_k,
        vote_max_samples=vote_max_samples,
        dials=dict(dials or {}),
        workers=max(1, workers),
        relatedness=relatedness,
    )


def check_composer(name: str) -> Composer:
    """A report composer's name, checked (agent/report.py: ``Composer``)."""
    if name not in get_args(Composer):
        raise ValueError(f"unknown report composer {name!r}: use {', '.join(get_args(Composer))}")
    return cast(Composer, name)


def controller_think(controller: Controller) -> int:
    """The largest thinking cap a controller can plan."""
    think = getattr(controller, "think", 0)
    policy = getattr(controller, "policy", None)
    settings = getattr(policy, "settings", None)
    if isinstance(settings, list):
        think = max([think, *(getattr(s, "think", 0) for s in settings)])
    bins = getattr(policy, "bins", None)
    if isinstance(bins, dict):
        think = max([think, *(b.think for b in bins.values())])
    return int(think)
