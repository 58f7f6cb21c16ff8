"""The LangGraph research agent: state, nodes, prompts, and the graph assembled in `graph.py`."""

from sounding.agent.graph import build_graph
from sounding.agent.runner import AgentDeps, ResearchResult, run_research

__all__ = ["AgentDeps", "ResearchResult", "build_graph", "run_research"]
