"""The run spec and the one factory: every field is in the key, old keys hold, and ask, the sweep and
Studio build the same agent from the same spec."""

from __future__ import annotations

import glob
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sounding.budgets.controllers import AllocationPolicy, BinAllocation
from sounding.budgets.cost import Usage
from sounding.factory import build_deps, spec_from_settings
from sounding.settings import deep_overrides, load_settings
from sounding.spec import LEGACY_DEFAULTS, LEGACY_DIALS, RunSpec
from tests.scripted import MemorySearch, ScriptedLLM
from tests.test_agent_nodes import DOCS, script

REPO = Path(__file__).resolve().parents[1]


def settings_with(home: Path | None = None, **flat: Any) -> Any:
    extra = {"home": home} if home is not None else {}
    return load_settings(**extra, **deep_overrides(**flat))


def base_spec(**kw: Any) -> RunSpec:
    fields: dict[str, Any] = {
        "suite": "hotpotqa:dev.json", "model": "m", "model_id": "sha256:1", "llm_backend": "llama",
        "temperature": 0.0, "sample_temperature": 0.7, "prompts": "p", "controller": "fixed", "depth": 2,
        "breadth": 1, "seed": 0, "unit": "tokens", "budget": None, "max_searches": None,
        "search_backend": "bm25", "corpus": "c", "corpus_fingerprint": "fp",
    }  # fmt: skip
    return RunSpec(**{**fields, **kw})


def changed(name: str, value: Any) -> Any:
    """A different valid value for any spec field."""
    if name == "policy":
        return AllocationPolicy(
            bins={b: BinAllocation(depth=1, breadth=1) for b in ("easy", "medium", "hard")}
        )
    if name in ("format",):
        return "report"
    if name == "unsupported":
        return "drop"
    if name == "relevance":
        return "embedding"
    if name == "composer":
        return "claims"
    if name == "structured_output":
        return "json_object"
    if name == "dials":
        return {"mode": "parallel"}
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, list):
        return [*value, 7]
    if value is None:
        return {"budget": 1000.0, "max_searches": 3, "max_tokens": 500, "latency_table": "sha256:x",
                "strategy_prompts": "sha256:y"}[name]  # fmt: skip
    return f"{value}-other"


def test_changing_any_spec_field_changes_the_key():
    spec = base_spec()
    fields = list(RunSpec.model_fields)
    assert {"max_tokens", "search_tokens", "k", "read", "strategy", "format", "policy", "prompts"} <= set(
        fields
    )
    seen = {spec.key}
    for name in fields:
        other = spec.model_copy(update={name: changed(name, getattr(spec, name))})
        assert other.key not in seen, f"changing {name} did not change the key"
        seen.add(other.key)
    assert len(seen) == len(fields) + 1


def test_fields_added_after_key_version_2_leave_old_keys_alone():
    """At their legacy values the new fields are not hashed: the key is what key version 2 hashed."""
    import hashlib

    spec = base_spec()
    old_bytes = spec.model_dump_json(exclude=set(LEGACY_DEFAULTS))
    assert spec.key == hashlib.sha256(old_bytes.encode()).hexdigest()[:16]
    assert set(LEGACY_DEFAULTS) <= set(RunSpec.model_fields)
    assert all(RunSpec.model_fields[name].default == value for name, value in LEGACY_DEFAULTS.items())


def test_a_dial_added_later_keeps_the_old_key_at_its_legacy_value():
    """``decompose:anchor=false`` is the decompose every earlier run was: same key as a spec without the
    dial; ``anchor=true`` (the default now) is a different run."""
    old = base_spec().model_copy(update={"strategy": "decompose", "dials": {"mode": "auto"}})
    off = old.model_copy(update={"dials": {"anchor": False, "mode": "auto"}})
    on = old.model_copy(update={"dials": {"anchor": True, "mode": "auto"}})
    assert off.key == old.key and on.key != old.key
    assert set(LEGACY_DIALS) == {"anchor"}


def test_every_committed_store_keeps_its_run_keys():
    """The stores under docs/results written with key version 2 need no migration: each stored config,
    read as a RunSpec, hashes to the key its rows are stored under."""
    checked = 0
    for db in sorted(glob.glob(str(REPO / "docs/results/**/results.sqlite"), recursive=True)):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        for key, config in con.execute("SELECT run_key, config FROM runs"):
            data = json.loads(config)
            if data.get("key_version") != 2:
                continue  # key version 1 (the first result): read as records, never re-keyed
            assert RunSpec.model_validate(data).key == key, (db, key)
            checked += 1
        con.close()
    assert checked >= 9


def describe(deps: Any) -> dict[str, Any]:
    """What a built agent is, as far as its answers and costs go."""
    controller = deps.controller
    return {
        "controller": type(controller).__name__,
        "controller_state": {k: v for k, v in vars(controller).items() if not k.startswith("_")},
        "budget": deps.ledger.budget.model_dump(),
        # what one mixed step costs in the run's unit and in every reported unit
        "cost": {
            unit: model.price(Usage(prompt_tokens=1000, completion_tokens=100, searches=2, fetches=1))
            for unit, model in {"run": deps.ledger.cost_model, **deps.ledger.report_models}.items()
        },
        "flags": (
            deps.closed_book_draft,
            deps.improve_final,
            deps.think_caps,
            deps.answer_format,
            deps.unsupported,
        ),
        "seed": deps.seed,
        "reasoning_temperature": deps.reasoning_temperature,
    }


def test_the_factory_builds_the_same_agent_from_the_same_spec_on_any_machine(tmp_path):
    spec = base_spec(max_tokens=900, search_tokens=150.0, think=16, think_caps=[0, 16], samples=3)
    llm, search = ScriptedLLM(script()), MemorySearch(DOCS)
    here = build_deps(spec, load_settings(home=tmp_path / "a"), llm, search)
    there = build_deps(
        spec,
        load_settings(home=tmp_path / "b", **deep_overrides(llm__seed=9, budget__search_tokens=1.0)),
        llm,
        search,
    )
    assert describe(here) == describe(there)  # the spec decides, not the machine's settings
    assert (
        here.ledger.budget.max_tokens == 900 and here.controller.think == 16 and here.controller.samples == 3
    )


def test_ask_and_the_sweep_build_the_same_agent_for_the_same_settings(tmp_path, small_corpus):
    """`ask` makes its spec from the settings; a sweep over the same settings makes the same one (but
    for its harness mode and what identifies a stored run), and the factory wires both alike."""
    from sounding.evals.sweep import RunIdentity, SweepSpec, run_configs

    settings = settings_with(
        home=tmp_path, llm__model="m", search__corpus=f"jsonl:{small_corpus}", search__backend="bm25",
        budget__controller="fixed", budget__depth=3, budget__breadth=2, budget__max_tokens=1234,
        budget__search_tokens=100.0,
    )  # fmt: skip
    ask_spec = spec_from_settings(settings)
    sweep = SweepSpec(suite="s", limit=None, depths=[3], breadths=[2], models=["m"], budgets=[30_000.0])
    (sweep_spec,) = run_configs(
        sweep, settings, RunIdentity(suite="s", corpus=ask_spec.corpus, corpus_fingerprint="")
    )
    differs = {k for k in RunSpec.model_fields if getattr(ask_spec, k) != getattr(sweep_spec, k)}
    assert differs <= {"harness", "suite", "model_id", "prompts"}, differs
    same = sweep_spec.model_copy(update={"harness": False})
    llm, search = ScriptedLLM(script()), MemorySearch(DOCS)
    assert describe(build_deps(ask_spec, settings, llm, search)) == describe(
        build_deps(same, settings, llm, search)
    )


@pytest.mark.model
def test_studio_reads_its_runnable_config_and_builds_what_ask_builds(
    test_home, smollm2_path, small_corpus, monkeypatch, tmp_path
):
    from sounding.agent.studio import make_graph, studio_agent

    monkeypatch.setenv("SOUNDING_HOME", str(test_home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("SOUNDING_CONFIG", raising=False)
    configurable = {
        "llm__model": "smollm2-135m", "search__backend": "bm25", "search__corpus": f"jsonl:{small_corpus}",
        "budget__controller": "fixed", "budget__depth": 1, "budget__budget": 4321.0, "format": "short",
        "thread_id": "t1", "__pregel_checkpointer": object(),  # LangGraph's own keys are not settings
    }  # fmt: skip
    agent = studio_agent({"configurable": configurable})
    assert agent.spec.model == "smollm2-135m" and agent.spec.budget == 4321.0 and agent.spec.depth == 1
    settings = settings_with(
        llm__model="smollm2-135m", search__backend="bm25", search__corpus=f"jsonl:{small_corpus}",
        budget__controller="fixed", budget__depth=1, budget__budget=4321.0,
    )  # fmt: skip
    assert agent.spec == spec_from_settings(settings, format="short")
    graph = make_graph({"configurable": configurable})
    assert graph.config["recursion_limit"] > 0
    out = graph.invoke({"question": "Which river flows through the capital of Hungary?"})
    assert out["drafts"] and out["final"]["answer"]
    with pytest.raises(Exception, match="empty"):
        graph.invoke({"question": "   "})
