"""N samples of one prompt in one call (prompt prefilled once) against N separate calls (prefilled N times).

    .venv/bin/python benchmarks/bench_samples.py [--model qwen2.5-coder-0.5b] [--n 5] [--repeats 3]

Both arms run in this one process, interleaved repeat by repeat (the machine is shared and noisy: read
the ratios). The prompt is a real reasoning prompt of the agent (question plus numbered notes, about
600 tokens); each sample thinks up to 64 tokens at temperature 0.7 with its own seed. "Separate
calls" clear llama.cpp's cache before each call, as happens in a run where other prompts (parallel
search branches, other steps) come between the samples. Prompt tokens evaluated are counted inside
llama.cpp's eval, so they are what was really computed, not what was billed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

from sounding.agent.nodes import PROMPTS
from sounding.settings import load_settings
from sounding.tools.llm.base import sample_seed
from sounding.tools.llm.llama_cpp import LlamaCppLLM
from sounding.tools.llm.registry import EMBEDDED_MODELS, assemble

NOTES = "\n".join(
    f"[{i}] ({title}) {fact}"
    for i, (title, fact) in enumerate(
        [
            ("Hungary", "Hungary is a landlocked country in Central Europe; its capital is Budapest."),
            ("Budapest", "Budapest is the capital and most populous city of Hungary, on the Danube."),
            (
                "Danube",
                "The Danube flows through Vienna, Bratislava, Budapest and Belgrade to the Black Sea.",
            ),
            ("Vienna", "Vienna is the capital of Austria and lies on the Danube."),
            ("Tisza", "The Tisza is a river in Central Europe and a tributary of the Danube."),
        ]
        * 4,
        1,
    )
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--think", type=int, default=64)
    args = parser.parse_args()
    settings = load_settings()
    spec = EMBEDDED_MODELS[args.model]
    llm = LlamaCppLLM(assemble(spec, settings.models_dir), name=args.model, n_ctx=4096, n_threads=2)
    prompt = PROMPTS["think"]
    messages = [
        {"role": "system", "content": prompt["system"]},
        {
            "role": "user",
            "content": prompt["user"].format(
                question="Which river flows through the capital of Hungary?", evidence=f"Notes:\n{NOTES}"
            ),
        },
    ]
    llm.complete(messages, max_tokens=1)  # warm-up
    arms: dict[str, dict[str, list[float]]] = {
        "one call, n samples": {"seconds": [], "evaluated": [], "prompt": []},
        "n separate calls": {"seconds": [], "evaluated": [], "prompt": []},
    }
    for r in range(args.repeats):
        seed = 1000 + r
        # one call of n samples
        llm.reset_cache()
        before, t0 = llm.evaluated_tokens, time.perf_counter()
        c = llm.complete(messages, max_tokens=args.think, n=args.n, seed=seed, temperature=0.7)
        arm = arms["one call, n samples"]
        arm["seconds"].append(time.perf_counter() - t0)
        arm["evaluated"].append(llm.evaluated_tokens - before)
        arm["prompt"].append(llm.evaluated_tokens - before - c.completion_tokens)
        # n separate calls, the cache cleared before each (the same seeds: the same samples)
        before, t0, generated = llm.evaluated_tokens, time.perf_counter(), 0
        for i in range(args.n):
            llm.reset_cache()
            one = llm.complete(messages, max_tokens=args.think, seed=sample_seed(seed, i), temperature=0.7)
            generated += one.completion_tokens
        arm = arms["n separate calls"]
        arm["seconds"].append(time.perf_counter() - t0)
        arm["evaluated"].append(llm.evaluated_tokens - before)
        arm["prompt"].append(llm.evaluated_tokens - before - generated)
    prompt_tokens = c.prompt_tokens
    print(
        f"{args.model}, {args.n} samples of a {prompt_tokens}-token prompt, <= {args.think} tokens each, "
        f"median of {args.repeats} ({platform.machine()}, {platform.node()})"
    )
    print("| arm | wall time (s) | prompt tokens evaluated | all tokens evaluated |")
    print("|---|---|---|---|")
    medians = {}
    for name, arm in arms.items():
        medians[name] = {k: statistics.median(v) for k, v in arm.items()}
        m = medians[name]
        print(f"| {name} | {m['seconds']:.2f} | {m['prompt']:.0f} | {m['evaluated']:.0f} |")
    one, sep = medians["one call, n samples"], medians["n separate calls"]
    print(
        f"separate / one call: wall time {sep['seconds'] / one['seconds']:.2f}x, "
        f"prompt tokens evaluated {sep['prompt'] / max(one['prompt'], 1):.1f}x"
    )
    print(json.dumps({"model": args.model, "n": args.n, "medians": medians}))


if __name__ == "__main__":
    main()
