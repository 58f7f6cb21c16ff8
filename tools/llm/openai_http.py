"""OpenAI-compatible chat completions over HTTP (httpx): `vllm serve`, llama.cpp's server, any endpoint.

Retries with exponential backoff and full jitter on connect errors, 429 (honouring ``Retry-After``)
and 5xx; no retry on other 4xx; a read timeout ends the call at once (re-sending a slow generation
would only double the wait). Every failure ends in a typed `LLMError`.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx

from sounding.tools.llm.base import (
    Completion,
    LLMConnectionError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
    Message,
    byte_bound,
)

StructuredOutput = Literal["json_schema", "json_object", "guided_json"]


class OpenAIHTTPLLM:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        structured_output: StructuredOutput = "json_schema",
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        temperature: float = 0.0,
        seed: int | None = 0,
        n_params: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        self._url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self._model = model
        self._structured_output = structured_output
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._temperature = temperature
        self._seed = seed
        self._n_params = n_params
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            headers=headers,
            transport=transport,
        )

    @property
    def name(self) -> str:
        return self._model

    @property
    def n_params(self) -> int | None:
        return self._n_params

    def prompt_token_bound(self, messages: list[Message]) -> int:
        return byte_bound(messages)

    def close(self) -> None:
        self._client.close()

    def _payload(
        self,
        messages: list[Message],
        max_tokens: int,
        schema: dict[str, Any] | None,
        temperature: float | None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self._temperature if temperature is None else temperature,
        }
        if self._seed is not None:
            payload["seed"] = self._seed
        if schema is not None:
            if self._structured_output == "json_schema":
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema, "strict": True},
                }
            elif self._structured_output == "json_object":
                payload["response_format"] = {"type": "json_object", "schema": schema}
            else:  # vLLM's guided decoding extension
                payload["guided_json"] = schema
        return payload

    def _retry_delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                return min(retry_after, self._backoff_max_s)
        cap = min(self._backoff_max_s, self._backoff_base_s * 2**attempt)
        return random.uniform(0, cap)  # full jitter

    def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        schema: dict[str, Any] | None = None,
        temperature: float | None = None,
    ) -> Completion:
        payload = self._payload(messages, max_tokens, schema, temperature)
        last_problem = ""
        for attempt in range(self._max_retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._client.post(self._url, json=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                last_problem = f"cannot connect to {self._url}: {exc}"
            except httpx.TimeoutException as exc:
                raise LLMTimeoutError(f"{self._url} did not answer within the timeout ({exc})") from exc
            else:
                status = response.status_code
                if status < 300:
                    return self._parse(response)
                body = response.text[:300]
                if status != 429 and status < 500:
                    raise LLMHTTPError(f"{self._url} answered {status}: {body}", status)
                last_problem = f"{self._url} answered {status}: {body}"
            if attempt < self._max_retries:
                self._sleep(self._retry_delay(attempt, response))
        tries = self._max_retries + 1
        if response is None:
            raise LLMConnectionError(f"{last_problem} (gave up after {tries} tries)")
        raise LLMHTTPError(f"{last_problem} (gave up after {tries} tries)", response.status_code)

    def _parse(self, response: httpx.Response) -> Completion:
        try:
            body = response.json()
            choice = body["choices"][0]
            usage = body["usage"]
            return Completion(
                text=choice["message"]["content"] or "",
                prompt_tokens=int(usage["prompt_tokens"]),
                completion_tokens=int(usage["completion_tokens"]),
                model=str(body.get("model", self._model)),
                finish_reason=choice.get("finish_reason"),
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMResponseError(
                f"{self._url} returned a body that is not a chat completion: {response.text[:200]!r}"
            ) from exc


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
