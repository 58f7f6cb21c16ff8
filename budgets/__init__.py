"""Joint budgets: cost models (one currency for search calls and tokens), the ledger, controllers."""

from sounding.budgets.controllers import Controller, Decision, Features, Plan, make_controller
from sounding.budgets.cost import CostModel, Usage, make_cost_model, make_cost_models
from sounding.budgets.ledger import Budget, BudgetExceeded, Ledger

__all__ = [
    "Budget",
    "BudgetExceeded",
    "Controller",
    "CostModel",
    "Decision",
    "Features",
    "Ledger",
    "Plan",
    "Usage",
    "make_controller",
    "make_cost_model",
    "make_cost_models",
]
