"""Embedded llama.cpp (llama-cpp-python): the CPU default. JSON-schema output through llama.cpp's grammar.

``n`` samples of one prompt are decoded one after another under one lock, so the prompt is prefilled
once: llama-cpp-python keeps the evaluated prompt in its KV cache and a call whose prompt is already
cached re-evaluates one token, not the prompt (``prefill_tokens`` counts what was really evaluated;
``benchmarks/bench_samples.py`` measures it). The samples are not decoded as one multi-sequence batch:
the high-level API samples one sequence per context, and a hand-written batched sampler with grammar
support would duplicate llama.cpp's; on 2 CPU cores decode is compute-bound, so a batch would save little.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sounding.tools.llm.base import (
    Choice,
    Completion,
    LLMOutputError,
    LLMUnavailableError,
    Message,
    sample_seed,
)


class PromptCounter:
    """A chat's prompt tokens as llama.cpp will see them: the model's own chat template rendered and
    tokenized (a small slack covers BOS handling), so the ledger reserves what the call will cost.
    Works on a full model or on its vocabulary alone (``Llama(..., vocab_only=True)``)."""

    def __init__(self, llama: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama = llama
        template = llama.metadata.get("tokenizer.chat_template")
        self._formatter: Any = (
            Jinja2ChatFormatter(
                template,
                eos_token=llama.detokenize([llama.token_eos()]).decode("utf-8", "replace"),
                bos_token=llama.detokenize([llama.token_bos()]).decode("utf-8", "replace"),
            )
            if template
            else None
        )

    def bound(self, messages: list[Message]) -> int:
        if self._formatter is not None:
            prompt = self._formatter(messages=list(messages)).prompt
            return len(self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)) + 4
        content = sum(
            len(self._llama.tokenize(m["content"].encode("utf-8"), add_bos=False)) for m in messages
        )
        return content + 16 * len(messages) + 64


class LlamaCppLLM:
    def __init__(
        self,
        model_path: Path,
        *,
        name: str | None = None,
        n_params: int | None = None,
        n_ctx: int = 4096,
        n_threads: int = 2,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - llama-cpp-python is a core dependency
            raise LLMUnavailableError(
                "the embedded backend needs llama-cpp-python: pip install llama-cpp-python"
            ) from exc
        if not model_path.is_file():
            raise LLMUnavailableError(f"model file not found: {model_path}")
        self._name = name or model_path.stem
        self._n_params = n_params
        self._temperature = temperature
        self._seed = seed
        self._n_ctx = n_ctx
        # llama.cpp contexts are not thread-safe; parallel graph branches share one model.
        self._lock = threading.Lock()
        try:
            self._llama = Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                seed=seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise LLMUnavailableError(f"llama.cpp cannot load {model_path}: {exc}") from exc
        self._counter = PromptCounter(self._llama)
        self._evaluated = 0
        evaluate = self._llama.eval

        def counting_eval(tokens: Any) -> None:  # every token llama.cpp really evaluates
            self._evaluated += len(tokens)
            evaluate(tokens)

        self._llama.eval = counting_eval  # type: ignore[method-assign]

    @property
    def evaluated_tokens(self) -> int:
        """Tokens llama.cpp has evaluated so far (prompt tokens not found in its cache + generated ones)."""
        return self._evaluated

    def reset_cache(self) -> None:
        """Forget the evaluated prompt (benchmarks use it for the no-reuse baseline)."""
        with self._lock:
            self._llama.reset()

    @property
    def name(self) -> str:
        return self._name

    @property
    def n_params(self) -> int | None:
        return self._n_params

    @property
    def context_size(self) -> int:
        return self._n_ctx

    def prompt_token_bound(self, messages: list[Message]) -> int:
        with self._lock:  # the tokenizer shares the model's context
            return self._counter.bound(messages)

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
        base_seed = self._seed if seed is None else seed
        kwargs: dict[str, Any] = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self._temperature if temperature is None else temperature,
        }
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        choices: list[Choice] = []
        prompt_tokens = 0
        with self._lock:  # the n samples back to back: the prompt stays in the KV cache between them
            for i in range(n):
                recorder = _LogprobRecorder() if logprobs else None
                extra = {"logits_processor": _processors(recorder)} if recorder is not None else {}
                try:
                    result: Any = self._llama.create_chat_completion(
                        **kwargs, **extra, seed=sample_seed(base_seed, i)
                    )
                except ValueError as exc:  # e.g. the prompt exceeds the context window
                    raise LLMOutputError(f"llama.cpp refused the request: {exc}") from exc
                choice = result["choices"][0]
                usage = result["usage"]
                produced = int(usage["completion_tokens"])
                prompt_tokens = int(usage["prompt_tokens"])
                text = choice["message"]["content"] or ""
                choices.append(
                    Choice(
                        text=text,
                        completion_tokens=produced,
                        finish_reason=choice.get("finish_reason"),
                        tokens=self._pieces(text) if logprobs else None,
                        logprobs=(recorder.values or None) if recorder is not None else None,
                    )
                )
        return Completion.of(choices, prompt_tokens=prompt_tokens, model=self._name)

    def _pieces(self, text: str) -> list[str]:
        """The text as token pieces (joined they give the text back, up to byte-split characters)."""
        ids = self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        raw = [self._llama.detokenize([t]) for t in ids]
        pieces, pending = [], b""
        for chunk in raw:  # a multi-byte character may span tokens: keep its bytes with the first
            pending += chunk
            try:
                pieces.append(pending.decode("utf-8"))
                pending = b""
            except UnicodeDecodeError:
                pieces.append("")
        if pending:
            pieces[-1] = pending.decode("utf-8", "replace")
        return pieces


class _LogprobRecorder:
    """A logits processor that changes nothing and records, for each sampled token, its
    log-probability: at each step it sees the token sampled at the step before (the last of
    ``input_ids``) and looks it up in that step's logits. The final token (end of turn) is never
    seen, so it has none: the mean is over the answer's own tokens."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._previous: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        if self._previous is not None:
            row = self._previous
            peak = float(row.max())
            self.values.append(
                float(row[int(input_ids[-1])]) - peak - float(np.log(np.exp(row - peak).sum()))
            )
        self._previous = np.array(scores, dtype=np.float64, copy=True)
        return scores


def _processors(recorder: _LogprobRecorder) -> Any:
    from llama_cpp import LogitsProcessorList

    return LogitsProcessorList([recorder])
