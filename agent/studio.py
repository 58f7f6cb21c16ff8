"""Entry point for LangGraph Studio / ``langgraph dev`` (see langgraph.json at the repository root).

Builds the research graph with dependencies from the settings (config file, ``SOUNDING_*``
environment), exactly as ``sounding ask`` would; Studio then drives it with ``{"question": ...}``.
"""

from __future__ import annotations

from typing import Any

from sounding.agent.graph import build_graph
from sounding.research import make_deps
from sounding.settings import load_settings
from sounding.tools.llm import make_llm
from sounding.tools.search.factory import make_search


def make_graph(config: dict[str, Any] | None = None) -> Any:
    settings = load_settings()
    llm = make_llm(settings)
    return build_graph(make_deps(settings, llm, make_search(settings), answer_format="auto"))
