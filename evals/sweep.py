"""Budget sweeps: models x breadths x seeds (x budgets), each run at the deepest depth, the largest
thinking cap and the most samples; the whole grid (depth x think x samples) read off one run per
question; one atomic group of rows (and the question's trace) per question in the store.

Readings, for a run of depth D, thinking caps T_1 < ... < T_max and N_max samples:

* depth d < D: the anytime answer after round d (as before);
* think T < T_max: each sample's answer forced after the first T tokens of the same reasoning;
* N < N_max samples: the vote of the first N samples is the answer (what a run asked for N samples
  draws, since sample i's seed does not depend on N); the scores are the exact mean over every size-N
  subset of the N_max samples, so a reading is not the luck of one subset;
* (think 0, samples 1) is the greedy draft of the round, which also steers the search, so every
  reading of one run shares one search trajectory.

Each reading's spend is what an independent run at that setting would have spent: the run's spend
minus its reasoning steps plus the reading's own (`Reasoning.usage`), priced in every unit.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from sounding.agent.nodes import PROMPTS
from sounding.agent.probe import run_probe
from sounding.agent.runner import ResearchResult, run_research
from sounding.budgets.controllers import PolicyError
from sounding.budgets.cost import CostModel, Usage
from sounding.budgets.features import FEATURE_GROUPS
from sounding.budgets.ledger import Charge
from sounding.evals.datasets import Sample, Suite
from sounding.evals.metrics import llm_judge, normalize_answer, supporting_recall
from sounding.evals.scorers import SCORERS, reading, reasoning_of
from sounding.evals.store import ResultStore, StoreWriteError
from sounding.factory import (
    build_deps,
    load_spec_policy,
    model_identity,
    prompts_hash,
    spec_fields_from_settings,
    strategy_fields,
)
from sounding.settings import Settings
from sounding.spec import RunSpec
from sounding.tools.llm.base import LLM, EngineGoneError
from sounding.tools.search.base import SearchBackend

MAX_DEPTH = 64
#: The metrics stored as columns of every row when a question is solved.
STORED_SCORERS = {name: SCORERS[name] for name in ("em", "f1", "cover_em")}


#: The run spec (``sounding/spec.py``) under the name the sweep code has always used.
RunConfig = RunSpec


#: Config fields that vary *within* one curve (its points) or across repeated measures (seeds): all
#: other fields must be equal for rows to share a curve.
CURVE_FREE_FIELDS = frozenset({"depth", "seed", "think", "think_caps", "samples", "sample_counts"})


def anytime_depths(name: str) -> bool:
    from sounding.agent.strategies import strategy

    return strategy(name).anytime_depths


def setting_identity(config: dict[str, Any]) -> str:
    """What a curve is: the run config without its depth, seed and reasoning grid."""
    kept = {k: v for k, v in config.items() if k not in CURVE_FREE_FIELDS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


class SweepSpec(BaseModel):
    suite: str
    limit: int | None
    depths: list[int]
    breadths: list[int]
    models: list[str]
    controller: str = "fixed"
    budgets: list[float | None] = [None]
    thinks: list[int] = [0]
    samples: list[int] = [1]
    verify: bool = False
    seeds: int = Field(default=1, ge=1)
    concurrency: int = 1
    retry_errors: bool = False
    verify_anytime: int = 0
    judge: str | None = None
    #: How each question's budget becomes an answer (agent/strategies): every listed strategy (with
    #: its dials, ``name:dial=value``) is its own run per model; think, samples and verify are the
    #: iterative strategy's. The decompose strategy's votes: ``vote_k``, ``vote_max_samples``.
    strategies: list[str] = ["iterative"]
    vote_k: int = 2
    vote_max_samples: int = 8
    #: A strategy's independent branches run this many at a time (machine-specific: not in the spec).
    workers: int = Field(default=1, ge=1, le=64)


class RunIdentity(BaseModel):
    """The parts of a run's identity that come from the machinery, not the sweep spec."""

    suite: str
    corpus: str
    corpus_fingerprint: str
    prompts: str = Field(default_factory=lambda: prompts_hash())


def run_configs(spec: SweepSpec, settings: Settings, identity: RunIdentity) -> list[RunConfig]:
    """The run specs of a sweep: one per model, breadth, budget and seed, each at the deepest depth,
    the largest thinking cap and the most samples (the smaller ones are read off its run)."""
    check_sweep(spec)
    configs: list[RunConfig] = []
    depth = max(spec.depths)
    run_settings = settings.model_copy(
        update={"budget": settings.budget.model_copy(update={"controller": spec.controller})}
    )
    return _configs(spec, settings, identity, run_settings, depth, configs)


def check_sweep(spec: SweepSpec) -> None:
    """A sweep must not claim reasoning its controller or strategy does not do (said before anything
    is loaded or built)."""
    if spec.controller != "fixed" and (max(spec.thinks) > 0 or max(spec.samples) > 1 or spec.verify):
        raise PolicyError(
            f"--think, --samples and --verify set the fixed controller's reasoning; the {spec.controller} "
            "controller takes its own from its policy (a run must not claim reasoning it did not do)"
        )
    from sounding.agent.strategies import UnknownStrategyError, parse_variant

    try:
        names = [parse_variant(s).name for s in spec.strategies]
    except UnknownStrategyError as exc:
        raise PolicyError(str(exc)) from None
    if "iterative" not in names and (max(spec.thinks) > 0 or max(spec.samples) > 1 or spec.verify):
        raise PolicyError(
            f"--think, --samples and --verify are the iterative strategy's reasoning; {', '.join(names)} "
            "do their own (decompose votes with --vote-k and --vote-max-samples)"
        )


def _configs(
    spec: SweepSpec,
    settings: Settings,
    identity: RunIdentity,
    run_settings: Settings,
    depth: int,
    configs: list[RunConfig],
) -> list[RunConfig]:
    from sounding.agent.strategies import parse_variant

    policy = load_spec_policy(run_settings, spec.models)
    common = spec_fields_from_settings(run_settings)
    for variant in [parse_variant(s) for s in spec.strategies]:
        reasoning = variant.name == "iterative"  # think, samples and verify are its dials
        _model_configs(
            spec, settings, identity, common, depth, policy, configs,
            strategy={
                **strategy_fields(variant.name, variant.dials),
                "think": max(spec.thinks) if reasoning else 0,
                "think_caps": sorted(set(spec.thinks)) if reasoning else [0],
                "samples": max(spec.samples) if reasoning else 1,
                "sample_counts": sorted(set(spec.samples)) if reasoning else [1],
                "verify": spec.verify and reasoning,
            },
        )  # fmt: skip
    return configs


def _model_configs(
    spec: SweepSpec,
    settings: Settings,
    identity: RunIdentity,
    common: dict[str, Any],
    depth: int,
    policy: Any,
    configs: list[RunConfig],
    *,
    strategy: dict[str, Any],
) -> None:
    for model in spec.models:
        model_id = model_identity(model, settings)
        # breadth is the iterative loop's dial: another strategy runs once, not once per breadth
        for breadth in spec.breadths if strategy.get("strategy", "iterative") == "iterative" else [1]:
            for budget in spec.budgets:
                for seed in range(spec.seeds):
                    configs.append(
                        RunConfig(
                            **{
                                **common,
                                "suite": identity.suite,
                                "model": model,
                                "model_id": model_id,
                                "prompts": identity.prompts,
                                "depth": depth,
                                "breadth": breadth,
                                **strategy,
                                "seed": seed,
                                "budget": budget,
                                "corpus": identity.corpus,
                                "corpus_fingerprint": identity.corpus_fingerprint,
                                "policy": policy,
                                "vote_k": spec.vote_k,
                                "vote_max_samples": spec.vote_max_samples,
                            }
                        )
                    )


def _titles_read_by_round(result: ResearchResult) -> dict[int, list[str]]:
    read: dict[int, list[str]] = {}
    for event in result.events:
        if event["kind"] == "read":
            read.setdefault(int(event["round"]), []).extend(event["passages"])
    return read


_reasonings = reasoning_of


def _reading(draft: dict[str, Any], think: int, n: int, golds: list[str]) -> tuple[str, dict[str, float]]:
    """The answer at (think, n samples) of one round's draft and its stored scores (exact subset mean)."""
    return reading(draft, think, n, golds, STORED_SCORERS)


def _reading_spend(
    drafts: list[dict[str, Any]],
    upto: dict[str, Any],
    charges: list[Charge],
    think: int,
    n: int,
    models: dict[str, CostModel],
) -> dict[str, Any]:
    """The spend at draft ``upto`` of a run at (think, n): the run's own spend then, minus every
    reasoning step so far, plus what the reading's reasoning would have cost on each of those rounds."""
    spend = json.loads(json.dumps(upto["spend"]))
    rounds = [d for d in drafts if d["round"] <= upto["round"] and d.get("reasoning")]
    if not rounds:
        return spend
    done = [c for c in charges if c.reasoning and c.round <= upto["round"]]
    own = Usage()
    for d in rounds:
        reasoning = _reasonings(d)
        assert reasoning is not None
        own = own + reasoning.usage(think, n)
    ran = Usage()
    for c in done:
        ran = ran + c.usage
    spend["prompt_tokens"] += own.prompt_tokens - ran.prompt_tokens
    spend["completion_tokens"] += own.completion_tokens - ran.completion_tokens
    spend["tokens"] = spend["prompt_tokens"] + spend["completion_tokens"]
    for unit in spend["cost"]:
        paid = sum(c.cost.get(unit, 0.0) for c in done)
        spend["cost"][unit] = round(spend["cost"][unit] - paid + models[unit].price(own), 12)
    return spend


def _reading_calls(drafts: list[dict[str, Any]], upto: dict[str, Any], think: int, n: int) -> int:
    """The reasoning calls a run at (think, n) would have made up to draft ``upto``."""
    reasonings = [_reasonings(d) for d in drafts if d["round"] <= upto["round"]]
    return sum(r.calls(think, n) for r in reasonings if r is not None)


def rows_for(
    config: RunConfig,
    sample: Sample,
    result: ResearchResult,
    judge: LLM | None,
    models: dict[str, CostModel] | None = None,
) -> list[dict[str, Any]]:
    """One row per (round 0..depth, thinking cap, sample count): the anytime answer at that setting
    and the spend it would have cost."""
    drafts = sorted(result.drafts, key=lambda d: d["round"])
    rounds_done = max((d["round"] for d in drafts), default=0)
    read_by_round = _titles_read_by_round(result)
    reasoned = any(d.get("reasoning") for d in drafts)
    settings = [(t, n) for t in config.think_caps for n in config.sample_counts] if reasoned else [(0, 1)]
    rows = []
    # a loop's anytime drafts are its smaller depths (iterative, tree, best_of_n); decompose's are only
    # its closed-book draft and its final answer (a smaller depth would have decomposed differently)
    depths = range(config.depth + 1) if anytime_depths(config.strategy) else sorted({0, config.depth})
    for depth in depths:
        at = [d for d in drafts if d["round"] <= depth]
        if not at:
            continue
        draft = at[-1]
        read_titles = [t for r, titles in read_by_round.items() if r <= depth for t in titles]
        charges = [c for c in result.charges if c.round <= max(draft["round"], 0)]
        for think, n in settings:
            reading = Reading(depth=depth, think=think, samples=n, draft=draft, charges=charges)
            answer, scores = _reading(draft, think, n, sample.answers)
            spend = (
                _reading_spend(drafts, draft, result.charges, think, n, models or {})
                if reasoned
                else draft["spend"]
            )
            full = think == config.think and n == config.samples
            rows.append(
                {
                    "run_key": config.key,
                    "question_id": sample.id,
                    "round": depth,
                    "think": think,
                    "samples": n,
                    "rounds_done": rounds_done,
                    "question": sample.question,
                    "qtype": sample.type,
                    "hops": sample.hops,
                    "answer": answer,
                    "golds": sample.answers,
                    "em": scores["em"],
                    "f1": scores["f1"],
                    "cover_em": scores["cover_em"],
                    "recall": supporting_recall(sample.supporting_titles, read_titles),
                    **_judged(judge, sample, answer),
                    "searches": spend["searches"],
                    "prompt_tokens": spend["prompt_tokens"],
                    "completion_tokens": spend["completion_tokens"],
                    "cost": spend["cost"],
                    "llm_calls": reading.llm_calls(full, drafts),
                    "spend_by_event": reading.spend_by_event(full),
                    "wall_seconds": result.wall_seconds,
                    "stop_reason": result.stop_reason,
                    "is_final": int(depth == config.depth),
                }
            )
    return rows


def _judged(judge: LLM | None, sample: Sample, answer: str) -> dict[str, Any]:
    """The judge's columns of a row: its verdict (None when there is no judge or it could not say)."""
    if judge is None:
        return {"judge": None, "judge_model": None}
    verdict = llm_judge(judge, sample.question, answer, sample.answers)
    return {
        "judge": None if verdict.correct is None else int(verdict.correct),
        "judge_model": verdict.judge_model,
    }


class Reading(BaseModel):
    """One setting read off a run: its round's draft and the run's charges up to that draft."""

    depth: int
    think: int
    samples: int
    draft: dict[str, Any]
    charges: list[Charge]

    def spend_by_event(self, full: bool) -> dict[str, float]:
        """Token-equivalents per event. The run's own reasoning charges count only at the run's own
        setting: a smaller reading's reasoning is in its spend, not in the run's events."""
        by_event: dict[str, float] = {}
        for c in self.charges:
            if c.reasoning and not full:
                continue
            by_event[c.event] = by_event.get(c.event, 0.0) + c.cost.get("tokens", 0.0)
        return by_event

    def llm_calls(self, full: bool, drafts: list[dict[str, Any]]) -> int:
        """The calls a run at this setting would have made: the run's paid calls (its reasoning only at
        its own setting), plus the reading's own reasoning calls otherwise."""
        paid = sum(1 for c in self.charges if c.usage.tokens > 0 and (full or not c.reasoning))
        return paid + (0 if full else _reading_calls(drafts, self.draft, self.think, self.samples))


STRATEGY_EVENTS = frozenset({"split", "step", "compose", "candidates"})


def trace_of(result: ResearchResult) -> dict[str, Any]:
    """What is kept of a run besides its rows: enough to re-score and re-vote offline."""
    return {
        "answer": result.answer,
        "drafts": result.drafts,
        "plan": result.plan,
        "queries": result.queries,
        "read_doc_ids": result.read_doc_ids,
        "charges": [c.model_dump() for c in result.charges],
        "stop_reason": result.stop_reason,
        # the strategies' own record: decompose's split, steps and votes; tree's valued candidates
        "strategy_events": [e for e in result.events if e["kind"] in STRATEGY_EVENTS],
    }


def question_features(
    config: RunConfig, question: str, settings: Settings, llm: LLM, search: SearchBackend
) -> dict[str, Any]:
    """Every feature group of one question, measured by the agent's probe on a ledger of its own
    (never in the rows' spend; ``Features.cost`` holds what each group cost, for ``sounding tune``)."""
    deps = build_deps(config, settings, llm, search)
    probe = run_probe(
        question, llm, search, deps.ledger, PROMPTS, groups=FEATURE_GROUPS, seed=config.seed, k=config.k
    )
    return probe.features.model_dump()


Tick = Callable[[str, dict[str, Any] | None], None]


class Outcome(BaseModel):
    """One question of one run, solved: its rows, trace and features, or the error it ended in."""

    question_id: str
    rows: list[dict[str, Any]] = []
    trace: dict[str, Any] | None = None
    features: dict[str, Any] | None = None
    error: str | None = None


def solve(
    config: RunConfig,
    sample: Sample,
    settings: Settings,
    llm: LLM,
    search: SearchBackend,
    *,
    judge: LLM | None = None,
    workers: int = 1,
) -> Outcome:
    """The one per-question body of every sweep (threads on this machine, Ray actors on a cluster):
    run the question with the spec's agent, read its grid of settings into rows, measure its features.
    A failure is that question's error; a store that cannot be written is not (it is raised)."""
    try:
        deps = build_deps(config, settings, llm, search, workers=workers)
        result = run_research(sample.question, deps, strategy=config.strategy)
        if result.degraded:
            return Outcome(question_id=sample.id, error=result.error or "degraded")
        rows = rows_for(config, sample, result, judge, deps.ledger.report_models)
        features = question_features(config, sample.question, settings, llm, search)
        return Outcome(question_id=sample.id, rows=rows, trace=trace_of(result), features=features)
    except (StoreWriteError, EngineGoneError):  # the disk or the engine, not the question: stop here,
        raise  # never record it as the question's error
    except Exception as exc:  # a bug on one question must not end a night's sweep
        # Recorded like any failed question (listed in the report, rerun with --retry-errors).
        return Outcome(question_id=sample.id, error=f"unexpected {type(exc).__name__}: {exc}")


def write_outcome(store: ResultStore, config: RunConfig, outcome: Outcome, tick: Tick) -> None:
    """The driver's half: a question's rows land once, whole, or its error does."""
    if outcome.error is not None:
        store.add_error(config.key, outcome.question_id, outcome.error)
        tick("error", None)
        return
    store.add_question(outcome.rows, outcome.trace, outcome.features)
    tick("done", outcome.rows[-1] if outcome.rows else None)


def pending_questions(
    store: ResultStore, config: RunConfig, samples: list[Sample], retry_errors: bool, tick: Tick
) -> tuple[list[Sample], list[Sample]]:
    """Register the run; the questions still to solve (failed ones only with ``retry_errors``) and the
    stored ones whose features are missing (stored before features existed). Ticks the rest."""
    store.register_run(config.key, json.loads(config.model_dump_json()))
    done = store.done_questions(config.key)
    errored = store.errored_questions(config.key)
    todo = [s for s in samples if s.id not in done and (retry_errors or s.id not in errored)]
    for s in samples:
        if s.id in done:
            tick("skipped", None)
        elif s.id in errored and not retry_errors:
            tick("error", None)
    featured = {q for _, q in store.features(config.key)}
    return todo, [s for s in samples if s.id in done and s.id not in featured]


class SweepWork(BaseModel):
    """What one run config of a sweep solves with: its questions, settings, backends and store. A
    study (several suites and models in one invocation) interleaves the questions of many of them."""

    model_config = {"arbitrary_types_allowed": True}

    config: RunConfig
    samples: list[Sample]
    settings: Settings
    llm: Any
    search: Any
    store: Any
    judge: Any = None
    workers: int = 1


def pending_work(work: SweepWork, retry_errors: bool, tick: Tick = lambda status, row: None) -> list[Sample]:
    """Register ``work``'s run, backfill the features of its stored questions that lack them (a cheap
    probe each; nothing else reruns), and return the questions still to solve."""
    todo, backfill = pending_questions(work.store, work.config, work.samples, retry_errors, tick)
    for sample in backfill:
        try:
            features = question_features(work.config, sample.question, work.settings, work.llm, work.search)
        except Exception as exc:  # the rows stay; tune says which questions lack features
            tick("features-error", {"question_id": sample.id, "error": str(exc)})
            continue
        work.store.add_features(work.config.key, sample.id, features)
    return todo


def run_questions(
    jobs: list[tuple[SweepWork, Sample]], *, concurrency: int, tick: Callable[[SweepWork], Tick]
) -> None:
    """Solve each (work, question) and write its outcome, ``concurrency`` at a time (threads; with a
    batching server, the questions in flight decode together). Each store serialises its own writes;
    a failure is that question's error only."""
    lock = threading.Lock()
    stopping = threading.Event()

    def one(work: SweepWork, sample: Sample) -> None:
        outcome = solve(
            work.config, sample, work.settings, work.llm, work.search, judge=work.judge, workers=work.workers
        )
        with lock:
            # once the sweep is stopping (Ctrl-C, a store or an engine gone), a question in flight that
            # failed may have failed only because its server is being stopped: left pending, unwritten
            if not (stopping.is_set() and outcome.error is not None):
                write_outcome(work.store, work.config, outcome, tick(work))

    if concurrency <= 1:
        for work, sample in jobs:
            one(work, sample)
        return
    pool = ThreadPoolExecutor(max_workers=concurrency)
    try:
        for future in as_completed([pool.submit(one, w, s) for w, s in jobs]):
            future.result()
    except BaseException:
        # Drop the queued questions now instead of running them all first; the ones in flight finish
        # (unwritten) or die with the process.
        with lock:
            stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def run_sweep_config(
    config: RunConfig,
    samples: list[Sample],
    settings: Settings,
    llm: LLM,
    search: SearchBackend,
    store: ResultStore,
    *,
    concurrency: int = 1,
    retry_errors: bool = False,
    judge: LLM | None = None,
    workers: int = 1,
    tick: Tick = lambda status, row: None,
) -> None:
    """Run every not-yet-done question of one config; safe to kill and rerun at any point, and to run
    with many threads (the store serialises its writes; a failure is that question's error only)."""
    work = SweepWork(
        config=config, samples=samples, settings=settings, llm=llm, search=search, store=store,
        judge=judge, workers=workers,
    )  # fmt: skip
    todo = pending_work(work, retry_errors, tick)
    run_questions([(work, s) for s in todo], concurrency=concurrency, tick=lambda _work: tick)


def verify_anytime(
    config: RunConfig,
    samples: list[Sample],
    depths: list[int],
    settings: Settings,
    llm: LLM,
    search: SearchBackend,
    store: ResultStore,
) -> dict[str, Any]:
    """Re-run a sample of questions independently at each smaller depth (at the run's own reasoning)
    and at each smaller (think, samples) reading (at the run's depth); compare with the stored rows."""
    rows = {(r["question_id"], r["round"], r["think"], r["samples"]): r for r in store.results(config.key)}
    settings_grid = [(t, n) for t in config.think_caps for n in config.sample_counts]
    checks: list[tuple[int, int, int]] = [
        (d, config.think, config.samples) for d in depths if d < config.depth
    ]
    checks += [(config.depth, t, n) for t, n in settings_grid if (t, n) != (config.think, config.samples)]
    checked = agreed = 0
    for sample in samples:
        for depth, think, n in checks:
            row = rows.get((sample.id, depth, think, n))
            if row is None:
                continue
            deps = build_deps(config, settings, llm, search, depth=depth, think=think, samples=n)
            result = run_research(sample.question, deps, strategy=config.strategy)
            agree = normalize_answer(row["answer"]) == normalize_answer(result.answer)
            store.add_anytime_check(
                config.key, sample.id, depth, row["answer"], result.answer, agree, think=think, samples=n
            )
            checked += 1
            agreed += int(agree)
    return {"checked": checked, "agreed": agreed, "rate": agreed / checked if checked else None}


def manifest_depths(manifest: dict[str, Any]) -> dict[str, list[int]]:
    """The depths the sweeps into a run directory asked for, per controller. Manifests written before
    ``depths`` existed hold only their last sweep's spec."""
    spec = manifest["spec"]
    return manifest.get("depths") or {spec["controller"]: spec["depths"]}


def sweep_manifest(path: Path, spec: SweepSpec, argv: list[str], suite: Suite) -> None:
    import platform
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for dist in ("sounding", "langgraph", "llama_cpp_python", "sentence-transformers", "numpy", "scipy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    # every command that wrote into this run directory, oldest first (a run dir may hold several sweeps)
    history: list[list[str]] = []
    # the depths asked for, per controller, over every sweep into this directory: the analysis reads
    # each curve at its own sweep's depths (a tuned sweep to depth 3 must not drop a fixed curve's 4, 8)
    depths: dict[str, list[int]] = {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
            history = previous.get("commands") or [previous["command"]]
            depths = manifest_depths(previous)
        except (ValueError, KeyError, TypeError):
            history, depths = [], {}
    if argv not in history:
        history.append(argv)
    depths[spec.controller] = sorted(set(depths.get(spec.controller, [])) | set(spec.depths))
    manifest = {
        "command": argv,
        "commands": history,
        "depths": depths,
        "spec": json.loads(spec.model_dump_json()),
        "suite": suite.name,
        "n_questions": len(suite.samples),
        "versions": versions,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.node()}",
    }
    path.write_text(json.dumps(manifest, indent=2))
