"""vLLM in-process (`vllm.LLM`) for GPU batch sweeps. Optional: install the ``vllm`` extra on a GPU machine."""

from __future__ import annotations

import threading
from typing import Any

from sounding.tools.llm.base import Completion, LLMUnavailableError, Message, byte_bound

VLLM_MISSING = (
    "the in-process vLLM backend needs the 'vllm' extra (pip install 'sounding[vllm]') on a machine with a "
    "GPU; on CPU use the embedded llama backend, or serve a model and use --llm-url with the http backend"
)


class VLLMInProcessLLM:
    def __init__(
        self, model: str, *, temperature: float = 0.0, seed: int = 0, n_params: int | None = None
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise LLMUnavailableError(VLLM_MISSING) from exc
        self._vllm = vllm
        self._model = model
        self._temperature = temperature
        self._seed = seed
        self._n_params = n_params
        self._lock = threading.Lock()
        try:
            self._engine = vllm.LLM(model=model, seed=seed)
        except Exception as exc:  # vLLM raises many kinds when no GPU/driver is present
            raise LLMUnavailableError(f"vLLM cannot load {model}: {exc}") from exc

    @property
    def name(self) -> str:
        return self._model

    @property
    def n_params(self) -> int | None:
        return self._n_params

    def prompt_token_bound(self, messages: list[Message]) -> int:
        return byte_bound(messages)

    def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        schema: dict[str, Any] | None = None,
        temperature: float | None = None,
    ) -> Completion:
        sampling_kwargs: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": self._temperature if temperature is None else temperature,
            "seed": self._seed,
        }
        if schema is not None:
            from vllm.sampling_params import GuidedDecodingParams

            sampling_kwargs["guided_decoding"] = GuidedDecodingParams(json=schema)
        params = self._vllm.SamplingParams(**sampling_kwargs)
        with self._lock:
            outputs = self._engine.chat([dict(m) for m in messages], params, use_tqdm=False)
        out = outputs[0]
        return Completion(
            text=out.outputs[0].text,
            prompt_tokens=len(out.prompt_token_ids),
            completion_tokens=len(out.outputs[0].token_ids),
            model=self._model,
            finish_reason=out.outputs[0].finish_reason,
        )
