"""Every failure ends in an answer or a typed error with its documented exit code (the real CLI, in a
subprocess, on real bad files and a real misbehaving server)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sounding.cli import _exit_for
from tests.conftest import interruptible

DOCUMENTED = {0, 1, 2, 3, 4, 130}
SUITE = "hotpotqa:{data}/hotpotqa/hotpot_dev_distractor_subset.json.gz"


def run(
    args: list[str | bytes], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    code = "import sys; from sounding.cli import main; main()"
    argv = [
        os.fsencode(sys.executable),
        b"-c",
        code.encode(),
        *(a if isinstance(a, bytes) else a.encode() for a in args),
    ]
    out = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(
        out.args, out.returncode, out.stdout.decode("utf-8", "replace"), out.stderr.decode("utf-8", "replace")
    )


@pytest.fixture()
def env(tmp_path, test_home, smollm2_path):
    environ = {
        **os.environ,
        "SOUNDING_HOME": str(test_home),  # the assembled SmolLM2 is there
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "COLUMNS": "200",
    }
    environ.pop("SOUNDING_CONFIG", None)
    return environ


def corrupt_files(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "a-folder.jsonl"
    folder.mkdir()
    not_sqlite = tmp_path / "checkpoint.db"
    not_sqlite.write_text("this is not a database\n" * 50)
    existing = tmp_path / "a-file"
    existing.write_text("x")
    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    (empty_run / "results.sqlite").write_bytes(b"")
    junk_run = tmp_path / "junk-run"
    junk_run.mkdir()
    (junk_run / "results.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x07" * 3000)  # truncated header
    foreign = tmp_path / "foreign.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE invoices (n)").connection.commit()
    suite_dir = tmp_path / "suite-folder"
    suite_dir.mkdir()
    return {
        "foreign": foreign,
        "suite_dir": suite_dir,
        "folder": folder,
        "not_sqlite": not_sqlite,
        "existing": existing,
        "empty_run": empty_run,
        "junk_run": junk_run,
    }


def cases(tmp_path: Path, data: str) -> list[tuple[list[str | bytes], int, str]]:
    f = corrupt_files(tmp_path)
    suite = SUITE.format(data=data)
    m = ["--model", "smollm2-135m"]
    return [
        (["ask", "q", "--budget", "0", *m], 2, "--budget"),
        (["ask", "q", "--budget", "inf", *m], 2, "--budget"),
        (["ask", "q", "--unit", "bogus", *m], 2, "--unit"),
        (["ask", "q", "--model", "gpt-7"], 2, "unknown model"),
        (["ask", b"caf\xe9 au lait?", *m], 2, "UTF-8"),
        (["ask", "q", "--llm-url", "ftp://127.0.0.1:1", *m], 3, "ftp://"),
        (["ask", "q", "--corpus", f"jsonl:{f['folder']}", "--backend", "bm25", *m], 2, "cannot read"),
        (["ask", "q", "--checkpoint", str(f["not_sqlite"]), *m], 2, "not a usable SQLite"),
        (["ask", "q", "--trace", str(tmp_path), *m], 2, "is a directory"),
        (["ask", "q", "--samples", "65", *m], 2, "samples"),
        (["ask", "q", "--think", "-1", *m], 2, "think"),
        (["ask", "q", "--depth", "100000", *m], 2, "depth"),
        (["ask", "q", "--think", "4000", *m], 2, "does not fit the model's context"),
        (
            ["tune", str(f["empty_run"]), "--budget", "1000", "--out", str(tmp_path / "p.json")],
            2,
            "empty-run",
        ),
        (
            ["tune", str(tmp_path / "nowhere"), "--budget", "1000", "--out", str(tmp_path / "p.json")],
            2,
            "no results",
        ),
        (["ask", "q", "--controller", "tuned", "--policy", str(f["not_sqlite"]), *m], 2, "tuned policy"),
        (["bench", suite, "--depths", "0,100000", "--out", str(tmp_path / "r1")], 2, "--depths"),
        (["bench", suite, "--think", "0,-4", "--out", str(tmp_path / "r2")], 2, "--think"),
        (["bench", suite, "--samples", "0,3", "--out", str(tmp_path / "r3")], 2, "--samples"),
        (["bench", suite, "--out", str(f["existing"])], 2, "is a file"),
        (["bench", suite, "--limit", "1", "--out", str(f["junk_run"])], 2, "junk-run"),
        (["bench", suite, "--seeds", "3", "--out", str(tmp_path / "r4")], 2, "identical runs"),
        (["report", str(f["empty_run"])], 2, "empty-run"),
        (["report", str(f["junk_run"])], 2, "junk-run"),
        (["fit", str(tmp_path / "nowhere")], 2, "no results.sqlite"),
        (["ask", "Why?", "--format", "essay", *m], 2, "--format must be auto, short or report"),
        (["ask", "Why?", "--unsupported", "hide", *m], 2, "--unsupported must be mark or drop"),
        (["ask", "Why?", "--out", str(tmp_path), *m], 2, "is a directory"),
        (
            ["eval-reports", "--questions", str(f["not_sqlite"]), "--out", str(tmp_path / "e1")],
            2,
            "line 1: not an open question record",
        ),
        # a run must not claim reasoning its controller does not do (issue 29)
        (
            ["bench", suite, "--controller", "adaptive", "--think", "0,64", "--out", str(tmp_path / "b5")],
            2,
            "fixed controller's reasoning",
        ),
        (["ask", "q", "--controller", "adaptive", "--think", "64", *m], 2, "fixed controller's reasoning"),
        # the hostile probe's cases (issue 28)
        (
            ["bench", suite, "--controller", "adaptive", "--budgets", "inf", "--out", str(tmp_path / "b1")],
            2,
            "--budgets must be finite",
        ),
        (
            ["bench", suite, "--controller", "adaptive", "--budgets", "1e308", "--out", str(tmp_path / "b2")],
            2,
            "--budgets must be finite",
        ),
        (
            ["bench", suite, "--controller", "adaptive", "--budgets", "nan", "--out", str(tmp_path / "b3")],
            2,
            "--budgets must be finite",
        ),
        (["ask", "q", "--budget", "nan", *m], 2, "must be a finite number above 0"),
        (["ask", "q", "--budget", "1e308", *m], 2, "must be a finite number above 0"),
        (["ask", "q", "--checkpoint", "/dev/null", *m], 2, "not a regular file"),
        (["ask", "q", "--checkpoint", str(f["foreign"]), *m], 2, "SQLite database of something else"),
        (["ask", "q", "--controller", "tuned", "--policy", "/dev/zero", *m], 2, "not a regular file"),
        (["ask", "q", "--controller", "calibrated", "--policy", "/dev/zero", *m], 2, "not a regular file"),
        (
            ["ask", "q", "--corpus", "jsonl:/dev/zero", "--backend", "bm25", *m],
            2,
            "not a regular file or a folder",
        ),
        (["search", b"caf\xe9 au lait"], 2, "not valid UTF-8"),
        (["bench", f"hotpotqa:{f['suite_dir']}", "--out", str(tmp_path / "b4")], 2, "is a directory"),
        (
            [
                "merge",
                str(tmp_path / "good-shard"),
                str(tmp_path / "foreign-shard"),
                "--out",
                str(tmp_path / "merged"),
            ],
            2,
            "not a sounding result store",
        ),
    ]


def test_bad_input_table_no_traceback_and_documented_codes(env, tmp_path, data_dir):
    from sounding.evals.store import ResultStore

    ResultStore(tmp_path / "good-shard" / "results.sqlite").close()  # a real, empty shard
    (tmp_path / "foreign-shard").mkdir()
    sqlite3.connect(tmp_path / "foreign-shard" / "results.sqlite").execute(
        "CREATE TABLE t (x)"
    ).connection.commit()
    failures = []
    table = cases(tmp_path, str(data_dir))
    foreign_before = (tmp_path / "foreign.sqlite").read_bytes()
    for args, code, message in table:
        out = run(args, env)
        text = out.stdout + out.stderr
        shown = [a if isinstance(a, str) else repr(a) for a in args]
        if out.returncode != code or message not in text or "Traceback" in text:
            failures.append(f"{shown}: exit {out.returncode} (want {code}), output {text[-300:]!r}")
        elif code == 2 and len([line for line in out.stderr.splitlines() if line.strip()]) != 1:
            failures.append(f"{shown}: a usage error must be one line, got {out.stderr!r}")
        assert out.returncode in DOCUMENTED
    assert not failures, "\n".join(failures)
    # nothing read-only was created or migrated
    assert (tmp_path / "empty-run" / "results.sqlite").stat().st_size == 0
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r4").exists()
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b4").exists()
    assert (tmp_path / "foreign.sqlite").read_bytes() == foreign_before  # no checkpoint tables added
    assert not (tmp_path / "merged").exists()  # a failed merge into a new store leaves nothing


def test_usage_errors_are_one_line_naming_the_option(env):
    for args, named in (
        (["ask", "q", "--depth", "abc"], "--depth"),
        (["bench"], "suite"),
        (["ask", "q", "--bogus"], "--bogus"),
    ):
        out = run(args, env, timeout=60)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert named in lines[0] and "--help" in lines[0] and "╭" not in out.stderr


def test_report_never_writes_the_store_it_reads(env, tmp_path):
    from sounding.evals.store import ResultStore

    run_dir = tmp_path / "run"
    store = ResultStore(run_dir / "results.sqlite")
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(str(run_dir / "results.sqlite") + suffix).unlink(missing_ok=True)
    before = (run_dir / "results.sqlite").read_bytes()
    out = run(["report", str(run_dir)], env)
    assert out.returncode == 2 and "no results yet" in out.stderr
    assert (run_dir / "results.sqlite").read_bytes() == before  # (SQLite may add its -shm index beside it)


def test_a_bug_is_exit_4_with_a_pointer_to_debug():
    code, message = _exit_for(ZeroDivisionError("division by zero"))
    assert code == 4 and "--debug" in message and "ZeroDivisionError" in message
    assert _exit_for(PermissionError(13, "Permission denied", "/x/y"))[0] == 2


def test_a_checkpoint_file_of_langgraph_is_accepted_and_a_foreign_one_refused_untouched(tmp_path):
    from sounding.agent.runner import CheckpointError, sqlite_checkpointer

    path = tmp_path / "ok.db"
    saver = sqlite_checkpointer(path)  # a new file: LangGraph creates its tables on first use
    saver.setup()
    saver.conn.close()
    assert sqlite_checkpointer(path) is not None  # its own tables only: reused
    foreign = tmp_path / "app.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    before = foreign.read_bytes()
    with pytest.raises(CheckpointError, match="something else"):
        sqlite_checkpointer(foreign)
    assert foreign.read_bytes() == before
    with pytest.raises(CheckpointError, match="not a regular file"):
        sqlite_checkpointer(Path("/dev/null"))


def test_an_answer_file_on_a_full_disk_leaves_no_temp_file(tmp_path):
    """A real failing write (the file-size limit makes every write past 16 bytes fail with EFBIG)."""
    from sounding.agent.runner import run_research
    from sounding.budgets.controllers import FixedController
    from tests.scripted import ScriptedLLM
    from tests.test_agent_nodes import Q, deps

    bad = {step: "not json {{" for step in ("probe", "queries", "extract", "reflect", "answer")}
    result = run_research(Q, deps(ScriptedLLM(bad), controller=FixedController(1, 1)))
    saved = tmp_path / "result.json"
    saved.write_text(result.model_dump_json())
    folder = tmp_path / "out"
    folder.mkdir()
    code = f"""
import resource
from pathlib import Path
from sounding.agent.runner import ResearchResult
from sounding.cli.render import write_answer
result = ResearchResult.model_validate_json(Path({str(saved)!r}).read_text())
resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))
try:
    write_answer(result, Path({str(folder / "answer.md")!r}))
except OSError as exc:
    print("refused", exc.errno)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused" in done.stdout, done.stderr
    assert list(folder.iterdir()) == []  # neither the answer nor its .tmp


def _bench(out: Path, data: Path, limit: int, *extra: str) -> list[str]:
    suite = SUITE.format(data=data)
    return [sys.executable, "-m", "sounding", "bench", suite, "--limit", str(limit), "--depths", "0",
            "--model", "smollm2-135m", "--backend", "bm25", "--out", str(out), *extra]  # fmt: skip


def _count(db: Path, table: str) -> int:
    try:
        return int(
            sqlite3.connect(db).execute(f"SELECT COUNT(DISTINCT question_id) FROM {table}").fetchone()[0]
        )
    except sqlite3.Error:
        return 0


@pytest.mark.model
def test_a_full_disk_mid_sweep_stops_cleanly_and_a_rerun_does_the_question(env, tmp_path, data_dir):
    """A real write failure (RLIMIT_FSIZE: every file write past the limit fails, as on a full disk)."""
    import resource

    out = tmp_path / "run"
    first = subprocess.run(_bench(out, data_dir, 1), env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    db = out / "results.sqlite"

    def small_files() -> None:
        # room for SQLite's 32 KiB shared-memory index and a little write-ahead log, not for a whole question
        resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))

    full = subprocess.run(
        _bench(out, data_dir, 3), env=env, capture_output=True, text=True, timeout=600, preexec_fn=small_files
    )
    assert full.returncode == 2, (full.returncode, full.stderr[-2000:])
    assert "cannot write" in full.stderr and "rerun the same command" in full.stderr
    assert "internal error" not in full.stderr and "Traceback" not in full.stderr
    assert _count(db, "errors") == 0  # the question in flight is not recorded as its own failure
    assert 1 <= _count(db, "results") < 3  # what was written before the disk filled is kept
    again = subprocess.run(_bench(out, data_dir, 3), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _count(db, "results") == 3 and _count(db, "errors") == 0


@pytest.mark.model
def test_ctrl_c_on_a_concurrent_sweep_stops_now_and_keeps_whole_questions(env, tmp_path, data_dir):
    import signal
    import time

    out = tmp_path / "run"
    db = out / "results.sqlite"
    proc = subprocess.Popen(
        _bench(out, data_dir, 40, "--concurrency", "2"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=interruptible,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and _count(db, "results") < 2:
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    start = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    stopped_in = time.monotonic() - start
    assert proc.returncode == 130 and b"interrupted" in proc.stderr.read()  # type: ignore[union-attr]
    kept = _count(db, "results")
    assert 2 <= kept < 40
    # it did not run the queue out: a question here takes ~1-3 s, so 40 take far longer than this
    assert stopped_in < 30, stopped_in
    con = sqlite3.connect(db)
    per_question = {n for (n,) in con.execute("SELECT COUNT(*) FROM results GROUP BY question_id")}
    assert per_question == {1}  # depth 0 only: every stored question whole, none twice


@pytest.mark.model
def test_ctrl_c_on_ask_prints_the_draft_it_had(env, tmp_path, small_corpus):
    import signal
    import time

    cmd = [sys.executable, "-m", "sounding", "ask", "Which river flows through the capital of Hungary?",
           "--model", "smollm2-135m", "--corpus", f"jsonl:{small_corpus}", "--backend", "bm25",
           "--depth", "8", "--budget", "1000000"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible
    )
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # the live log (not a terminal) prints a line per draft
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if "draft" in line.lower():
            break
    assert proc.poll() is None, f"the run ended before a draft could be interrupted: {seen[-1000:]}"
    os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "best draft so far" in stderr
    assert stdout.strip(), "the draft was not printed"


HOSTILE_BODIES = {
    "usage of infinity": b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, '
    b'"finish_reason": "stop"}], "usage": {"prompt_tokens": Infinity, "completion_tokens": 1}}',
    "choices as a string": b'{"choices": "none today", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}',
}


@pytest.mark.parametrize("hostile", list(HOSTILE_BODIES))
def test_a_hostile_llm_response_mid_run_prints_the_draft_and_exits_1(env, tmp_path, small_corpus, hostile):
    """A real OpenAI-compatible server on 127.0.0.1 answers the agent's steps until a draft exists,
    then sends a malformed completion: the run ends degraded (exit 1) with the draft, never exit 4."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.scripted import ScriptedLLM, step_of
    from tests.test_agent_nodes import script

    scripted = ScriptedLLM(script())
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            messages = request["messages"]
            step = step_of(messages) if messages[0]["role"] == "system" else "ping"
            seen.append(step)
            if "reflect" in seen[:-1]:  # a draft was recorded after the first round's reflection
                body = HOSTILE_BODIES[hostile]
            else:
                text = (
                    "pong" if step == "ping" else scripted.complete(messages, max_tokens=512).choices[0].text
                )
                body = json.dumps({
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                }).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        out = run(
            ["ask", "Which river flows through the capital of Hungary?", "--llm-url", url, "--model", "scripted",
             "--corpus", f"jsonl:{small_corpus}", "--backend", "bm25", "--depth", "3", "--breadth", "1"],
            env, timeout=300,
        )  # fmt: skip
    finally:
        server.shutdown()
    assert "reflect" in seen, seen
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert "Danube" in out.stdout  # the draft made before the hostile response
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
