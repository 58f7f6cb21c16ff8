"""Embedded models on this machine: load time, prefill and decode tokens/s (llama.cpp, 2 threads).

    .venv/bin/python benchmarks/bench_llm.py [--models smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b]

Prefill: a ~600-token prompt generating 1 token. Decode: a prompt asking for a long list, generating up
to 128 tokens, decode time = total - prefill time of the same prompt. Median of 3 runs each.

Two builds of llama-cpp-python side by side, in one run (each build a folder made by
``pip install --no-deps --target DIR WHEEL``; each measurement a fresh subprocess with that folder first
on sys.path; rounds alternate the order, so load drifts on a shared machine hit both alike):

    .venv/bin/python benchmarks/bench_llm.py --builds native=/tmp/b-native,no-amx=/tmp/b-noamx --rounds 3

prints each build's median prefill and decode speed and the ratio of every build to the first.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from sounding.settings import load_settings
from sounding.tools.llm.registry import EMBEDDED_MODELS, assemble


def measure(name: str, threads: int) -> dict[str, float | str]:
    from llama_cpp import Llama

    settings = load_settings()
    path = assemble(EMBEDDED_MODELS[name], settings.models_dir)
    start = time.perf_counter()
    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    load = time.perf_counter() - start
    llm.create_completion("Hello", max_tokens=1)  # warm-up
    filler = "The river flows through the old city and past the castle on the hill. " * 40
    prefill, decode = [], []
    for i in range(3):
        llm.reset()
        prompt = f"{i} {filler}\nSummary:"
        t0 = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=1, temperature=0.0)
        t_prefill = time.perf_counter() - t0
        prefill.append(out["usage"]["prompt_tokens"] / t_prefill)
        llm.reset()
        long_prompt = (
            f"{i} List the numbers from one to two hundred in words, separated by commas:\none, two,"
        )
        t0 = time.perf_counter()
        llm.create_completion(long_prompt, max_tokens=1, temperature=0.0)
        t_p = time.perf_counter() - t0
        llm.reset()
        t0 = time.perf_counter()
        out = llm.create_completion(long_prompt, max_tokens=128, temperature=0.0)
        total = time.perf_counter() - t0
        decode.append((out["usage"]["completion_tokens"] - 1) / max(1e-6, total - t_p))
    return {
        "model": name,
        "load_s": round(load, 2),
        "prefill_tok_s": round(statistics.median(prefill), 1),
        "decode_tok_s": round(statistics.median(decode), 1),
        "threads": threads,
    }


def compare_builds(
    builds: dict[str, Path], models: list[str], threads: int, rounds: int
) -> dict[str, object]:
    """Every build measured on every model, ``rounds`` times, alternating which build goes first."""
    import os
    import subprocess
    import sys

    samples: dict[tuple[str, str], list[dict[str, float | str]]] = {}
    for r in range(rounds):
        order = list(builds.items()) if r % 2 == 0 else list(reversed(builds.items()))
        for model in models:
            for label, folder in order:
                env = {
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]),
                }
                code = (
                    "import json, llama_cpp, sys; sys.path.insert(0, 'benchmarks'); from bench_llm import measure; "
                    f"assert llama_cpp.__file__.startswith({str(folder)!r}), llama_cpp.__file__; "
                    f"print(json.dumps(measure({model!r}, {threads})))"
                )
                done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(
                        f"build {label} failed on {model} (exit {done.returncode}): {done.stderr[-800:]}"
                    )
                samples.setdefault((label, model), []).append(
                    json.loads(done.stdout.strip().splitlines()[-1])
                )
                print(f"round {r + 1} {label} {model}: {samples[(label, model)][-1]}", flush=True)
    first = next(iter(builds))
    rows = []
    for model in models:
        base = {
            k: statistics.median(float(s[k]) for s in samples[(first, model)])
            for k in ("prefill_tok_s", "decode_tok_s")
        }
        for label in builds:
            med = {
                k: statistics.median(float(s[k]) for s in samples[(label, model)])
                for k in ("prefill_tok_s", "decode_tok_s")
            }
            rows.append({
                "build": label, "model": model, **{k: round(v, 1) for k, v in med.items()},
                "prefill_ratio": round(med["prefill_tok_s"] / base["prefill_tok_s"], 3),
                "decode_ratio": round(med["decode_tok_s"] / base["decode_tok_s"], 3),
            })  # fmt: skip
    return {
        "rounds": rounds,
        "threads": threads,
        "builds": {k: str(v) for k, v in builds.items()},
        "results": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(EMBEDDED_MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--builds", default=None, help="label=DIR,label=DIR: compare llama-cpp-python builds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.builds:
        builds = {
            label: Path(folder) for label, _, folder in (b.partition("=") for b in args.builds.split(","))
        }
        record = compare_builds(builds, args.models.split(","), args.threads, args.rounds)
        record |= {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        }
        out = args.out or Path("benchmarks/results/llm-builds.json")
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(
            "| build | model | prefill (tok/s) | decode (tok/s) | prefill ratio | decode ratio |\n|---|---|---|---|---|---|"
        )
        for r in record["results"]:  # type: ignore[union-attr]
            print(
                f"| {r['build']} | {r['model']} | {r['prefill_tok_s']} | {r['decode_tok_s']} | {r['prefill_ratio']} | {r['decode_ratio']} |"
            )
        return
    args.out = args.out or Path("benchmarks/results/llm.json")
    rows = [measure(m, args.threads) for m in args.models.split(",")]
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print("| model | load (s) | prefill (tok/s) | decode (tok/s) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['load_s']} | {r['prefill_tok_s']} | {r['decode_tok_s']} |")


if __name__ == "__main__":
    main()
