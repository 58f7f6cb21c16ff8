"""Which parser recovers more of a small model's truncated or malformed structured output: the agent's
hand-written repair (before), partial-json-parser, or json-repair. Measured on every prefix of real outputs.

    # 1. record real outputs: the agent run for real, every structured LLM call's raw text kept
    .venv/bin/python benchmarks/bench_partial_json.py collect --model qwen2.5-coder-0.5b \
        --out benchmarks/results/structured-outputs-0.5b.jsonl
    # 2. every prefix of every output through each parser
    .venv/bin/python benchmarks/bench_partial_json.py compare benchmarks/results/structured-outputs-*.jsonl \
        --out benchmarks/results/partial-json.json

`collect` runs the real agent (the wiki-vital index, the packaged model) on HotpotQA questions (short
answers) and on open questions of evals/suites/wiki_vital_open.jsonl (reports), twice: once with the
JSON schema enforced by llama.cpp's grammar, as the agent runs, and once with the schema dropped, as a
server that ignores structured output would answer (vLLM >= 0.12 silently drops ``guided_json``).
Every call's raw text is stored with its schema.

`compare` cuts every output at every character (a token cap can stop a model anywhere) and asks each
parser for the object. Per prefix it counts:

- object: the parser returned a JSON object (anything else costs the agent a charged retry);
- usable: that object has at least one of the keys the step's schema requires (what the agent asks
  of a parse before it accepts it without a retry: a cut inside the first key is worth the retry);
- complete: it has all of them;
- valid: that object satisfies the step's JSON schema in full (jsonschema);
- faithful: nothing in it contradicts the whole output (every string is a prefix of the whole output's
  string at the same place, lists are prefixes, other values equal); only outputs whose whole text is
  JSON are checked for this.

The time per parse is measured side by side in the same loop (read the ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# -- collect -------------------------------------------------------------------------------------------


class RecordingLLM:
    """Wraps the real backend; keeps each structured call's raw text (and drops the schema when asked)."""

    def __init__(self, inner: Any, sink: Callable[[dict[str, Any]], None], *, mode: str) -> None:
        self.inner, self.sink, self.mode = inner, sink, mode

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def complete(self, messages: Any, *, max_tokens: int, schema: Any = None, **kw: Any) -> Any:
        sent = schema if self.mode == "constrained" else None
        completion = self.inner.complete(messages, max_tokens=max_tokens, schema=sent, **kw)
        if schema is not None:
            for choice in completion.choices or []:
                self.sink(
                    {
                        "mode": self.mode,
                        "schema": schema,
                        "max_tokens": max_tokens,
                        "finish_reason": choice.finish_reason,
                        "text": choice.text,
                    }
                )
        return completion


def collect(args: argparse.Namespace) -> None:
    from sounding.agent.runner import run_research
    from sounding.evals.datasets import load_suite
    from sounding.evals.reports import load_open_questions
    from sounding.factory import build_deps, spec_from_settings
    from sounding.settings import load_settings
    from sounding.tools.llm import make_llm
    from sounding.tools.search.factory import make_search

    settings = load_settings()
    settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"model": args.model})})
    llm = make_llm(settings)
    search = make_search(settings)
    factoids = [s.question for s in load_suite(f"hotpotqa:{args.hotpotqa}", limit=args.factoids).samples]
    opens = [
        q.question for q in load_open_questions(REPO / "evals/suites/wiki_vital_open.jsonl")[: args.open]
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for mode in ("constrained", "free"):
            for answer_format, questions in (("short", factoids), ("report", opens)):
                for question in questions:

                    def sink(row: dict[str, Any], question: str = question) -> None:
                        out.write(json.dumps({"model": args.model, "question": question, **row}) + "\n")
                        out.flush()

                    spec = spec_from_settings(settings, format=answer_format)
                    recording: Any = RecordingLLM(llm, sink, mode=mode)
                    result = run_research(question, build_deps(spec, settings, recording, search))
                    print(
                        f"{mode} {answer_format}: {question[:60]!r} -> {str(result.answer)[:60]!r}",
                        file=sys.stderr,
                    )


# -- compare -------------------------------------------------------------------------------------------


def _before(text: str) -> Any:
    """The agent's hand-written repair until 2026-11-28 (agent/llm_step.py), kept here as the baseline."""
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


def _partial_json_parser(text: str) -> Any:
    from partial_json_parser import loads

    return loads(text.strip())


def _partial_json_parser_lenient(text: str) -> Any:
    from partial_json_parser import loads

    # control characters (a raw newline) inside strings: llama.cpp's grammar lets them through
    return loads(text.strip(), parser=lambda s: json.loads(s, strict=False))


def _json_repair(text: str) -> Any:
    from json_repair import loads

    return loads(text)


PARSERS: dict[str, Callable[[str], Any]] = {
    "hand-written repair (before)": _before,
    "partial-json-parser": _partial_json_parser,
    "partial-json-parser, control characters allowed": _partial_json_parser_lenient,
    "json-repair": _json_repair,
}


def parse_or_none(parser: Callable[[str], Any], text: str) -> Any:
    try:
        return parser(text)
    except Exception:  # every parser has its own exceptions; any of them means "no object"
        return None


def faithful(part: Any, whole: Any) -> bool:
    """True when ``part`` (parsed from a prefix) claims nothing the whole output does not."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and faithful(v, whole[k]) for k, v in part.items())
    if isinstance(part, list):
        if not isinstance(whole, list) or len(part) > len(whole):
            return False
        # the last element may itself be cut; the ones before it must be whole
        return all(p == w for p, w in zip(part[:-1], whole, strict=False)) and (
            not part or faithful(part[-1], whole[len(part) - 1])
        )
    if isinstance(part, str):
        return isinstance(whole, str) and whole.startswith(part)
    if part is None:
        return True  # a value not yet written
    if isinstance(part, bool) or not isinstance(part, int | float):
        return part == whole
    # a number may be cut (12 of 125): a prefix of the whole number's digits
    return isinstance(whole, int | float) and str(whole).startswith(str(part))


def compare(args: argparse.Namespace) -> None:
    from jsonschema import Draft202012Validator

    rows = [
        json.loads(line) for path in args.inputs for line in path.read_text(encoding="utf-8").splitlines()
    ]
    groups: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, list[float]] = {name: [] for name in PARSERS}
    for mode in sorted({r["mode"] for r in rows}):
        for scope in ("every prefix", "whole output"):
            counts = {
                name: {"object": 0, "usable": 0, "complete": 0, "valid": 0, "faithful": 0, "checked": 0}
                for name in PARSERS
            }
            n = 0
            for row in (r for r in rows if r["mode"] == mode):
                text = row["text"]
                validator = Draft202012Validator(row["schema"])
                required = row["schema"].get("required", [])
                try:
                    whole: Any = json.loads(text)
                except json.JSONDecodeError:
                    whole = None
                cuts = range(1, len(text) + 1) if scope == "every prefix" else [len(text)]
                for cut in cuts:
                    prefix = text[:cut]
                    n += 1
                    for name, parser in PARSERS.items():
                        t0 = time.perf_counter()
                        value = parse_or_none(parser, prefix)
                        seconds[name].append(time.perf_counter() - t0)
                        if not isinstance(value, dict):
                            continue
                        c = counts[name]
                        c["object"] += 1
                        c["usable"] += any(k in value for k in required)
                        c["complete"] += all(k in value for k in required)
                        c["valid"] += validator.is_valid(value)
                        if isinstance(whole, dict):
                            c["checked"] += 1
                            c["faithful"] += faithful(value, whole)
            groups[f"{mode}, {scope}"] = {
                name: {
                    "inputs": n,
                    "object": round(c["object"] / n, 4),
                    "usable": round(c["usable"] / n, 4),
                    "complete": round(c["complete"] / n, 4),
                    "valid": round(c["valid"] / n, 4),
                    "faithful_of_checked": round(c["faithful"] / c["checked"], 4) if c["checked"] else None,
                }
                for name, c in counts.items()
            }
    outputs = {
        mode: {
            "outputs": sum(r["mode"] == mode for r in rows),
            "whole output is JSON": sum(r["mode"] == mode and _is_json(r["text"]) for r in rows),
            "stopped by the token cap": sum(
                r["mode"] == mode and r["finish_reason"] == "length" for r in rows
            ),
            "models": sorted({r["model"] for r in rows if r["mode"] == mode}),
        }
        for mode in sorted({r["mode"] for r in rows})
    }
    base = statistics.median(seconds["hand-written repair (before)"])
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "inputs": [str(p) for p in args.inputs],
        "outputs": outputs,
        "rates": groups,
        "median_parse_us": {k: round(statistics.median(v) * 1e6, 1) for k, v in seconds.items()},
        "median_parse_time_vs_before": {k: round(statistics.median(v) / base, 2) for k, v in seconds.items()},
    }
    text = json.dumps(result, indent=2) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except json.JSONDecodeError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="run the agent for real and keep every structured output")
    c.add_argument("--model", default="qwen2.5-coder-0.5b")
    c.add_argument(
        "--hotpotqa", default=str(REPO.parent / "shared/data/hotpotqa/hotpot_dev_distractor_subset.json.gz")
    )
    c.add_argument("--factoids", type=int, default=6, help="HotpotQA questions per mode")
    c.add_argument("--open", type=int, default=2, help="open questions (reports) per mode")
    c.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("compare", help="every prefix of the stored outputs through each parser")
    m.add_argument("inputs", type=Path, nargs="+")
    m.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    collect(args) if args.command == "collect" else compare(args)


if __name__ == "__main__":
    main()
