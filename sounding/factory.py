"""The one place that wires the agent: a run spec and the machine's settings -> the agent.

Every caller builds its agent here: `sounding ask` (``spec_from_settings``), sweeps on this machine and on
Ray (``evals.sweep.run_configs`` makes the specs), `eval-reports`, LangGraph Studio (``agent/studio.py``,
from its runnable config) and the benchmarks. The spec (``sounding/spec.py``) holds everything that
changes an answer or a cost; the settings add only what belongs to the machine (the cache home, where a
latency table lies). So two callers with the same spec build the same agent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sounding.agent.nodes import PROMPTS, AgentDeps, EventSink
from sounding.budgets.controllers import (
    AdaptiveController,
    AllocationPolicy,
    Controller,
    FixedController,
    PolicyError,
    calibrated_policy,
    check_policy_model,
    make_controller,
)
from sounding.budgets.tuned import TunedController, TunedPolicy, check_tuned_model, load_tuned_policy
from sounding.research import make_deps
from sounding.settings import Settings
from sounding.spec import RunSpec
from sounding.tools.llm.base import LLM
from sounding.tools.relevance import EmbeddingRelatedness, Relatedness
from sounding.tools.search.base import SearchBackend


def prompts_hash() -> str:
    """sha256 of the research prompts (agent/prompts/research.toml), the ones every format's loop uses."""
    import json

    return hashlib.sha256(json.dumps(PROMPTS, sort_keys=True).encode()).hexdigest()[:16]


def model_identity(model: str, settings: Settings, *, hash_files: bool = True) -> str:
    """The weights' identity: pinned sha256 of an embedded model, the file's sha256 for a GGUF path
    (its name only with ``hash_files=False``: `ask` stores nothing under the key, and hashing a
    gigabyte costs seconds), and the served name for an endpoint (what it serves, not where)."""
    from sounding.tools.llm.registry import EMBEDDED_MODELS, sha256_file

    backend = settings.llm.backend
    if backend not in ("llama", "llama-server"):  # the embedded model's weights, in process or served
        return f"{backend}:{model}"
    if model in EMBEDDED_MODELS:
        return f"sha256:{EMBEDDED_MODELS[model].sha256}"
    path = Path(model).expanduser()
    return f"sha256:{sha256_file(path)}" if hash_files and path.is_file() else f"file:{path.name}"


def load_spec_policy(settings: Settings, models: list[str]) -> AllocationPolicy | TunedPolicy | None:
    """The calibrated or tuned controller's policy, read once and checked against every model, so it is
    stored in full with each run (a changed file is a different run)."""
    b = settings.budget
    if b.controller == "calibrated":
        policy = calibrated_policy(b.policy_file)
        for model in models:
            check_policy_model(policy, model, b.policy_file)
        return policy
    if b.controller == "tuned":
        if b.policy_file is None:
            raise PolicyError("the tuned controller needs a policy written by `sounding tune`: --policy FILE")
        tuned = load_tuned_policy(b.policy_file)
        for model in models:
            check_tuned_model(tuned, model, b.policy_file)
        return tuned
    return None


def latency_identity(settings: Settings) -> str | None:
    """The latency table's hash when it prices the run (``unit: latency``); None otherwise."""
    if settings.budget.unit != "latency":
        return None
    path = settings.budget.latency_table or settings.home / "latency.json"
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}" if path.is_file() else "default"


def spec_fields_from_settings(settings: Settings) -> dict[str, Any]:
    """The spec's fields that the settings decide (prices, caps, sampling, retrieval, controller)."""
    b, llm = settings.budget, settings.llm
    return {
        "model": llm.model,
        "llm_backend": llm.backend,
        "temperature": llm.temperature,
        "sample_temperature": llm.sample_temperature,
        "seed": llm.seed,
        "n_ctx": llm.n_ctx,
        "structured_output": llm.structured_output if llm.backend == "http" else "json_schema",
        "controller": b.controller,
        "depth": b.depth,
        "breadth": b.breadth,
        "think": b.think,
        "think_caps": [b.think],
        "samples": b.samples,
        "sample_counts": [b.samples],
        "verify": b.verify,
        "unit": b.unit,
        "budget": b.budget,
        "max_searches": b.max_searches,
        "max_tokens": b.max_tokens,
        "search_tokens": b.search_tokens,
        "fetch_tokens": b.fetch_tokens,
        "usd_prompt_per_mtok": b.usd_prompt_per_mtok,
        "usd_completion_per_mtok": b.usd_completion_per_mtok,
        "usd_per_search": b.usd_per_search,
        "usd_per_fetch": b.usd_per_fetch,
        "latency_table": latency_identity(settings),
        "search_backend": settings.search.backend,
        "k": settings.search.k,
    }


def strategy_fields(name: str, dials: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spec's strategy fields: its name, its complete dials and its own prompts' hash (an unknown
    strategy or a bad dial is refused here, before anything is built)."""
    from sounding.agent.strategies import dials_for, strategy_prompts_hash

    return {
        "strategy": name,
        "dials": dials_for(name, dials),
        "strategy_prompts": strategy_prompts_hash(name),
    }


def spec_from_settings(
    settings: Settings,
    *,
    format: str = "short",
    unsupported: str = "mark",
    composer: str | None = None,
    suite: str = "ask",
    corpus_fingerprint: str = "",
    strategy: str = "iterative",
    vote_k: int = 2,
    vote_max_samples: int = 8,
    dials: dict[str, Any] | None = None,
    relevance: str | None = None,
) -> RunSpec:
    """The spec of one `ask` (or Studio) run: the settings' model, budget and controller, ask's mode.
    A run that may write a report judges relevance by embeddings and composes its sections by
    extraction unless ``relevance`` and ``composer`` say otherwise (docs/reports.md, "Composing")."""
    from sounding.tools.corpus import parse_corpus_spec

    corpus = "web" if settings.search.backend == "web" else parse_corpus_spec(settings.search.corpus).name
    return RunSpec(
        suite=suite,
        model_id=model_identity(settings.llm.model, settings, hash_files=False),
        prompts=prompts_hash(),
        corpus=corpus,
        corpus_fingerprint=corpus_fingerprint,
        policy=load_spec_policy(settings, [settings.llm.model]),
        format=format,  # checked by the spec (a Literal)
        unsupported=unsupported,
        composer=composer or ("paragraph" if format == "short" else "extract"),
        harness=False,
        relevance=relevance or ("lexical" if format == "short" else "embedding"),
        vote_k=vote_k,
        vote_max_samples=vote_max_samples,
        **strategy_fields(strategy, dials),
        **spec_fields_from_settings(settings),
    )


def controller_for(spec: RunSpec, *, depth: int | None = None, think: int | None = None,
                   samples: int | None = None) -> Controller:  # fmt: skip
    """The spec's controller (its policy as stored with the run, never the file as it is now).
    ``depth``/``think``/``samples`` make the fixed controller of an independent smaller run."""
    if spec.controller == "fixed":
        return FixedController(
            spec.depth if depth is None else depth,
            spec.breadth,
            k=spec.k,
            read=spec.read,
            think=spec.think if think is None else think,
            samples=spec.samples if samples is None else samples,
            verify=spec.verify,
        )
    if isinstance(spec.policy, TunedPolicy):
        return TunedController(spec.policy)
    if spec.policy is not None:
        return AdaptiveController(spec.policy, name=spec.controller)
    return make_controller(spec.controller, depth=spec.depth, breadth=spec.breadth)


def settings_for(spec: RunSpec, settings: Settings) -> Settings:
    """The machine's settings with every answer- or cost-changing field taken from the spec."""
    return settings.model_copy(
        update={
            "budget": settings.budget.model_copy(
                update={
                    "budget": spec.budget,
                    "unit": spec.unit,
                    "max_searches": spec.max_searches,
                    "max_tokens": spec.max_tokens,
                    "search_tokens": spec.search_tokens,
                    "fetch_tokens": spec.fetch_tokens,
                    "usd_prompt_per_mtok": spec.usd_prompt_per_mtok,
                    "usd_completion_per_mtok": spec.usd_completion_per_mtok,
                    "usd_per_search": spec.usd_per_search,
                    "usd_per_fetch": spec.usd_per_fetch,
                }
            ),
            "llm": settings.llm.model_copy(
                update={
                    "seed": spec.seed,
                    "temperature": spec.temperature,
                    "sample_temperature": spec.sample_temperature,
                }
            ),
        }
    )


def build_deps(
    spec: RunSpec,
    settings: Settings,
    llm: LLM,
    search: SearchBackend,
    *,
    on_event: EventSink | None = None,
    depth: int | None = None,
    think: int | None = None,
    samples: int | None = None,
    workers: int = 1,
    relatedness: Relatedness | None = None,
) -> AgentDeps:
    """The agent's dependencies for one question of the spec's run: a fresh ledger priced by the spec,
    its controller, seed, reasoning grid and mode. ``depth``/``think``/``samples``: an independent run
    at a smaller setting (what the harness checks its readings against). ``workers``: how many of the
    strategy's independent branches run at once (machine-specific, so not part of the spec).
    ``relatedness``: the embedding model a spec with ``relevance="embedding"`` uses; a caller running
    many questions passes one, so the model loads once (otherwise each agent loads its own, lazily)."""
    from sounding.agent.strategies import dials_for

    # an unknown strategy or bad dials are refused before anything is built
    dials = dials_for(spec.strategy, spec.dials)
    independent = depth is not None or think is not None or samples is not None
    return make_deps(
        settings_for(spec, settings),
        llm,
        search,
        controller=controller_for(spec, depth=depth, think=think, samples=samples),
        on_event=on_event,
        closed_book_draft=spec.harness,
        improve_final=not spec.harness,
        think_caps=spec.think_caps if spec.harness and not independent else [],
        answer_format=spec.format,
        unsupported=spec.unsupported,
        composer=spec.composer,
        vote_k=spec.vote_k,
        vote_max_samples=spec.vote_max_samples,
        dials=dials,
        workers=workers,
        relatedness=(relatedness or EmbeddingRelatedness()) if spec.relevance == "embedding" else None,
    )


@dataclass
class Agent:
    """A wired agent: its dependencies and the compiled graph of its strategy."""

    spec: RunSpec
    deps: AgentDeps
    graph: Any


def build_agent(
    spec: RunSpec,
    settings: Settings,
    llm: LLM,
    search: SearchBackend,
    *,
    on_event: EventSink | None = None,
    checkpointer: Any = None,
) -> Agent:
    """The agent a spec describes, with its strategy's graph compiled (what Studio serves)."""
    from sounding.agent.strategies import strategy

    deps = build_deps(spec, settings, llm, search, on_event=on_event)
    return Agent(
        spec=spec, deps=deps, graph=strategy(spec.strategy).build_graph(deps, checkpointer=checkpointer)
    )
