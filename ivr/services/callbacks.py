"""Callback promises in SQLite: stored durably before the caller is told "we'll call you".

Writes run on one worker thread (SQLite blocks), so the event loop never waits
on the disk; `synchronous=FULL` makes a stored row survive a crash or power cut.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..engine.services import CallbackRequest

SCHEMA = """
CREATE TABLE IF NOT EXISTS callbacks (
    id          TEXT PRIMARY KEY,
    number      TEXT NOT NULL,
    queue       TEXT NOT NULL,
    due_by      TEXT NOT NULL,            -- ISO 8601, UTC
    context     TEXT NOT NULL,            -- the hand-off payload, JSON
    call_id     TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT 'pending',  -- pending, dialling, done, failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (status, due_by);
"""


class SqliteCallbacks:
    """The durable CallbackStore (SQLite file; the schema is plain SQL, ready for Postgres)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callbacks-db")
        self._db: sqlite3.Connection | None = None
        self._pool.submit(self._open).result()

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        self._db = db

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def store(self, request: CallbackRequest) -> str:
        cb_id = "cb-" + uuid.uuid4().hex[:12]
        row = (cb_id, request.number, request.queue, request.due_by.astimezone(dt.UTC).isoformat(),
               json.dumps(request.context, default=str), request.call_id,
               dt.datetime.now(dt.UTC).isoformat())
        await self._run(self._insert, row)
        return cb_id

    def _insert(self, row) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO callbacks (id, number, queue, due_by, context, call_id, created_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    async def pending(self) -> list[dict[str, Any]]:
        """Requests not yet kept, soonest first."""
        return await self._run(self._select, "SELECT * FROM callbacks WHERE status='pending' ORDER BY due_by")

    async def get(self, cb_id: str) -> dict[str, Any] | None:
        rows = await self._run(self._select, "SELECT * FROM callbacks WHERE id=?", (cb_id,))
        return rows[0] if rows else None

    def _select(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        assert self._db is not None
        cur = self._db.execute(sql, args)
        names = [c[0] for c in cur.description]
        out = []
        for r in cur.fetchall():
            d = dict(zip(names, r, strict=True))
            d["context"] = json.loads(d["context"])
            out.append(d)
        return out

    def close(self) -> None:
        def _close():
            if self._db is not None:
                self._db.close()
                self._db = None
        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)
