"""The result store: SQLite in WAL mode, append-only and idempotent.

One row per (run config, question, round). All rows of one question are written in one transaction
with ``INSERT OR IGNORE`` on the primary key, so a sweep killed at any point (even ``kill -9``) and
restarted continues where it stopped with no lost and no duplicated rows. Backend failures go to a
separate ``errors`` table (never counted as wrong answers); ``--retry-errors`` re-runs those
questions, and nothing is ever deleted.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    run_key TEXT NOT NULL REFERENCES runs(run_key),
    question_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    rounds_done INTEGER NOT NULL,
    question TEXT NOT NULL,
    qtype TEXT,
    hops INTEGER,
    answer TEXT NOT NULL,
    golds TEXT NOT NULL,
    em REAL NOT NULL,
    f1 REAL NOT NULL,
    cover_em REAL NOT NULL,
    recall REAL,
    judge INTEGER,
    judge_model TEXT,
    searches INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost TEXT NOT NULL,
    llm_calls INTEGER NOT NULL,
    spend_by_event TEXT NOT NULL,
    wall_seconds REAL NOT NULL,
    stop_reason TEXT,
    is_final INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_key, question_id, round)
);
CREATE TABLE IF NOT EXISTS errors (
    run_key TEXT NOT NULL,
    question_id TEXT NOT NULL,
    error TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS anytime_checks (
    run_key TEXT NOT NULL,
    question_id TEXT NOT NULL,
    depth INTEGER NOT NULL,
    anytime_answer TEXT NOT NULL,
    independent_answer TEXT NOT NULL,
    agree INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_key, question_id, depth)
);
"""

RESULT_COLUMNS = (
    "run_key",
    "question_id",
    "round",
    "rounds_done",
    "question",
    "qtype",
    "hops",
    "answer",
    "golds",
    "em",
    "f1",
    "cover_em",
    "recall",
    "judge",
    "judge_model",
    "searches",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "llm_calls",
    "spend_by_event",
    "wall_seconds",
    "stop_reason",
    "is_final",
    "created",
)


class ResultStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def register_run(self, run_key: str, config: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?)",
                (run_key, json.dumps(config, sort_keys=True), time.time()),
            )

    def done_questions(self, run_key: str) -> set[str]:
        rows = self._db.execute("SELECT DISTINCT question_id FROM results WHERE run_key = ?", (run_key,))
        return {r[0] for r in rows}

    def errored_questions(self, run_key: str) -> set[str]:
        rows = self._db.execute("SELECT DISTINCT question_id FROM errors WHERE run_key = ?", (run_key,))
        return {r[0] for r in rows} - self.done_questions(run_key)

    def add_question(self, rows: list[dict[str, Any]]) -> int:
        """Write every round of one question atomically; returns how many rows were new."""
        now = time.time()
        with self._tx() as db:
            before = db.total_changes
            for row in rows:
                values = {**row, "created": now}
                for key in ("golds", "cost", "spend_by_event"):
                    if not isinstance(values[key], str):
                        values[key] = json.dumps(values[key])
                db.execute(
                    f"INSERT OR IGNORE INTO results ({', '.join(RESULT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in RESULT_COLUMNS)})",
                    tuple(values[c] for c in RESULT_COLUMNS),
                )
            return db.total_changes - before

    def add_error(self, run_key: str, question_id: str, error: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO errors VALUES (?, ?, ?, ?)", (run_key, question_id, error, time.time()))

    def add_anytime_check(
        self, run_key: str, question_id: str, depth: int, anytime: str, independent: str, agree: bool
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO anytime_checks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_key, question_id, depth, anytime, independent, int(agree), time.time()),
            )

    def runs(self) -> dict[str, dict[str, Any]]:
        return {
            k: json.loads(c) for k, c in self._db.execute("SELECT run_key, config FROM runs ORDER BY created")
        }

    def results(self, run_key: str | None = None) -> list[dict[str, Any]]:
        query = f"SELECT {', '.join(RESULT_COLUMNS)} FROM results"
        args: tuple[Any, ...] = ()
        if run_key is not None:
            query += " WHERE run_key = ?"
            args = (run_key,)
        rows = []
        for values in self._db.execute(query + " ORDER BY run_key, question_id, round", args):
            row = dict(zip(RESULT_COLUMNS, values, strict=True))
            for key in ("golds", "cost", "spend_by_event"):
                row[key] = json.loads(row[key])
            rows.append(row)
        return rows

    def errors(self) -> list[dict[str, Any]]:
        cols = ("run_key", "question_id", "error", "created")
        return [dict(zip(cols, r, strict=True)) for r in self._db.execute("SELECT * FROM errors")]

    def anytime_checks(self) -> list[dict[str, Any]]:
        cols = ("run_key", "question_id", "depth", "anytime_answer", "independent_answer", "agree", "created")
        return [dict(zip(cols, r, strict=True)) for r in self._db.execute("SELECT * FROM anytime_checks")]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
