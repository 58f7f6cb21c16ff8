"""The tuned controller: a per-question policy fitted by ``sounding tune`` (``evals/tune.py``) maps a
question's probe features to one setting of a swept grid (depth, think, samples, early stop).

The policy file is this module's ``TunedPolicy`` as JSON. It carries everything it needs to choose
(standardised linear models, thresholds, the menu of settings with their measured mean spend) and
what it was fitted for (model, suite, unit, feature groups), so it refuses another model. No
scikit-learn at run time: the fitted models are a few dot products.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from sounding.budgets.controllers import (
    MAX_SAMPLES,
    MAX_THINK,
    Decision,
    Plan,
    PolicyError,
    RoundReport,
    fit_depth,
    read_policy_text,
)
from sounding.budgets.cost import CostModel
from sounding.budgets.features import FEATURE_GROUPS, Features, vector
from sounding.budgets.ledger import Budget
from sounding.tools.text import normalize_answer

POLICY_KIND = "sounding-tuned-policy"


class Setting(BaseModel):
    """One point of the grid a policy chooses from."""

    depth: int = Field(ge=0, le=64)
    breadth: int = Field(default=1, ge=1, le=16)
    think: int = Field(default=0, ge=0, le=MAX_THINK)
    samples: int = Field(default=1, ge=1, le=MAX_SAMPLES)
    #: Stop as soon as two consecutive search rounds give the same answer (a shallower depth then).
    stop_on_agree: bool = False
    #: Its mean spend per question in the policy's unit, measured on the grid it was fitted on.
    mean_cost: float = Field(default=0.0, ge=0)
    #: The strategy it runs, with its dials (a policy tuned across strategies; `sounding tune
    #: --across-strategies`). Left out of the JSON while "iterative", so older policies keep their bytes
    #: (and the run keys that hash them).
    strategy: str = "iterative"
    dials: dict[str, str | int | float | bool] = {}

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and self.strategy == "iterative" and not self.dials:
            data.pop("strategy", None)
            data.pop("dials", None)
        return data

    @property
    def label(self) -> str:
        stop = " stop-on-agree" if self.stop_on_agree else ""
        if self.strategy != "iterative":
            name = ":".join([self.strategy, *(f"{k}={v}" for k, v in sorted(self.dials.items()))])
            return f"{name} d{self.depth}"
        return f"d{self.depth} T{self.think} N{self.samples}{stop}"


class LinearModel(BaseModel):
    """A linear score of standardised features (logistic for probabilities)."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float

    @model_validator(mode="after")
    def _lengths(self) -> LinearModel:
        if not len(self.features) == len(self.mean) == len(self.scale) == len(self.coef):
            raise ValueError("features, mean, scale and coef must have one entry per feature")
        return self

    def score(self, x: dict[str, float]) -> float:
        missing = [f for f in self.features if f not in x]
        if missing:
            raise PolicyError(f"the policy needs features it was not given: {', '.join(missing)}")
        z = sum(
            c * (x[f] - m) / (s or 1.0)
            for f, m, s, c in zip(self.features, self.mean, self.scale, self.coef, strict=True)
        )
        return self.intercept + z

    def probability(self, x: dict[str, float]) -> float:
        return 1.0 / (1.0 + math.exp(-max(min(self.score(x), 50.0), -50.0)))


class TunedPolicy(BaseModel):
    """What ``sounding tune`` writes and ``--controller tuned --policy FILE`` reads."""

    kind: Literal["sounding-tuned-policy"] = "sounding-tuned-policy"
    version: Literal[1] = 1
    model: str
    model_id: str | None = None
    suite: str
    unit: str
    metric: str = "cover_em"
    budget: float = Field(gt=0, description="the mean spend per question it was fitted for, in unit")
    groups: list[str] = Field(description="feature groups it reads (their probe is charged)")
    probe_samples: int = Field(default=3, ge=1, le=16)
    method: Literal["fixed", "bins", "per-setting"]
    settings: list[Setting] = Field(min_length=1)
    # "fixed": always settings[choice]
    choice: int | None = None
    # "bins": a predicted-accuracy score, its bin thresholds (ascending) and each bin's setting
    difficulty: LinearModel | None = None
    thresholds: list[float] = Field(default_factory=list)
    bin_settings: list[int] = Field(default_factory=list)
    # "per-setting": each setting's predicted accuracy, traded against its spend at price lam
    accuracy: list[LinearModel] = Field(default_factory=list)
    lam: float = Field(default=0.0, ge=0)
    #: How it was fitted and what cross-validation measured (provenance, shown by ``tune``).
    fitted: dict[str, object] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> TunedPolicy:
        unknown = set(self.groups) - set(FEATURE_GROUPS)
        if unknown:
            raise ValueError(f"unknown feature groups {sorted(unknown)}; known: {', '.join(FEATURE_GROUPS)}")
        n = len(self.settings)
        if self.method == "fixed" and (self.choice is None or not 0 <= self.choice < n):
            raise ValueError("a fixed policy needs choice, an index into settings")
        if self.method == "bins":
            if self.difficulty is None or len(self.bin_settings) != len(self.thresholds) + 1:
                raise ValueError("a bins policy needs difficulty and one setting per bin (thresholds + 1)")
            if any(not 0 <= i < n for i in self.bin_settings):
                raise ValueError("bin_settings must index settings")
        if self.method == "per-setting" and len(self.accuracy) != n:
            raise ValueError("a per-setting policy needs one accuracy model per setting")
        return self

    def reachable(self) -> list[Setting]:
        """The settings this policy can choose."""
        if self.method == "fixed":
            assert self.choice is not None
            return [self.settings[self.choice]]
        if self.method == "bins":
            return [self.settings[i] for i in dict.fromkeys(self.bin_settings)]
        return list(self.settings)

    def choose_vector(self, x: dict[str, float]) -> tuple[int, str]:
        """The setting for a feature vector and why."""
        if self.method == "fixed":
            assert self.choice is not None
            return self.choice, "one setting for every question"
        if self.method == "bins":
            assert self.difficulty is not None
            p = self.difficulty.probability(x)
            b = sum(1 for t in self.thresholds if p >= t)
            return self.bin_settings[b], (
                f"predicted accuracy {p:.2f}: difficulty bin {b + 1} of {len(self.bin_settings)}"
            )
        values = [
            m.probability(x) - self.lam * s.mean_cost
            for m, s in zip(self.accuracy, self.settings, strict=True)
        ]
        best = max(range(len(values)), key=lambda i: (values[i], -self.settings[i].mean_cost))
        p = self.accuracy[best].probability(x)
        return best, (
            f"predicted accuracy {p:.2f} at mean spend {self.settings[best].mean_cost:.0f} {self.unit} "
            f"(best accuracy - {self.lam:.2e} x spend)"
        )

    def choose(self, features: Features) -> tuple[Setting, str]:
        i, why = self.choose_vector(vector(features, self.groups))
        return self.settings[i], why


def is_tuned_policy(path: Path) -> bool:
    """Does the file claim to be a tuned policy (as opposed to a calibrated per-bin allocation)?"""
    try:
        return POLICY_KIND in read_policy_text(path)[:4000]
    except PolicyError:
        return False


def load_tuned_policy(path: Path) -> TunedPolicy:
    """Read a policy file; a corrupt or foreign one is refused with its path and reason."""
    text = read_policy_text(path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PolicyError(f"cannot read tuned policy {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") != POLICY_KIND:
        raise PolicyError(
            f"{path} is not a policy written by `sounding tune` (no kind: {POLICY_KIND!r}); a per-bin "
            "allocation file goes with --controller calibrated"
        )
    try:
        return TunedPolicy.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise PolicyError(f"tuned policy {path} is invalid at {where}: {first['msg']}") from exc


def check_tuned_model(policy: TunedPolicy, model: str, source: object) -> None:
    """A policy predicts one model's accuracy: applying it to another is refused."""
    if policy.model != model:
        raise PolicyError(
            f"{source} was fitted for {policy.model}, not {model}: fit one for {model} with `sounding tune`"
        )


class TunedController:
    """Probe the question (the policy's feature groups, charged), choose the policy's setting for
    it, then run that setting; a budget smaller than the setting shrinks it as any plan is shrunk."""

    name = "tuned"
    needs_probe = True

    def __init__(self, policy: TunedPolicy) -> None:
        self.policy = policy

    @property
    def chooses_strategy(self) -> bool:
        """A policy tuned across strategies: the run is routed before any graph starts (the probe,
        then the chosen strategy's graph with the chosen plan: `agent/strategies/routing.py`)."""
        return any(s.strategy != "iterative" for s in self.policy.reachable())

    @property
    def probe_groups(self) -> list[str]:
        return list(self.policy.groups)

    @property
    def probe_samples(self) -> int:
        return self.policy.probe_samples

    @property
    def max_depth(self) -> int:
        return max(s.depth for s in self.policy.settings)

    def choose(self, features: Features, *, iterative_only: bool = False) -> tuple[Setting, str]:
        """The setting for the question's features and why (the cheapest when the probe is incomplete;
        with ``iterative_only``, the best of the iterative settings, for a graph that runs only those)."""
        menu = [s for s in self.policy.settings if s.strategy == "iterative"] if iterative_only else []
        if iterative_only and not menu:
            raise PolicyError("the policy has no setting of the iterative strategy for this run")
        missing = [g for g in self.policy.groups if g != "form" and g not in features.groups]
        if missing:  # the budget could not pay for the whole probe: the cheapest setting, said why
            setting = min(menu or self.policy.settings, key=lambda s: s.mean_cost)
            return setting, f"probe incomplete ({', '.join(missing)} not measured): the cheapest setting"
        setting, why = self.policy.choose(features)
        if iterative_only and setting.strategy != "iterative":
            setting = min(menu, key=lambda s: s.mean_cost)
            why += f"; {setting.label}, the cheapest iterative setting, as this run is iterative"
        return setting, why

    def plan(self, features: Features, budget: Budget, cost: CostModel) -> Plan:
        # inside the iterative graph: a policy across strategies was routed before (or this is a
        # report, which only the iterative loop writes), so only its iterative settings apply here
        setting, why = self.choose(features, iterative_only=self.chooses_strategy)
        return self.plan_for(setting, why, budget, cost)

    def plan_for(self, setting: Setting, why: str, budget: Budget, cost: CostModel) -> Plan:
        plan = Plan(
            controller=self.name,
            depth=setting.depth,
            breadth=setting.breadth,
            max_breadth=setting.breadth,
            think=setting.think,
            samples=setting.samples,
            stop_rule="agree" if setting.stop_on_agree else "depth",
            difficulty=setting.label,
            why=f"{why} -> {setting.label}",
        )
        return fit_depth(plan, budget, cost)

    def after_round(self, report: RoundReport, plan: Plan) -> tuple[Decision, Plan]:
        if report.round >= plan.depth:
            return Decision.STOP, plan
        drafts = [normalize_answer(d) for d in report.drafts]
        if plan.stop_rule == "agree" and len(drafts) >= 2 and drafts[-1] and drafts[-1] == drafts[-2]:
            return Decision.STOP, plan
        return Decision.CONTINUE, plan
