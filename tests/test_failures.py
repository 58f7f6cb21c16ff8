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
    return {
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
    ]


def test_bad_input_table_no_traceback_and_documented_codes(env, tmp_path, data_dir):
    failures = []
    for args, code, message in cases(tmp_path, str(data_dir)):
        out = run(args, env)
        text = out.stdout + out.stderr
        shown = [a if isinstance(a, str) else repr(a) for a in args]
        if out.returncode != code or message not in text or "Traceback" in text:
            failures.append(f"{shown}: exit {out.returncode} (want {code}), output {text[-300:]!r}")
        assert out.returncode in DOCUMENTED
    assert not failures, "\n".join(failures)
    # nothing read-only was created or migrated
    assert (tmp_path / "empty-run" / "results.sqlite").stat().st_size == 0
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r4").exists()


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


def test_a_checkpoint_file_that_is_sqlite_is_accepted(tmp_path):
    from sounding.agent.runner import sqlite_checkpointer

    path = tmp_path / "ok.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    assert sqlite_checkpointer(path) is not None


def test_a_model_whose_every_output_is_malformed_says_so(tmp_path):
    from sounding.agent.runner import run_research
    from tests.scripted import ScriptedLLM
    from tests.test_agent_nodes import Q, deps

    bad = {step: "not json {{" for step in ("probe", "queries", "extract", "reflect", "answer")}
    from sounding.budgets.controllers import FixedController

    result = run_research(Q, deps(ScriptedLLM(bad), controller=FixedController(1, 1)))
    assert result.no_answer_reason == "malformed"
    assert "did not parse" in result.answer and "budget" not in result.answer
