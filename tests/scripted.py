"""Test doubles for the agent's unit tests only: a scripted LLM and an in-memory search backend."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from sounding.tools.llm.base import Choice, Completion, LLMConnectionError, Message, byte_bound
from sounding.tools.search.base import Hit, SearchError

STEP_BY_SYSTEM = {
    "split a question into a chain": "split",  # the decompose strategy (agent/strategies/decompose.toml)
    "answered independently of each other": "split_parallel",
    "answer a question using only the numbered passages": "tree_answer",  # tree.toml
    "check whether quoted passages support": "tree_support",
    "answer one simple question": "step",
    "from the answers to its sub-questions": "compose",
    "plan a short research report": "outline",
    "write one paragraph of a research report": "write",
    "write one sentence of a research report from one quoted note": "claim",
    "pick the sentence of a quoted note": "select",
    "check the claims of one paragraph": "check",
    "answer a research question in a few paragraphs": "one_shot",
    "check a written answer against its sources": "support",
    "states given key points": "rubric",
    "reason carefully": "think",
    "answer a question with a short answer": "vote",
    "check whether the numbered notes support": "verify",
    "final short answer": "answer",
    "from memory": "probe",
    "split a complex question": "decompose",
    "keyword queries": "queries",
    "read encyclopedia passages": "extract",
    "using only the numbered notes": "reflect",
}


def step_of(messages: list[Message]) -> str:
    system = messages[0]["content"]
    for needle, step in STEP_BY_SYSTEM.items():  # steps whose worked examples are earlier turns
        if needle in system and step in ("split", "split_parallel"):
            return step
    if len(messages) > 2 and messages[-2]["role"] == "assistant":
        return "think_answer"  # a reasoning forced to its answer
    for needle, step in STEP_BY_SYSTEM.items():
        if needle in system:
            return step
    raise AssertionError(f"unknown prompt: {system}")


class ScriptedLLM:
    """Answers each step with a scripted value (a dict, or a callable of the call index and messages)."""

    def __init__(self, script: dict[str, Any], *, fail_on: str | None = None, fail_after: int = 0) -> None:
        self.script = script
        self.calls: list[tuple[str, list[Message], int]] = []
        self.fail_on = fail_on
        self.fail_after = fail_after
        self.seeds: list[tuple[str, int | None, int, float | None]] = []
        self._lock = threading.Lock()

    name = "scripted"
    n_params = 1_000_000

    def prompt_token_bound(self, messages: list[Message]) -> int:
        return byte_bound(messages)

    def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        schema: dict[str, Any] | None = None,
        temperature: float | None = None,
        n: int = 1,
        seed: int | None = None,
        logprobs: bool = False,
    ) -> Completion:
        step = step_of(messages)
        with self._lock:
            self.calls.append((step, messages, max_tokens))
            count = sum(1 for s, _, _ in self.calls if s == step)
            self.seeds.append((step, seed, n, temperature))
        if self.fail_on == step and count > self.fail_after:
            raise LLMConnectionError("scripted failure: endpoint went away")
        choices = []
        for i in range(n):
            value = self.script.get(step, {"answer": "x"})
            if callable(value):
                value = value(count + i, messages)
            # a scripted "_logprob" is every output token's log-probability (not part of the text)
            if isinstance(value, dict):
                value = dict(value)
            logprob = value.pop("_logprob", None) if isinstance(value, dict) else None
            text = value if isinstance(value, str) else json.dumps(value)
            words = text.split(" ")
            tokens = [w + (" " if j < len(words) - 1 else "") for j, w in enumerate(words)][:max_tokens]
            choices.append(
                Choice(
                    text="".join(tokens) if step == "think" else text,
                    completion_tokens=min(max_tokens, len(tokens) if step == "think" else 20),
                    tokens=tokens if logprobs else None,
                    logprobs=[logprob] * len(tokens) if logprobs and logprob is not None else None,
                )
            )
        prompt = sum(len(m["content"].split()) for m in messages)
        return Completion.of(choices, prompt_tokens=prompt, model="scripted")


class MemorySearch:
    """Keyword overlap over a handful of passages; can be told to fail."""

    name = "memory"

    def __init__(
        self,
        docs: dict[str, tuple[str, str]],
        *,
        fail: bool = False,
        on_search: Callable[[str], None] | None = None,
    ) -> None:
        self.docs = docs
        self.fail = fail
        self.queries: list[str] = []
        self.on_search = on_search
        self._lock = threading.Lock()

    def search(self, query: str, k: int) -> list[Hit]:
        with self._lock:
            self.queries.append(query)
        if self.on_search:
            self.on_search(query)
        if self.fail:
            raise SearchError("scripted search failure")
        words = set(query.lower().split())
        scored = []
        for doc_id, (title, text) in self.docs.items():
            score = len(words & set((title + " " + text).lower().split()))
            if score:
                scored.append(Hit(doc_id=doc_id, title=title, text=text, score=float(score)))
        scored.sort(key=lambda h: (-h.score, h.doc_id))
        return scored[:k]


class ScriptedBackends:
    """Backends for a Ray worker (built there, so it must pickle): a scripted LLM and `MemorySearch`.
    With ``die_on``, the worker process exits the first time it is asked that question (a killed
    worker); ``marker`` records that it did."""

    def __init__(self, die_on: str | None = None, marker: str | None = None) -> None:
        self.die_on, self.marker = die_on, marker

    def llm(self, settings: Any, model: str) -> ScriptedLLM:
        import os
        from pathlib import Path

        from tests.test_agent_nodes import script

        die_on, marker = self.die_on, self.marker

        def reflect(n: int, messages: list[Message]) -> dict[str, Any]:
            if die_on and marker and die_on in messages[-1]["content"] and not Path(marker).exists():
                Path(marker).write_text("killed")
                os._exit(1)  # the worker process dies mid-question
            return {"answer": "Danube", "notes": [1, 2], "supported": True, "next_query": f"Danube {n}"}

        return ScriptedLLM(script(reflect=reflect))

    def search(self, settings: Any) -> MemorySearch:
        from tests.test_agent_nodes import DOCS

        return MemorySearch(DOCS)
