"""Embedded llama.cpp (llama-cpp-python): the CPU default. JSON-schema output through llama.cpp's grammar."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sounding.tools.llm.base import Completion, LLMOutputError, LLMUnavailableError, Message


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
        self._formatter = self._chat_formatter()

    def _chat_formatter(self) -> Any:
        """The model's own chat template, to count prompt tokens exactly as llama.cpp will see them."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        vocab = self._llama
        return Jinja2ChatFormatter(
            template,
            eos_token=vocab.detokenize([vocab.token_eos()]).decode("utf-8", "replace"),
            bos_token=vocab.detokenize([vocab.token_bos()]).decode("utf-8", "replace"),
        )

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
        # Render the model's chat template and tokenize it; the small slack covers BOS handling.
        with self._lock:
            if self._formatter is not None:
                prompt = self._formatter(messages=list(messages)).prompt
                return len(self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)) + 4
            content = sum(
                len(self._llama.tokenize(m["content"].encode("utf-8"), add_bos=False)) for m in messages
            )
        return content + 16 * len(messages) + 64

    def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        schema: dict[str, Any] | None = None,
        temperature: float | None = None,
    ) -> Completion:
        kwargs: dict[str, Any] = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self._temperature if temperature is None else temperature,
            "seed": self._seed,
        }
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        with self._lock:
            try:
                result: Any = self._llama.create_chat_completion(**kwargs)
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise LLMOutputError(f"llama.cpp refused the request: {exc}") from exc
        choice = result["choices"][0]
        usage = result["usage"]
        return Completion(
            text=choice["message"]["content"] or "",
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            model=self._name,
            finish_reason=choice.get("finish_reason"),
        )
