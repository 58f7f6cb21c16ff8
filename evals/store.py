"""The result store: SQLite in WAL mode, append-only and idempotent.

One row per (run config, question, round). All rows of one question are written in one transaction
with ``INSERT OR IGNORE`` on the primary key, so a sweep killed at any point (even ``kill -9``) and
restarted continues where it stopped with no lost and no duplicated rows. Backend failures go to a
separate ``errors`` table (never counted as wrong answers); ``--retry-errors`` re-runs those
questions, and nothing is ever deleted.

One writer: a store object owns one connection and serialises every statement on it behind a lock,
so any number of sweep threads may share it (sqlite3 transactions are per connection: two threads
interleaving ``BEGIN`` on one connection was how rows used to be lost). Across processes SQLite's
own file lock serialises writers. ``ResultStore.open_read_only`` never creates, migrates or writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS_TABLE = """
CREATE TABLE IF NOT EXISTS results (
    run_key TEXT NOT NULL REFERENCES runs(run_key),
    question_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    think INTEGER NOT NULL DEFAULT 0,
    samples INTEGER NOT NULL DEFAULT 1,
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
    PRIMARY KEY (run_key, question_id, round, think, samples)
);
"""
SCHEMA = (
    RESULTS_TABLE
    + """
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS traces (
    run_key TEXT NOT NULL,
    question_id TEXT NOT NULL,
    trace TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_key, question_id)
);
CREATE TABLE IF NOT EXISTS features (
    run_key TEXT NOT NULL,
    question_id TEXT NOT NULL,
    features TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_key, question_id)
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
CREATE TABLE IF NOT EXISTS setting_checks (
    run_key TEXT NOT NULL,
    question_id TEXT NOT NULL,
    depth INTEGER NOT NULL,
    think INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    anytime_answer TEXT NOT NULL,
    independent_answer TEXT NOT NULL,
    agree INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_key, question_id, depth, think, samples)
);
"""
)

RESULT_COLUMNS = (
    "run_key",
    "question_id",
    "round",
    "think",
    "samples",
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


class StoreError(RuntimeError):
    """A result store that cannot be opened: missing, not SQLite, truncated, or not a sounding store."""


class StoreWriteError(StoreError):
    """A write the store could not make (a full disk, a read-only folder, an I/O error). Not a question's
    failure: a sweep stops at once rather than recording the question in flight as an error."""


class ResultStore:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._lock = threading.RLock()
        try:
            if read_only:
                if not path.is_file():
                    raise StoreError(f"no result store at {path}")
                uri = f"file:{path.resolve()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(
                    str(path), timeout=60, check_same_thread=False, isolation_level=None
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._check_schema(creating=True)
                self._migrate()
                self._db.executescript(SCHEMA)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path} is not a readable sounding result store: {exc}") from exc

    @classmethod
    def open_read_only(cls, path: Path) -> ResultStore:
        return cls(path, read_only=True)

    def _columns(self, table: str) -> list[str]:
        return [r[1] for r in self._db.execute(f"PRAGMA table_info({table})")]

    def _migrate(self) -> None:
        """A store from before the reasoning axis: rebuild ``results`` with (think, samples) in its key,
        old rows as (think 0, samples 1), in one transaction (all or nothing)."""
        columns = self._columns("results")
        if not columns or "think" in columns:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("ALTER TABLE results RENAME TO results_v1")
            self._db.execute(RESULTS_TABLE)
            old = ", ".join(c for c in RESULT_COLUMNS if c not in ("think", "samples"))
            self._db.execute(f"INSERT INTO results ({old}) SELECT {old} FROM results_v1")
            self._db.execute("DROP TABLE results_v1")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _check_schema(self, creating: bool = False) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if creating:
            if tables and "results" not in tables:
                raise StoreError(f"{self.path} is an SQLite file but not a sounding result store")
            return
        missing = {"runs", "results", "errors"} - tables
        if missing:
            raise StoreError(
                f"{self.path} is not a sounding result store (no {', '.join(sorted(missing))} table)"
            )
        self._db.execute("SELECT COUNT(*) FROM results").fetchone()  # touches the pages: truncation shows

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise StoreError(f"{self.path} was opened read-only")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLite may already have rolled back (a full disk)
                        self._db.execute("ROLLBACK")
                    raise
            except (sqlite3.OperationalError, OSError) as exc:
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise
                raise StoreWriteError(
                    f"cannot write {self.path}: {exc}; every finished question is kept: "
                    "free space (or fix the folder's permissions) and rerun the same command"
                ) from exc

    def register_run(self, run_key: str, config: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?)",
                (run_key, json.dumps(config, sort_keys=True), time.time()),
            )

    def done_questions(self, run_key: str) -> set[str]:
        rows = self._query("SELECT DISTINCT question_id FROM results WHERE run_key = ?", (run_key,))
        return {r[0] for r in rows}

    def errored_questions(self, run_key: str) -> set[str]:
        rows = self._query("SELECT DISTINCT question_id FROM errors WHERE run_key = ?", (run_key,))
        return {r[0] for r in rows} - self.done_questions(run_key)

    def add_question(
        self,
        rows: list[dict[str, Any]],
        trace: dict[str, Any] | None = None,
        features: dict[str, Any] | None = None,
    ) -> int:
        """Write every row of one question, its trace and its probe features, atomically; returns how
        many rows were new."""
        now = time.time()
        with self._tx() as db:
            if trace is not None and rows:
                db.execute(
                    "INSERT OR IGNORE INTO traces VALUES (?, ?, ?, ?)",
                    (rows[0]["run_key"], rows[0]["question_id"], json.dumps(trace), now),
                )
            if features is not None and rows:
                db.execute(
                    "INSERT OR IGNORE INTO features VALUES (?, ?, ?, ?)",
                    (rows[0]["run_key"], rows[0]["question_id"], json.dumps(features), now),
                )
            before = db.total_changes
            for row in rows:
                values = {"think": 0, "samples": 1, **row, "created": now}
                for key in ("golds", "cost", "spend_by_event"):
                    if not isinstance(values[key], str):
                        values[key] = json.dumps(values[key])
                db.execute(
                    f"INSERT OR IGNORE INTO results ({', '.join(RESULT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in RESULT_COLUMNS)})",
                    tuple(values[c] for c in RESULT_COLUMNS),
                )
            return db.total_changes - before

    def traces(self, run_key: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """(run key, question id) -> the stored research trace (drafts with every reasoning sample)."""
        tables = {r[0] for r in self._query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "traces" not in tables:
            return {}
        sql = "SELECT run_key, question_id, trace FROM traces"
        args: tuple[Any, ...] = ()
        if run_key is not None:
            sql, args = sql + " WHERE run_key = ?", (run_key,)
        return {(k, q): json.loads(t) for k, q, t in self._query(sql, args)}

    def add_features(self, run_key: str, question_id: str, features: dict[str, Any]) -> None:
        """Probe features of a question already stored (a store swept before features existed)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO features VALUES (?, ?, ?, ?)",
                (run_key, question_id, json.dumps(features), time.time()),
            )

    def features(self, run_key: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """(run key, question id) -> the question's probe features (``budgets/features.py``)."""
        tables = {r[0] for r in self._query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "features" not in tables:
            return {}
        sql = "SELECT run_key, question_id, features FROM features"
        args: tuple[Any, ...] = ()
        if run_key is not None:
            sql, args = sql + " WHERE run_key = ?", (run_key,)
        return {(k, q): json.loads(f) for k, q, f in self._query(sql, args)}

    def add_error(self, run_key: str, question_id: str, error: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO errors VALUES (?, ?, ?, ?)", (run_key, question_id, error, time.time()))

    def add_anytime_check(
        self,
        run_key: str,
        question_id: str,
        depth: int,
        anytime: str,
        independent: str,
        agree: bool,
        *,
        think: int = 0,
        samples: int = 1,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO setting_checks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_key, question_id, depth, think, samples, anytime, independent, int(agree), time.time()),
            )

    def runs(self) -> dict[str, dict[str, Any]]:
        return {k: json.loads(c) for k, c in self._query("SELECT run_key, config FROM runs ORDER BY created")}

    def results(self, run_key: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            have = set(self._columns("results"))
        # a read-only store from before the reasoning axis: its rows are (think 0, samples 1)
        select = [c if c in have else f"{ {'think': 0, 'samples': 1}[c] } AS {c}" for c in RESULT_COLUMNS]
        query = f"SELECT {', '.join(select)} FROM results"
        args: tuple[Any, ...] = ()
        if run_key is not None:
            query += " WHERE run_key = ?"
            args = (run_key,)
        rows = []
        for values in self._query(query + " ORDER BY run_key, question_id, round, think, samples", args):
            row = dict(zip(RESULT_COLUMNS, values, strict=True))
            for key in ("golds", "cost", "spend_by_event"):
                row[key] = json.loads(row[key])
            rows.append(row)
        return rows

    def errors(self) -> list[dict[str, Any]]:
        cols = ("run_key", "question_id", "error", "created")
        return [dict(zip(cols, r, strict=True)) for r in self._query("SELECT * FROM errors")]

    def anytime_checks(self) -> list[dict[str, Any]]:
        """Anytime readings checked against independent runs (depth; think and samples since v2)."""
        cols = ("run_key", "question_id", "depth", "anytime_answer", "independent_answer", "agree", "created")
        tables = {r[0] for r in self._query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        checks = []
        if "anytime_checks" in tables:
            for r in self._query("SELECT * FROM anytime_checks"):
                checks.append({**dict(zip(cols, r, strict=True)), "think": 0, "samples": 1})
        if "setting_checks" in tables:
            cols2 = ("run_key", "question_id", "depth", "think", "samples", *cols[3:])
            checks += [dict(zip(cols2, r, strict=True)) for r in self._query("SELECT * FROM setting_checks")]
        return checks

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM results")[0][0])
