"""Embedded models on this machine: load time, prefill and decode tokens/s (llama.cpp, 2 threads).

    .venv/bin/python benchmarks/bench_llm.py [--models smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b]

Prefill: a ~600-token prompt generating 1 token. Decode: a prompt asking for a long list, generating up
to 128 tokens, decode time = total - prefill time of the same prompt. Median of 3 runs each.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(EMBEDDED_MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/llm.json"))
    args = parser.parse_args()
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
