"""Entry point for LangGraph Studio / ``langgraph dev`` (see langgraph.json at the repository root).

LangGraph calls ``make_graph`` with the runnable config of the run; its ``configurable`` holds settings
overrides as ``section__field`` keys (``{"llm__model": "qwen2.5-coder-0.5b", "budget__budget": 8000}``)
and the answer ``format`` ("auto" by default, as `sounding ask`). The agent is built by the one factory
from the run spec those settings make, exactly as `sounding ask` builds it; the graph carries the
recursion limit of the deepest plan its controller can make, and its first node checks the question.
"""

from __future__ import annotations

from typing import Any

from sounding.budgets.controllers import Plan
from sounding.factory import Agent, build_agent, spec_from_settings
from sounding.settings import deep_overrides, load_settings
from sounding.tools.llm import make_llm
from sounding.tools.search.factory import make_search


def make_graph(config: dict[str, Any] | None = None) -> Any:
    agent = studio_agent(config)
    deepest = Plan(controller=agent.deps.controller.name, depth=agent.deps.controller.max_depth, breadth=1)
    return agent.graph.with_config(recursion_limit=deepest.recursion_limit)


def studio_agent(config: dict[str, Any] | None = None) -> Agent:
    """The agent a Studio run's config describes (its settings overrides and format)."""
    configurable = dict((config or {}).get("configurable") or {})
    answer_format = str(configurable.pop("format", "auto"))
    sections = {"llm", "search", "fetch", "budget"}  # LangGraph's own keys (thread_id, __pregel_*) pass by
    overrides = {key: value for key, value in configurable.items() if key.split("__")[0] in sections}
    settings = load_settings(**deep_overrides(**overrides))
    spec = spec_from_settings(settings, format=answer_format)
    return build_agent(spec, settings, make_llm(settings), make_search(settings))
