"""OpenAI-compatible chat completions over HTTP (httpx): `vllm serve`, llama.cpp's server, any endpoint.

Retries with exponential backoff and full jitter on connect errors, 429 (honouring ``Retry-After``)
and 5xx; no retry on other 4xx; a read timeout ends the call at once (re-sending a slow generation
would only double the wait). Every failure ends in a typed `LLMError`.

Structured output, by what the server understands: ``json_schema`` (OpenAI ``response_format``; vLLM
>= 0.12, llama.cpp's server), ``json_object`` with a schema (llama-cpp-python's server) or
``structured_outputs`` (vLLM's extension). vLLM >= 0.12 answers the old ``guided_json`` with HTTP 200
and unconstrained text, so every constrained answer is checked against its schema: a server that
ignored the constraint is reported once, loudly, and counted in ``constraint_violations``.

``n`` samples go out as one request (the server shares the prompt's prefill); the client pools its
connections and is safe to share between threads, so concurrent questions are concurrent requests.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx

from sounding.tools.llm.base import (
    Choice,
    Completion,
    LLMConnectionError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnavailableError,
    Message,
    byte_bound,
    sample_seed,
)
from sounding.tools.llm.schema_check import schema_problem

StructuredOutput = Literal["json_schema", "json_object", "structured_outputs"]
log = logging.getLogger("sounding.llm")


#: No single call of any context size in use reports more; a larger count is a broken server, and
#: charging it would end every budget at once.
MAX_REPORTED_TOKENS = 10_000_000


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
            # one pooled connection per concurrent question (bench --concurrency up to 64)
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.base_url = root
        self._violations = 0
        self._violations_lock = threading.Lock()
        self._max_n = 64  # lowered when the server says it takes fewer samples per request

    @property
    def constraint_violations(self) -> int:
        """Constrained answers that did not match their schema (the server ignored the constraint)."""
        return self._violations

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
        n: int = 1,
        seed: int | None = None,
        logprobs: bool = False,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self._temperature if temperature is None else temperature,
        }
        if n > 1:
            payload["n"] = n
        seed = self._seed if seed is None else seed
        if seed is not None:
            payload["seed"] = seed
        if logprobs:
            payload["logprobs"] = True
        if schema is not None:
            if self._structured_output == "json_schema":
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema, "strict": True},
                }
            elif self._structured_output == "json_object":
                payload["response_format"] = {"type": "json_object", "schema": schema}
            else:  # vLLM's extension (replaces guided_json, which vLLM >= 0.12 silently ignores)
                payload["structured_outputs"] = {"json": schema}
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
        n: int = 1,
        seed: int | None = None,
        logprobs: bool = False,
    ) -> Completion:
        base = self._seed if seed is None else seed
        choices: list[Choice] = []
        prompt_tokens, model = 0, self._model
        while len(choices) < n:
            # as many samples per request as the server takes (llama.cpp's: its number of slots; a
            # server that ignores n answers one), each request seeded apart
            size = min(n - len(choices), self._max_n)
            offset_seed = base if not choices or base is None else sample_seed(base, len(choices))
            payload = self._payload(messages, max_tokens, schema, temperature, size, offset_seed, logprobs)
            try:
                part = self._request(payload)
            except LLMHTTPError as exc:
                cap = re.search(r"'n'.*?<=\s*value\s*<=\s*(\d+)", str(exc))
                if exc.status != 400 or size == 1 or not cap:
                    raise
                self._max_n = max(1, int(cap.group(1)))  # "Value must be between 1 <= value <= 2"
                continue
            if not choices:
                prompt_tokens, model = part.prompt_tokens, part.model
            if size > 1 and len(part.choices) < size:
                self._max_n = max(1, len(part.choices))
            choices += part.samples()
        completion = Completion.of(choices[:n], prompt_tokens=prompt_tokens, model=model)
        if schema is not None:
            self._check_constraint(completion, schema)
        return completion

    def _check_constraint(self, completion: Completion, schema: dict[str, Any]) -> None:
        for choice in completion.choices:
            if choice.finish_reason == "length":
                continue  # cut at the cap: not the server's fault
            problem = schema_problem(choice.text, schema)
            if problem is None:
                continue
            with self._violations_lock:
                self._violations += 1
                first = self._violations == 1
            if first:
                log.warning(
                    "%s ignored the JSON-schema constraint (structured output %r): %s. Answers from this "
                    "endpoint are unconstrained; choose the mode it supports with "
                    "SOUNDING_LLM__STRUCTURED_OUTPUT=json_schema|json_object|structured_outputs",
                    self._url,
                    self._structured_output,
                    problem,
                )

    def _request(self, payload: dict[str, Any]) -> Completion:
        last_problem = ""
        for attempt in range(self._max_retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._client.post(self._url, json=payload)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise LLMUnavailableError(f"cannot use the endpoint {self._url}: {exc}") from exc
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last_problem = f"cannot connect to {self._url}: {exc}"
            except httpx.TimeoutException as exc:
                raise LLMTimeoutError(f"{self._url} did not answer within the timeout ({exc})") from exc
            except (httpx.TransportError, httpx.DecodingError) as exc:  # reset, protocol, proxy errors
                last_problem = f"the connection to {self._url} failed: {type(exc).__name__}: {exc}"
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
            usage = body["usage"]
            raw = sorted(body["choices"], key=lambda c: int(c.get("index", 0)))
            if not raw:
                raise IndexError("no choices")
            choices = [_choice(c) for c in raw]
            total = int(usage["completion_tokens"])
            prompt_tokens = int(usage["prompt_tokens"])
            if total < 0 or prompt_tokens < 0:
                raise ValueError(f"negative token usage {usage}")
            if total > MAX_REPORTED_TOKENS or prompt_tokens > MAX_REPORTED_TOKENS:
                raise ValueError(
                    f"implausible token usage {usage} (over {MAX_REPORTED_TOKENS:,} for one call)"
                )
            if len(choices) == 1:
                choices[0].completion_tokens = total
            elif sum(c.completion_tokens for c in choices) == 0:  # no per-choice counts: split evenly
                for i, c in enumerate(choices):
                    c.completion_tokens = total // len(choices) + (1 if i < total % len(choices) else 0)
            completion = Completion.of(
                choices, prompt_tokens=prompt_tokens, model=str(body.get("model", self._model))
            )
            completion.completion_tokens = total  # the server's own total is what was spent
            return completion
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMResponseError(
                f"{self._url} returned a body that is not a chat completion ({exc}): {response.text[:200]!r}"
            ) from exc


def _choice(raw: dict[str, Any]) -> Choice:
    content = raw.get("logprobs", {}) or {}
    items = content.get("content") or []
    tokens = [str(t["token"]) for t in items] or None
    logprobs = [float(t["logprob"]) for t in items] or None
    return Choice(
        text=raw["message"]["content"] or "",
        completion_tokens=len(items),
        finish_reason=raw.get("finish_reason"),
        tokens=tokens,
        logprobs=logprobs,
    )


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
