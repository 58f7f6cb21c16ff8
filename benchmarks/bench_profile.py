"""Where the time of a grid question goes, and the floor for this machine.

    .venv/bin/python benchmarks/bench_profile.py [--model qwen2.5-coder-0.5b] [--questions 3]
        [--depths 0,1,2 --think 0,64 --samples 1,3] [--backend embedded|server] [--json OUT]

Runs the first ``--questions`` HotpotQA questions of the second result's 12-setting grid (one run per
question to the deepest setting; the smaller settings are read off it) exactly as ``sounding bench``
does (``evals.sweep.solve``: the research graph, then the question's features probe), with the model
and the search backend instrumented:

- every LLM call: the graph node that made it (LangGraph's ``langgraph_node``), wall time, and, from
  llama.cpp's own performance counters, prompt evaluation (batches of more than one token) and
  generation (one token at a time) in milliseconds and tokens; the rest of the call is sampling,
  the JSON grammar, the chat template and llama-cpp-python's Python;
- every search: wall time, of which query embedding (MiniLM) is timed apart;
- the question's wall time; what no call accounts for is the graph's own Python (nodes, state,
  ledger, parsing) and the features probe's non-LLM work.

Tokens sent are the prompt tokens of every request (n samples send the prompt n times); tokens
evaluated are those llama.cpp really ran through the model (its cache reuses a prompt's prefix
shared with the call before). The floor is what the question needs on this machine if nothing were
wasted: each prompt's tokens that are not a prefix already evaluated in the question (the longest
common prefix with any earlier prompt of the question), plus every generated token, at the
measured per-token costs of prompt evaluation and generation. actual / floor says how much a
perfect prefix cache and zero overhead could buy; it does not count batching across questions.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from sounding.evals.datasets import load_suite
from sounding.evals.sweep import RunIdentity, SweepSpec, run_configs, solve
from sounding.settings import load_settings
from sounding.tools.llm import make_llm
from sounding.tools.llm.base import Completion, Message
from sounding.tools.search.dense import Embedder
from sounding.tools.search.factory import make_search

REPO = Path(__file__).resolve().parents[1]
SUITE = f"hotpotqa:{REPO.parent / 'shared/data/hotpotqa/hotpot_dev_distractor_subset.json.gz'}"


def _system_prompts() -> dict[str, str]:
    """Each prompt's system text -> its name (agent/prompts/research.toml): names the step of a call."""
    from sounding.agent.nodes import PROMPTS

    named: dict[str, str] = {}
    for name, prompt in PROMPTS.items():
        if "system" in prompt:
            named.setdefault(prompt["system"], name)
    return named


SYSTEMS = _system_prompts()


def current_step(messages: list[Message]) -> str:
    """graph node / prompt: the node that made the call (LangGraph's own metadata) and the prompt used."""
    try:
        from langgraph.config import get_config

        node = str(get_config()["metadata"].get("langgraph_node", "graph"))
    except RuntimeError:  # called outside a graph run: the sweep's features probe
        node = "features"
    prompt = SYSTEMS.get(messages[0]["content"], "?") if messages[0]["role"] == "system" else "?"
    if any(m["role"] == "assistant" for m in messages):
        prompt += "_answer"  # the answer forced after a thinking turn
    return f"{node} / {prompt}"


class Profile:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.search_s = 0.0
        self.embed_s = 0.0
        self.searches = 0


class ServerTimings:
    """llama.cpp's server reports each response's ``timings`` (prompt tokens evaluated and their time,
    tokens predicted and theirs): kept here per thread for the call that asked."""

    def __init__(self) -> None:
        import threading

        from sounding.tools.llm import openai_http

        self.local = threading.local()
        parse = openai_http.OpenAIHTTPLLM._parse
        timings = self

        def parse_and_keep(http: Any, response: Any) -> Any:
            body = response.json()
            got = body.get("timings") or {}
            sums = getattr(timings.local, "sums", None)
            if sums is not None:
                for key in ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms"):
                    sums[key] = sums.get(key, 0) + got.get(key, 0)
            return parse(http, response)

        openai_http.OpenAIHTTPLLM._parse = parse_and_keep  # type: ignore[method-assign]

    def start(self) -> None:
        self.local.sums = {}

    def read(self) -> dict[str, float]:
        sums: dict[str, float] = self.local.sums
        return sums


class ProfiledLLM:
    """The embedded model with llama.cpp's perf counters read around every call (in process), or the
    server's own timings of each response (served)."""

    def __init__(self, llm: Any, profile: Profile, server: ServerTimings | None = None) -> None:
        self._llm = llm
        self._profile = profile
        self._server = server
        self._prompts: list[list[int]] = []  # this question's prompts so far, as tokens

    def new_question(self) -> None:
        self._prompts = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def _tokens(self, messages: list[Message]) -> list[int]:
        counter = self._llm._counter  # both engines count prompts with the model's own template
        prompt = counter._formatter(messages=list(messages)).prompt
        return list(counter._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

    def complete(self, messages: list[Message], **kwargs: Any) -> Completion:
        import llama_cpp

        tokens = self._tokens(messages)
        shared = max((_common_prefix(tokens, p) for p in self._prompts), default=0)
        self._prompts.append(tokens)
        if self._server is None:
            ctx = self._llm._llama._ctx.ctx
            llama_cpp.llama_perf_context_reset(ctx)
        else:
            self._server.start()
        start = time.perf_counter()
        completion: Completion = self._llm.complete(messages, **kwargs)
        wall = time.perf_counter() - start
        if self._server is None:
            perf = llama_cpp.llama_perf_context(ctx)
            spent = (perf.t_p_eval_ms, perf.n_p_eval, perf.t_eval_ms, perf.n_eval)
        else:  # the server's timings: prompt and generation of every sample's slot
            got = self._server.read()
            spent = (got["prompt_ms"], got["prompt_n"], got["predicted_ms"], got["predicted_n"])
        n = kwargs.get("n", 1)
        self._profile.calls.append(
            {
                "node": current_step(messages),
                "wall_s": wall,
                "prefill_s": spent[0] / 1000,
                "prefill_tokens": spent[1],
                "decode_s": spent[2] / 1000,
                "decode_tokens": spent[3],
                "sent_tokens": completion.prompt_tokens * n,
                "completion_tokens": completion.completion_tokens,
                "new_prompt_tokens": len(tokens) - shared,
                "samples": n,
            }
        )
        return completion


class ProfiledSearch:
    def __init__(self, search: Any, profile: Profile) -> None:
        self._search = search
        self._profile = profile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._search, name)

    def search(self, query: str, k: int) -> Any:
        start = time.perf_counter()
        try:
            return self._search.search(query, k)
        finally:
            self._profile.search_s += time.perf_counter() - start
            self._profile.searches += 1


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--depths", default="0,1,2")
    parser.add_argument("--think", default="0,64")
    parser.add_argument("--samples", default="1,3")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--engine", choices=["process", "server"], default="process")
    args = parser.parse_args()
    suite = load_suite(SUITE, limit=args.questions)
    settings = load_settings(llm={"model": args.model}, search={"corpus": suite.corpus})
    profile = Profile()
    encode = Embedder.encode

    def timed_encode(self: Embedder, texts: Any, **kw: Any) -> Any:
        start = time.perf_counter()
        try:
            return encode(self, texts, **kw)
        finally:
            profile.embed_s += time.perf_counter() - start

    Embedder.encode = timed_encode  # type: ignore[method-assign]
    search = ProfiledSearch(make_search(settings), profile)
    if args.engine == "server":  # one slot, one question at a time: the server's costs per token
        served = settings.model_copy(
            update={"llm": settings.llm.model_copy(update={"backend": "llama-server", "slots": 1})}
        )
        llm = ProfiledLLM(make_llm(served), profile, server=ServerTimings())
        settings = served
    else:
        llm = ProfiledLLM(make_llm(settings), profile)
    spec = SweepSpec(
        suite=SUITE,
        limit=args.questions,
        depths=_ints(args.depths),
        breadths=[1],
        thinks=_ints(args.think),
        samples=_ints(args.samples),
        models=[args.model],
    )
    identity = RunIdentity(suite=suite.name, corpus="bench", corpus_fingerprint="bench")
    (config,) = run_configs(spec, settings, identity)
    # one question first, not profiled: loads the model's weights into memory and warms the caches
    warm = load_suite(SUITE, limit=args.questions + 1).samples[-1]
    solve(config, warm, settings, llm, search)  # type: ignore[arg-type]
    profile.__init__()  # type: ignore[misc]
    try:
        walls = profile_questions(suite.samples, config, settings, llm, search)
    finally:
        close = getattr(llm._llm, "close", None)  # the server, when profiling one
        if close is not None:
            close()
    report = summarise(profile, walls, args)
    print(report["markdown"])
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in report.items() if k != "markdown"}, indent=2))


def profile_questions(
    samples: list[Any], config: Any, settings: Any, llm: ProfiledLLM, search: Any
) -> list[float]:
    walls = []
    for sample in samples:
        llm.new_question()
        start = time.perf_counter()
        outcome = solve(config, sample, settings, llm, search)  # type: ignore[arg-type]
        walls.append(time.perf_counter() - start)
        print(f"{sample.id}: {walls[-1]:.1f} s, {len(outcome.rows)} rows, error={outcome.error}", flush=True)
    return walls


def summarise(profile: Profile, walls: list[float], args: argparse.Namespace) -> dict[str, Any]:
    q = len(walls)
    total = sum(walls)
    by_node: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for call in profile.calls:
        row = by_node[call["node"]]
        row["calls"] += 1
        for key in ("wall_s", "prefill_s", "decode_s", "prefill_tokens", "decode_tokens", "sent_tokens",
                    "completion_tokens", "new_prompt_tokens"):  # fmt: skip
            row[key] += call[key]
    calls = profile.calls
    prefill_s = sum(c["prefill_s"] for c in calls)
    decode_s = sum(c["decode_s"] for c in calls)
    llm_s = sum(c["wall_s"] for c in calls)
    prefill_tokens = sum(c["prefill_tokens"] for c in calls)
    decode_tokens = sum(c["decode_tokens"] for c in calls)
    per_prefill = prefill_s / max(prefill_tokens, 1)
    per_decode = decode_s / max(decode_tokens, 1)
    needed_prompt = sum(c["new_prompt_tokens"] for c in calls)
    generated = sum(c["completion_tokens"] for c in calls)
    floor = needed_prompt * per_prefill + generated * per_decode
    parts = [
        ("prompt evaluation (llama.cpp)", prefill_s),
        ("generation (llama.cpp; served: summed over a call's slots)", decode_s),
        ("sampling, JSON grammar, chat template, HTTP (in the LLM call)", llm_s - prefill_s - decode_s),
        ("query embedding (MiniLM)", profile.embed_s),
        ("retrieval (BM25, vectors, fusion)", profile.search_s - profile.embed_s),
        ("graph Python (nodes, state, ledger, parsing) and the rest", total - llm_s - profile.search_s),
    ]
    lines = [
        f"{args.model}, {q} HotpotQA grid questions (depths {args.depths}, think {args.think}, samples "
        f"{args.samples}), {'llama.cpp server, 1 slot' if args.engine == 'server' else 'embedded llama.cpp'}, "
        f"2 threads: {total / q:.1f} s per question",
        "",
        "| where the time goes | s per question | share |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {s / q:.2f} | {s / total:.0%} |" for name, s in parts]
    lines += [
        "",
        "| node / prompt | calls | wall s | prompt eval s (tokens) | generation s (tokens) | other s | tokens sent | tokens evaluated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for node, row in sorted(by_node.items(), key=lambda kv: -kv[1]["wall_s"]):
        other = row["wall_s"] - row["prefill_s"] - row["decode_s"]
        lines.append(
            f"| {node} | {row['calls'] / q:.1f} | {row['wall_s'] / q:.2f} | {row['prefill_s'] / q:.2f} "
            f"({row['prefill_tokens'] / q:.0f}) | {row['decode_s'] / q:.2f} ({row['decode_tokens'] / q:.0f}) "
            f"| {other / q:.2f} | {row['sent_tokens'] / q:.0f} | "
            f"{(row['prefill_tokens'] + row['decode_tokens']) / q:.0f} |"
        )
    sent = sum(c["sent_tokens"] for c in calls)
    lines += [
        "",
        f"per question: {sent / q:.0f} prompt tokens sent, {prefill_tokens / q:.0f} evaluated "
        f"({prefill_tokens / max(sent, 1):.0%}), {needed_prompt / q:.0f} not shared with an earlier prompt "
        f"of the question; {generated / q:.0f} tokens generated",
        f"measured costs: prompt evaluation {1000 * per_prefill:.2f} ms/token, generation "
        f"{1000 * per_decode:.1f} ms/token",
        f"floor (unshared prompt tokens + generated tokens at those costs): {floor / q:.1f} s per question; "
        f"actual / floor = {total / max(floor, 1e-9):.1f}x",
    ]
    return {
        "questions": q,
        "seconds_per_question": total / q,
        "parts": dict(parts),
        "nodes": {k: dict(v) for k, v in by_node.items()},
        "prompt_tokens_sent": sent,
        "prompt_tokens_evaluated": prefill_tokens,
        "prompt_tokens_unshared": needed_prompt,
        "generated_tokens": generated,
        "prefill_s_per_token": per_prefill,
        "decode_s_per_token": per_decode,
        "floor_s": floor,
        "markdown": "\n".join(lines),
    }


if __name__ == "__main__":
    main()
