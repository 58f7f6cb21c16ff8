"""End to end with the real SmolLM2 model on a small real corpus built from the shared HotpotQA data."""

from __future__ import annotations

import json

import pytest

from sounding.agent.runner import run_research
from sounding.budgets.controllers import AdaptiveController, FixedController
from sounding.budgets.cost import make_cost_model, make_cost_models
from sounding.budgets.ledger import Budget, Ledger
from sounding.evals.datasets import load_suite
from sounding.research import make_deps
from sounding.settings import BudgetSettings, load_settings
from sounding.tools.corpus import iter_qa_records, qa_paragraphs
from sounding.tools.search.factory import make_search

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def small_hotpot(data_dir, tmp_path_factory):
    """The context paragraphs of the first 30 HotpotQA questions, as a JSONL corpus."""
    path = tmp_path_factory.mktemp("corpus") / "hotpot30.jsonl"
    source = data_dir / "hotpotqa/hotpot_dev_distractor_subset.json.gz"
    with path.open("w") as out:
        for number, record in iter_qa_records("hotpotqa", source):
            if number > 30:
                break
            for title, text in qa_paragraphs("hotpotqa", record):
                out.write(json.dumps({"title": title, "text": text}) + "\n")
    return path


@pytest.fixture(scope="module")
def search(small_hotpot, tmp_path_factory):
    settings = load_settings(
        home=tmp_path_factory.mktemp("home"), search={"corpus": f"jsonl:{small_hotpot}", "backend": "bm25"}
    )
    return make_search(settings)


def ledger_for(llm, limit: float) -> Ledger:
    cfg = BudgetSettings()
    return Ledger(
        Budget(limit=limit, unit="tokens"),
        make_cost_model("tokens", cfg, n_params=llm.n_params),
        report_models=make_cost_models(cfg, n_params=llm.n_params),
    )


@pytest.mark.parametrize(
    "controller", [FixedController(2, 2), AdaptiveController()], ids=["fixed", "adaptive"]
)
def test_real_model_run_terminates_within_budget_with_drafts_and_real_citations(
    smollm2, search, data_dir, controller
):
    sample = load_suite(
        f"hotpotqa:{data_dir / 'hotpotqa/hotpot_dev_distractor_subset.json.gz'}", limit=3
    ).samples[1]
    from sounding.agent.nodes import AgentDeps

    deps = AgentDeps(llm=smollm2, search=search, ledger=ledger_for(smollm2, 9000), controller=controller)
    result = run_research(sample.question, deps)
    assert deps.ledger.spent_cost <= 9000
    assert result.drafts, "a draft is recorded after every round"
    assert [d["round"] for d in result.drafts] == list(range(1, len(result.drafts) + 1))
    retrieved = {h for h in result.read_doc_ids}
    assert set(result.citations) <= retrieved
    assert result.spend["searches"] >= 1 and result.spend["tokens"] > 0
    assert all(d["spend"]["tokens"] <= result.spend["tokens"] for d in result.drafts)
    assert not result.degraded, result.error


def test_real_model_under_a_tight_budget(smollm2, search):
    settings = load_settings(budget={"budget": 1500, "controller": "fixed", "depth": 4, "breadth": 2})
    deps = make_deps(settings, smollm2, search)
    result = run_research("Were Scott Derrickson and Ed Wood of the same nationality?", deps)
    assert deps.ledger.spent_cost <= 1500
    assert result.stop_reason == "budget" and result.answer
