"""Is the native llama.cpp build safe on this CPU? A smoke generation in a subprocess, and what it ran on.

llama-cpp-python is compiled for the CPU that builds it, and a native library that takes a broken path
(llama.cpp's AMX matrix code segfaults on some Sapphire Rapids machines) kills the whole process at the
first generation. So the check runs one short completion from the smallest embedded model in a child
process with Python's faulthandler on: a crash becomes a result (its signal and the Python frame it died
in), never a dead caller. ``scripts/bootstrap.sh`` runs it at the end of set-up (``--setup``), and
``sounding doctor`` reports it beside the CPU's vector and matrix features and the features llama.cpp was
built with. ``scripts/llama-build-flags.sh`` says how the build avoids AMX.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

#: Instruction-set flags of /proc/cpuinfo that decide which llama.cpp kernels can run.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni")
MATRIX_PREFIX = "amx"
SMOKE_PROMPT = "Answer in one word. What is the capital of France?"
SMOKE_TIMEOUT_S = 300.0
#: Spelled out: run as a script this module is `__main__`, which `python -m` cannot start again.
CHILD_MODULE = "sounding.tools.llm.native"
#: How a crashed child is reported: a native crash, not a Python error.
FATAL_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT})


class CpuFeatures(BaseModel):
    """The processor's instruction sets that matter to llama.cpp, read from /proc/cpuinfo."""

    model_name: str
    vector: list[str]
    avx512: list[str]
    matrix: list[str]

    def summary(self) -> str:
        parts = [" ".join(self.vector) or "no AVX"]
        parts.append(" ".join(self.avx512) if self.avx512 else "no AVX-512")
        parts.append(" ".join(self.matrix) if self.matrix else "no AMX")
        return "; ".join(parts)


class SmokeResult(BaseModel):
    """One smoke generation: ``ok``, ``crashed`` (killed by a signal), ``failed`` (an error), ``timeout``,
    or ``skipped`` (no embedded model installed)."""

    outcome: Literal["ok", "crashed", "failed", "timeout", "skipped"]
    model: str | None = None
    seconds: float = 0.0
    text: str = ""
    #: llama.cpp's own report of the features it was compiled with (``llama_print_system_info``).
    built_for: list[str] = []
    signal: str | None = None
    #: Where it died (faulthandler's frames) or the error's last lines.
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "skipped")


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFeatures:
    """The CPU's vector (AVX, AVX2, AVX-512) and matrix (AMX) features; empty where unreadable."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return CpuFeatures(model_name="unknown (no /proc/cpuinfo)", vector=[], avx512=[], matrix=[])
    flags: set[str] = set()
    name = "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags" and not flags:
            flags = set(value.split())
        elif key == "model name" and name == "unknown":
            name = value.strip()
    return CpuFeatures(
        model_name=name,
        vector=[flag for flag in VECTOR_FLAGS if flag in flags],
        avx512=sorted(flag for flag in flags if flag.startswith("avx512")),
        matrix=sorted(flag for flag in flags if flag.startswith(MATRIX_PREFIX)),
    )


def parse_system_info(info: str) -> list[str]:
    """The features llama.cpp says it was built with: ``"CPU : AVX = 1 | AMX_INT8 = 0 |"`` -> ``["AVX"]``."""
    features = []
    for field in info.replace("\n", "|").split("|"):
        name, _, value = field.rpartition("=")
        name = name.split(":")[-1].strip()
        if name and value.strip() == "1":
            features.append(name)
    return features


def smallest_model_path() -> tuple[str, Path] | None:
    """The smallest embedded model whose weights are installed, as a readable GGUF path (no assembly)."""
    from sounding.tools.llm.registry import (
        EMBEDDED_MODELS,
        ModelError,
        locate_installed_part,
        parts_installed,
    )

    for model in sorted(EMBEDDED_MODELS.values(), key=lambda m: m.n_params):
        if len(model.parts) != 1 or not parts_installed(model)[0]:
            continue  # a multi-part model would need assembling into the cache first: not for a smoke test
        try:
            return model.name, locate_installed_part(model.parts[0])
        except ModelError:
            continue
    return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def fault_frames(stderr: str, limit: int = 6) -> str:
    """faulthandler's report cut to its headline and innermost frames (where the process died)."""
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if start is None:
        return "\n".join(lines[-limit:])
    head = [lines[start]]
    frames = [line.strip() for line in lines[start + 1 :] if line.strip().startswith("File ")]
    return "\n".join(head + frames[:limit])


def run_smoke(
    model_path: Path | None = None,
    *,
    model_name: str | None = None,
    timeout: float = SMOKE_TIMEOUT_S,
    child: Sequence[str] | None = None,
) -> SmokeResult:
    """Run one short completion in a child process; a crash, error or hang is a result, never raised.

    ``child`` replaces the child command (tests use it to crash a real process on purpose).
    """
    if child is None:
        if model_path is None:
            found = smallest_model_path()
            if found is None:
                return SmokeResult(outcome="skipped", detail="no single-file embedded model is installed")
            model_name, model_path = found
        child = [sys.executable, "-X", "faulthandler", "-m", CHILD_MODULE, "--child", str(model_path)]
    start = time.monotonic()
    try:
        done = subprocess.run(list(child), capture_output=True, text=True, timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired:
        return SmokeResult(
            outcome="timeout", model=model_name, seconds=timeout, detail=f"no answer in {timeout:.0f} s"
        )
    seconds = time.monotonic() - start
    if done.returncode < 0:
        return SmokeResult(
            outcome="crashed",
            model=model_name,
            seconds=seconds,
            signal=_signal_name(-done.returncode),
            detail=fault_frames(done.stderr),
        )
    if done.returncode != 0:
        return SmokeResult(
            outcome="failed", model=model_name, seconds=seconds, detail=fault_frames(done.stderr)
        )
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return SmokeResult(
            outcome="failed",
            model=model_name,
            seconds=seconds,
            detail=f"unreadable output: {done.stdout[-200:]!r}",
        )
    text = str(report.get("text", ""))
    return SmokeResult(
        outcome="ok" if text.strip() else "failed",
        model=model_name,
        seconds=seconds,
        text=text,
        built_for=parse_system_info(str(report.get("system_info", ""))),
        detail="" if text.strip() else "the model generated nothing",
    )


def _child(model_path: str) -> None:
    """The child's body: load llama.cpp, generate a few tokens, print one JSON line."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    llama = llama_cpp.Llama(
        model_path=model_path, n_ctx=256, n_threads=min(2, os.cpu_count() or 1), verbose=False
    )
    out: Any = llama.create_chat_completion(
        [{"role": "user", "content": SMOKE_PROMPT}], max_tokens=8, temperature=0.0
    )
    text = out["choices"][0]["message"]["content"] or ""
    print(
        json.dumps(
            {
                "text": text,
                "system_info": info.decode(errors="replace") if isinstance(info, bytes) else str(info),
            }
        )
    )


def way_out(result: SmokeResult) -> str:
    """One message for set-up and doctor: the library, what it was built for, what the CPU has, the way out."""
    cpu = cpu_features()
    what = {
        "crashed": f"crashed with {result.signal}",
        "timeout": "did not finish",
        "failed": "failed",
    }.get(result.outcome, result.outcome)
    where = result.detail.replace("\n", " | ") if result.detail else "no report"
    built = " ".join(result.built_for) or "unknown (it died before reporting)"
    return (
        f"llama-cpp-python {what} at its smoke generation ({result.model}). "
        f"It was built for: {built}. This CPU ({cpu.model_name}) has: {cpu.summary()}. Where: {where}. "
        "Way out: rebuild it without any cached wheel (rm -rf ~/.cache/sounding/wheels .venv && make setup); "
        "if that crashes too, build for a fixed instruction set instead of this CPU: "
        "CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON' make setup"
    )


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--child"] and len(argv) == 2:
        _child(argv[1])
        return 0
    if list(argv) == ["--setup"]:
        result = run_smoke()
        if result.outcome == "skipped":
            print(f"sounding: smoke generation skipped: {result.detail}", file=sys.stderr)
            return 0
        if result.ok:
            print(
                f"sounding: smoke generation ok ({result.model}, {result.seconds:.1f} s, "
                f"llama.cpp built for {' '.join(result.built_for)})",
                file=sys.stderr,
            )
            return 0
        print(f"sounding: {way_out(result)}", file=sys.stderr)
        return 1
    print("usage: python -m sounding.tools.llm.native --setup | --child MODEL.gguf", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
