"""Question-grids per hour of `sounding bench` as a user runs it, engine against engine, in one run.

    .venv/bin/python benchmarks/bench_throughput.py [--model qwen2.5-coder-0.5b] [--questions 20]
        [--arms process,server:4] [--grid "--depths 0,1,2 --think 0,64 --samples 1,3"] [--out FILE]

Each arm runs the real command (``python -m sounding bench``) on the same first ``--questions``
HotpotQA questions of the second result's 12-setting grid (a question-grid is one question's run
with its 12 settings read off it), into a fresh run directory and a shared model/index home, one arm
after another, timed from start to exit (model load and server start included). Arms:

- ``process``: the embedded model in the sweep's process, one question at a time (before #31);
- ``server:N``: sounding's own llama.cpp server with N slots, N questions in flight.

Besides the rate and its ratio to the first arm, each arm's answers are compared with the first
arm's, row by row (temperature-0 steps are deterministic; samples at temperature 0.7 come from each
engine's own sampler; batching can flip near-ties). The machine is shared and noisy: read ratios.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = f"hotpotqa:{REPO.parent / 'shared/data/hotpotqa/hotpot_dev_distractor_subset.json.gz'}"
GRID = "--depths 0,1,2 --think 0,64 --samples 1,3"


def run_arm(arm: str, args: argparse.Namespace, out: Path) -> float:
    engine, _, slots = arm.partition(":")
    cmd = [sys.executable, "-m", "sounding", "bench", SUITE, "--limit", str(args.questions), *shlex.split(args.grid),
           "--model", args.model, "--out", str(out), "--engine", engine, "--concurrency", slots or "1"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{arm} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def answers(out: Path) -> dict[tuple[str, int, int, int], str]:
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT question_id, round, think, samples, answer FROM results")
    return {(q, r, t, s): a for q, r, t, s, a in rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--arms", default="process,server:4")
    parser.add_argument("--grid", default=GRID)
    parser.add_argument("--out", type=Path, default=None, help="Also write the table to this file.")
    args = parser.parse_args()
    arms = args.arms.split(",")
    results: list[tuple[str, float, dict[tuple[str, int, int, int], str]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for arm in arms:
            out = Path(tmp) / arm.replace(":", "-")
            seconds = run_arm(arm, args, out)
            results.append((arm, seconds, answers(out)))
            print(f"{arm}: {args.questions} question-grids in {seconds:.1f} s", flush=True)
            table = render(results, args)  # after every arm: a run stopped early keeps what it measured
            print("\n" + table, flush=True)
            if args.out:
                args.out.write_text(table + "\n")


def render(
    results: list[tuple[str, float, dict[tuple[str, int, int, int], str]]], args: argparse.Namespace
) -> str:
    base_arm, base_s, base_answers = results[0]
    lines = [
        f"{args.model}, first {args.questions} HotpotQA questions, grid `{args.grid}` "
        f"({time.strftime('%Y-%m-%d')})",
        "",
        f"| arm | wall time (s) | question-grids per hour | vs {base_arm} | answers as {base_arm} |",
        "|---|---|---|---|---|",
    ]
    for arm, seconds, got in results:
        same = sum(got.get(k) == v for k, v in base_answers.items())
        lines.append(
            f"| {arm} | {seconds:.1f} | {3600 * args.questions / seconds:.1f} | {base_s / seconds:.2f}x | "
            f"{same}/{len(base_answers)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
