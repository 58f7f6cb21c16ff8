"""What `sounding ask` prints and writes: the answer (or report) in Markdown, its sources and its cost;
``--out`` files as Markdown or as HTML with every citation linked to its source."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

SPEND_LABELS = {
    "tokens": "{:,.0f} token-eq.",
    "flops": "{:.3g} FLOPs",
    "usd": "${:.4f}",
    "latency": "{:.1f} s est. latency",
}


def spend_line(result: Any) -> str:
    spend = result.spend
    costs = " · ".join(SPEND_LABELS.get(u, "{:.4g} " + u).format(v) for u, v in spend["cost"].items())
    rounds = f"{len(result.drafts)} drafts, " if result.format == "short" else ""
    return (
        f"{rounds}{spend['searches']} searches, {spend['tokens']:,} tokens "
        f"({spend['prompt_tokens']:,} prompt + {spend['completion_tokens']:,} completion); cost {costs}; "
        f"stopped by {result.stop_reason}; {result.wall_seconds:.1f} s"
    )


def check_line(report: dict[str, Any]) -> str:
    """The report's own citation check in one line."""
    check = report.get("check") or {}
    if not check.get("sentences"):
        return "citation check: no sentences"
    share = check.get("supported_share") or 0.0
    precision = check.get("citation_precision")
    dropped = "dropped" if report.get("unsupported") == "drop" else "marked"
    left_out = report.get("dropped") or {}
    kinds = {"fragments": "cut", "repeats": "repeated", "irrelevant": "off-topic"}
    before = ", ".join(f"{left_out[k]} {word}" for k, word in kinds.items() if left_out.get(k))
    before += " sentences" if before else ""
    return (
        f"citation check: {check['supported']} of {check['sentences']} sentences supported by their notes "
        f"({share:.0%}; unsupported ones {dropped}), citation precision "
        + (f"{precision:.2f}" if precision is not None else "n/a")
        + (f"; {check['lexical_only']} checked lexically only (budget)" if check.get("lexical_only") else "")
        + (f"; left out before the check: {before}" if before else "")
        + (
            f"; {left_out['unhelpful']} left out as not answering their section (the check)"
            if left_out.get("unhelpful")
            else ""
        )
    )


def sources_markdown(result: Any) -> list[str]:
    lines = ["\n## Sources\n"]
    for i, s in enumerate(result.sources, 1):
        where = f" <{s.url}>" if s.url else ""
        passage = " ".join(s.passage.split()[:40])
        lines.append(f"{i}. **{s.title}**{where} (`{s.doc_id}`): {passage}...")
    return lines


def render_result(result: Any) -> str:
    """The whole answer in Markdown: what the terminal shows and a `.md` file holds."""
    if result.format == "report":
        lines = [result.answer]
    else:
        marks = "".join(f" [{i}]" for i in range(1, len(result.sources) + 1))
        lines = [f"## Answer\n\n{result.answer}{marks}"]
    if result.degraded:
        lines.append(f"\n*Degraded run: {result.error}*")
    if result.sources:
        lines += sources_markdown(result)
    footer = spend_line(result)
    if result.report is not None:
        footer = check_line(result.report) + "; " + footer
    lines.append(f"\n*{footer}*")
    return "\n".join(lines)


def render_html(result: Any) -> str:
    """A standalone HTML page: the Markdown rendered by markdown-it, each [n] a link to source n,
    each source linked to its URL when it has one, with the passage it was cited for."""
    from markdown_it import MarkdownIt

    body_md = result.answer if result.format == "report" else f"## Answer\n\n{result.answer}"
    if result.format != "report":
        body_md += "".join(f" [{i}]" for i in range(1, len(result.sources) + 1))
    body = MarkdownIt("commonmark", {"html": False}).render(body_md)  # a model's raw HTML stays text
    n_sources = len(result.sources)

    def link(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return f'<a href="#source-{n}">[{n}]</a>' if 1 <= n <= n_sources else match.group(0)

    body = re.sub(r"\[(\d+)\]", link, body)
    items = []
    for i, s in enumerate(result.sources, 1):
        title = html.escape(s.title)
        head = (
            f'<a href="{html.escape(s.url, quote=True)}">{title}</a>'
            if s.url
            else f"<strong>{title}</strong>"
        )
        items.append(
            f'<li id="source-{i}">{head} <code>{html.escape(s.doc_id)}</code>'
            f"<blockquote>{html.escape(s.passage)}</blockquote></li>"
        )
    footer = spend_line(result)
    if result.report is not None:
        footer = check_line(result.report) + "; " + footer
    degraded = f"<p><em>Degraded run: {html.escape(result.error or '')}</em></p>" if result.degraded else ""
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(result.question)}</title>"
        "<style>body{max-width:46em;margin:2em auto;font-family:sans-serif;line-height:1.5}"
        "blockquote{color:#555;font-size:90%;margin:.3em 0 1em 1em}</style></head><body>\n"
        f"<p><em>{html.escape(result.question)}</em></p>\n{body}{degraded}"
        + (f"<h2>Sources</h2><ol>{''.join(items)}</ol>" if items else "")
        + f"<p><small>{html.escape(footer)}</small></p></body></html>\n"
    )


def write_answer(result: Any, path: Path) -> None:
    """``--out``: HTML for .html/.htm, Markdown otherwise; written whole or not at all."""
    text = render_html(result) if path.suffix.lower() in (".html", ".htm") else render_result(result) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:  # a full disk leaves neither a half file nor an empty temp file behind
        tmp.unlink(missing_ok=True)
