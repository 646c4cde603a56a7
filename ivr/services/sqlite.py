"""A SQLite database driven from the event loop: every statement runs on one worker thread.

SQLite blocks, so the loop never touches it directly; one thread serialises
writers the way SQLite wants anyway. `synchronous=FULL` makes a committed row
survive a crash or a power cut. The SQL kept in the stores is plain (TEXT,
REAL, INTEGER, no AUTOINCREMENT, times as ISO text or epoch seconds) so the
same schema runs on Postgres.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..threads import named_pool

T = TypeVar("T")


class Database:
    """One SQLite file, its schema applied at open, used through `run` and `rows`."""

    def __init__(self, path: str | Path, schema: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool = named_pool(f"db-{self.path.stem}", max_workers=1)
        self._db: sqlite3.Connection | None = None
        self._pool.submit(self._open, schema).result()

    def _open(self, schema: str) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        """The connection: only for functions running on the worker (through `run`)."""
        assert self._db is not None, "database closed"
        return self._db

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread and wait (start-up and shut-down only)."""
        return self._pool.submit(fn, *args).result()

    def select(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        """Rows as dicts (on the database thread)."""
        cur = self.db.execute(sql, args)
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    async def rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        """`select` from the loop."""
        return await self.run(self.select, sql, args)

    def execute(self, sql: str, args: tuple = ()) -> int:
        """One statement in its own transaction (on the database thread); rows changed."""
        with self.db as db:
            return db.execute(sql, args).rowcount

    def close(self) -> None:
        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)
