"""OpenAI-compatible chat completions over HTTP (httpx): `vllm serve`, llama.cpp's server, any endpoint.

Retries with exponential backoff and full jitter on connect errors, 429 (honouring ``Retry-After``)
and 5xx; no retry on other 4xx; a read timeout ends the call at once (re-sending a slow generation
would only double the wait). Every failure ends in a typed `LLMError`.

Structured output, by what the server understands: ``json_schema`` (OpenAI ``response_format``; vLLM
>= 0.12, llama.cpp's server), ``json_object`` with a schema (llama-cpp-python's server) or
``structured_outputs`` (vLLM's extension). vLLM >= 0.12 answers the old ``guided_json`` with HTTP 200
and unconstrained text, so every constrained answer is checked against its schema: a server that
ignored the constraint is reported once, loudly, and counted in ``constraint_violations``.

Nothing a server sends can crash a run: the body is validated at the boundary (`ChatCompletionBody`)
and any shape it does not accept — a non-object body, ``choices`` that are not a list of objects, a
missing message, content that is not a string, token counts that are negative, fractional, NaN,
infinite or implausibly large, malformed logprobs — is an `LLMResponseError`.

One call has a total deadline (``deadline_s``, by default ``timeout_s``): connecting, sending, the
headers, the body and every retry with its backoff must all fit in it. httpx's read timeout restarts
with every byte, so a server dripping one byte at a time would hold a call for ever; here every socket
operation of the call is bounded by the time left (`_DeadlineBackend`), so the call ends at the
deadline with an `LLMTimeoutError` in the calling thread, and the connection is closed, not reused.

``n`` samples go out as one request (the server shares the prompt's prefill); the client pools its
connections and is safe to share between threads, so concurrent questions are concurrent requests.
"""

from __future__ import annotations

import contextvars
import email.utils
import functools
import json
import logging
import math
import random
import re
import reprlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import httpcore
import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

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

#: "gbnf" (llama.cpp's server): the schema as the GBNF grammar the embedded backend builds from it, so
#: a served embedded model is constrained exactly as in process (the server's own schema conversion
#: allows other whitespace, and a small model's answers then differ).
StructuredOutput = Literal["json_schema", "json_object", "structured_outputs", "gbnf"]
log = logging.getLogger("sounding.llm")


#: No single call of any context size in use reports more; a larger count is a broken server, and
#: charging it would end every budget at once.
MAX_REPORTED_TOKENS = 10_000_000


# --- the response body, validated at the boundary ---------------------------------------------------


def _plausible_tokens(value: int) -> int:
    if value < 0:
        raise ValueError(f"negative token usage {value}")
    if value > MAX_REPORTED_TOKENS:
        raise ValueError(f"implausible token usage {value} (over {MAX_REPORTED_TOKENS:,} for one call)")
    return value


#: A token count as a server must report it: a JSON integer (not 2.5, "2", true, NaN or Infinity).
TokenCount = Annotated[int, Field(strict=True), AfterValidator(_plausible_tokens)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TokenLogprob(_Wire):
    token: Annotated[str, Field(strict=True)]
    logprob: Annotated[float, Field(strict=True, allow_inf_nan=False)]


class ChoiceLogprobs(_Wire):
    content: list[TokenLogprob] | None = None


class ChatMessage(_Wire):
    #: null (no text) is allowed and read as ""; a missing key or a non-string is not.
    content: Annotated[str, Field(strict=True)] | None


class ChatChoice(_Wire):
    index: Annotated[int, Field(strict=True, ge=0)] = 0
    message: ChatMessage
    finish_reason: Annotated[str, Field(strict=True)] | None = None
    logprobs: ChoiceLogprobs | None = None

    def to_choice(self) -> Choice:
        items = (self.logprobs.content or []) if self.logprobs else []
        return Choice(
            text=self.message.content or "",
            completion_tokens=len(items),
            finish_reason=self.finish_reason,
            tokens=[t.token for t in items] or None,
            logprobs=[t.logprob for t in items] or None,
        )


class Usage(_Wire):
    prompt_tokens: TokenCount
    completion_tokens: TokenCount


class ChatCompletionBody(_Wire):
    """The part of an OpenAI chat-completion body this backend reads; anything else is ignored."""

    model: Annotated[str, Field(strict=True)] | None = None
    choices: list[ChatChoice] = Field(min_length=1)
    usage: Usage


#: Shows a value found in a body briefly, however long or deeply nested it is.
_brief = reprlib.Repr()
_brief.maxlevel, _brief.maxstring, _brief.maxother = 3, 60, 60


def _summary(exc: ValidationError, limit: int = 3) -> str:
    """The first problems of a validation, one short clause each: where, what, and the value found."""
    parts = []
    for error in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']} (got {_brief.repr(error.get('input'))})")
    if exc.error_count() > limit:
        parts.append(f"and {exc.error_count() - limit} more")
    return "; ".join(parts)


# --- a total deadline for one call --------------------------------------------------------------------

#: When the call running in this thread (context) must end, on the time.monotonic() clock; None outside
#: a call. Read by `_DeadlineStream` at every socket operation, so it bounds the connection whichever
#: call of which thread happens to use it.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "sounding_llm_deadline", default=None
)


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the current call's deadline; ``expired`` once it has passed."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the call's deadline has passed")
    if math.isinf(left):  # no deadline (deadline_s=inf)
        return timeout
    return left if timeout is None else min(timeout, left)


def _expired(deadline: float) -> bool:
    """Whether the call's deadline has passed (a socket timeout cut to it may wake a hair early)."""
    return time.monotonic() >= deadline - 0.01


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write waits no longer than the call's deadline allows."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend with `_DeadlineStream` connections."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _install_deadline(client: httpx.Client) -> bool:
    """Put `_DeadlineBackend` under every httpx transport of ``client`` (its own and any proxy's).

    httpx has no public hook for httpcore's network backend, so this reaches into two private
    attributes (``HTTPTransport._pool``, ``ConnectionPool._network_backend``, stable since httpx 0.23);
    a transport without them (a test's MockTransport, a future httpx) keeps only the per-request
    bounds. Returns whether the client's own transport got it."""

    def install(transport: object) -> bool:
        pool: Any = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, _DeadlineBackend):
            return True
        if not isinstance(backend, httpcore.NetworkBackend):
            return False
        pool._network_backend = _DeadlineBackend(backend)
        return True

    for transport in getattr(client, "_mounts", {}).values():
        install(transport)
    return install(getattr(client, "_transport", None))


class OpenAIHTTPLLM:
    """``timeout_s`` bounds each wait for the server (connect at most 10 s of it); ``deadline_s``
    (default: ``timeout_s``) bounds one `complete` call in all, retries and backoff included."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        structured_output: StructuredOutput = "json_schema",
        timeout_s: float = 120.0,
        deadline_s: float | None = None,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        temperature: float = 0.0,
        seed: int | None = 0,
        n_params: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        deadline = timeout_s if deadline_s is None else deadline_s
        if not (timeout_s > 0 and deadline > 0):  # NaN fails too; inf means no limit
            raise ValueError(
                f"timeout_s and deadline_s must be positive seconds, not {timeout_s}, {deadline_s}"
            )
        root = base_url.rstrip("/")
        self._url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self._model = model
        self._structured_output = structured_output
        self._timeout_s: float | None = timeout_s if math.isfinite(timeout_s) else None
        self._connect_s = min(timeout_s, 10.0)
        self._deadline_s = deadline
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._temperature = temperature
        self._seed = seed
        self._n_params = n_params
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            timeout=httpx.Timeout(self._timeout_s, connect=self._connect_s),
            headers=headers,
            transport=transport,
            # one pooled connection per concurrent question (bench --concurrency up to 64)
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        if not _install_deadline(self._client) and transport is None:
            log.warning(
                "httpx %s has no network backend to bound: a server that drips bytes can hold a call past "
                "its %g s deadline",
                httpx.__version__,
                deadline,
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
    def deadline_s(self) -> float:
        """The longest one `complete` call may take, retries included."""
        return self._deadline_s

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
        id_slot: int | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self._temperature if temperature is None else temperature,
        }
        if id_slot is not None:  # llama.cpp's server: run on this slot, reusing its cached prompt prefix
            payload["id_slot"] = id_slot
            payload["cache_prompt"] = True
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
            elif self._structured_output == "gbnf":
                payload["grammar"] = schema_gbnf(json.dumps(schema))
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
        id_slot: int | None = None,
    ) -> Completion:
        """`LLM.complete`; ``id_slot`` (llama.cpp's server only) pins the request to one slot."""
        deadline = time.monotonic() + self._deadline_s  # for every request this call makes
        base = self._seed if seed is None else seed
        choices: list[Choice] = []
        prompt_tokens, model = 0, self._model
        while len(choices) < n:
            # as many samples per request as the server takes (llama.cpp's: its number of slots; a
            # server that ignores n answers one), each request seeded apart
            size = min(n - len(choices), self._max_n)
            offset_seed = base if not choices or base is None else sample_seed(base, len(choices))
            payload = self._payload(
                messages, max_tokens, schema, temperature, size, offset_seed, logprobs, id_slot
            )
            try:
                part = self._request(payload, deadline)
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
        # a GBNF grammar is the embedded backend's own (no bounds, no lengths): checked as in process, not
        if schema is not None and self._structured_output != "gbnf":
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

    def _past_deadline(self, what: str, earlier: str = "") -> LLMTimeoutError:
        # A retry cut by the deadline still names why it was retried: the earlier failure is the cause.
        before = f" (after an earlier try: {earlier})" if earlier else ""
        return LLMTimeoutError(
            f"{self._url} {what} within the {self._deadline_s:g} s deadline of one call{before}"
        )

    def _bounded_timeout(self, deadline: float, earlier: str = "") -> httpx.Timeout:
        """This request's timeouts, none longer than what is left of the call (the pool wait included;
        `_DeadlineStream` then keeps cutting each socket operation to what is left)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._past_deadline("did not answer", earlier)
        longest = left if self._timeout_s is None else min(self._timeout_s, left)
        return httpx.Timeout(None if math.isinf(longest) else longest, connect=min(self._connect_s, left))

    def _request(self, payload: dict[str, Any], deadline: float) -> Completion:
        last_problem = ""
        for attempt in range(self._max_retries + 1):
            response: httpx.Response | None = None
            token = _DEADLINE.set(deadline)
            try:
                response = self._client.post(
                    self._url, json=payload, timeout=self._bounded_timeout(deadline, last_problem)
                )
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise LLMUnavailableError(f"cannot use the endpoint {self._url}: {exc}") from exc
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if _expired(deadline):
                    raise self._past_deadline(f"could not be reached ({exc})", last_problem) from exc
                last_problem = f"cannot connect to {self._url}: {exc}"
            except httpx.TimeoutException as exc:
                if _expired(deadline):
                    raise self._past_deadline("did not finish answering", last_problem) from exc
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
            finally:
                _DEADLINE.reset(token)
            if attempt < self._max_retries:
                delay = self._retry_delay(attempt, response)
                if time.monotonic() + delay >= deadline:
                    raise LLMTimeoutError(
                        f"{last_problem} (no time left for another try within the {self._deadline_s:g} s "
                        f"deadline of one call, after {attempt + 1} tries)"
                    )
                self._sleep(delay)
        tries = self._max_retries + 1
        if response is None:
            raise LLMConnectionError(f"{last_problem} (gave up after {tries} tries)")
        raise LLMHTTPError(f"{last_problem} (gave up after {tries} tries)", response.status_code)

    def _parse(self, response: httpx.Response) -> Completion:
        def malformed(problem: str) -> LLMResponseError:
            return LLMResponseError(
                f"{self._url} returned a body that is not a chat completion ({problem}): "
                f"{response.text[:200]!r}"
            )

        try:
            raw = json.loads(response.content)  # Python's parser: NaN, Infinity and 1e999 reach the model
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested past the stack
            raise malformed(f"not JSON: {type(exc).__name__}: {str(exc)[:100]}") from exc
        try:
            body = ChatCompletionBody.model_validate(raw)
        except ValidationError as exc:
            raise malformed(_summary(exc)) from exc
        wire = sorted(body.choices, key=lambda c: c.index)
        choices = [c.to_choice() for c in wire]
        total = body.usage.completion_tokens
        if len(choices) == 1:
            choices[0].completion_tokens = total
        elif sum(c.completion_tokens for c in choices) == 0:  # no per-choice counts: split evenly
            for i, c in enumerate(choices):
                c.completion_tokens = total // len(choices) + (1 if i < total % len(choices) else 0)
        completion = Completion.of(
            choices, prompt_tokens=body.usage.prompt_tokens, model=body.model or self._model
        )
        completion.completion_tokens = total  # the server's own total is what was spent
        return completion


@functools.lru_cache(maxsize=256)
def schema_gbnf(schema_json: str) -> str:
    """The GBNF grammar llama-cpp-python's chat handler builds for a JSON schema (``json_object`` with a
    schema): the grammar of the embedded backend, for a server that takes a grammar."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return str(json_schema_to_gbnf(schema_json))


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date; None when it is neither."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
