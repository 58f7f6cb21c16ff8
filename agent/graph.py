"""The research graph, top to bottom: a short answer's loop and a report's, chosen by the question.

START ─(the question's format)─┬─▶ plan ──▶ queries ──▶ search ×breadth ──▶ read ──▶ reflect ──┬─▶ queries
                               │    └─(depth 0, or a failure)──────────────────────▶ answer ◀──┘   (next round)
                               │                                                      └──▶ END
                               └─▶ outline ──▶ report_queries ──▶ report_search ×sections ──▶ report_read
                                     │              ▲                                            │
                                     │              └──(next round; a thin section's)── report_reflect
                                     └─(depth 0, or a failure)──▶ write ◀──────────────────────────┘
                                                                    └──▶ check ──▶ END

A short answer (`ResearchNodes`, agent/nodes.py) drafts an answer every round and ends in `answer`; a
report (`ReportNodes`, agent/report_nodes.py: an open question, or ``format="report"``) searches an
outline's sub-questions, quotes whole sentences, writes a cited paragraph per sub-question (`write`)
and checks every sentence against the notes it cites (`check`). Both search in parallel (Send), and a
query that finds nothing new goes straight to reading.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from sounding.agent.nodes import AgentDeps, ResearchNodes
from sounding.agent.question import check_question
from sounding.agent.report_nodes import ReportNodes
from sounding.agent.state import ResearchState
from sounding.budgets.features import answer_format


def build_graph(deps: AgentDeps, *, checkpointer: Any = None) -> Any:
    short, report = ResearchNodes(deps), ReportNodes(deps)
    graph = StateGraph(ResearchState)

    def route_by_format(state: ResearchState) -> str:
        """A report for an open question (by its wording, or as asked), else a short answer."""
        question = check_question(state["question"])  # Studio's input reaches the graph unchecked
        fmt = answer_format(question)[0] if deps.answer_format == "auto" else deps.answer_format
        return "outline" if fmt == "report" else "plan"

    graph.add_conditional_edges(START, route_by_format, ["plan", "outline"])

    # a short answer
    graph.add_node("plan", short.plan)
    graph.add_node("queries", short.queries)
    graph.add_node("search", short.search)  # type: ignore[arg-type]  # Send payloads are not the graph state
    graph.add_node("read", short.read)
    graph.add_node("reflect", short.reflect)
    graph.add_node("answer", short.answer)
    graph.add_conditional_edges("plan", short.route_after_plan, ["queries", "answer"])
    graph.add_conditional_edges("queries", short.route_after_queries, ["search", "read", "answer"])
    graph.add_edge("search", "read")
    graph.add_edge("read", "reflect")
    graph.add_conditional_edges("reflect", short.route_after_reflect, ["queries", "answer"])
    graph.add_edge("answer", END)

    # a report
    graph.add_node("outline", report.plan)
    graph.add_node("report_queries", report.queries)
    graph.add_node("report_search", report.search)  # type: ignore[arg-type]
    graph.add_node("report_read", report.read)
    graph.add_node("report_reflect", report.reflect)
    graph.add_node("write", report.write)
    graph.add_node("check", report.check)
    graph.add_conditional_edges("outline", report.route_after_plan, ["report_queries", "write"])
    graph.add_conditional_edges(
        "report_queries", report.route_after_queries, ["report_search", "report_read", "write"]
    )
    graph.add_edge("report_search", "report_read")
    graph.add_edge("report_read", "report_reflect")
    graph.add_conditional_edges("report_reflect", report.route_after_reflect, ["report_queries", "write"])
    graph.add_edge("write", "check")
    graph.add_edge("check", END)
    return graph.compile(checkpointer=checkpointer)
