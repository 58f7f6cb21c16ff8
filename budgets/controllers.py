"""Controllers: how one question spends its budget: search (depth, breadth, reading) and reasoning
(thinking tokens before each round's answer, parallel answer samples with a vote), and token caps.

Pure and deterministic: given a question's features and a budget, the plan is fixed; no LLM here.
The probe that produces the features (a closed-book answer sampled twice plus the first retrieval's
score margin) runs in the agent and is charged to the ledger like any other step.
"""

from __future__ import annotations

import json
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError

from sounding.budgets.cost import CostModel, Usage
from sounding.budgets.features import Features
from sounding.budgets.ledger import Budget
from sounding.tools.text import normalize_answer


class StepCaps(BaseModel):
    """Maximum completion tokens per step: small, single-purpose prompts need few."""

    probe: int = 24
    query: int = 64
    extract: int = 200
    reflect: int = 160
    answer: int = 96
    outline: int = 120
    write: int = 260
    #: One sentence from one note (a report's claims composer): at most SENTENCE_CHARS characters.
    claim: int = 96
    check: int = 120


#: Typical prompt sizes (tokens) of each step, measured on our prompts with wiki-vital passages;
#: used to estimate what a plan will cost before spending (the ledger charges the real numbers).
PROMPT_TOKENS = {
    "probe": 90,
    "query": 260,
    "extract_base": 200,
    "extract_per_passage": 140,
    "reflect": 420,
    "answer": 420,
    "think": 460,
    "vote": 440,
    "outline": 150,
    "write": 900,
    "claim": 330,
    "check": 500,
}

#: Limits on the reasoning dials (the CLI and settings check them with these).
MAX_THINK = 4096
MAX_SAMPLES = 64


class UsageEstimate(BaseModel):
    """One model's measured mean LLM usage: per question outside the rounds (the closed-book draft)
    and for each search round in turn (later rounds read longer notes, so they cost more); written
    by ``sounding budget estimate`` from a result store.

    Without one, plans are priced from ``PROMPT_TOKENS`` plus each step's completion cap: an upper
    bound (the 0.5B really spends about half of it), so a controller fitting that bound to a budget
    plans fewer rounds than the budget pays for.
    """

    model: str
    overhead_prompt_tokens: int = Field(ge=0)
    overhead_completion_tokens: int = Field(ge=0)
    round_prompt_tokens: list[int] = Field(min_length=1, description="round 1, 2, ...; the last repeats")
    round_completion_tokens: list[int] = Field(min_length=1)
    questions: int = Field(ge=1, description="questions the means were measured on")
    source: str = Field(default="", description="where it was measured (store, runs)")

    def round(self, round_: int) -> Usage:
        """Mean LLM usage of search round ``round_`` (1-based)."""
        i = min(max(round_, 1), len(self.round_prompt_tokens)) - 1
        j = min(i, len(self.round_completion_tokens) - 1)
        return Usage(
            prompt_tokens=self.round_prompt_tokens[i], completion_tokens=self.round_completion_tokens[j]
        )


class Plan(BaseModel):
    controller: str
    depth: int = Field(ge=0, description="maximum search rounds (0 = closed book)")
    breadth: int = Field(ge=1, description="queries per round, searched in parallel")
    k: int = Field(default=5, ge=1, description="hits retrieved per query")
    read: int = Field(default=3, ge=1, description="passages read per round after reranking")
    caps: StepCaps = StepCaps()
    #: depth: run every round; stable: stop when the draft repeats and is supported (adaptive);
    #: agree: stop when two consecutive rounds give the same answer (a tuned early-stop setting)
    stop_rule: Literal["depth", "stable", "agree"] = "depth"
    max_breadth: int = 3
    difficulty: str | None = None
    decompose: bool = False
    estimate: UsageEstimate | None = None
    think: int = Field(
        default=0, ge=0, le=MAX_THINK, description="thinking tokens before each round's answer"
    )
    samples: int = Field(default=1, ge=1, le=MAX_SAMPLES, description="answer samples per round, voted")
    verify: bool = Field(default=False, description="weigh the vote by a support check of each candidate")
    why: str | None = Field(default=None, description="why the controller chose this plan")
    #: short: one answer of a few words; report: a few cited paragraphs, one per sub-question of an
    #: outline, each sentence checked against the notes it cites.
    format: Literal["short", "report"] = "short"
    sections: int = Field(default=0, ge=0, le=6, description="report sections (sub-questions), when a report")

    @property
    def reasons(self) -> bool:
        """Does each round's answer get its own reasoning step (think > 0 or samples > 1)?"""
        return self.think > 0 or self.samples > 1

    @property
    def recursion_limit(self) -> int:
        """LangGraph supersteps: plan + 4 per round (queries, search, read, reflect) + answer (a
        report: write and check), with slack."""
        return 10 + 5 * (self.depth + 1)


class RoundReport(BaseModel):
    """What the agent tells the controller after a round."""

    round: int
    drafts: list[str]
    supported: bool
    new_evidence: int


class Decision(StrEnum):
    CONTINUE = "continue"
    STOP = "stop"
    REPLAN = "replan"


def step_usage(plan: Plan, step: str) -> Usage:
    """Estimated usage of one step of a plan (prompt estimate + its completion cap)."""
    if step == "search":
        return Usage(searches=1)
    if step == "extract":
        prompt = PROMPT_TOKENS["extract_base"] + PROMPT_TOKENS["extract_per_passage"] * plan.read
        return Usage(prompt_tokens=prompt, completion_tokens=plan.caps.extract)
    return Usage(prompt_tokens=PROMPT_TOKENS[step], completion_tokens=getattr(plan.caps, step))


def reasoning_usage(plan: Plan) -> Usage:
    """Upper bound of one round's reasoning step: the thinking of every sample (prompt prefilled once),
    then each sample's forced answer (its prompt holds that sample's thinking), or, without thinking,
    ``samples`` direct answers of one prompt; plus one support check per candidate when voting verified."""
    if not plan.reasons:
        return Usage()
    n, answer = plan.samples, plan.caps.answer
    if plan.think > 0:
        usage = Usage(prompt_tokens=PROMPT_TOKENS["think"], completion_tokens=n * plan.think)
        usage = usage + Usage(
            prompt_tokens=n * (PROMPT_TOKENS["think"] + plan.think + 30), completion_tokens=n * answer
        )
    else:
        usage = Usage(prompt_tokens=PROMPT_TOKENS["vote"], completion_tokens=n * answer)
    if plan.verify and n > 1:
        usage = usage + Usage(prompt_tokens=n * PROMPT_TOKENS["vote"], completion_tokens=n * 8)
    return usage


def round_usage(plan: Plan, round_: int = 1) -> Usage:
    """Expected usage of search round ``round_``: measured means when the plan has them, else the bound;
    plus the round's reasoning step."""
    searches = Usage(searches=plan.breadth) + reasoning_usage(plan)
    if plan.estimate is not None:
        return searches + plan.estimate.round(round_)
    return searches + step_usage(plan, "query") + step_usage(plan, "extract") + step_usage(plan, "reflect")


def answer_usage(plan: Plan) -> Usage:
    """The answer outside the rounds; a closed-book plan (depth 0) reasons there instead."""
    if plan.format == "report":  # the outline, then a write and a check per section
        return step_usage(plan, "outline") + report_usage(plan)
    extra = reasoning_usage(plan) if plan.depth == 0 else Usage()
    if plan.estimate is not None:
        e = plan.estimate
        return extra + Usage(
            prompt_tokens=e.overhead_prompt_tokens, completion_tokens=e.overhead_completion_tokens
        )
    return extra + step_usage(plan, "answer")


def report_usage(plan: Plan) -> Usage:
    """Upper bound of writing and checking a report: one write and one check call per section."""
    sections = max(plan.sections, 1)
    return Usage(
        prompt_tokens=sections * (PROMPT_TOKENS["write"] + PROMPT_TOKENS["check"]),
        completion_tokens=sections * (plan.caps.write + plan.caps.check),
    )


def split_usage(plan: Plan, *, probe: bool = False) -> dict[str, Usage]:
    """A plan's expected usage split between search (searches and the calls that find and read) and
    reasoning (thinking, samples, votes): what ``sounding budget explain`` shows."""
    total = plan_usage(plan, probe=probe)
    reasoning = reasoning_usage(plan)
    rounds = max(plan.depth, 1)
    reasoning_total = Usage(
        prompt_tokens=reasoning.prompt_tokens * rounds, completion_tokens=reasoning.completion_tokens * rounds
    )
    return {"search": total - reasoning_total, "reasoning": reasoning_total}


def plan_usage(plan: Plan, *, probe: bool = False) -> Usage:
    """Expected usage of a whole plan; ``probe`` adds the adaptive controller's difficulty probe."""
    usage = answer_usage(plan)
    for round_ in range(1, plan.depth + 1):
        usage = usage + round_usage(plan, round_)
    if plan.estimate is not None and plan.decompose and plan.depth > 0:
        # A mean must count every call, so the sub-question split (query-sized) is added; the bound
        # already over-prices each round by more than that call costs, and leaves it out.
        usage = usage + step_usage(plan, "query")
    if probe:
        usage = usage + step_usage(plan, "probe") + step_usage(plan, "probe") + step_usage(plan, "search")
    return usage


def fit_depth(plan: Plan, budget: Budget, cost: CostModel, *, probe: bool = False) -> Plan:
    """Shrink the plan until its estimate fits every limit of the budget: samples first (halved),
    then thinking (halved, then off), then depth (and breadth at depth 1), so a small budget keeps the
    search it can pay for and reasons with what is left."""

    def fits(p: Plan) -> bool:
        usage = plan_usage(p, probe=probe)
        if budget.limit is not None and cost.price(usage) > budget.limit:
            return False
        if budget.max_searches is not None and usage.searches > budget.max_searches:
            return False
        return budget.max_tokens is None or usage.tokens <= budget.max_tokens

    while not fits(plan) and plan.reasons:
        if plan.samples > 1:
            plan = plan.model_copy(update={"samples": plan.samples // 2 if plan.samples > 2 else 1})
        else:
            plan = plan.model_copy(update={"think": plan.think // 2 if plan.think >= 32 else 0})
    while not fits(plan) and plan.depth > 0:
        if plan.breadth > 1 and plan.depth == 1:
            plan = plan.model_copy(update={"breadth": plan.breadth - 1})
        else:
            plan = plan.model_copy(update={"depth": plan.depth - 1})
    return plan


class Controller(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def needs_probe(self) -> bool: ...

    @property
    def probe_groups(self) -> list[str]:
        """The feature groups its probe measures (``budgets/features.py``)."""
        ...

    @property
    def probe_samples(self) -> int:
        """Closed-book samples of the probe (agreement needs two or more)."""
        ...

    @property
    def max_depth(self) -> int:
        """The deepest plan this controller can make (bounds the graph's recursion limit)."""
        ...

    def plan(self, features: Features, budget: Budget, cost: CostModel) -> Plan: ...

    def after_round(self, report: RoundReport, plan: Plan) -> tuple[Decision, Plan]: ...


class FixedController:
    """Depth and breadth as given; rounds stop only at depth or when the budget runs out."""

    name = "fixed"
    needs_probe = False
    probe_groups: ClassVar[list[str]] = []
    probe_samples = 1

    def __init__(
        self,
        depth: int,
        breadth: int,
        *,
        k: int = 5,
        read: int = 3,
        think: int = 0,
        samples: int = 1,
        verify: bool = False,
    ) -> None:
        self.depth, self.breadth, self.k, self.read = depth, breadth, k, read
        self.think, self.samples, self.verify = think, samples, verify

    @property
    def max_depth(self) -> int:
        return self.depth

    def plan(self, features: Features, budget: Budget, cost: CostModel) -> Plan:
        return Plan(
            controller=self.name,
            depth=self.depth,
            breadth=self.breadth,
            k=self.k,
            read=self.read,
            max_breadth=self.breadth,
            think=self.think,
            samples=self.samples,
            verify=self.verify,
        )

    def after_round(self, report: RoundReport, plan: Plan) -> tuple[Decision, Plan]:
        return (Decision.STOP if report.round >= plan.depth else Decision.CONTINUE), plan


class BinAllocation(BaseModel):
    depth: int = Field(ge=0)
    breadth: int = Field(ge=1)
    k: int = Field(default=5, ge=1)
    read: int = Field(default=3, ge=1)
    think: int = Field(default=0, ge=0, le=MAX_THINK)
    samples: int = Field(default=1, ge=1, le=MAX_SAMPLES)


class AllocationPolicy(BaseModel):
    """Per-difficulty-bin allocation with hand-set bins. The file format of ``--controller calibrated``
    (TOML or JSON; ``sounding budget estimate`` writes one with a model's measured spend)::

    target_mean_budget = 12000      # the mean spend per question it was fitted for
    unit = "tokens"
    easy_margin = 0.25              # margin >= this with agreeing probes -> easy
    hard_margin = 0.08              # margin < this, or probes disagree with a small margin -> hard
    [bins.easy]
    depth = 1
    breadth = 1
    [bins.medium]
    depth = 2
    breadth = 2
    [bins.hard]
    depth = 4
    breadth = 2
    [estimate]                      # optional: measured usage to plan with (sounding budget estimate)
    model = "qwen2.5-coder-0.5b"
    round_prompt_tokens = 700
    ...
    """

    target_mean_budget: float | None = None
    unit: str = "tokens"
    easy_margin: float = 0.25
    hard_margin: float = 0.08
    bins: dict[Literal["easy", "medium", "hard"], BinAllocation]
    estimate: UsageEstimate | None = None

    def bin_of(self, features: Features) -> str:
        margin = features.margin if features.margin is not None else 0.0
        agree = features.agreement
        if agree and margin >= self.easy_margin:
            return "easy"
        if margin < self.hard_margin and not agree:
            return "hard"
        return "medium"


DEFAULT_POLICY = AllocationPolicy(
    bins={
        "easy": BinAllocation(depth=1, breadth=1),
        "medium": BinAllocation(depth=2, breadth=2),
        "hard": BinAllocation(depth=3, breadth=2),
    }
)


class PolicyError(ValueError):
    pass


#: A policy file is a few kilobytes; anything far larger is not one (and must not be read into memory).
MAX_POLICY_BYTES = 16 * 1024 * 1024


def read_policy_text(path: Path) -> str:
    """A policy file's text; a device (``/dev/zero``), a folder or an oversized file is refused unread."""
    try:
        if not path.is_file():
            raise PolicyError(
                f"policy {path} is not a regular file" if path.exists() else f"no policy file {path}"
            )
        if path.stat().st_size > MAX_POLICY_BYTES:
            raise PolicyError(f"policy {path} is {path.stat().st_size:,} bytes: not a policy file")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from exc


def load_policy(path: Path) -> AllocationPolicy:
    text = read_policy_text(path)
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        policy = AllocationPolicy.model_validate(data)
    except (OSError, ValueError, ValidationError) as exc:
        raise PolicyError(f"cannot load allocation policy {path}: {exc}") from exc
    missing = {"easy", "medium", "hard"} - set(policy.bins)
    if missing:
        raise PolicyError(f"allocation policy {path} lacks bins: {', '.join(sorted(missing))}")
    return policy


def calibrated_policy(policy_file: Path | None) -> AllocationPolicy:
    """The calibrated controller's policy: it has no built-in one."""
    if policy_file is None:
        raise PolicyError("the calibrated controller needs an allocation policy file: --policy FILE")
    return load_policy(policy_file)


def check_policy_model(policy: AllocationPolicy, model: str, source: object) -> None:
    """A measured estimate belongs to one model: planning another with it misprices every round."""
    if policy.estimate is not None and policy.estimate.model != model:
        raise PolicyError(
            f"{source} plans with spend measured on {policy.estimate.model}, not {model}: "
            f"write one with `sounding budget estimate RUN_DIR --model {model}`"
        )


class AdaptiveController:
    """Difficulty from a cheap probe -> per-bin allocation (after Snell et al. 2024): little on easy
    questions, more on hard ones. After each round: stop early when the draft is stable across two
    rounds and supported by evidence; widen breadth when a round found no new evidence."""

    needs_probe = True
    probe_groups: ClassVar[list[str]] = ["form", "retrieval", "closed_book"]
    probe_samples = 2  # the greedy answer and one sample: do they agree?

    def __init__(self, policy: AllocationPolicy = DEFAULT_POLICY, *, name: str = "adaptive") -> None:
        self.policy = policy
        self.name = name

    @property
    def max_depth(self) -> int:
        return max(b.depth for b in self.policy.bins.values())

    def plan(self, features: Features, budget: Budget, cost: CostModel) -> Plan:
        difficulty = self.policy.bin_of(features)
        alloc = self.policy.bins[difficulty]  # type: ignore[index]
        plan = Plan(
            controller=self.name,
            depth=alloc.depth,
            breadth=alloc.breadth,
            k=alloc.k,
            read=alloc.read,
            stop_rule="stable",
            max_breadth=max(alloc.breadth + 1, 2),
            difficulty=difficulty,
            decompose=difficulty != "easy",
            estimate=self.policy.estimate,
            think=alloc.think,
            samples=alloc.samples,
        )
        # With measured means the probe already spent is counted too; the bound leaves it out
        # (it over-prices the rounds by more), which is how the default controller has always planned.
        return fit_depth(plan, budget, cost, probe=self.policy.estimate is not None)

    def after_round(self, report: RoundReport, plan: Plan) -> tuple[Decision, Plan]:
        if report.round >= plan.depth:
            return Decision.STOP, plan
        # "the same answer" as the vote, the tuned early stop and the metrics say it (one normaliser)
        drafts = [normalize_answer(d) for d in report.drafts if normalize_answer(d)]
        if report.supported and len(drafts) >= 2 and drafts[-1] == drafts[-2]:
            return Decision.STOP, plan
        if report.new_evidence == 0 and plan.breadth < plan.max_breadth:
            return Decision.REPLAN, plan.model_copy(update={"breadth": plan.breadth + 1})
        return Decision.CONTINUE, plan


def make_controller(
    kind: str,
    *,
    depth: int = 2,
    breadth: int = 2,
    policy_file: Path | None = None,
    think: int = 0,
    samples: int = 1,
    verify: bool = False,
) -> Controller:
    if kind == "fixed":
        return FixedController(depth, breadth, think=think, samples=samples, verify=verify)
    if kind == "adaptive":
        return AdaptiveController()
    if kind == "calibrated":
        return AdaptiveController(calibrated_policy(policy_file), name="calibrated")
    if kind == "tuned":
        from sounding.budgets.tuned import TunedController, load_tuned_policy

        if policy_file is None:
            raise PolicyError("the tuned controller needs a policy written by `sounding tune`: --policy FILE")
        return TunedController(load_tuned_policy(policy_file))
    raise PolicyError(f"unknown controller {kind!r}: use {', '.join(CONTROLLERS)}")


CONTROLLERS = ("fixed", "adaptive", "calibrated", "tuned")
