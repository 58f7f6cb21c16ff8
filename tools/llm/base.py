"""The `LLM` contract every backend implements, and the typed errors they raise."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from pydantic import BaseModel


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


class Choice(BaseModel):
    """One of the ``n`` samples of a completion."""

    text: str
    completion_tokens: int
    finish_reason: str | None = None
    #: The output as token pieces and their log-probabilities, when the call asked for ``logprobs``.
    tokens: list[str] | None = None
    logprobs: list[float] | None = None

    @property
    def mean_logprob(self) -> float | None:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None


class Completion(BaseModel):
    """``n`` completions of one prompt with the token counts *reported by the backend* (never
    estimated): the prompt counted once (its prefill is shared), completion tokens summed over samples.
    ``text`` is the first sample's text; ``choices`` holds all of them."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str | None = None
    choices: list[Choice] = []

    @classmethod
    def of(cls, choices: list[Choice], *, prompt_tokens: int, model: str) -> Completion:
        return cls(
            text=choices[0].text,
            prompt_tokens=prompt_tokens,
            completion_tokens=sum(c.completion_tokens for c in choices),
            model=model,
            finish_reason=choices[0].finish_reason,
            choices=choices,
        )

    def samples(self) -> list[Choice]:
        """Every sample; a completion built from one text has that one."""
        return self.choices or [
            Choice(text=self.text, completion_tokens=self.completion_tokens, finish_reason=self.finish_reason)
        ]

    def json_value(self) -> Any:
        """Parse the text as JSON; raises `LLMOutputError` when the model did not produce JSON."""
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as exc:
            raise LLMOutputError(
                f"model {self.model} returned text that is not JSON: {self.text[:200]!r}"
            ) from exc


@runtime_checkable
class LLM(Protocol):
    """A chat model. ``schema`` (a JSON schema) constrains the output through the backend's grammar."""

    @property
    def name(self) -> str: ...

    @property
    def n_params(self) -> int | None:
        """Parameter count, for the flops cost model; None when unknown."""
        ...

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
        """``n`` samples of one prompt, prefilled once. Sample ``i`` draws with ``sample_seed(seed, i)``
        (the backend's own default seed when ``seed`` is None): the same seed gives the same samples.
        ``max_tokens`` caps each sample."""
        ...

    def prompt_token_bound(self, messages: list[Message]) -> int:
        """An upper bound on the prompt tokens these messages cost, so the ledger can reserve them."""
        ...


class LLMError(RuntimeError):
    """Base class: any failure of an LLM backend after its own retries."""


class LLMUnavailableError(LLMError):
    """The backend cannot run here (missing extra, missing model file, nothing listening)."""


class EngineGoneError(LLMError):
    """The engine the run started for itself (a model server) has exited: no later call can succeed, so
    a sweep stops here instead of recording every remaining question as failed."""


class UnknownModelError(LLMError):
    """The model named is neither an embedded one nor a file: the user's input, not the machine."""


class LLMConnectionError(LLMError):
    """Could not connect to the endpoint, even after retries."""


class LLMTimeoutError(LLMError):
    """The endpoint did not answer within the timeout."""


class LLMHTTPError(LLMError):
    """The endpoint answered with an error status (after retries for 429/5xx)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class LLMResponseError(LLMError):
    """The endpoint answered 2xx with a body that is not a valid completion."""


class LLMOutputError(LLMError):
    """The model's text does not have the requested form (e.g. not JSON)."""


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (run seed, question, step, sample index): the same parts give
    the same seed on every machine and Python process (unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a call seeded ``seed``; sample 0 keeps the call's own seed, so
    ``n=1`` draws exactly what a plain call with that seed draws."""
    return seed if index == 0 else derive_seed(seed, index)


def byte_bound(messages: list[Message]) -> int:
    """Prompt-token upper bound without a tokenizer: a BPE token covers at least one byte, and a chat
    template adds a handful of special tokens per message."""
    return sum(len(m["content"].encode("utf-8")) + 8 for m in messages) + 16
