"""The OpenAI-compatible HTTP backend against real local HTTP servers (fault cases we control)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sounding.tools.llm.base import (
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
)
from sounding.tools.llm.openai_http import OpenAIHTTPLLM, parse_retry_after
from tests.conftest import free_port

OK_BODY = {
    "model": "m",
    "choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 2},
}


class Script:
    """What the server answers, one entry per request: (status, headers, body, delay_s)."""

    def __init__(self, steps: list[tuple[int, dict[str, str], bytes, float]]) -> None:
        self.steps = steps
        self.requests: list[dict] = []


def _server(script: Script) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            script.requests.append(json.loads(self.rfile.read(length)))
            index = min(len(script.requests) - 1, len(script.steps) - 1)
            status, headers, body, delay = script.steps[index]
            time.sleep(delay)
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture()
def serve() -> Iterator:
    servers: list[ThreadingHTTPServer] = []

    def start(steps):
        script = Script(steps)
        server, url = _server(script)
        servers.append(server)
        return script, url

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def ok() -> tuple[int, dict[str, str], bytes, float]:
    return 200, {"Content-Type": "application/json"}, json.dumps(OK_BODY).encode(), 0.0


MSG = [{"role": "user", "content": "hi"}]


def test_success_reports_backend_token_counts(serve):
    script, url = serve([ok()])
    llm = OpenAIHTTPLLM(url, "m", api_key="k")
    c = llm.complete(MSG, max_tokens=5)
    assert (c.text, c.prompt_tokens, c.completion_tokens) == ("hello", 11, 2)
    assert script.requests[0]["max_tokens"] == 5


def test_500_then_success_retries(serve):
    sleeps: list[float] = []
    script, url = serve([(500, {}, b"boom", 0.0), (503, {}, b"busy", 0.0), ok()])
    llm = OpenAIHTTPLLM(url, "m", sleep=sleeps.append, backoff_base_s=0.01)
    assert llm.complete(MSG, max_tokens=5).text == "hello"
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_429_honours_retry_after(serve):
    sleeps: list[float] = []
    _, url = serve([(429, {"Retry-After": "3"}, b"slow down", 0.0), ok()])
    llm = OpenAIHTTPLLM(url, "m", sleep=sleeps.append)
    assert llm.complete(MSG, max_tokens=5).text == "hello"
    assert sleeps == [3.0]


def test_persistent_5xx_ends_in_typed_error(serve):
    script, url = serve([(502, {}, b"bad gateway", 0.0)])
    llm = OpenAIHTTPLLM(url, "m", max_retries=2, sleep=lambda s: None)
    with pytest.raises(LLMHTTPError, match="gave up after 3 tries") as info:
        llm.complete(MSG, max_tokens=5)
    assert info.value.status == 502 and len(script.requests) == 3


def test_4xx_is_not_retried(serve):
    script, url = serve([(400, {}, b"bad request", 0.0), ok()])
    llm = OpenAIHTTPLLM(url, "m", sleep=lambda s: None)
    with pytest.raises(LLMHTTPError, match="400") as info:
        llm.complete(MSG, max_tokens=5)
    assert info.value.status == 400 and len(script.requests) == 1


def test_connection_refused_is_retried_then_typed():
    sleeps: list[float] = []
    llm = OpenAIHTTPLLM(f"http://127.0.0.1:{free_port()}", "m", max_retries=2, sleep=sleeps.append)
    start = time.monotonic()
    with pytest.raises(LLMConnectionError, match="cannot connect"):
        llm.complete(MSG, max_tokens=5)
    assert len(sleeps) == 2 and time.monotonic() - start < 10


def test_slow_response_times_out_without_retry(serve):
    script, url = serve([(200, {}, json.dumps(OK_BODY).encode(), 3.0)])
    llm = OpenAIHTTPLLM(url, "m", timeout_s=0.5, sleep=lambda s: None)
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        llm.complete(MSG, max_tokens=5)
    assert time.monotonic() - start < 2.5
    assert len(script.requests) == 1


@pytest.mark.parametrize("body", [b"{not json", b'{"choices": []}', b'{"choices": [{"message": {}}]}'])
def test_malformed_body_is_a_response_error(serve, body):
    _, url = serve([(200, {"Content-Type": "application/json"}, body, 0.0)])
    with pytest.raises(LLMResponseError, match="not a chat completion"):
        OpenAIHTTPLLM(url, "m").complete(MSG, max_tokens=5)


@pytest.mark.parametrize(
    ("mode", "key"),
    [
        ("json_schema", "response_format"),
        ("json_object", "response_format"),
        ("structured_outputs", "structured_outputs"),
    ],
)
def test_structured_output_payloads(serve, mode, key):
    script, url = serve([body({"a": "x"})])
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    OpenAIHTTPLLM(url, "m", structured_output=mode).complete(MSG, max_tokens=5, schema=schema)
    sent = script.requests[0][key]
    assert schema in (sent.get("json"), sent.get("schema"), sent.get("json_schema", {}).get("schema"))
    assert "guided_json" not in script.requests[0]  # vLLM >= 0.12 ignores it silently


def body(content, *, n=1, usage=None) -> tuple[int, dict[str, str], bytes, float]:
    text = content if isinstance(content, str) else json.dumps(content)
    payload = {
        "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            for i in range(n)
        ],
        "usage": usage or {"prompt_tokens": 11, "completion_tokens": 2 * n},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode(), 0.0


def test_a_server_that_ignores_the_schema_is_reported_once(serve, caplog):
    # what vLLM >= 0.12 does with guided_json: HTTP 200 and free text
    _, url = serve([body("The answer is Danube.")])
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    llm = OpenAIHTTPLLM(url, "m")
    with caplog.at_level("WARNING", logger="sounding.llm"):
        for _ in range(3):
            llm.complete(MSG, max_tokens=20, schema=schema)
    assert llm.constraint_violations == 3
    warnings = [r for r in caplog.records if "ignored the JSON-schema constraint" in r.message]
    assert len(warnings) == 1 and "not JSON" in warnings[0].message


def test_a_schema_mismatch_is_a_violation_but_a_matching_answer_is_not(serve):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    _, url = serve([body({"answer": "Danube"})])
    llm = OpenAIHTTPLLM(url, "m")
    llm.complete(MSG, max_tokens=20, schema=schema)
    assert llm.constraint_violations == 0
    _, url2 = serve([body({"other": 1})])
    llm2 = OpenAIHTTPLLM(url2, "m")
    llm2.complete(MSG, max_tokens=20, schema=schema)
    assert llm2.constraint_violations == 1


def test_n_samples_go_out_as_one_request_with_the_seed(serve):
    script, url = serve([body("a", n=3, usage={"prompt_tokens": 10, "completion_tokens": 9})])
    completion = OpenAIHTTPLLM(url, "m").complete(MSG, max_tokens=5, n=3, seed=42, temperature=0.7)
    assert len(script.requests) == 1
    assert script.requests[0]["n"] == 3 and script.requests[0]["seed"] == 42
    assert [c.text for c in completion.choices] == ["a", "a", "a"]
    assert completion.prompt_tokens == 10 and completion.completion_tokens == 9  # the server's totals


def test_a_server_without_n_gets_one_seeded_request_per_missing_sample(serve):
    from sounding.tools.llm.base import sample_seed

    script, url = serve([body("a"), body("b"), body("c")])  # each answer holds one choice
    completion = OpenAIHTTPLLM(url, "m").complete(MSG, max_tokens=5, n=3, seed=7, temperature=0.7)
    assert [c.text for c in completion.choices] == ["a", "b", "c"]
    assert [r["seed"] for r in script.requests] == [7, sample_seed(7, 1), sample_seed(7, 2)]


def test_negative_usage_is_a_response_error(serve):
    _, url = serve([body("a", usage={"prompt_tokens": -5, "completion_tokens": 2})])
    with pytest.raises(LLMResponseError, match="negative"):
        OpenAIHTTPLLM(url, "m", max_retries=0).complete(MSG, max_tokens=5)


def test_implausible_usage_is_a_response_error(serve):
    _, url = serve([body("a", usage={"prompt_tokens": 5, "completion_tokens": 10**12})])
    with pytest.raises(LLMResponseError, match="implausible token usage"):
        OpenAIHTTPLLM(url, "m", max_retries=0).complete(MSG, max_tokens=5)


def test_a_reset_connection_is_a_typed_error_after_retries():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def reset_everything() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()  # RST instead of an answer

    threading.Thread(target=reset_everything, daemon=True).start()
    try:
        llm = OpenAIHTTPLLM(f"http://127.0.0.1:{port}", "m", max_retries=2, sleep=lambda s: None)
        with pytest.raises(LLMConnectionError, match="gave up after 3 tries"):
            llm.complete(MSG, max_tokens=5)
    finally:
        stop.set()
        listener.close()


def test_an_unsupported_scheme_is_unavailable_not_a_traceback():
    from sounding.tools.llm.base import LLMUnavailableError

    with pytest.raises(LLMUnavailableError, match="ftp://"):
        OpenAIHTTPLLM("ftp://127.0.0.1:1", "m").complete(MSG, max_tokens=5)


def test_parse_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("nonsense") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


# --- hostile bodies: every shape the backend does not accept is a typed LLMResponseError ----------------

GOOD_CHOICES = '[{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]'
GOOD_USAGE = '{"prompt_tokens": 11, "completion_tokens": 2}'


def raw_body(choices: str = GOOD_CHOICES, usage: str | None = GOOD_USAGE) -> bytes:
    """A completion written by hand, so it can hold what json.dumps would not (Infinity, NaN, 1e999)."""
    fields = ['"model": "m"', f'"choices": {choices}'] + ([f'"usage": {usage}'] if usage is not None else [])
    return ("{" + ", ".join(fields) + "}").encode()


def with_logprobs(logprobs: str) -> str:
    return f'[{{"message": {{"content": "hi"}}, "finish_reason": "stop", "logprobs": {logprobs}}}]'


HOSTILE_BODIES = [
    ("array body", b"[1, 2]", r"body: Input should be a valid dictionary"),
    ("string body", b'"hello"', r"body: "),
    ("null body", b"null", r"body: "),
    ("empty body", b"", r"not JSON"),
    ("not json", b"{not json", r"not JSON"),
    ("not utf-8", b"\xff\xfe\xfd", r"not JSON"),
    ("nested past the stack", b"[" * 100_000 + b"]" * 100_000, r"not JSON: RecursionError"),
    (
        "a 5000-digit count",
        raw_body(usage='{"prompt_tokens": ' + "9" * 5000 + ', "completion_tokens": 2}'),
        r"not JSON: ValueError",
    ),
    ("choices a string", raw_body(choices='"hello"'), r"choices: Input should be a valid list"),
    ("choices an object", raw_body(choices='{"message": {"content": "x"}}'), r"choices: .*list"),
    ("a choice that is a string", raw_body(choices='["hello"]'), r"choices\.0: "),
    ("no choices", raw_body(choices="[]"), r"choices: .*at least 1"),
    (
        "message missing",
        raw_body(choices='[{"finish_reason": "stop"}]'),
        r"choices\.0\.message: Field required",
    ),
    ("message a string", raw_body(choices='[{"message": "hi"}]'), r"choices\.0\.message: "),
    ("message null", raw_body(choices='[{"message": null}]'), r"choices\.0\.message: "),
    ("content missing", raw_body(choices='[{"message": {"role": "assistant"}}]'), r"message\.content: Field"),
    ("content a number", raw_body(choices='[{"message": {"content": 5}}]'), r"message\.content: .*string"),
    ("content a list", raw_body(choices='[{"message": {"content": ["a"]}}]'), r"message\.content: "),
    (
        "content nested deep",
        raw_body(choices='[{"message": {"content": ' + "[" * 800 + "]" * 800 + "}}]"),
        r"message\.content: .*string \(got \[+\.\.\.\]+\)",
    ),
    (
        "content a long list",
        raw_body(choices='[{"message": {"content": [' + "1, " * 10_000 + "1]}}]"),
        r"message\.content: .*string \(got \[1, 1, 1, 1, 1, 1, \.\.\.\]\)",
    ),
    (
        "finish_reason a number",
        raw_body(choices='[{"message": {"content": "x"}, "finish_reason": 7}]'),
        r"finish_reason: ",
    ),
    (
        "index a string",
        raw_body(choices='[{"index": "0", "message": {"content": "x"}}]'),
        r"choices\.0\.index",
    ),
    ("usage missing", raw_body(usage=None), r"usage: Field required"),
    ("usage a list", raw_body(usage="[11, 2]"), r"usage: "),
    ("usage a count missing", raw_body(usage='{"prompt_tokens": 11}'), r"usage\.completion_tokens: Field"),
    (
        "prompt_tokens Infinity",
        raw_body(usage='{"prompt_tokens": Infinity, "completion_tokens": 2}'),
        r"usage\.prompt_tokens: .*integer \(got inf\)",
    ),
    (
        "prompt_tokens 1e999",
        raw_body(usage='{"prompt_tokens": 1e999, "completion_tokens": 2}'),
        r"usage\.prompt_tokens: .*integer \(got inf\)",
    ),
    (
        "completion_tokens -Infinity",
        raw_body(usage='{"prompt_tokens": 1, "completion_tokens": -Infinity}'),
        r"usage\.completion_tokens: .*\(got -inf\)",
    ),
    (
        "completion_tokens NaN",
        raw_body(usage='{"prompt_tokens": 1, "completion_tokens": NaN}'),
        r"usage\.completion_tokens: .*\(got nan\)",
    ),
    (
        "prompt_tokens negative",
        raw_body(usage='{"prompt_tokens": -5, "completion_tokens": 2}'),
        r"usage\.prompt_tokens: .*negative token usage -5",
    ),
    (
        "prompt_tokens fractional",
        raw_body(usage='{"prompt_tokens": 2.5, "completion_tokens": 2}'),
        r"usage\.prompt_tokens: .*\(got 2\.5\)",
    ),
    (
        "prompt_tokens a string",
        raw_body(usage='{"prompt_tokens": "11", "completion_tokens": 2}'),
        r"usage\.prompt_tokens: .*integer",
    ),
    (
        "prompt_tokens a boolean",
        raw_body(usage='{"prompt_tokens": true, "completion_tokens": 2}'),
        r"usage\.prompt_tokens: .*integer",
    ),
    (
        "completion_tokens absurd",
        raw_body(usage='{"prompt_tokens": 1, "completion_tokens": 1000000000000}'),
        r"usage\.completion_tokens: .*implausible token usage",
    ),
    ("logprobs a string", raw_body(choices=with_logprobs('"x"')), r"choices\.0\.logprobs: "),
    (
        "logprobs content an object",
        raw_body(choices=with_logprobs('{"content": {"token": "a"}}')),
        r"logprobs\.content: .*list",
    ),
    (
        "logprob item without a token",
        raw_body(choices=with_logprobs('{"content": [{"logprob": -0.1}]}')),
        r"logprobs\.content\.0\.token: Field required",
    ),
    (
        "logprob a string",
        raw_body(choices=with_logprobs('{"content": [{"token": "a", "logprob": "low"}]}')),
        r"logprobs\.content\.0\.logprob: ",
    ),
    (
        "logprob NaN",
        raw_body(choices=with_logprobs('{"content": [{"token": "a", "logprob": NaN}]}')),
        r"logprobs\.content\.0\.logprob: .*finite",
    ),
]


@pytest.mark.parametrize(
    ("body_bytes", "problem"), [case[1:] for case in HOSTILE_BODIES], ids=[case[0] for case in HOSTILE_BODIES]
)
def test_a_hostile_body_is_a_typed_response_error_naming_the_problem(serve, body_bytes, problem):
    script, url = serve([(200, {"Content-Type": "application/json"}, body_bytes, 0.0)])
    llm = OpenAIHTTPLLM(url, "m", sleep=lambda s: None)
    with pytest.raises(LLMResponseError, match="not a chat completion") as info:
        llm.complete(MSG, max_tokens=5)
    assert isinstance(info.value, LLMError)  # what the CLI maps to its documented path (the draft is kept)
    assert re.search(problem, str(info.value)), str(info.value)
    assert url in str(info.value)
    assert len(script.requests) == 1  # a broken answer is not retried


def test_a_well_formed_body_with_null_content_and_logprobs_is_read(serve):
    choices = (
        '[{"index": 1, "message": {"content": "second"}, "finish_reason": "length",'
        ' "logprobs": {"content": [{"token": "se", "logprob": -0.5, "bytes": [115, 101]},'
        ' {"token": "cond", "logprob": 0}]}},'
        ' {"index": 0, "message": {"content": null}, "finish_reason": "stop", "logprobs": null}]'
    )
    _, url = serve(
        [(200, {}, raw_body(choices=choices, usage='{"prompt_tokens": 7, "completion_tokens": 2}'), 0.0)]
    )
    c = OpenAIHTTPLLM(url, "m").complete(MSG, max_tokens=5, n=2, logprobs=True)
    assert [x.text for x in c.choices] == ["", "second"]  # ordered by index; null content is ""
    assert c.choices[1].tokens == ["se", "cond"] and c.choices[1].logprobs == [-0.5, 0.0]
    assert (c.prompt_tokens, c.completion_tokens) == (7, 2)
    assert [x.completion_tokens for x in c.choices] == [0, 2]  # per sample: its logprob items


def test_parse_retry_after_rejects_what_is_not_a_time():
    assert parse_retry_after("inf") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 99999 07:28:00 GMT") is None


# --- a total deadline per call --------------------------------------------------------------------------


class Drip:
    """A raw TCP server that answers its first ``drip_connections`` connections one byte every ``every_s``
    (the status line and headers too when ``headers_too``), then answers at once; it notes when the
    client has dropped a dripping connection."""

    def __init__(self, every_s: float, headers_too: bool, drip_connections: int) -> None:
        body = json.dumps(OK_BODY).encode()
        self.head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
            body
        )
        self.body = body
        self.every_s, self.headers_too, self.drip_connections = every_s, headers_too, drip_connections
        self.connections = 0
        self.dropped = threading.Event()
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn, self.connections), daemon=True).start()

    def _answer(self, conn: socket.socket, number: int) -> None:
        with conn:
            conn.settimeout(10)
            try:
                conn.recv(65536)
                if number > self.drip_connections:
                    conn.sendall(self.head + self.body)
                    time.sleep(0.5)
                    return
                dripped = self.head + self.body if self.headers_too else self.body
                if not self.headers_too:
                    conn.sendall(self.head)
                for byte in dripped:
                    if self.stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.every_s)
            except OSError:
                self.dropped.set()  # the client closed the connection: a write to it failed

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture()
def drip() -> Iterator:
    servers: list[Drip] = []

    def start(*, headers_too: bool = False, drip_connections: int = 1_000, every_s: float = 0.3) -> Drip:
        server = Drip(every_s, headers_too, drip_connections)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.close()


@pytest.mark.parametrize("headers_too", [False, True], ids=["body drips", "headers drip"])
def test_a_dripping_server_ends_at_the_deadline_and_the_connection_is_closed(drip, headers_too):
    server = drip(headers_too=headers_too)
    llm = OpenAIHTTPLLM(server.url, "m", timeout_s=5.0, deadline_s=1.0, sleep=lambda s: None)
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError, match=r"within the 1 s deadline of one call") as info:
        llm.complete(MSG, max_tokens=5)
    elapsed = time.monotonic() - start
    assert isinstance(info.value, LLMError)
    assert 0.9 <= elapsed < 1.0 + 1.0, (
        elapsed
    )  # each byte came within the 5 s read timeout: the deadline did it
    assert server.dropped.wait(3), "the dripping connection was left open"
    assert server.connections == 1  # a timeout is not retried


def test_the_deadline_defaults_to_the_timeout(drip):
    server = drip()
    llm = OpenAIHTTPLLM(server.url, "m", timeout_s=1.0)
    assert llm.deadline_s == 1.0 and OpenAIHTTPLLM(server.url, "m").deadline_s == 120.0
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError, match="deadline"):
        llm.complete(MSG, max_tokens=5)
    assert time.monotonic() - start < 1.0 + 1.0


def test_a_call_after_a_deadline_starts_afresh_on_a_new_connection(drip):
    server = drip(drip_connections=1)
    llm = OpenAIHTTPLLM(server.url, "m", timeout_s=5.0, deadline_s=1.0)
    with pytest.raises(LLMTimeoutError):
        llm.complete(MSG, max_tokens=5)
    start = time.monotonic()
    assert llm.complete(MSG, max_tokens=5).text == "hello"  # its own full deadline, a fresh connection
    assert time.monotonic() - start < 1.0 and server.connections == 2


def test_retries_and_their_backoff_fit_in_the_deadline(serve):
    script, url = serve([(503, {}, b"busy", 0.0)])
    llm = OpenAIHTTPLLM(url, "m", deadline_s=1.0, max_retries=100, backoff_base_s=0.2, backoff_max_s=0.3)
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError, match=r"1 s deadline") as info:
        llm.complete(MSG, max_tokens=5)
    # Usually no time is left for another try; on a loaded machine the last try may instead be cut by
    # the deadline: either way the error names the 503 that caused the retries.
    assert "answered 503: busy" in str(info.value)
    assert time.monotonic() - start < 1.0 + 1.0
    assert 2 <= len(script.requests) < 100
    assert isinstance(info.value, LLMError)


def test_a_retry_cut_by_the_deadline_names_the_failure_that_caused_it(serve):
    script, url = serve([(503, {}, b"busy", 0.0), (200, {}, json.dumps(OK_BODY).encode(), 3.0)])
    llm = OpenAIHTTPLLM(url, "m", deadline_s=1.0, max_retries=3, backoff_base_s=0.05, backoff_max_s=0.05)
    with pytest.raises(LLMTimeoutError, match=r"did not finish answering within the 1 s deadline") as info:
        llm.complete(MSG, max_tokens=5)
    assert "after an earlier try" in str(info.value) and "answered 503: busy" in str(info.value)
    assert len(script.requests) == 2  # the slow second try was cut, not retried


def test_a_retry_after_past_the_deadline_is_not_waited_for(serve):
    sleeps: list[float] = []
    script, url = serve([(429, {"Retry-After": "30"}, b"slow down", 0.0), ok()])
    llm = OpenAIHTTPLLM(url, "m", deadline_s=1.0, backoff_max_s=60.0, sleep=sleeps.append)
    with pytest.raises(LLMTimeoutError, match=r"answered 429.*deadline"):
        llm.complete(MSG, max_tokens=5)
    assert sleeps == [] and len(script.requests) == 1


def test_a_server_that_never_accepts_ends_at_the_deadline():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # accepts nothing: the kernel's backlog fills, later connects hang
    try:
        llm = OpenAIHTTPLLM(f"http://127.0.0.1:{listener.getsockname()[1]}", "m", deadline_s=1.0)
        start = time.monotonic()
        with pytest.raises(LLMTimeoutError, match="deadline"):  # in the backlog, never answered
            llm.complete(MSG, max_tokens=5)
        assert time.monotonic() - start < 1.0 + 1.0
    finally:
        listener.close()
