"""The research graph, top to bottom.

plan ──▶ queries ──▶ search ×breadth (Send, parallel) ──▶ read ──▶ reflect ──┬─▶ queries (next round)
  │          └──────────────(no new query)──────────────▶ read               ├─▶ answer ──▶ END
  └──(depth 0, or a failure)──▶ answer (a report: write)                     └─▶ write ──▶ check ──▶ END

A short answer ends in `answer`; a report (an open question) in `write` (a cited paragraph per
sub-question of the plan's outline) and `check` (every sentence against the notes it cites).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from sounding.agent.nodes import AgentDeps, ResearchNodes
from sounding.agent.state import ResearchState


def build_graph(deps: AgentDeps, *, checkpointer: Any = None) -> Any:
    nodes = ResearchNodes(deps)
    graph = StateGraph(ResearchState)
    graph.add_node("plan", nodes.plan)
    graph.add_node("queries", nodes.queries)
    graph.add_node("search", nodes.search)  # type: ignore[arg-type]  # Send payloads are not the graph state
    graph.add_node("read", nodes.read)
    graph.add_node("reflect", nodes.reflect)
    graph.add_node("answer", nodes.answer)
    graph.add_node("write", nodes.write)
    graph.add_node("check", nodes.check)

    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", nodes.route_after_plan, ["queries", "answer", "write"])
    graph.add_conditional_edges("queries", nodes.route_after_queries, ["search", "read", "answer"])
    graph.add_edge("search", "read")
    graph.add_edge("read", "reflect")
    graph.add_conditional_edges("reflect", nodes.route_after_reflect, ["queries", "answer", "write"])
    graph.add_edge("answer", END)
    graph.add_edge("write", "check")
    graph.add_edge("check", END)
    return graph.compile(checkpointer=checkpointer)
