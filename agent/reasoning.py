"""The reasoning half of the joint budget: thinking before an answer, parallel samples, a vote.

One round's reasoning step, given the question and the notes so far:

* **think** (``plan.think`` > 0): ``samples`` free-text reasonings of at most ``think`` tokens from one
  prompt (prefilled once), at the reasoning temperature, sample ``i`` seeded from the run seed, the
  question, the round and ``i``. Each is then *forced* to an answer: the reasoning goes back as the
  assistant's turn and a constrained call asks for the final answer (budget forcing, as in s1: the cap
  is never exceeded, the answer never skipped).
* **no thinking, several samples**: ``samples`` constrained answers of one prompt.
* **vote**: majority over normalised answers; a sample whose answer does not parse abstains; ties go
  to the earliest sample; optionally each distinct candidate gets one short support check of its cited
  notes, and supported candidates win over unsupported ones (``plan.verify``).

For the harness, one step can read several thinking caps off the same reasonings (``caps``): the
answer after the first ``c`` tokens of each reasoning, for every ``c``, so a smaller cap is read by
prefix instead of by a new run (`Reasoning.usage` prices each reading as an independent run would).
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from pydantic import BaseModel

from sounding.agent.llm_step import charged_completion, parse_json_object
from sounding.budgets.cost import Usage
from sounding.budgets.ledger import Charge, Ledger
from sounding.tools.llm.base import LLM, Message, derive_seed, sample_seed
from sounding.tools.text import normalize_answer

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 80},
        "notes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 4},
    },
    "required": ["answer", "notes"],
}
VERIFY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"supported": {"type": "boolean"}},
    "required": ["supported"],
}


class Reading(BaseModel):
    """One sample's answer at one thinking cap (cap 0: answered without thinking)."""

    answer: str | None  # None: the sample abstained (its output did not parse)
    notes: list[int] = []
    prompt_tokens: int = 0  # this answer's own prompt (0 when it shared the step's one prompt)
    completion_tokens: int = 0


#: The ledger node names of a round's reasoning steps (their charges are marked `reasoning`, which is
#: what the harness reads; the names are for the ledger's report and the trace).
THINK_NODE = "think"
THINK_ANSWER_NODE = "think_answer"
VOTE_NODE = "vote"
VERIFY_NODE = "verify"


class ReasoningSample(BaseModel):
    index: int
    seed: int
    thinking: str = ""
    thinking_tokens: int = 0
    thinking_pieces: list[str] = []
    readings: dict[int, Reading] = {}


class Vote(BaseModel):
    answer: str | None
    notes: list[int] = []
    votes: dict[str, int] = {}
    abstained: int = 0
    verified: dict[str, bool] = {}


class Reasoning(BaseModel):
    """Everything one reasoning step produced, stored so every vote can be recomputed offline."""

    round: int
    think: int
    samples: int
    caps: list[int]
    temperature: float
    think_prompt_tokens: int = 0  # the thinking prompt, prefilled once for every sample
    direct_prompt_tokens: int = 0  # the no-thinking answer prompt, prefilled once for every sample
    drawn: list[ReasoningSample] = []
    vote: Vote = Vote(answer=None)
    failure: str | None = None  # "budget" when the step could not be afforded

    def vote_at(self, cap: int, n: int, subset: tuple[int, ...] | None = None) -> Vote:
        """The majority vote of samples ``subset`` (default: the first ``n``) at thinking cap ``cap``."""
        chosen = subset if subset is not None else tuple(range(n))
        readings = [self.drawn[i].readings.get(cap) for i in chosen if i < len(self.drawn)]
        return majority([r for r in readings if r is not None])

    def usage(self, cap: int, n: int) -> Usage:
        """What an independent run at (think ``cap``, ``n`` samples) would have spent on this step."""
        drawn = self.drawn[:n]
        if cap == 0:
            if n == 1:  # the plain greedy answer: the round's own draft, no reasoning step
                return Usage()
            return Usage(
                prompt_tokens=self.direct_prompt_tokens,
                completion_tokens=sum(s.readings[0].completion_tokens for s in drawn if 0 in s.readings),
            )
        usage = Usage(prompt_tokens=self.think_prompt_tokens)
        for s in drawn:
            reading = s.readings.get(cap)
            usage = usage + Usage(completion_tokens=min(cap, s.thinking_tokens))
            if reading is not None:
                usage = usage + Usage(
                    prompt_tokens=reading.prompt_tokens, completion_tokens=reading.completion_tokens
                )
        return usage

    def calls(self, cap: int, n: int) -> int:
        """How many LLM calls an independent run at (think ``cap``, ``n`` samples) makes on this step."""
        if cap == 0:
            return 0 if n == 1 else 1  # one n-sample request; the greedy answer is the round's draft
        return 1 + sum(1 for s in self.drawn[:n] if cap in s.readings)  # the thinking, then each answer


def majority(readings: list[Reading]) -> Vote:
    """Majority over normalised answers; abstentions do not vote; a tie goes to the earliest sample."""
    counts: Counter[str] = Counter()
    first: dict[str, Reading] = {}
    abstained = 0
    for r in readings:
        key = normalize_answer(r.answer) if r.answer else ""
        if not key:
            abstained += 1
            continue
        counts[key] += 1
        first.setdefault(key, r)
    if not counts:
        return Vote(answer=None, abstained=abstained)
    order = list(first)
    best = max(order, key=lambda k: (counts[k], -order.index(k)))
    winner = first[best]
    return Vote(
        answer=winner.answer,
        notes=winner.notes,
        votes={first[k].answer or k: counts[k] for k in order},
        abstained=abstained,
    )


def vote_subsets(n_total: int, n: int, limit: int = 512) -> list[tuple[int, ...]]:
    """The size-``n`` subsets of ``n_total`` samples (all of them, or ``limit`` spread evenly): an
    accuracy at ``n`` samples averaged over them is exact, not the luck of the first ``n``."""
    every = itertools.combinations(range(n_total), n)
    subsets = list(itertools.islice(every, limit * 8))
    if len(subsets) <= limit:
        return subsets
    step = len(subsets) / limit
    return [subsets[int(i * step)] for i in range(limit)]


def _evidence(notes_text: str | None) -> str:
    return f"Notes:\n{notes_text}" if notes_text else "There are no notes: answer from what you know."


class Reasoner:
    """Runs reasoning steps for one question; every call is charged to the ledger."""

    def __init__(
        self,
        llm: LLM,
        ledger: Ledger,
        prompts: dict[str, dict[str, str]],
        *,
        seed: int,
        temperature: float,
        answer_cap: int,
    ) -> None:
        self.llm, self.ledger, self.prompts = llm, ledger, prompts
        self.seed, self.temperature, self.answer_cap = seed, temperature, answer_cap
        self.charges: list[Charge] = []

    def _messages(self, step: str, **fields: Any) -> list[Message]:
        prompt = self.prompts[step]
        return [
            {"role": "system", "content": prompt["system"]},
            {"role": "user", "content": prompt["user"].format(**fields)},
        ]

    def _call(self, msgs: list[Message], **kwargs: Any) -> Any:
        # every call of the reasoner is a reasoning step: its charge says so (see Charge.reasoning)
        completion, charge = charged_completion(self.llm, self.ledger, msgs, reasoning=True, **kwargs)
        if charge is not None:
            self.charges.append(charge)
        return completion

    def step(
        self,
        question: str,
        notes_text: str | None,
        *,
        think: int,
        samples: int,
        round: int,
        caps: list[int] | None = None,
        verify: bool = False,
    ) -> Reasoning:
        """One round's reasoning at (``think``, ``samples``); ``caps`` adds readings at smaller caps."""
        caps = sorted({c for c in (caps or [think]) if 0 <= c <= think} | {think})
        seed = derive_seed(self.seed, question, "reason", round)
        result = Reasoning(round=round, think=think, samples=samples, caps=caps, temperature=self.temperature)
        evidence = _evidence(notes_text)
        result.drawn = [ReasoningSample(index=i, seed=sample_seed(seed, i)) for i in range(samples)]
        if 0 in caps and (samples > 1 or think == 0):
            self._direct(result, question, evidence, round, seed)
        if think > 0:
            self._think(result, question, evidence, round, seed, [c for c in caps if c > 0])
        if not any(s.readings for s in result.drawn):
            result.failure = "budget"
        result.vote = result.vote_at(think, samples)
        if verify and len(result.vote.votes) > 1:
            result.vote = self._verified(result.vote, question, notes_text, round)
        return result

    def _direct(self, result: Reasoning, question: str, evidence: str, round: int, seed: int) -> None:
        msgs = self._messages("vote", question=question, evidence=evidence)
        n = len(result.drawn)
        completion = self._call(
            msgs,
            cap=self.answer_cap,
            node=VOTE_NODE,
            round=round,
            min_tokens=8,
            schema=ANSWER_SCHEMA,
            temperature=self.temperature if n > 1 else 0.0,
            n=n,
            seed=seed,
        )
        if completion is None:
            return
        result.direct_prompt_tokens = completion.prompt_tokens
        for sample, choice in zip(result.drawn, completion.samples(), strict=False):
            sample.readings[0] = _reading(choice.text, completion_tokens=choice.completion_tokens)

    def _think(
        self, result: Reasoning, question: str, evidence: str, round: int, seed: int, caps: list[int]
    ) -> None:
        msgs = self._messages("think", question=question, evidence=evidence)
        completion = self._call(
            msgs,
            cap=max(caps),
            node=THINK_NODE,
            round=round,
            min_tokens=1,
            temperature=self.temperature,
            n=len(result.drawn),
            seed=seed,
            logprobs=True,
        )
        if completion is None:
            return
        result.think_prompt_tokens = completion.prompt_tokens
        for sample, choice in zip(result.drawn, completion.samples(), strict=False):
            pieces = choice.tokens or [choice.text]
            sample.thinking = choice.text
            sample.thinking_tokens = choice.completion_tokens
            sample.thinking_pieces = pieces
            forced: dict[str, Reading] = {}
            for cap in caps:
                # a cap at or past where the reasoning ended reads the same reasoning: one answer call
                reasoning = "".join(pieces[:cap]).strip()
                if reasoning not in forced:
                    reading = self._force(msgs, reasoning, round, sample.seed)
                    if reading is None:
                        break
                    forced[reasoning] = reading
                sample.readings[cap] = forced[reasoning]

    def _force(self, msgs: list[Message], reasoning: str, round: int, seed: int) -> Reading | None:
        """The answer after ``reasoning``: it goes back as the assistant's turn, then the answer is asked
        for under the schema (the prompt extends the thinking prompt, so its prefix is cached)."""
        forced: list[Message] = [
            *msgs,
            {"role": "assistant", "content": reasoning or "(no reasoning)"},
            {"role": "user", "content": self.prompts["think_answer"]["user"]},
        ]
        completion = self._call(
            forced,
            cap=self.answer_cap,
            node=THINK_ANSWER_NODE,
            round=round,
            min_tokens=8,
            schema=ANSWER_SCHEMA,
            temperature=0.0,
            seed=seed,
        )
        if completion is None:
            return None
        return _reading(
            completion.text,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )

    def _verified(self, vote: Vote, question: str, notes_text: str | None, round: int) -> Vote:
        """Each distinct candidate checked once against the notes; supported ones beat unsupported ones,
        then the count decides."""
        verified: dict[str, bool] = {}
        for candidate in vote.votes:
            msgs = self._messages(
                "verify", question=question, evidence=_evidence(notes_text), answer=candidate
            )
            completion = self._call(
                msgs,
                cap=16,
                node=VERIFY_NODE,
                round=round,
                min_tokens=6,
                schema=VERIFY_SCHEMA,
                temperature=0.0,
            )
            if completion is None:
                break
            value, _ = parse_json_object(completion.text)
            verified[candidate] = bool(value and value.get("supported"))
        order = list(vote.votes)
        best = max(order, key=lambda a: (verified.get(a, False), vote.votes[a], -order.index(a)))
        notes = vote.notes if best == vote.answer else []
        return vote.model_copy(update={"answer": best, "notes": notes, "verified": verified})


def _reading(text: str, *, prompt_tokens: int = 0, completion_tokens: int = 0) -> Reading:
    value, _ = parse_json_object(text)
    answer = str(value.get("answer", "")).strip() if value else ""
    notes = []
    for n in (value or {}).get("notes", []) or []:
        try:
            notes.append(int(n))
        except (TypeError, ValueError):
            continue
    return Reading(
        answer=answer or None,
        notes=notes,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
