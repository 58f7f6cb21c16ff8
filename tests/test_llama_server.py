"""sounding's own llama.cpp server (tools/llm/llama_server.py) and the sweep that starts it.

Real server, real SmolLM2 weights, real HotpotQA questions: the server starts on 127.0.0.1, answers
under its JSON schema, pins a thread to a slot, stops, and dies with the process that started it; a
sweep at --concurrency 2 writes the same rows as the in-process sweep at temperature 0; a sweep
where the server is not built runs in process and says so in one line.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from sounding.tools.llm.base import LLMUnavailableError
from sounding.tools.llm.llama_server import LlamaServer, ServedLlamaLLM, server_binary
from tests.test_llm_llama import llama_server_binary

pytestmark = pytest.mark.model

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def test_served_model_answers_under_the_schema_on_its_own_slot_and_stops(smollm2_path):
    llama_server_binary()
    llm = ServedLlamaLLM(
        LlamaServer(smollm2_path, slots=3, n_ctx=2048, alias="smollm2-135m"),
        name="smollm2-135m",
        n_params=1,
        pinned=1,
    )
    server = llm._server
    try:
        assert server.base_url.startswith("http://127.0.0.1:") and server.running
        messages = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]
        first = llm.complete(messages, max_tokens=24, schema=SCHEMA)
        assert isinstance(json.loads(first.text)["city"], str)
        assert first.model == "smollm2-135m" and first.prompt_tokens > 0
        again = llm.complete(messages, max_tokens=24, schema=SCHEMA)
        assert again.text == first.text  # temperature 0, same slot: the same answer
        assert llm._slot() == 2  # this thread's slot, kept: the top one
        samples = llm.complete(messages, max_tokens=12, n=2, temperature=1.0, seed=3)
        assert len(samples.choices) == 2
    finally:
        llm.close()
    assert not server.running
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.base_url + "/health", timeout=2)


def test_threads_get_their_own_slots_and_reuse_freed_ones(smollm2_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    llm = ServedLlamaLLM.__new__(ServedLlamaLLM)  # the slot map alone: no server needed
    llm._server = LlamaServer(smollm2_path, slots=9)  # 3 questions, 2 sample slots each
    llm._pinned, llm._slot_of, llm._lock = 3, {}, __import__("threading").Lock()
    with ThreadPoolExecutor(3) as pool:
        first = set(pool.map(lambda _: (time.sleep(0.2), llm._slot())[1], range(3)))
    assert first == {8, 7, 6}  # the top slots: the server gives samples the lowest free ones
    with ThreadPoolExecutor(2) as pool:  # a new pool: the old threads are gone, their slots free again
        second = list(pool.map(lambda _: (time.sleep(0.2), llm._slot())[1], range(2)))
    assert len(set(second)) == 2 and set(second) <= {8, 7, 6}


def test_server_dies_with_the_process_that_started_it(smollm2_path, tmp_path):
    llama_server_binary()
    script = tmp_path / "start.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from sounding.tools.llm.llama_server import LlamaServer\n"
        f"s = LlamaServer(Path({str(smollm2_path)!r}), slots=1, n_ctx=1024)\n"
        "s.start()\n"
        "print(s._proc.pid, s.base_url, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pid_text, url = parent.stdout.readline().split()
        assert httpx.get(url + "/health", timeout=5).status_code == 200
        parent.send_signal(signal.SIGKILL)  # no cleanup code runs in the parent
        parent.wait(timeout=20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(int(pid_text)):
            time.sleep(0.2)
        assert not _alive(int(pid_text)), "the server outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_missing_binary_and_missing_model_are_unavailable_not_crashes(smollm2_path, tmp_path):
    with pytest.raises(LLMUnavailableError, match="not built"):
        LlamaServer(smollm2_path, slots=1, binary=tmp_path / "llama-server").start()
    llama_server_binary()
    with pytest.raises(LLMUnavailableError, match="model file not found"):
        LlamaServer(tmp_path / "none.gguf", slots=1).start()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(LLMUnavailableError, match="exited at start"):
        LlamaServer(bad, slots=1).start()


def _bench(tmp_path: Path, data_dir: Path, out: Path, *extra: str) -> tuple[int, str]:
    from sounding.cli import app

    suite = f"hotpotqa:{data_dir / 'hotpotqa/hotpot_dev_distractor_subset.json.gz'}"
    result = CliRunner().invoke(
        app,
        ["bench", suite, "--limit", "3", "--depths", "0,1", "--model", "smollm2-135m", "--backend", "bm25",
         "--out", str(out), *extra],
    )  # fmt: skip
    return result.exit_code, result.output


def _rows(out: Path) -> dict[tuple[str, int], tuple[str, float, float]]:
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT question_id, round, answer, prompt_tokens, completion_tokens FROM results")
    return {(q, d): (a, p, c) for q, d, a, p, c in rows}


def _runs(out: Path) -> list[dict]:
    con = sqlite3.connect(out / "results.sqlite")
    return [json.loads(c) for (c,) in con.execute("SELECT config FROM runs")]


def test_sweep_through_its_own_server_writes_the_in_process_rows(tmp_path, data_dir, monkeypatch):
    """At temperature 0 the served model answers as the embedded one: the same grammar (llama-cpp-python's
    GBNF for each schema), no flash attention, end-of-turn tokens counted alike, so the same answers and
    token counts. At concurrency 1 the rows are identical; with questions batched together a sequence's
    logits come from batches whose make-up depends on timing, so a near-tie can flip (docs/benchmarks.md):
    the rows are the same questions and settings, with the same prompts."""
    llama_server_binary()
    monkeypatch.setenv("SOUNDING_HOME", str(tmp_path / "home"))
    code, output = _bench(tmp_path, data_dir, tmp_path / "process", "--engine", "process")
    assert code == 0, output
    code, output = _bench(tmp_path, data_dir, tmp_path / "served", "--engine", "server", "--concurrency", "1")
    assert code == 0, output
    (served_run,) = _runs(tmp_path / "served")
    (process_run,) = _runs(tmp_path / "process")
    assert served_run["llm_backend"] == "llama-server" and process_run["llm_backend"] == "llama"
    assert served_run["model_id"] == process_run["model_id"]  # the same weights
    served, process = _rows(tmp_path / "served"), _rows(tmp_path / "process")
    assert len(served) == 6 and served == process
    code, output = _bench(tmp_path, data_dir, tmp_path / "batched", "--concurrency", "2")
    assert code == 0, output
    batched = _rows(tmp_path / "batched")
    assert batched.keys() == process.keys()
    assert sum(batched[k][0] == process[k][0] for k in process) >= 4


def test_sweep_without_a_built_server_runs_in_process_and_says_so(tmp_path, data_dir, monkeypatch):
    import sounding.tools.llm.llama_server as llama_server

    monkeypatch.setenv("SOUNDING_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(llama_server, "server_binary", lambda: tmp_path / "no-llama-server")
    code, output = _bench(tmp_path, data_dir, tmp_path / "run", "--concurrency", "4")
    assert code == 0, output
    assert "llama.cpp's server is not built" in output and "runs in this process" in output
    (run,) = _runs(tmp_path / "run")
    assert run["llm_backend"] == "llama"
    assert len(_rows(tmp_path / "run")) == 6
    code, output = _bench(tmp_path, data_dir, tmp_path / "other", "--engine", "server")
    assert code != 0 and "--engine server: llama.cpp's server is not built" in output


def test_a_run_started_in_process_resumes_in_process(tmp_path, data_dir, monkeypatch):
    llama_server_binary()
    monkeypatch.setenv("SOUNDING_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    code, output = _bench(tmp_path, data_dir, out, "--engine", "process", "--limit", "1")
    assert code == 0, output
    code, output = _bench(tmp_path, data_dir, out)  # auto, the server is built: still the same run
    assert code == 0, output
    assert "resuming them in process" in output
    assert [r["llm_backend"] for r in _runs(out)] == ["llama"]
    assert len(_rows(out)) == 6


def test_server_binary_is_beside_the_python():
    assert server_binary().parent == Path(sys.executable).parent
    assert os.path.basename(server_binary()) == "llama-server"


def test_sweep_falls_back_in_process_when_the_built_server_cannot_start(tmp_path, data_dir, monkeypatch):
    import sounding.tools.llm.llama_server as llama_server

    broken = tmp_path / "llama-server"
    broken.write_text("#!/bin/sh\necho 'error: this CPU lacks an instruction' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("SOUNDING_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(llama_server, "server_binary", lambda: broken)
    code, output = _bench(tmp_path, data_dir, tmp_path / "run", "--concurrency", "2", "--limit", "2")
    assert code == 0, output
    assert "exited at start" in output and "this CPU lacks an instruction" in output
    assert "smollm2-135m runs in this process" in output
    (run,) = _runs(tmp_path / "run")
    assert run["llm_backend"] == "llama"  # the rows carry the engine that made them
    assert len(_rows(tmp_path / "run")) == 4
    code, output = _bench(tmp_path, data_dir, tmp_path / "other", "--engine", "server", "--limit", "1")
    assert code == 3 and "exited at start" in output  # asked for the server: an error, not a fallback


def test_a_server_that_dies_mid_sweep_stops_it_and_leaves_its_questions_pending(smollm2_path):
    llama_server_binary()
    llm = ServedLlamaLLM(LlamaServer(smollm2_path, slots=1, n_ctx=1024), name="smollm2-135m", n_params=1)
    try:
        llm._server._proc.kill()
        llm._server._proc.wait()
        from sounding.tools.llm.base import EngineGoneError

        with pytest.raises(EngineGoneError, match="server exited"):
            llm.complete([{"role": "user", "content": "Hi"}], max_tokens=4)
    finally:
        llm.close()


def test_served_prompt_bound_is_the_embedded_one(smollm2_path, smollm2):
    """A budget reserves a served call's prompt exactly as it reserves an embedded one's, so budgeted
    runs stop at the same point on both engines."""
    llama_server_binary()
    llm = ServedLlamaLLM(LlamaServer(smollm2_path, slots=1, n_ctx=1024), name="smollm2-135m", n_params=1)
    try:
        for messages in (
            [{"role": "user", "content": "Hi"}],
            [
                {"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "Où est Paris ?"},
            ],
        ):
            bound = llm.prompt_token_bound(messages)
            assert bound == smollm2.prompt_token_bound(messages)
            assert 0 < llm.complete(messages, max_tokens=2).prompt_tokens <= bound
    finally:
        llm.close()
