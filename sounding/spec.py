"""The run spec: everything that can change a run's answers or its costs, and nothing machine-specific.

Its canonical hash is the run key of the result store, the same on every machine (no paths, no endpoint
addresses). Two runs whose specs differ in any field never share a key, so they never merge.

Keys stay stable across versions: the key hashes the spec's JSON with every field added after key
version 2 left out while it holds the value every earlier run used (``LEGACY_DEFAULTS``). So a store
written before a field existed needs no migration (its runs had that value), and a run that changes the
field gets a new key. ``tests/test_spec.py`` enumerates the fields: changing any of them changes the key.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, Field

from sounding import __version__
from sounding.budgets.controllers import AllocationPolicy
from sounding.budgets.tuned import TunedPolicy

#: Fields added after key version 2, with the value every run before them had. While a spec holds that
#: value the field is left out of the key (so old keys hold); any other value is hashed in.
LEGACY_DEFAULTS: dict[str, Any] = {
    "max_tokens": None,
    "search_tokens": 300.0,
    "fetch_tokens": 600.0,
    "usd_prompt_per_mtok": 0.10,
    "usd_completion_per_mtok": 0.40,
    "usd_per_search": 0.005,
    "usd_per_fetch": 0.0,
    "latency_table": None,
    "n_ctx": 4096,
    "structured_output": "json_schema",
    "format": "short",
    "unsupported": "mark",
    "harness": True,
    "strategy": "iterative",
    "vote_k": 2,
    "vote_max_samples": 8,
    "dials": {},
    "strategy_prompts": None,
    "relevance": "lexical",
    "composer": "paragraph",
}

#: Strategy dials added after their strategy's first runs, with the value those runs had: left out of
#: the key while they hold it, as ``LEGACY_DEFAULTS`` are (``decompose:anchor=false`` is the decompose
#: every run before the anchor flags made, so it resumes their stores).
LEGACY_DIALS: dict[str, Any] = {"anchor": False}


class RunSpec(BaseModel):
    """One run: model, backends, prompts, corpus, retrieval, strategy and its dials, controller and its
    policy, caps, prices, reasoning, format and seed. ``key`` is its hash (see the module's docstring)."""

    key_version: int = 2
    suite: str
    model: str
    #: What the weights are: the GGUF's sha256 (embedded models: the pinned one) or, for a served
    #: model, the backend and the name it is served under.
    model_id: str
    llm_backend: str
    temperature: float
    sample_temperature: float
    #: sha256 of the prompts the strategy's nodes use (agent/prompts/*.toml): a changed prompt is a
    #: different run.
    prompts: str
    controller: str
    depth: int
    breadth: int
    think: int = 0
    think_caps: list[int] = [0]
    samples: int = 1
    sample_counts: list[int] = [1]
    verify: bool = False
    seed: int
    unit: str
    budget: float | None
    max_searches: int | None
    search_backend: str
    corpus: str
    corpus_fingerprint: str
    k: int = 5
    read: int = 3
    sounding_version: str = __version__
    #: The adaptive or tuned controller's allocation policy, in full: two policy files never share a run.
    policy: AllocationPolicy | TunedPolicy | None = None
    # --- added after key version 2 (LEGACY_DEFAULTS) ---------------------------------------------
    max_tokens: int | None = None
    #: Prices (budgets/cost.py): what a step costs decides when a budget stops a run.
    search_tokens: float = 300.0
    fetch_tokens: float = 600.0
    usd_prompt_per_mtok: float = 0.10
    usd_completion_per_mtok: float = 0.40
    usd_per_search: float = 0.005
    usd_per_fetch: float = 0.0
    #: sha256 of the latency table when ``unit`` is latency (it then prices every step; in other units
    #: latency is machine-specific and only reported, so it is not part of the run).
    latency_table: str | None = None
    #: The model's context window: a smaller one cuts prompts (passage splitting and fusion settings
    #: are part of ``corpus_fingerprint``).
    n_ctx: int = 4096
    #: How an HTTP backend is asked for JSON (served models only).
    structured_output: Literal["json_schema", "json_object", "structured_outputs"] = "json_schema"
    #: "short" answers, "report"s, or "auto" (the question's wording decides, as `ask` does).
    format: Literal["short", "report", "auto"] = "short"
    #: What a report does with a sentence its notes do not support: mark it, or drop it.
    unsupported: Literal["mark", "drop"] = "mark"
    #: Harness mode (sweeps): a closed-book draft before round 1, every round's draft kept as it was
    #: (no final improvement), every thinking cap of ``think_caps`` read off one reasoning. `ask` is not.
    harness: bool = True
    #: How the budget is turned into an answer (agent/strategies). Today's research loop is "iterative".
    strategy: str = "iterative"
    #: The decompose strategy's dials: the lead that decides a first-to-ahead-by-k vote, and the most
    #: ballots one vote may draw.
    vote_k: int = Field(default=2, ge=1, le=16)
    vote_max_samples: int = Field(default=8, ge=1, le=64)
    #: The strategy's other dials, complete and sorted by name (agent/strategies: ``dials_for``), e.g.
    #: decompose's mode, tree's width, beam and value function.
    dials: dict[str, str | int | float | bool] = {}
    #: sha256 of the strategy's own prompt file (decompose.toml, tree.toml), None for research.toml's.
    strategy_prompts: str | None = None
    #: How a report judges what bears on a section (tools/relevance.py): shared words ("lexical", what
    #: reports before embeddings did) or MiniLM cosine ("embedding"). Short answers do not use it.
    relevance: Literal["lexical", "embedding"] = "lexical"
    #: How a report writes a section (agent/report.py: ``Composer``): one call from all its notes
    #: ("paragraph", what every report before the claims composer did) or one claim per note.
    composer: Literal["paragraph", "claims", "select", "extract"] = "paragraph"

    @property
    def key(self) -> str:
        return spec_key(self)


def spec_key(spec: RunSpec) -> str:
    exclude: dict[str, Any] = {
        name: True for name, legacy in LEGACY_DEFAULTS.items() if getattr(spec, name) == legacy
    }
    legacy_dials = {name for name, legacy in LEGACY_DIALS.items() if spec.dials.get(name, legacy) == legacy}
    if "dials" not in exclude and legacy_dials:
        exclude["dials"] = legacy_dials
    # pydantic's own bytes for the remaining fields: exactly what key version 2 hashed, so old keys hold
    return hashlib.sha256(spec.model_dump_json(exclude=exclude).encode()).hexdigest()[:16]
