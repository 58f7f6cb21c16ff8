"""What `sounding bench` and `sounding study` share: how an embedded model runs in a sweep (its engine),
opening a model for a sweep (falling back to in process when the server cannot start), and the
corpus identity of a run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sounding.cli.common import EXIT_UNAVAILABLE, err_console, fail

if TYPE_CHECKING:
    from sounding.evals.store import ResultStore
    from sounding.evals.sweep import RunConfig, RunIdentity, SweepSpec
    from sounding.settings import Settings

#: Questions in flight by default: the fastest measured on 2 cores (docs/benchmarks.md, "Sweep throughput").
DEFAULT_CONCURRENCY = 4
ENGINES = ("auto", "server", "process")


@dataclass
class ModelEngine:
    """How one model of a sweep runs: its settings (model set, backend decided) and questions in flight."""

    settings: Settings
    concurrency: int

    @property
    def served(self) -> bool:
        return self.settings.llm.backend == "llama-server"


def widest_call(spec: SweepSpec) -> int:
    """The most samples one LLM call of the sweep draws: its largest sample count, or a strategy's
    width (tree's candidate query sets, best-of-N's trajectories share a call's prefill)."""
    from sounding.agent.strategies import parse_variant

    widths = [max(spec.samples)]
    for label in spec.strategies:
        dials = parse_variant(label).dials
        widths += [int(dials[d]) for d in ("width", "n") if isinstance(dials.get(d), int)]
    return max(widths)


def _with_llm(settings: Settings, **fields: Any) -> Settings:
    return settings.model_copy(update={"llm": settings.llm.model_copy(update=fields)})


def choose_engines(
    settings: Settings,
    engine: str,
    concurrency: int,
    spec: SweepSpec,
    identity: RunIdentity,
    store: ResultStore,
    *,
    use_ray: bool = False,
    branches: int = 1,
    where: str = "",
) -> dict[str, ModelEngine]:
    """Each model's engine. An embedded model is served by llama.cpp's server (one pinned slot per
    question in flight and per branch, plus slots for a call's samples) unless ``engine`` is
    ``process`` or the server is not built (said in one line). The engine is part of the run key (a
    served model samples with the server's sampler chain), so with ``auto`` a run directory keeps the
    engine each model's runs were started with: a sweep resumed after the server was built goes on
    in process rather than starting over."""
    from sounding.tools.llm.llama_server import BUILD_HINT, server_binary

    engines: dict[str, ModelEngine] = {}
    for model in spec.models:
        own = _with_llm(settings, model=model)
        backend = own.llm.backend
        if use_ray or backend not in ("llama", "llama-server"):
            engines[model] = ModelEngine(own, concurrency)
            continue
        in_process = ModelEngine(_with_llm(own, backend="llama"), 1)
        # a question's branches run on threads of their own beside the question's: a slot each
        pinned = concurrency * (branches + 1 if branches > 1 else 1)
        served = ModelEngine(
            _with_llm(own, backend="llama-server", slots=pinned, sample_slots=widest_call(spec) - 1),
            concurrency,
        )
        if engine == "process" or (engine == "auto" and backend == "llama" and _mostly_in_process(
            model, in_process, served, spec, identity, store, where
        )):  # fmt: skip
            engines[model] = in_process
        elif not server_binary().is_file():
            if engine == "server" or backend == "llama-server":
                fail(
                    f"{where}--engine server: llama.cpp's server is not built ({server_binary()}): {BUILD_HINT}"
                )
            err_console.print(
                f"note: {where}llama.cpp's server is not built, so {model} runs in this process, one "
                f"question at a time ({BUILD_HINT}; then --concurrency batches questions)"
            )
            engines[model] = in_process
        else:
            engines[model] = served
    return engines


def _mostly_in_process(
    model: str,
    in_process: ModelEngine,
    served: ModelEngine,
    spec: SweepSpec,
    identity: RunIdentity,
    store: ResultStore,
    where: str,
) -> bool:
    """Whether the store holds more of this model's questions made in process than by the server."""
    from sounding.budgets.controllers import PolicyError
    from sounding.evals.sweep import run_configs

    one = spec.model_copy(update={"models": [model]})

    def done_under(chosen: ModelEngine) -> int:
        try:
            keys = {c.key for c in run_configs(one, chosen.settings, identity)} & set(store.runs())
        except PolicyError:
            return 0  # said by the caller's own run_configs, with its message
        return sum(len(store.done_questions(key)) for key in keys)

    if done_under(in_process) <= done_under(served):
        return False
    err_console.print(
        f"note: {where}{model}'s runs in this run directory were made in process: resuming them in "
        "process, one question at a time (--engine server starts separate runs)"
    )
    return True


def sweep_configs(spec: SweepSpec, engines: dict[str, ModelEngine], identity: RunIdentity) -> list[RunConfig]:
    """The run configs of every model, each under its own engine's settings."""
    from sounding.evals.sweep import run_configs

    return [
        config
        for model in spec.models
        for config in run_configs(
            spec.model_copy(update={"models": [model]}), engines[model].settings, identity
        )
    ]


def open_model(
    model: str,
    engines: dict[str, ModelEngine],
    spec: SweepSpec,
    identity: RunIdentity,
    *,
    engine: str,
    where: str = "",
) -> tuple[Any, list[RunConfig]]:
    """The model's LLM and its run configs. A server that is built but cannot start here is said in one
    line and the model runs in process (its configs then carry the in-process key; ``engines`` is
    updated); with ``--engine server`` it is an error. Checks the thinking cap fits the context."""
    from sounding.research import check_think_fits
    from sounding.tools.llm import make_llm
    from sounding.tools.llm.base import LLMError
    from sounding.tools.llm.llama_server import ServerStartError

    chosen = engines[model]
    try:
        llm = make_llm(chosen.settings)
    except ServerStartError as exc:
        if engine == "server":
            fail(f"{where}{model}: {exc}", EXIT_UNAVAILABLE)
        err_console.print(f"note: {where}{exc}; {model} runs in this process, one question at a time")
        engines[model] = chosen = ModelEngine(_with_llm(chosen.settings, backend="llama"), 1)
        try:
            llm = make_llm(chosen.settings)
        except LLMError as again:
            fail(f"{where}{model}: {again}", EXIT_UNAVAILABLE)
    except LLMError as exc:
        fail(f"{where}{model}: {exc}", EXIT_UNAVAILABLE)
    try:
        check_think_fits(llm, max(spec.thinks))
    except ValueError as exc:
        close_model(llm)
        fail(f"{where}{exc}")
    return llm, sweep_configs(spec.model_copy(update={"models": [model]}), engines, identity)


def close_model(llm: Any) -> None:
    """Stop what the sweep started for a model (its server); an in-process model has nothing to stop."""
    close = getattr(llm, "close", None)
    if close is not None:
        close()


def open_run_dir(out: Path, *, what: str, where: str = "") -> ResultStore:
    """The run directory's result store, the directory created if needed; a one-line error when it
    cannot be written or holds a store this version cannot append to (``what``: sweep or study)."""
    from sounding.evals.store import ResultStore, StoreError

    try:
        out.mkdir(parents=True, exist_ok=True)
        return ResultStore(out / "results.sqlite")
    except StoreError as exc:
        fail(f"{where}{exc}; the {what} will not append to it")
    except OSError as exc:
        fail(f"{where}cannot write the run directory {out}: {exc.strerror or exc}")


def corpus_identity(settings: Any, corpus_spec: str | None) -> str:
    """The corpus by name (kind and file name), never by absolute path."""
    if corpus_spec is None or settings.search.backend == "web":
        return "web"
    from sounding.tools.corpus import parse_corpus_spec

    return parse_corpus_spec(corpus_spec).name


def corpus_fingerprint(settings: Any, corpus_spec: str | None) -> str:
    """The content fingerprint of the passages searched (from the index manifest `make_search` built)."""
    if corpus_spec is None or settings.search.backend == "web":
        return "web"
    from sounding.tools.corpus import parse_corpus_spec
    from sounding.tools.search.store import IndexStore, read_manifest

    spec = parse_corpus_spec(corpus_spec)
    manifest = read_manifest(IndexStore(settings).folder(spec, "passages"))
    if manifest is None:
        from sounding.tools.search.store import source_fingerprint

        return source_fingerprint(spec)
    params = json.dumps(settings.search.model_dump(include={"passage_words", "passage_overlap", "rrf_k"}))
    return f"{manifest.passages_fingerprint}:{hashlib.sha256(params.encode()).hexdigest()[:8]}"
