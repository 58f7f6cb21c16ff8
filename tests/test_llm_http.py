"""The OpenAI-compatible HTTP backend against real local HTTP servers (fault cases we control)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sounding.tools.llm.base import (
    LLMConnectionError,
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
    threading.Thread(target=server.serve_forever, daemon=True).start()
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
