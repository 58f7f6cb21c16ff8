"""A study: several sweeps (suites x models x grids) in one invocation, scheduled over one server per model.

A study plan is a TOML file with one ``[[sweep]]`` table per sweep: the suite, the run directory and
the grid, in the words of `sounding bench`'s options. `sounding study PLAN` prepares every sweep (its
corpus index, run configs and store; each run directory is an ordinary `sounding bench` one, readable
by every command that reads those), then takes the models one at a time: one model loaded (or served,
with one slot per question in flight), and the pending questions of *every* sweep that uses it
interleaved over its slots, so a suite's 0.5B and 1.5B grids, or three suites on one model, run as
one job. Resumable as a sweep is: kill it and rerun the same command.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sounding.evals.datasets import Sample
from sounding.evals.sweep import SweepWork


class StudyError(ValueError):
    """A study plan that cannot be run: the message names the file and what is wrong."""


class StudySweep(BaseModel):
    """One ``[[sweep]]`` of a plan: the options of one `sounding bench` command."""

    model_config = ConfigDict(extra="forbid")

    suite: str
    out: Path
    limit: int | None = Field(default=None, ge=1, le=1_000_000)
    models: list[str] = Field(default=["qwen2.5-coder-0.5b"], min_length=1)
    depths: list[int] = [0, 1, 2, 4]
    breadths: list[int] = [1]
    think: list[int] = [0]
    samples: list[int] = [1]
    strategies: list[str] = ["iterative"]
    vote_k: int = Field(default=2, ge=1, le=16)
    vote_max_samples: int = Field(default=8, ge=1, le=64)
    #: Search backend and corpus (default: hybrid over the suite's pooled paragraphs).
    backend: str | None = None
    corpus: str | None = None

    @field_validator("depths", "breadths", "think", "samples", "strategies")
    @classmethod
    def _not_empty(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("must list at least one value")
        return value


class StudyPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sweep: list[StudySweep] = Field(min_length=1)

    @field_validator("sweep")
    @classmethod
    def _distinct_dirs(cls, sweeps: list[StudySweep]) -> list[StudySweep]:
        outs = [s.out.resolve() for s in sweeps]
        if len(set(outs)) != len(outs):
            raise ValueError("two sweeps write the same run directory (out): give each its own")
        return sweeps


def load_plan(path: Path) -> StudyPlan:
    """The plan in ``path``, or a `StudyError` naming the file and the problem."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise StudyError(f"cannot read the study plan {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path} is not TOML: {exc}") from exc
    try:
        return StudyPlan.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}" for e in exc.errors()
        )
        raise StudyError(f"{path}: {problems}") from None


def interleave(per_sweep: list[list[tuple[SweepWork, Sample]]]) -> list[tuple[SweepWork, Sample]]:
    """Round-robin over the sweeps' question lists, so every sweep advances as the study runs (a study
    stopped half way leaves each sweep with about half its questions, not some sweeps untouched)."""
    jobs: list[tuple[SweepWork, Sample]] = []
    longest = max((len(j) for j in per_sweep), default=0)
    for i in range(longest):
        jobs += [j[i] for j in per_sweep if i < len(j)]
    return jobs
