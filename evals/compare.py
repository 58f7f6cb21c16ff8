"""Strategies against each other on one compute axis: every setting of every strategy's runs (one
model, one suite), the frontier of all of them, paired differences against the iterative grid's best
setting at equal or lower compute, what each strategy answers on the questions no search depth
answered, accuracy per question type, the value functions' AUROC, and the smaller model's best
against the larger model's best.

A *setting* is one reading of one run: a strategy with its dials at a depth (and, for the iterative
strategy, a thinking cap and a sample count), e.g. ``iterative d1 T0 N3`` or
``tree:beam=1:value=logprob:width=3 d2``. Every comparison is on the questions every compared
setting answered (paired), seeds averaged per question first; CIs are percentile bootstraps over
questions. Scoring is apart from solving: the metric is read from the stored rows or re-scored from
the stored traces.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import numpy as np
from pydantic import BaseModel

from sounding.evals.fit import collapse_seeds
from sounding.evals.frontier import MeasuredSetting
from sounding.evals.metrics import score_answer
from sounding.evals.stats import percentile_ci, resample_indices
from sounding.tools.text import name_words

Matrix = dict[str, dict[str, dict[str, Any]]]  # question -> setting label -> its (seed-averaged) row


class StrategySetting(MeasuredSetting):
    """A setting of any strategy (its label names the strategy, dials and depth)."""

    label: str
    strategy: str


class PairedDifference(BaseModel):
    """A setting against the best iterative setting that costs no more (mean token-equivalents)."""

    setting: str
    baseline: str | None  # None: no iterative setting is that cheap
    diff: float | None
    ci: tuple[float, float] | None
    tokens_ratio: float | None  # the setting's spend over the baseline's


class Rescue(BaseModel):
    setting: str
    share: float
    ci: tuple[float, float]


class TypeAccuracy(BaseModel):
    qtype: str
    n: int
    acc: dict[str, float]  # setting label -> accuracy on the questions of this type


class ValueQuality(BaseModel):
    """How well a value function picks the right candidate among a round's candidates (the final
    round of every tree / best_of_n run): ``within`` is the mean over questions whose candidates are
    not all right or all wrong of the AUROC inside that question (what the beam relies on: 0.5 is
    chance); ``pooled`` pools every candidate of every question (it also rewards a value that only
    tells easy questions from hard ones); ``picked`` is how often the candidate the value ranks first
    is right on those mixed questions; ``ceiling`` the share of questions with some right candidate
    (what a perfect value function would score: the most any choosing can add)."""

    strategy: str
    value: str
    candidates: int
    positives: int
    mixed_questions: int
    questions: int = 0
    ceiling: float | None = None
    within: float | None
    within_ci: tuple[float, float] | None
    picked: float | None
    pooled: float | None


class DecomposeStats(BaseModel):
    """What a decompose run's traces say about its splits and votes (all its questions)."""

    strategy: str
    questions: int
    subquestions: float  # mean per question
    single: float  # share of questions split into one sub-question (the question itself)
    split_red_flagged: float  # share of questions whose first split was discarded
    chained: float  # share of questions with a sub-question naming an earlier answer (#n)
    ballots: float  # mean ballots per vote (steps and compositions)
    decided: float  # share of votes that ended with a lead of k (not at the cap or the budget)
    red_flags: dict[str, int]  # discarded ballots by kind
    echo: float  # share of step answers that only repeat words of their own sub-question
    #: share of first-split sub-questions naming none of the question's capitalised words nor an
    #: earlier answer (#n): "Who died in 2007?" for "Who wrote These Boots ... and died in 2007?"
    unanchored: float = 0.0
    #: of the compared questions: share where some step's answer was right (by the comparison's metric)
    #: against share where the final answer was: evidence found at a step and lost in composing
    step_right: float = 0.0
    final_right: float = 0.0
    scored: int = 0  # questions step_right and final_right are over


class StrategyComparison(BaseModel):
    model: str
    suite: str
    metric: str
    questions: int
    settings: list[StrategySetting]
    envelope: list[str]  # settings on the iso-compute frontier (tokens), cheapest first
    differences: list[PairedDifference]
    search_failed: int  # questions no depth of the iterative search axis answered
    rescues: list[Rescue]
    by_type: list[TypeAccuracy]
    values: list[ValueQuality]
    decompose: list[DecomposeStats] = []
    #: the differences asked for by name (``--pair A,B``: A minus B, paired on the same questions)
    pairs: list[PairedDifference] = []


class ModelGap(BaseModel):
    suite: str
    small: str
    large: str
    questions: int
    small_best: str
    small_best_acc: float
    large_best: str
    large_best_acc: float
    gap: float
    gap_ci: tuple[float, float]  # both bests chosen again in every resample
    #: the smaller model's cheapest setting (FLOPs) reaching the larger model's best accuracy, if any
    small_reaching: str | None
    flops_ratio: float | None


def strategy_name(config: dict[str, Any]) -> str:
    """A run's strategy with its dials, as the settings' labels show it: ``tree:beam=1:value=logprob:width=3``
    (a decompose run's vote settings too, when they are not the defaults: ``...:k=3:max=8``)."""
    strategy = config.get("strategy", "iterative")
    dials = config.get("dials") or {}
    name = ":".join([strategy, *(f"{k}={v}" for k, v in sorted(dials.items()))])
    if strategy == "decompose" and (config.get("vote_k", 2), config.get("vote_max_samples", 8)) != (2, 8):
        name += f":k={config.get('vote_k', 2)}:max={config.get('vote_max_samples', 8)}"
    return name


def select_runs(runs: dict[str, dict[str, Any]], only: list[str]) -> dict[str, dict[str, Any]]:
    """The iterative runs (always: they are the baseline) and the strategy runs named in ``only``, each
    either a bare strategy (``tree``: all its runs) or a name with its dials as the labels show it.
    Raises ValueError naming what is there when a name matches no run."""
    names = {k: strategy_name(c) for k, c in runs.items()}

    def named(name: str, wanted: str) -> bool:  # the whole name, or its bare strategy
        return name == wanted or name.split(":")[0] == wanted

    for wanted in only:
        if not any(named(n, wanted) for n in names.values()):
            there = ", ".join(sorted({n for n in names.values() if not n.startswith("iterative")})) or "none"
            raise ValueError(f"no run of the strategy {wanted!r}; the runs' strategies are: {there}")
    return {
        k: c
        for k, c in runs.items()
        if c.get("strategy", "iterative") == "iterative" or any(named(names[k], w) for w in only)
    }


def setting_label(config: dict[str, Any], row: dict[str, Any]) -> str:
    if config.get("strategy", "iterative") == "iterative":
        return f"iterative d{row['round']} T{row.get('think', 0)} N{row.get('samples', 1)}"
    return f"{strategy_name(config)} d{row['round']}"


def matrices(rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]]) -> dict[tuple[str, str], Matrix]:
    """(model, suite) -> question -> setting -> row: fixed-controller runs without a budget only. Only
    seeds of one run (the same setting identity) are averaged together: two runs that differ in
    anything else (breadth, k, prompts, model file, ...) but would share a label are told apart by a
    suffix naming their identity."""
    from sounding.evals.sweep import setting_identity

    raw: dict[tuple[str, str], dict[str, dict[str, list[dict[str, Any]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    identities: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    fixed = {k: c for k, c in runs.items() if c.get("controller") == "fixed" and c.get("budget") is None}
    for row in rows:
        cfg = fixed.get(row["run_key"])
        if cfg is not None:
            identities[(cfg["model"], cfg["suite"], setting_label(cfg, row))].add(setting_identity(cfg))
    for row in rows:
        cfg = fixed.get(row["run_key"])
        if cfg is None:
            continue
        label = setting_label(cfg, row)
        if len(identities[(cfg["model"], cfg["suite"], label)]) > 1:
            label += f" #{setting_identity(cfg)[:6]}"
        raw[(cfg["model"], cfg["suite"])][row["question_id"]][label].append(
            {**row, "strategy": cfg.get("strategy", "iterative"), "depth": row["round"]}
        )
    return {
        key: {q: {s: collapse_seeds(rs) for s, rs in by.items()} for q, by in qs.items()}
        for key, qs in raw.items()
    }


def _tokens(row: dict[str, Any]) -> float:
    return float(row["cost"].get("tokens", row["prompt_tokens"] + row["completion_tokens"]))


_ci = percentile_ci
_boots = resample_indices


def _envelope(settings: list[StrategySetting]) -> list[str]:
    out, best = [], -1.0
    for s in sorted(settings, key=lambda s: (s.tokens, -s.acc)):
        if s.acc > best:
            out.append(s.label)
            best = s.acc
    return out


def compare(
    matrix: Matrix,
    *,
    model: str,
    suite: str,
    metric: str = "cover_em",
    traces: dict[tuple[str, str], dict[str, Any]] | None = None,
    runs: dict[str, dict[str, Any]] | None = None,
    n_boot: int = 1000,
    seed: int = 7,
    pairs: list[tuple[str, str]] | None = None,
) -> StrategyComparison | None:
    """Every setting of ``matrix`` on the questions all of them answered; ``pairs`` names settings
    (A, B) whose difference A - B is wanted as well (ValueError if a label is not a setting here)."""
    labels = sorted({s for by in matrix.values() for s in by})
    _check_pairs(pairs or [], labels, model, suite)
    ids = sorted(q for q, by in matrix.items() if all(s in by for s in labels))
    if len(ids) < 2:
        return None
    acc = np.array([[matrix[q][s][metric] for s in labels] for q in ids], dtype=float)  # questions x settings
    boots = _boots(len(ids), n_boot, seed)
    settings = [
        _setting(label, [matrix[q][label] for q in ids], acc[:, j], boots) for j, label in enumerate(labels)
    ]
    traces, runs = traces or {}, runs or {}
    golds, texts = _golds_and_texts(matrix, ids)
    return StrategyComparison(
        model=model, suite=suite, metric=metric, questions=len(ids), settings=settings,
        envelope=_envelope(settings), differences=_differences(settings, acc, boots),
        **_composition(matrix, ids, labels, metric, n_boot, seed),
        by_type=_by_type(matrix, ids, settings, metric),
        values=_value_quality(traces, runs, model, suite, golds, metric, n_boot, seed),
        decompose=_decompose_stats(traces, runs, model, suite, golds, texts, metric),
        pairs=[_pair(settings, acc, boots, a, b) for a, b in pairs or []],
    )  # fmt: skip


def _check_pairs(pairs: list[tuple[str, str]], labels: list[str], model: str, suite: str) -> None:
    for label in sorted({x for pair in pairs for x in pair} - set(labels)):
        raise ValueError(
            f"no setting {label!r} for {model} on {suite}; the settings are: {', '.join(labels)}"
        )


def _golds_and_texts(matrix: Matrix, ids: list[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The compared questions' gold answers, and every question's text, not only the compared ones':
    a decompose run's split statistics cover all of its questions, and a sub-question is "unanchored"
    only against the text of its own question."""
    golds = {q: list(next(iter(matrix[q].values())).get("golds") or []) for q in ids}
    texts = {q: str(next(iter(by.values())).get("question") or "") for q, by in matrix.items()}
    return golds, texts


def _setting(label: str, rows: list[dict[str, Any]], acc: np.ndarray, boots: np.ndarray) -> StrategySetting:
    """One setting's accuracy (with its bootstrap CI) and mean spend over the compared questions."""
    flops = [r["cost"].get("flops") for r in rows]
    return StrategySetting(
        label=label,
        strategy=rows[0]["strategy"],
        depth=rows[0]["depth"],
        n=len(rows),
        acc=float(acc.mean()),
        ci=_ci(acc[boots].mean(axis=1)),
        tokens=float(np.mean([_tokens(r) for r in rows])),
        flops=float(np.mean(flops)) if all(f is not None for f in flops) else None,
        searches=float(np.mean([r["searches"] for r in rows])),
    )


def _differences(
    settings: list[StrategySetting], acc: np.ndarray, boots: np.ndarray
) -> list[PairedDifference]:
    """Each non-iterative setting minus the most accurate iterative setting that costs no more (mean
    token-equivalents). The point estimate picks that baseline on all the questions; every bootstrap
    resample picks it again on its own questions, so the CI carries the selection (the best of many
    settings looks better on the questions it was picked on than it is)."""
    index = {s.label: j for j, s in enumerate(settings)}
    grid = [s for s in settings if s.strategy == "iterative"]
    grid_cols = np.array([index[g.label] for g in grid], dtype=int)
    grid_tokens = np.array([g.tokens for g in grid])
    out = []
    for s in settings:
        if s.strategy == "iterative":
            continue
        cheaper = [g for g in grid if g.tokens <= s.tokens]
        if not cheaper:
            out.append(
                PairedDifference(setting=s.label, baseline=None, diff=None, ci=None, tokens_ratio=None)
            )
            continue
        base = max(cheaper, key=lambda g: (g.acc, -g.tokens))
        own = acc[:, index[s.label]]
        allowed = grid_cols[grid_tokens <= s.tokens]
        resampled = [own[idx].mean() - acc[np.ix_(idx, allowed)].mean(axis=0).max() for idx in boots]
        out.append(
            PairedDifference(
                setting=s.label,
                baseline=base.label,
                diff=float(own.mean() - acc[:, index[base.label]].mean()),
                ci=_ci(np.array(resampled)),
                tokens_ratio=s.tokens / base.tokens if base.tokens else None,
            )
        )
    return out


def _pair(
    settings: list[StrategySetting], acc: np.ndarray, boots: np.ndarray, a: str, b: str
) -> PairedDifference:
    """Setting ``a`` minus setting ``b`` on the same questions, with a paired percentile-bootstrap CI."""
    index = {s.label: j for j, s in enumerate(settings)}
    delta = acc[:, index[a]] - acc[:, index[b]]
    base = settings[index[b]]
    return PairedDifference(
        setting=a,
        baseline=b,
        diff=float(delta.mean()),
        ci=_ci(np.array([delta[idx].mean() for idx in boots])),
        tokens_ratio=settings[index[a]].tokens / base.tokens if base.tokens else None,
    )


def _composition(
    matrix: Matrix, ids: list[str], labels: list[str], metric: str, n_boot: int, seed: int
) -> dict[str, Any]:
    """Questions wrong at every depth of the iterative search axis (think 0, one sample), and each
    non-iterative setting's accuracy on them."""
    axis = [s for s in labels if s.startswith("iterative ") and s.endswith(" T0 N1")]
    if not axis:
        return {"search_failed": 0, "rescues": []}
    failed = [q for q in ids if all(matrix[q][s][metric] == 0 for s in axis)]
    rescues = []
    if failed:
        boots = _boots(len(failed), n_boot, seed)
        # the iterative grid's own reasoning settings are listed too: the questions were picked for being
        # wrong on the search axis, so any other reading answers some of them by chance alone
        for s in labels:
            if s in axis:
                continue
            values = np.array([matrix[q][s][metric] for q in failed], dtype=float)
            rescues.append(Rescue(setting=s, share=float(values.mean()), ci=_ci(values[boots].mean(axis=1))))
    return {"search_failed": len(failed), "rescues": rescues}


def _by_type(
    matrix: Matrix, ids: list[str], settings: list[StrategySetting], metric: str
) -> list[TypeAccuracy]:
    """Accuracy per question type (hops for MuSiQue) of each strategy's deepest setting and of the
    iterative grid's best."""
    shown = _headline_settings(settings)
    groups: dict[str, list[str]] = defaultdict(list)
    for q in ids:
        any_row = next(iter(matrix[q].values()))
        group = any_row.get("qtype") or (f"{any_row['hops']} hops" if any_row.get("hops") else None)
        if group:
            groups[str(group)].append(q)
    return [
        TypeAccuracy(
            qtype=g, n=len(qs), acc={s: float(np.mean([matrix[q][s][metric] for q in qs])) for s in shown}
        )
        for g, qs in sorted(groups.items())
    ]


def _headline_settings(settings: list[StrategySetting]) -> list[str]:
    """The iterative grid's most accurate setting and every other strategy's deepest reading."""
    grid = [s for s in settings if s.strategy == "iterative"]
    shown = [max(grid, key=lambda s: (s.acc, -s.tokens)).label] if grid else []
    deepest: dict[str, StrategySetting] = {}
    for s in settings:
        if s.strategy == "iterative":
            continue
        run = s.label.rsplit(" d", 1)[0]
        if run not in deepest or s.depth > deepest[run].depth:
            deepest[run] = s
    return shown + [s.label for s in deepest.values()]


def _value_quality(
    traces: dict[tuple[str, str], dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    model: str,
    suite: str,
    golds: dict[str, list[str]],
    metric: str,
    n_boot: int,
    seed: int,
) -> list[ValueQuality]:
    """Each value function (logprob, agreement, support where measured) against the correctness of the
    final round's candidates, in the comparison's metric (em, cover-EM, or F1 >= 0.5)."""
    by = _candidate_values(traces, runs, model, suite, golds, metric)
    return [
        _judge_value(name, value, questions, n_boot, seed) for (name, value), questions in sorted(by.items())
    ]


def _candidate_values(
    traces: dict[tuple[str, str], dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    model: str,
    suite: str,
    golds: dict[str, list[str]],
    metric: str,
) -> dict[tuple[str, str], dict[str, list[tuple[float, int]]]]:
    """(run, value function) -> question -> (value, right) of each final-round candidate, from the
    fixed-controller, unbudgeted runs of this model and suite."""
    by: dict[tuple[str, str], dict[str, list[tuple[float, int]]]] = defaultdict(lambda: defaultdict(list))
    for (key, q), trace in traces.items():
        cfg = runs.get(key, {})
        wanted = (cfg.get("model"), cfg.get("suite")) == (model, suite) and q in golds
        if not wanted or cfg.get("controller") != "fixed" or cfg.get("budget") is not None:
            continue
        events = [e for e in trace.get("strategy_events", []) if e["kind"] == "candidates"]
        for c in events[-1]["candidates"] if events else []:
            right = _correct(c["answer"], golds[q], metric)
            for value in ("logprob", "agreement", "support"):
                if c.get(value) is not None:
                    by[(strategy_name(cfg), value)][q].append((float(c[value]), right))
    return by


def _judge_value(
    name: str, value: str, questions: dict[str, list[tuple[float, int]]], n_boot: int, seed: int
) -> ValueQuality:
    from sklearn.metrics import roc_auc_score

    points = [p for ps in questions.values() for p in ps]
    y = [p[1] for p in points]
    mixed = {q: ps for q, ps in questions.items() if 0 < sum(r for _, r in ps) < len(ps)}
    within = np.array([float(roc_auc_score([r for _, r in ps], [v for v, _ in ps])) for ps in mixed.values()])
    picked = [max(ps, key=lambda p: p[0])[1] for ps in mixed.values()]
    return ValueQuality(
        strategy=name,
        value=value,
        candidates=len(points),
        positives=int(sum(y)),
        mixed_questions=len(mixed),
        questions=len(questions),
        ceiling=float(np.mean([any(r for _, r in ps) for ps in questions.values()])) if questions else None,
        within=float(within.mean()) if len(within) else None,
        within_ci=_ci(within[_boots(len(within), n_boot, seed)].mean(axis=1)) if len(within) > 1 else None,
        picked=float(np.mean(picked)) if picked else None,
        pooled=float(roc_auc_score(y, [p[0] for p in points])) if 0 < sum(y) < len(y) else None,
    )


def _decompose_stats(
    traces: dict[tuple[str, str], dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    model: str,
    suite: str,
    golds: dict[str, list[str]],
    texts: dict[str, str],
    metric: str,
) -> list[DecomposeStats]:
    by_run: dict[str, list[tuple[str, list[dict[str, Any]]]]] = defaultdict(list)
    for (key, q), trace in traces.items():
        cfg = runs.get(key, {})
        if (cfg.get("model"), cfg.get("suite"), cfg.get("strategy")) == (model, suite, "decompose"):
            by_run[strategy_name(cfg)].append((q, trace.get("strategy_events", [])))
    return [
        _decompose_run(name, questions, golds, texts, metric) for name, questions in sorted(by_run.items())
    ]


def _share(values: list[Any]) -> float:
    """The mean of booleans or numbers (0.0 for none)."""
    return float(np.mean(values)) if values else 0.0


def _echoes(step: dict[str, Any]) -> bool:
    """A step answer that only repeats words of its own sub-question."""
    from sounding.evals.metrics import normalize_answer

    words = set(normalize_answer(step.get("answer") or "").split())
    return bool(words) and words <= set(normalize_answer(step["question"]).split())


def _decompose_run(
    name: str,
    questions: list[tuple[str, list[dict[str, Any]]]],
    golds: dict[str, list[str]],
    texts: dict[str, str],
    metric: str,
) -> DecomposeStats:
    events = [e for _, q in questions for e in q]
    return DecomposeStats(
        strategy=name,
        questions=len(questions),
        **_split_stats(questions, texts),
        **_vote_stats(events),
        **_step_scores([(q, evs) for q, evs in questions if q in golds], golds, metric),
    )


def _split_stats(questions: list[tuple[str, list[dict[str, Any]]]], texts: dict[str, str]) -> dict[str, Any]:
    splits = [(q, e) for q, evs in questions for e in evs if e["kind"] == "split"]
    subs = [(q, sub) for q, e in splits for sub in e["subquestions"]]
    return {
        "subquestions": _share([len(e["subquestions"]) for _, e in splits]),
        "single": _share([len(e["subquestions"]) == 1 for _, e in splits]),
        "split_red_flagged": _share([bool(e.get("red_flags")) for _, e in splits]),
        "chained": _share([any("#" in sub for sub in e["subquestions"]) for _, e in splits]),
        "unanchored": _share([not _anchored(sub, texts[q]) for q, sub in subs if texts.get(q)]),
    }


def _vote_stats(events: list[dict[str, Any]]) -> dict[str, Any]:
    votes = [e for e in events if e["kind"] in ("step", "compose")]
    flags: dict[str, int] = defaultdict(int)
    for v in votes:
        for kind, n in (v.get("red_flags") or {}).items():
            flags[kind] += n
    return {
        "ballots": _share(
            [sum(v["votes"].values()) + sum((v.get("red_flags") or {}).values()) for v in votes]
        ),
        "decided": _share([v.get("ended") == "ahead" for v in votes]),
        "red_flags": dict(flags),
        "echo": _share([_echoes(e) for e in votes if e["kind"] == "step"]),
    }


def _step_scores(
    scored: list[tuple[str, list[dict[str, Any]]]], golds: dict[str, list[str]], metric: str
) -> dict[str, Any]:
    def step_right(q: str, events: list[dict[str, Any]]) -> bool:
        steps = [e for e in events if e["kind"] == "step"]
        return any(_correct(e.get("answer") or "", golds[q], metric) for e in steps)

    return {
        "step_right": _share([step_right(q, evs) for q, evs in scored]),
        "final_right": _share([_correct(_final_of(evs), golds[q], metric) for q, evs in scored]),
        "scored": len(scored),
    }


def _anchored(subquestion: str, question: str) -> bool:
    """Whether a sub-question names an earlier answer (#n) or one of the question's capitalised words
    after its first (a lexical reading: names, titles, places)."""
    names = name_words(question)
    return "#" in subquestion or bool(names & {w.lower() for w in re.findall(r"[\w'-]+", subquestion)})


def _final_of(events: list[dict[str, Any]]) -> str:
    """The decomposition's own answer: its composition's winner, or its last step's when it had none."""
    for kind in ("compose", "step"):
        last = [e for e in events if e["kind"] == kind]
        if last:
            return str(last[-1].get("answer") or "")
    return ""


def _correct(answer: str, golds: list[str], metric: str) -> int:
    if not answer:
        return 0
    scores = score_answer(answer, golds)
    if metric == "em":
        return int(scores.em > 0)
    if metric == "f1":
        return int(scores.f1 >= 0.5)
    return int(scores.cover_em > 0)


def model_gap(
    small: Matrix, large: Matrix, *, suite: str, names: tuple[str, str], metric: str = "cover_em",
    n_boot: int = 1000, seed: int = 7,
) -> ModelGap | None:  # fmt: skip
    """The smaller model's best setting (of all its strategies) against the larger model's best, on
    the questions both answered at every setting; both bests re-chosen in every resample."""
    s_labels = sorted({s for by in small.values() for s in by})
    l_labels = sorted({s for by in large.values() for s in by})
    ids = sorted(
        q for q in set(small) & set(large) if _complete(small[q], s_labels) and _complete(large[q], l_labels)
    )
    if len(ids) < 2:
        return None
    a = np.array([[small[q][s][metric] for s in s_labels] for q in ids], dtype=float)
    b = np.array([[large[q][s][metric] for s in l_labels] for q in ids], dtype=float)
    i, j = int(a.mean(0).argmax()), int(b.mean(0).argmax())
    gaps = [a[idx].mean(0).max() - b[idx].mean(0).max() for idx in _boots(len(ids), n_boot, seed)]
    s_flops = [_mean_flops(small, ids, s) for s in s_labels]
    reaching = [k for k in range(len(s_labels)) if a[:, k].mean() >= b[:, j].mean()]
    cheapest = min(reaching, key=lambda k: (not np.isfinite(s_flops[k]), s_flops[k])) if reaching else None
    l_flops = _mean_flops(large, ids, l_labels[j])
    return ModelGap(
        suite=suite, small=names[0], large=names[1], questions=len(ids),
        small_best=s_labels[i], small_best_acc=float(a[:, i].mean()),
        large_best=l_labels[j], large_best_acc=float(b[:, j].mean()),
        gap=float(a[:, i].mean() - b[:, j].mean()), gap_ci=_ci(np.array(gaps)),
        small_reaching=s_labels[cheapest] if cheapest is not None else None,
        flops_ratio=_ratio(s_flops[cheapest], l_flops) if cheapest is not None else None,
    )  # fmt: skip


def _complete(by_setting: dict[str, Any], labels: list[str]) -> bool:
    return all(s in by_setting for s in labels)


def _mean_flops(matrix: Matrix, ids: list[str], label: str) -> float:
    """A setting's mean FLOPs over the questions (NaN where a row's FLOPs were not priced)."""
    return float(np.mean([matrix[q][label]["cost"].get("flops", np.nan) for q in ids]))


def _ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, None where either is NaN or the denominator is 0."""
    if np.isfinite(numerator) and np.isfinite(denominator) and denominator:
        return float(numerator / denominator)
    return None


# --- Markdown -----------------------------------------------------------------------------------------


def _pm(ci: tuple[float, float] | None) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""


def markdown(comparisons: list[StrategyComparison], gaps: list[ModelGap]) -> str:
    out: list[str] = []
    for c in comparisons:
        out += _settings_md(c) + _differences_md(c) + _composition_md(c)
        out += _types_md(c) + _values_md(c) + _decompose_md(c) + _pairs_md(c) + [""]
    for g in gaps:
        out += _gap_md(g)
    return "\n".join(out)


def _settings_md(c: StrategyComparison) -> list[str]:
    out = [
        f"## {c.model} on {c.suite}: strategies on one compute axis ({c.metric}, n = {c.questions})",
        "",
        "| setting | acc | 95% CI | token-eq. | searches | GFLOPs | frontier |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sorted(c.settings, key=lambda s: s.tokens):
        flops = f"{s.flops / 1e9:,.0f}" if s.flops else ""
        on = "yes" if s.label in c.envelope else ""
        out.append(
            f"| {s.label} | {s.acc:.3f} | [{s.ci[0]:.3f}, {s.ci[1]:.3f}] | {s.tokens:,.0f} | "
            f"{s.searches:.2f} | {flops} | {on} |"
        )
    return out


def _differences_md(c: StrategyComparison) -> list[str]:
    if not c.differences:  # only the iterative grid (a reference model): nothing to set against it
        return []
    out = [
        "",
        "Paired difference against the most accurate iterative setting at equal or lower compute (the "
        "baseline re-chosen in every bootstrap resample, so the CI carries its selection):",
        "",
        "| setting | baseline | difference | 95% CI | spend / baseline |",
        "|---|---|---|---|---|",
    ]
    for d in c.differences:
        if d.baseline is None:
            out.append(f"| {d.setting} | (no iterative setting this cheap) | | | |")
        else:
            out.append(
                f"| {d.setting} | {d.baseline} | {d.diff:+.3f} | {_pm(d.ci)} | {d.tokens_ratio:.2f}x |"
            )
    return out


def _pairs_md(c: StrategyComparison) -> list[str]:
    if not c.pairs:
        return []
    out = ["", f"Paired differences asked for (A minus B on the same {c.questions} questions, 95% percentile "
           "bootstrap CI):", "", "| A | B | difference | 95% CI | spend A / B |", "|---|---|---|---|---|"]  # fmt: skip
    for d in c.pairs:
        ratio = f"{d.tokens_ratio:.2f}x" if d.tokens_ratio is not None else ""
        out.append(f"| {d.setting} | {d.baseline} | {d.diff:+.3f} | {_pm(d.ci)} | {ratio} |")
    return out


def _composition_md(c: StrategyComparison) -> list[str]:
    if not c.rescues:
        return []
    out = ["", f"Composition: {c.search_failed} of {c.questions} questions were wrong at every search depth "
           "(iterative, think 0, one sample); each other setting's share of them (picked for being wrong, so "
           "any other reading answers some by chance: the iterative reasoning settings are the reference):",
           "", "| setting | share | 95% CI |", "|---|---|---|"]  # fmt: skip
    return out + [f"| {r.setting} | {r.share:.3f} | [{r.ci[0]:.3f}, {r.ci[1]:.3f}] |" for r in c.rescues]


def _types_md(c: StrategyComparison) -> list[str]:
    if not c.by_type:
        return []
    shown = list(c.by_type[0].acc)
    out = [
        "",
        "Per question type:",
        "",
        "| type | n | " + " | ".join(shown) + " |",
        "|---|---|" + "---|" * len(shown),
    ]
    return out + [
        f"| {t.qtype} | {t.n} | " + " | ".join(f"{t.acc[s]:.3f}" for s in shown) + " |" for t in c.by_type
    ]


def _or_na(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "n/a"


def _values_md(c: StrategyComparison) -> list[str]:
    if not c.values:
        return []
    out = ["", "Value functions on the final round's candidates: AUROC within a question (mean over the "
           "questions whose candidates are neither all right nor all wrong; 0.5 is chance), how often the "
           "top-valued candidate is right there, AUROC pooled over questions, and the ceiling: the share of "
           "questions with some right candidate (what a perfect value function would score):", "",
           "| strategy | value | candidates | right | mixed questions | AUROC within | 95% CI | top right | pooled "
           "| questions | ceiling |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for v in c.values:
        ci = f"[{v.within_ci[0]:.3f}, {v.within_ci[1]:.3f}]" if v.within_ci else ""
        out.append(f"| {v.strategy} | {v.value} | {v.candidates} | {v.positives} | {v.mixed_questions} | "
                   f"{_or_na(v.within)} | {ci} | {_or_na(v.picked)} | {_or_na(v.pooled)} | {v.questions} | "
                   f"{_or_na(v.ceiling)} |")  # fmt: skip
    return out


def _decompose_md(c: StrategyComparison) -> list[str]:
    if not c.decompose:
        return []
    out = ["", "Decompose, from its traces: sub-questions per question, share split into one (the question "
           "itself), share whose first split was red-flagged, share chained (#n), sub-questions naming none of "
           "the question's capitalised words nor an earlier answer (unanchored), ballots per vote, votes "
           "decided by a lead of k, discarded ballots, step answers that only repeat their sub-question, and "
           "on the compared questions: some step's answer right against the decomposition's final answer right:",
           "", "| run | questions | sub-q. | single | split flagged | chained | unanchored | ballots/vote | "
           "decided | discarded | echo | step right | final right |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for st in c.decompose:
        flags = ", ".join(f"{k} {n}" for k, n in sorted(st.red_flags.items())) or "none"
        out.append(f"| {st.strategy} | {st.questions} | {st.subquestions:.2f} | {st.single:.2f} | "
                   f"{st.split_red_flagged:.2f} | {st.chained:.2f} | {st.unanchored:.2f} | {st.ballots:.2f} | "
                   f"{st.decided:.2f} | {flags} | {st.echo:.2f} | {st.step_right:.2f} (n = {st.scored}) | "
                   f"{st.final_right:.2f} |")  # fmt: skip
    return out


def _gap_md(g: ModelGap) -> list[str]:
    if g.small_reaching and g.flops_ratio:
        reach = f"reaches it with {g.small_reaching} at {g.flops_ratio:.2f}x its FLOPs"
    elif g.small_reaching:
        reach = f"reaches it with {g.small_reaching} (FLOPs not priced)"
    else:
        reach = "never reaches it"
    return [
        f"## {g.small} against {g.large} on {g.suite} (n = {g.questions})",
        "",
        f"Best against best: {g.small_best} {g.small_best_acc:.3f} vs {g.large_best} {g.large_best_acc:.3f}, "
        f"gap {g.gap:+.3f} {_pm(g.gap_ci)} (both re-chosen per resample); the smaller model {reach}.",
        "",
    ]
