"""The embedded backend with the real SmolLM2 model, and the HTTP backend against llama.cpp's real server."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from sounding.tools.llm.openai_http import OpenAIHTTPLLM
from tests.conftest import free_port

pytestmark = pytest.mark.model

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "confident": {"type": "boolean"}},
    "required": ["city", "confident"],
}
MESSAGES = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "What is the capital of France? Answer as JSON."},
]


def test_generation_reports_real_token_counts(smollm2):
    msgs = [{"role": "user", "content": "Write one sentence about the sea."}]
    c = smollm2.complete(msgs, max_tokens=12)
    assert c.text.strip()
    assert 0 < c.completion_tokens <= 12
    assert 0 < c.prompt_tokens <= smollm2.prompt_token_bound(msgs)


def test_schema_constrained_json_parses(smollm2):
    c = smollm2.complete(MESSAGES, max_tokens=48, schema=SCHEMA)
    value = json.loads(c.text)
    assert isinstance(value["city"], str) and isinstance(value["confident"], bool)


def test_deterministic_at_temperature_zero(smollm2):
    a = smollm2.complete(MESSAGES, max_tokens=16).text
    b = smollm2.complete(MESSAGES, max_tokens=16).text
    assert a == b


@pytest.fixture(scope="module")
def llama_server(smollm2_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(smollm2_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
            "--model_alias",
            "smollm2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("llama.cpp server did not start within 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_http_backend_against_real_llama_server(llama_server):
    llm = OpenAIHTTPLLM(llama_server, "smollm2", structured_output="json_object", timeout_s=60)
    c = llm.complete(MESSAGES, max_tokens=48, schema=SCHEMA)
    value = json.loads(c.text)
    assert set(value) >= {"city", "confident"}
    assert c.prompt_tokens > 0 and 0 < c.completion_tokens <= 48
    plain = llm.complete([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert plain.text.strip() and plain.completion_tokens <= 8


def test_llm_judge_records_its_model(smollm2):
    from sounding.evals.metrics import llm_judge

    verdict = llm_judge(smollm2, "What is the capital of France?", "Paris", ["Paris"])
    assert verdict.judge_model == "smollm2-135m"
    assert verdict.error is None and isinstance(verdict.correct, bool)


def test_budget_calibrate_writes_a_latency_table(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sounding.budgets.cost import load_latency_table
    from sounding.cli import app

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(json.dumps({"title": f"T{i}", "text": f"river number {i} flows"}) + "\n" for i in range(5))
    )
    monkeypatch.setenv("SOUNDING_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(
        app,
        [
            "budget",
            "calibrate",
            "--model",
            "smollm2-135m",
            "--corpus",
            f"jsonl:{corpus}",
            "--backend",
            "bm25",
            "--repeats",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    table = load_latency_table(tmp_path / "home" / "latency.json")
    assert table.llm == "smollm2-135m" and table.search == "bm25"
    assert 0 < table.seconds_per_prompt_token < table.seconds_per_completion_token


def llama_server_binary():
    """llama.cpp's own server, built by scripts/build_llama_server.sh (make test builds it)."""
    import os
    from pathlib import Path

    path = Path(sys.executable).parent / "llama-server"
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: scripts/build_llama_server.sh builds it (make test runs it)")
        pytest.skip("llama-server not built (scripts/build_llama_server.sh)")
    return path


@pytest.fixture(scope="module")
def parallel_server(smollm2_path):
    """llama.cpp's server with 2 parallel slots (continuous batching) on 127.0.0.1."""
    binary = llama_server_binary()
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-m", str(smollm2_path), "--host", "127.0.0.1", "--port", str(port), "--parallel", "2",
         "-c", "4096", "-t", "2", "--alias", "smollm2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("llama-server did not start within 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_llama_server_enforces_the_json_schema_and_samples_in_slots(parallel_server):
    llm = OpenAIHTTPLLM(parallel_server, "smollm2", timeout_s=120)  # OpenAI response_format json_schema
    for _ in range(3):
        c = llm.complete(MESSAGES, max_tokens=48, schema=SCHEMA, temperature=0.9, seed=5)
        value = json.loads(c.text)
        assert isinstance(value["city"], str) and isinstance(value["confident"], bool)
    assert llm.constraint_violations == 0
    # 3 samples from a server with 2 slots: it refuses n=3, the backend sends 2 + 1, all seeded apart
    three = llm.complete(
        [{"role": "user", "content": "Name a river."}], max_tokens=12, n=3, temperature=1.0, seed=9
    )
    assert len(three.choices) == 3 and len({c.text for c in three.choices}) >= 2


def test_concurrent_questions_against_parallel_slots(parallel_server):
    from concurrent.futures import ThreadPoolExecutor

    llm = OpenAIHTTPLLM(parallel_server, "smollm2", timeout_s=120)

    def ask(i: int) -> str:
        return llm.complete([{"role": "user", "content": f"Say the number {i}."}], max_tokens=8).text

    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(ask, range(8)))
    assert len(texts) == 8 and all(t.strip() for t in texts)
