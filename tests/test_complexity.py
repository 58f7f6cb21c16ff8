"""The redesign's ceiling (issue 29): no function in agent/, budgets/ or evals/ above cyclomatic
complexity 20, as radon counts it (docs/architecture.md has the command that lists the largest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from radon.complexity import cc_visit
from radon.visitors import Function

ROOT = Path(__file__).resolve().parents[1]
CEILING = 20


def blocks(source: str) -> list[Any]:
    """Every function, method and closure, as radon counts them (radon lists methods beside their
    class, whose own score is an average, and nests closures in their function)."""
    out: list[Any] = []

    def walk(function: Any) -> None:
        out.append(function)
        for closure in function.closures:
            walk(closure)

    for block in cc_visit(source):
        if isinstance(block, Function):
            walk(block)
    return out


def test_blocks_reach_methods():
    source = "class A:\n    def f(self, x):\n" + "".join(
        f"        if x == {i}:\n            return {i}\n" for i in range(25)
    )
    assert [b.complexity for b in blocks(source)] == [26]
    nested = "def f(x):\n    def g(y):\n" + "".join(
        f"        if y == {i}:\n            return {i}\n" for i in range(25)
    )
    assert sorted(b.complexity for b in blocks(nested)) == [1, 26]


def test_no_function_in_agent_budgets_or_evals_is_above_the_ceiling():
    over = []
    for package in ("agent", "budgets", "evals"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for block in blocks(path.read_text(encoding="utf-8")):
                if block.complexity > CEILING:
                    over.append(f"{path.relative_to(ROOT)}:{block.lineno} {block.name} ({block.complexity})")
    assert not over, "split these functions: " + "; ".join(over)
