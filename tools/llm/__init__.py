"""LLM backends behind one `LLM` protocol, and `make_llm` to build the one the settings ask for."""

from __future__ import annotations

from pathlib import Path

from sounding.settings import Settings
from sounding.tools.llm.base import (
    LLM,
    Completion,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMOutputError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnavailableError,
    Message,
    UnknownModelError,
)
from sounding.tools.llm.registry import EMBEDDED_MODELS, ModelError, assemble

__all__ = [
    "EMBEDDED_MODELS",
    "LLM",
    "Completion",
    "LLMConnectionError",
    "LLMError",
    "LLMHTTPError",
    "LLMOutputError",
    "LLMResponseError",
    "LLMTimeoutError",
    "LLMUnavailableError",
    "Message",
    "UnknownModelError",
    "make_llm",
    "resolve_model_file",
]


def resolve_model_file(model: str, settings: Settings) -> tuple[Path, str, int | None]:
    """A registered name (assembled on first use) or a GGUF path -> (path, display name, n_params)."""
    if model in EMBEDDED_MODELS:
        spec = EMBEDDED_MODELS[model]
        try:
            return assemble(spec, settings.models_dir), spec.name, spec.n_params
        except ModelError as exc:
            raise LLMUnavailableError(f"{exc}\n(model {model}: {spec.install_hint})") from exc
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf" or path.exists():
        if not path.is_file():
            raise UnknownModelError(f"model file not found: {path}")
        return path, path.stem, None
    known = ", ".join(EMBEDDED_MODELS)
    raise UnknownModelError(f"unknown model {model!r}: use one of {known}, or a path to a .gguf file")


def make_llm(settings: Settings) -> LLM:
    """Build the LLM backend named by ``settings.llm.backend``."""
    cfg = settings.llm
    if cfg.backend == "http":
        from sounding.tools.llm.openai_http import OpenAIHTTPLLM

        if not cfg.base_url:
            raise LLMUnavailableError(
                "the http backend needs a base URL: --llm-url or SOUNDING_LLM__BASE_URL"
            )
        spec = EMBEDDED_MODELS.get(cfg.model)
        return OpenAIHTTPLLM(
            cfg.base_url,
            cfg.model,
            api_key=cfg.api_key.get_secret_value() if cfg.api_key else None,
            structured_output=cfg.structured_output,
            timeout_s=cfg.timeout_s,
            deadline_s=cfg.deadline_s,
            max_retries=cfg.max_retries,
            backoff_base_s=cfg.backoff_base_s,
            backoff_max_s=cfg.backoff_max_s,
            temperature=cfg.temperature,
            seed=cfg.seed,
            n_params=cfg.n_params or (spec.n_params if spec else None),
        )
    if cfg.backend == "vllm":
        from sounding.tools.llm.vllm_inprocess import VLLMInProcessLLM

        spec = EMBEDDED_MODELS.get(cfg.model)
        return VLLMInProcessLLM(
            cfg.model,
            temperature=cfg.temperature,
            seed=cfg.seed,
            n_params=cfg.n_params or (spec.n_params if spec else None),
        )
    path, name, n_params = resolve_model_file(cfg.model, settings)
    if cfg.backend == "llama-server":
        from sounding.tools.llm.llama_server import LlamaServer, ServedLlamaLLM

        slots = cfg.slots * (1 + cfg.sample_slots)  # a pinned slot per question, then its samples'
        server = LlamaServer(path, slots=slots, n_ctx=cfg.n_ctx, threads=cfg.n_threads, alias=name)
        return ServedLlamaLLM(
            server,
            name=name,
            n_params=cfg.n_params or n_params,
            pinned=cfg.slots,
            temperature=cfg.temperature,
            seed=cfg.seed,
            timeout_s=max(cfg.timeout_s, 600.0),
        )
    from sounding.tools.llm.llama_cpp import LlamaCppLLM

    return LlamaCppLLM(
        path,
        name=name,
        n_params=cfg.n_params or n_params,
        n_ctx=cfg.n_ctx,
        n_threads=cfg.n_threads,
        temperature=cfg.temperature,
        seed=cfg.seed,
    )
