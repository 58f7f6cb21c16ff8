"""Question-curves per hour at sweep concurrency 1, 2 and 4 against one llama.cpp server with 4 slots.

    .venv/bin/python benchmarks/bench_concurrency.py [--model qwen2.5-coder-0.5b] [--questions 8] [--depth 2]

Starts llama.cpp's own server (``scripts/build_llama_server.sh`` builds it) on 127.0.0.1 with 4
parallel slots (continuous batching), then sweeps the same HotpotQA questions (BM25 over the suite's
pooled corpus, fixed controller, depth ``--depth``) through the HTTP backend at concurrency 1, 2 and
4, one after another in this one run, each into a fresh store. A question-curve is one question's
run to the deepest depth (every shallower depth is read off it). Read the ratios: the machine is
shared and noisy. On 2 CPU cores the gain comes from batching decode across slots, not from more cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sounding.evals.datasets import load_suite
from sounding.evals.store import ResultStore
from sounding.evals.sweep import RunIdentity, SweepSpec, run_configs, run_sweep_config
from sounding.settings import load_settings
from sounding.tools.llm import make_llm
from sounding.tools.llm.registry import EMBEDDED_MODELS, assemble
from sounding.tools.search.factory import make_search

REPO = Path(__file__).resolve().parents[1]
SUITE = f"hotpotqa:{REPO.parent / 'shared/data/hotpotqa/hotpot_dev_distractor_subset.json.gz'}"


def start_server(model_path: Path, port: int, slots: int) -> subprocess.Popen[bytes]:
    binary = Path(sys.executable).parent / "llama-server"
    if not binary.is_file():
        sys.exit(f"{binary} is missing: run scripts/build_llama_server.sh")
    proc = subprocess.Popen(
        [str(binary), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port),
         "--parallel", str(slots), "-c", str(4096 * slots), "-t", "2", "--alias", "served"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    sys.exit("llama-server did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--levels", default="1,2,4")
    parser.add_argument("--port", type=int, default=8939)
    args = parser.parse_args()
    base = load_settings()
    model_path = assemble(EMBEDDED_MODELS[args.model], base.models_dir)
    suite = load_suite(SUITE, limit=args.questions)
    server = start_server(model_path, args.port, slots=4)
    try:
        settings = load_settings(
            llm={"backend": "http", "base_url": f"http://127.0.0.1:{args.port}", "model": args.model},
            search={"backend": "bm25", "corpus": suite.corpus},
        )
        llm = make_llm(settings)
        search = make_search(settings)
        spec = SweepSpec(
            suite=SUITE, limit=args.questions, depths=[args.depth], breadths=[1], models=[args.model]
        )
        identity = RunIdentity(suite=suite.name, corpus="bench", corpus_fingerprint="bench")
        (config,) = run_configs(spec, settings, identity)
        results = {}
        for level in [int(v) for v in args.levels.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                store = ResultStore(Path(tmp) / "results.sqlite")
                start = time.perf_counter()
                run_sweep_config(config, suite.samples, settings, llm, search, store, concurrency=level)
                seconds = time.perf_counter() - start
                done = len(store.done_questions(config.key))
                results[level] = (seconds, done)
                print(f"concurrency {level}: {done} question-curves in {seconds:.1f} s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    base_rate = results[min(results)][1] / results[min(results)][0]
    print(
        f"\n{args.model} via llama-server (4 slots), {args.questions} HotpotQA questions, depth {args.depth}"
    )
    print("| concurrency | question-curves | wall time (s) | question-curves per hour | vs concurrency 1 |")
    print("|---|---|---|---|---|")
    for level, (seconds, done) in results.items():
        rate = done / seconds
        print(f"| {level} | {done} | {seconds:.1f} | {3600 * rate:.0f} | {rate / base_rate:.2f}x |")


if __name__ == "__main__":
    main()
