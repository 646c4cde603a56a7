"""Callback promises in SQLite: stored durably before the caller is told "we'll call you".

A row is the whole promise: the number, the queue, the hand-off context, when
to dial and how often to try. The worker (callback_worker.py) claims due rows
by moving them to `dialling` in one statement, so a row is never dialled
twice at once; a row found in `dialling` at start-up belongs to a process that
died mid-call and goes back to `pending`. Statuses: pending, dialling, done,
failed, cancelled.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

from ..engine.services import CallbackRequest
from .sqlite import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS callbacks (
    id          TEXT PRIMARY KEY,
    number      TEXT NOT NULL,
    queue       TEXT NOT NULL,
    due_by      TEXT NOT NULL,            -- ISO 8601, UTC: the promise is kept by then
    context     TEXT NOT NULL,            -- the hand-off payload, JSON
    call_id     TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);
"""
# Columns added after the first release: added to an older database when it is opened.
COLUMNS = {
    "dial_at": "REAL",                               # epoch seconds the next attempt may start
    "for_agent": "INTEGER NOT NULL DEFAULT 0",       # 1: dialled early when an agent is free
    "max_attempts": "INTEGER NOT NULL DEFAULT 3",
    "retry_after": "REAL NOT NULL DEFAULT 300",
    "greeting": "TEXT NOT NULL DEFAULT ''",
    "language": "TEXT NOT NULL DEFAULT 'en-US'",
    "last_result": "TEXT NOT NULL DEFAULT ''",
    "updated_at": "TEXT NOT NULL DEFAULT ''",
}
INDEX = "CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (status, dial_at)"


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class SqliteCallbacks:
    """The durable CallbackStore (SQLite file; the schema is plain SQL, ready for Postgres)."""

    def __init__(self, path) -> None:
        self.db = Database(path, SCHEMA)
        self.recovered = self.db.call(self._migrate_and_recover)

    def _migrate_and_recover(self) -> int:
        db = self.db.db
        have = {r[1] for r in db.execute("PRAGMA table_info(callbacks)")}
        for name, decl in COLUMNS.items():
            if name not in have:
                db.execute(f"ALTER TABLE callbacks ADD COLUMN {name} {decl}")
        db.execute(INDEX)
        # Rows stored before dial_at existed are due when their promise runs out.
        db.execute("UPDATE callbacks SET dial_at = strftime('%s', due_by) WHERE dial_at IS NULL")
        return self.db.execute("UPDATE callbacks SET status='pending', dial_at=?, last_result=?, updated_at=? "
                               "WHERE status='dialling'", (time.time(), "interrupted by a restart", _now_iso()))

    # ---- the CallbackStore protocol ----------------------------------------------------
    async def store(self, request: CallbackRequest) -> str:
        cb_id = "cb-" + uuid.uuid4().hex[:12]
        # Waiting for an agent, the last moment to start still leaves room for every attempt.
        latest = request.due_by.timestamp() - (request.attempts - 1) * request.retry_after
        dial_at = request.dial_at.timestamp() if request.dial_at else max(time.time(), latest)
        row = (cb_id, request.number, request.queue, request.due_by.astimezone(dt.UTC).isoformat(),
               json.dumps(request.context, default=str), request.call_id, _now_iso(), dial_at,
               int(request.dial_at is None), request.attempts, request.retry_after, request.greeting,
               request.language, _now_iso())
        await self.db.run(self._insert, row)
        return cb_id

    def _insert(self, row) -> None:
        with self.db.db as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO callbacks (id, number, queue, due_by, context, call_id, created_at, dial_at, "
                       "for_agent, max_attempts, retry_after, greeting, language, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    # ---- for the worker ---------------------------------------------------------------------
    async def claim_due(self, limit: int) -> list[dict[str, Any]]:
        """Move up to `limit` pending rows whose time has come to `dialling` and return them."""
        return await self.db.run(self._claim, "status='pending' AND dial_at <= ?", (time.time(),), limit)

    async def claim_for_agent(self, queue: str) -> dict[str, Any] | None:
        """An agent of `queue` is free: claim the oldest request waiting for one."""
        got = await self.db.run(self._claim, "status='pending' AND for_agent=1 AND queue=?", (queue,), 1)
        return got[0] if got else None

    def _claim(self, where: str, args: tuple, limit: int) -> list[dict[str, Any]]:
        db = self.db.db
        with db:
            db.execute("BEGIN IMMEDIATE")
            ids = [r[0] for r in db.execute(f"SELECT id FROM callbacks WHERE {where} ORDER BY dial_at, created_at "
                                            "LIMIT ?", (*args, limit))]
            for cb_id in ids:
                db.execute("UPDATE callbacks SET status='dialling', attempts=attempts+1, updated_at=? WHERE id=?",
                           (_now_iso(), cb_id))
        return [self._decode(r) for cb_id in ids for r in self.db.select("SELECT * FROM callbacks WHERE id=?",
                                                                         (cb_id,))]

    async def finish(self, cb_id: str, status: str, result: str, retry_in: float | None = None) -> None:
        """Record an attempt: `done`/`failed`, or `pending` again in `retry_in` seconds."""
        dial_at = time.time() + retry_in if retry_in is not None else None
        await self.db.run(self.db.execute,
                          "UPDATE callbacks SET status=?, last_result=?, updated_at=?, "
                          "dial_at=COALESCE(?, dial_at) WHERE id=?",
                          (status, result, _now_iso(), dial_at, cb_id))

    async def cancel(self, cb_id: str) -> bool:
        """Withdraw a request that has not been kept yet."""
        return bool(await self.db.run(self.db.execute, "UPDATE callbacks SET status='cancelled', updated_at=? "
                                      "WHERE id=? AND status='pending'", (_now_iso(), cb_id)))

    # ---- reading ------------------------------------------------------------------------------
    async def pending(self) -> list[dict[str, Any]]:
        """Requests not yet kept, soonest first."""
        return await self.list("pending")

    async def list(self, status: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Requests, with a status or all, soonest first."""
        where, args = ("WHERE status=?", (status,)) if status else ("", ())
        rows = await self.db.rows(f"SELECT * FROM callbacks {where} ORDER BY dial_at, created_at LIMIT ?",
                                  (*args, limit))
        return [self._decode(r) for r in rows]

    async def get(self, cb_id: str) -> dict[str, Any] | None:
        rows = await self.db.rows("SELECT * FROM callbacks WHERE id=?", (cb_id,))
        return self._decode(rows[0]) if rows else None

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        row["context"] = json.loads(row["context"])
        row["for_agent"] = bool(row.get("for_agent"))
        if row.get("dial_at") is not None:
            row["dial_at_iso"] = dt.datetime.fromtimestamp(row["dial_at"], dt.UTC).isoformat(timespec="seconds")
        return row

    def close(self) -> None:
        self.db.close()
