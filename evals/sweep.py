"""Budget sweeps: models x breadths x seeds (x budgets), each run at the deepest depth, the whole
depth curve read off its anytime answers, one atomic group of rows per question in the store."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sounding import __version__
from sounding.agent.nodes import AgentDeps
from sounding.agent.runner import ResearchResult, run_research
from sounding.budgets.controllers import (
    AdaptiveController,
    AllocationPolicy,
    FixedController,
    check_policy_model,
    make_controller,
    tuned_policy,
)
from sounding.evals.datasets import Sample, Suite
from sounding.evals.metrics import llm_judge, normalize_answer, score_answer, supporting_recall
from sounding.evals.store import ResultStore
from sounding.research import make_ledger
from sounding.settings import Settings
from sounding.tools.llm.base import LLM
from sounding.tools.search.base import SearchBackend


class RunConfig(BaseModel):
    """Everything that determines a run's answers; its hash keys the rows in the store."""

    suite: str
    model: str
    controller: str
    depth: int
    breadth: int
    seed: int
    unit: str
    budget: float | None
    max_searches: int | None
    search_backend: str
    corpus: str
    k: int = 5
    read: int = 3
    sounding_version: str = __version__
    #: The tuned controller's allocation policy, in full: two policy files must not share a run.
    policy: AllocationPolicy | None = None

    @property
    def key(self) -> str:
        # Without a policy the field is left out, so runs stored before it existed keep their keys.
        exclude = {"policy"} if self.policy is None else set()
        return hashlib.sha256(self.model_dump_json(exclude=exclude).encode()).hexdigest()[:16]


class SweepSpec(BaseModel):
    suite: str
    limit: int | None
    depths: list[int]
    breadths: list[int]
    models: list[str]
    controller: str = "fixed"
    budgets: list[float | None] = [None]
    seeds: int = 1
    concurrency: int = 1
    retry_errors: bool = False
    verify_anytime: int = 0
    judge: str | None = None


def run_configs(spec: SweepSpec, settings: Settings, corpus: str) -> list[RunConfig]:
    configs = []
    depth = max(spec.depths)
    policy = None
    if spec.controller == "tuned":
        policy = tuned_policy(settings.budget.policy_file)
        for model in spec.models:
            check_policy_model(policy, model, settings.budget.policy_file)
    for model in spec.models:
        for breadth in spec.breadths:
            for budget in spec.budgets:
                for seed in range(spec.seeds):
                    configs.append(
                        RunConfig(
                            suite=spec.suite,
                            model=model,
                            controller=spec.controller,
                            depth=depth,
                            breadth=breadth,
                            seed=seed,
                            unit=settings.budget.unit,
                            budget=budget,
                            max_searches=settings.budget.max_searches,
                            search_backend=settings.search.backend,
                            corpus=corpus,
                            policy=policy,
                        )
                    )
    return configs


def _titles_read_by_round(result: ResearchResult) -> dict[int, list[str]]:
    read: dict[int, list[str]] = {}
    for event in result.events:
        if event["kind"] == "read":
            read.setdefault(int(event["round"]), []).extend(event["passages"])
    return read


def rows_for(
    config: RunConfig, sample: Sample, result: ResearchResult, judge: LLM | None
) -> list[dict[str, Any]]:
    """One row per round 0..depth: the anytime answer at that depth and the spend it had cost."""
    drafts = sorted(result.drafts, key=lambda d: d["round"])
    rounds_done = max((d["round"] for d in drafts), default=0)
    read_by_round = _titles_read_by_round(result)
    rows = []
    for depth in range(config.depth + 1):
        at = [d for d in drafts if d["round"] <= depth]
        if not at:
            continue
        draft = at[-1]
        scores = score_answer(draft["answer"], sample.answers)
        read_titles = [t for r, titles in read_by_round.items() if r <= depth for t in titles]
        charges = [c for c in result.charges if c["round"] <= max(draft["round"], 0)]
        by_event: dict[str, float] = {}
        for c in charges:
            by_event[c["event"]] = by_event.get(c["event"], 0.0) + c["cost"].get("tokens", 0.0)
        verdict = (
            llm_judge(judge, sample.question, draft["answer"], sample.answers) if judge is not None else None
        )
        rows.append(
            {
                "run_key": config.key,
                "question_id": sample.id,
                "round": depth,
                "rounds_done": rounds_done,
                "question": sample.question,
                "qtype": sample.type,
                "hops": sample.hops,
                "answer": draft["answer"],
                "golds": sample.answers,
                "em": scores.em,
                "f1": scores.f1,
                "cover_em": scores.cover_em,
                "recall": supporting_recall(sample.supporting_titles, read_titles),
                "judge": None if verdict is None or verdict.correct is None else int(verdict.correct),
                "judge_model": verdict.judge_model if verdict else None,
                "searches": draft["spend"]["searches"],
                "prompt_tokens": draft["spend"]["prompt_tokens"],
                "completion_tokens": draft["spend"]["completion_tokens"],
                "cost": draft["spend"]["cost"],
                "llm_calls": sum(
                    1 for c in charges if c["usage"]["prompt_tokens"] + c["usage"]["completion_tokens"] > 0
                ),
                "spend_by_event": by_event,
                "wall_seconds": result.wall_seconds,
                "stop_reason": result.stop_reason,
                "is_final": int(depth == config.depth),
            }
        )
    return rows


def make_run_deps(
    config: RunConfig, settings: Settings, llm: LLM, search: SearchBackend, depth: int | None = None
) -> AgentDeps:
    """Deps for one question of a run: a fresh ledger, the run's controller, harness-mode flags."""
    run_settings = settings.model_copy(
        update={
            "budget": settings.budget.model_copy(
                update={"budget": config.budget, "unit": config.unit, "max_searches": config.max_searches}
            )
        }
    )
    if config.controller == "fixed":
        controller: Any = FixedController(
            config.depth if depth is None else depth, config.breadth, k=config.k, read=config.read
        )
    elif config.policy is not None:  # the policy stored with the run, not whatever file is there now
        controller = AdaptiveController(config.policy, name=config.controller)
    else:
        controller = make_controller(config.controller, depth=config.depth, breadth=config.breadth)
    return AgentDeps(
        llm=llm,
        search=search,
        ledger=make_ledger(run_settings, llm),
        controller=controller,
        closed_book_draft=True,
        improve_final=False,
    )


Tick = Callable[[str, dict[str, Any] | None], None]


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
    tick: Tick = lambda status, row: None,
) -> None:
    """Run every not-yet-done question of one config; safe to kill and rerun at any point."""
    store.register_run(config.key, json.loads(config.model_dump_json()))
    done = store.done_questions(config.key)
    errored = store.errored_questions(config.key)
    todo = [s for s in samples if s.id not in done and (retry_errors or s.id not in errored)]
    for s in samples:
        if s.id in done:
            tick("skipped", None)
        elif s.id in errored and not retry_errors:
            tick("error", None)
    lock = threading.Lock()

    def one(sample: Sample) -> None:
        deps = make_run_deps(config, settings, llm, search)
        try:
            result = run_research(sample.question, deps)
            error = (result.error or "degraded") if result.degraded else None
        except Exception as exc:  # a bug on one question must not end a night's sweep
            # Recorded like any failed question (listed in the report, rerun with --retry-errors).
            error = f"unexpected {type(exc).__name__}: {exc}"
        if error is not None:
            store.add_error(config.key, sample.id, error)
            with lock:
                tick("error", None)
            return
        rows = rows_for(config, sample, result, judge)
        store.add_question(rows)
        with lock:
            tick("done", rows[-1] if rows else None)

    if concurrency <= 1:
        for sample in todo:
            one(sample)
        return
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in as_completed([pool.submit(one, s) for s in todo]):
            future.result()


def verify_anytime(
    config: RunConfig,
    samples: list[Sample],
    depths: list[int],
    settings: Settings,
    llm: LLM,
    search: SearchBackend,
    store: ResultStore,
) -> dict[str, Any]:
    """Re-run a sample of questions independently at smaller depths; compare with the anytime rows."""
    rows = {(r["question_id"], r["round"]): r for r in store.results(config.key)}
    checked = agreed = 0
    for sample in samples:
        for depth in depths:
            if depth >= config.depth or (sample.id, depth) not in rows:
                continue
            result = run_research(sample.question, make_run_deps(config, settings, llm, search, depth=depth))
            anytime = rows[(sample.id, depth)]["answer"]
            agree = normalize_answer(anytime) == normalize_answer(result.answer)
            store.add_anytime_check(config.key, sample.id, depth, anytime, result.answer, agree)
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
