"""The `LLM` contract every backend implements, and the typed errors they raise."""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from pydantic import BaseModel


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


class Completion(BaseModel):
    """One completion with the token counts *reported by the backend* (never estimated)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str | None = None

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
    ) -> Completion: ...

    def prompt_token_bound(self, messages: list[Message]) -> int:
        """An upper bound on the prompt tokens these messages cost, so the ledger can reserve them."""
        ...


class LLMError(RuntimeError):
    """Base class: any failure of an LLM backend after its own retries."""


class LLMUnavailableError(LLMError):
    """The backend cannot run here (missing extra, missing model file, nothing listening)."""


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


def byte_bound(messages: list[Message]) -> int:
    """Prompt-token upper bound without a tokenizer: a BPE token covers at least one byte, and a chat
    template adds a handful of special tokens per message."""
    return sum(len(m["content"].encode("utf-8")) + 8 for m in messages) + 16
