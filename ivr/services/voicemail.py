"""Voicemail that keeps its promises: SQLite rows, WAV files, and slots reserved before offering.

A message is either complete or absent. Its audio is written to a hidden
temporary name, flushed to disk and renamed; only then is its row committed.
At start-up, whatever a crash left behind is swept: temporary files, files
without a row, rows without a file, and reservations (the calls that held
them died with the process). So the files on disk and the rows in the
database always agree, and the capacity a caller is offered is real.

The data directory belongs to one server process.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import uuid
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..engine.call import Recording
from ..engine.services import Reservation, VoicemailFull
from ..flows.model import Mailbox
from .mailbox import Usage, crossings, room
from .sqlite import Database

log = logging.getLogger("ivr.voicemail")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id          TEXT PRIMARY KEY,
    mailbox     TEXT NOT NULL,
    file        TEXT NOT NULL,            -- relative to the voicemail directory
    seconds     REAL NOT NULL,
    caller      TEXT NOT NULL DEFAULT '',
    dialled     TEXT NOT NULL DEFAULT '',
    call_id     TEXT NOT NULL DEFAULT '',
    intent      TEXT,
    meta        TEXT NOT NULL DEFAULT '{}',  -- JSON: variables, how it ended
    heard       INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL             -- ISO 8601, UTC
);
CREATE INDEX IF NOT EXISTS messages_by_box ON messages (mailbox, created_at);
CREATE TABLE IF NOT EXISTS reservations (
    token       TEXT PRIMARY KEY,
    mailbox     TEXT NOT NULL,
    call_id     TEXT NOT NULL DEFAULT '',
    seconds     REAL NOT NULL,
    expires_at  REAL NOT NULL             -- epoch seconds
);
CREATE INDEX IF NOT EXISTS reservations_by_box ON reservations (mailbox);
"""
RESERVATION_MARGIN_S = 15 * 60.0  # see memory.py: the greeting, a review and a retake fit in it
PART = ".part"

Notify = Callable[[dict[str, Any]], Awaitable[None] | None]


class SqliteVoicemail:
    """The durable VoicemailService: messages under `root/<mailbox>/`, rows in `root/voicemail.db`."""

    def __init__(self, root: str | Path, *, limits: Callable[[str], Mailbox] | None = None,
                 notify: Notify | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.limits_of = limits or (lambda _name: Mailbox())
        self.notify = notify
        self.db = Database(self.root / "voicemail.db", SCHEMA)
        self.swept = self.db.call(self._sweep)

    # ---- start-up -------------------------------------------------------------------
    def _sweep(self) -> dict[str, int]:
        """Make disk and database agree after whatever ended the last run."""
        db = self.db.db
        out = {"reservations": db.execute("DELETE FROM reservations").rowcount,
               "partial_files": 0, "orphan_files": 0, "missing_files": 0}
        known = {r[0]: r[1] for r in db.execute("SELECT file, id FROM messages")}
        on_disk: set[str] = set()
        for path in self.root.glob("*/*"):
            rel = str(path.relative_to(self.root))
            if path.name.endswith(PART):
                path.unlink(missing_ok=True)
                out["partial_files"] += 1
            elif path.suffix == ".wav" and rel not in known:
                path.unlink(missing_ok=True)  # renamed, but its row was never committed
                out["orphan_files"] += 1
            else:
                on_disk.add(rel)
        for rel, msg_id in known.items():
            if rel not in on_disk:
                db.execute("DELETE FROM messages WHERE id=?", (msg_id,))
                out["missing_files"] += 1
        if any(out.values()):
            log.warning("voicemail: swept after restart: %s", out)
        return out

    # ---- the VoicemailService protocol ---------------------------------------------------
    async def reserve(self, mailbox: str, call_id: str, limits: Mailbox | None = None) -> Reservation | None:
        limits = limits or self.limits_of(mailbox)
        return await self.db.run(self._reserve, mailbox, call_id, limits)

    def _reserve(self, mailbox: str, call_id: str, limits: Mailbox) -> Reservation | None:
        db = self.db.db
        now = time.time()
        with db:
            # IMMEDIATE: the check and the insert are one step, whoever else writes.
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM reservations WHERE expires_at <= ?", (now,))
            seconds = room(limits, self._usage(mailbox))
            if seconds is None:
                return None
            token = uuid.uuid4().hex
            expires = now + seconds + RESERVATION_MARGIN_S
            db.execute("INSERT INTO reservations (token, mailbox, call_id, seconds, expires_at) VALUES (?,?,?,?,?)",
                       (token, mailbox, call_id, seconds, expires))
        return Reservation(mailbox, token, expires, seconds, limits)

    def _usage(self, mailbox: str) -> Usage:
        db = self.db.db
        n, s = db.execute("SELECT COUNT(*), COALESCE(SUM(seconds), 0) FROM messages WHERE mailbox=?",
                          (mailbox,)).fetchone()
        h, hs = db.execute("SELECT COUNT(*), COALESCE(SUM(seconds), 0) FROM reservations WHERE mailbox=?",
                           (mailbox,)).fetchone()
        return Usage(n, s, h, hs)

    async def commit(self, reservation: Reservation, recording: Recording, meta: dict[str, Any]) -> str:
        msg_id = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S-") + uuid.uuid4().hex[:8]
        rel = f"{reservation.mailbox}/{msg_id}.wav"
        path = self.root / rel
        await self.db.run(_write_wav, path, recording)
        try:
            levels, usage = await self.db.run(self._insert, reservation, msg_id, rel, recording, meta)
        except BaseException:
            path.unlink(missing_ok=True)  # no row, no file
            raise
        for level in levels:
            await self._notify(reservation.mailbox, level, reservation.limits or self.limits_of(reservation.mailbox),
                               usage)
        return msg_id

    def _insert(self, res: Reservation, msg_id: str, rel: str, rec: Recording,
                meta: dict[str, Any]) -> tuple[list[str], Usage]:
        db = self.db.db
        limits = res.limits or self.limits_of(res.mailbox)
        with db:
            db.execute("BEGIN IMMEDIATE")
            before = self._usage(res.mailbox)
            held = db.execute("DELETE FROM reservations WHERE token=?", (res.token,)).rowcount
            if not held and room(limits, self._usage(res.mailbox)) is None:
                raise VoicemailFull(f"mailbox {res.mailbox} filled while the message was recorded")
            extra = {k: v for k, v in meta.items() if k not in ("caller", "dialled", "call_id", "intent")}
            db.execute("INSERT INTO messages (id, mailbox, file, seconds, caller, dialled, call_id, intent, meta, "
                       "created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (msg_id, res.mailbox, rel, round(rec.duration_s, 3), meta.get("caller") or "",
                        meta.get("dialled") or "", meta.get("call_id") or "", meta.get("intent"),
                        json.dumps(extra, default=str), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")))
            after = self._usage(res.mailbox)
        return crossings(limits, before, after), after

    async def release(self, reservation: Reservation) -> None:
        await self.db.run(self.db.execute, "DELETE FROM reservations WHERE token=?", (reservation.token,))

    # ---- notifications -----------------------------------------------------------------------
    async def _notify(self, mailbox: str, level: str, limits: Mailbox, usage: Usage) -> None:
        """Tell the operators (log line, then the notify hook) what the box held when it crossed `level`."""
        event = {"event": "mailbox-full" if level == "full" else "mailbox-80-percent", "mailbox": mailbox,
                 "messages": usage.messages, "seconds": round(usage.seconds, 1),
                 "max_messages": limits.max_messages, "max_total": limits.max_total, "url": limits.notify,
                 "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        log.warning("voicemail: mailbox %s is %s (%d of %d messages, %.0f of %.0f s)", mailbox,
                    "full" if level == "full" else "80% full", usage.messages, limits.max_messages,
                    usage.seconds, limits.max_total)
        if self.notify is not None:
            got = self.notify(event)
            if got is not None:
                await got

    # ---- reading and deleting (the HTTP API) --------------------------------------------------
    async def usage(self, mailbox: str) -> Usage:
        """Stored messages and held slots of one box."""
        return await self.db.run(self._usage, mailbox)

    async def mailboxes(self) -> list[str]:
        """Every box that has messages or held slots."""
        rows = await self.db.rows("SELECT mailbox FROM messages UNION SELECT mailbox FROM reservations "
                                  "ORDER BY mailbox")
        return [r["mailbox"] for r in rows]

    async def messages(self, mailbox: str) -> list[dict[str, Any]]:
        """A box's messages, newest first."""
        return [_row(r) for r in await self.db.rows(
            "SELECT * FROM messages WHERE mailbox=? ORDER BY created_at DESC, id DESC", (mailbox,))]

    async def message(self, msg_id: str) -> dict[str, Any] | None:
        rows = await self.db.rows("SELECT * FROM messages WHERE id=?", (msg_id,))
        return _row(rows[0]) if rows else None

    def audio_path(self, message: dict[str, Any]) -> Path:
        return self.root / message["file"]

    async def mark_heard(self, msg_id: str) -> None:
        await self.db.run(self.db.execute, "UPDATE messages SET heard=1 WHERE id=?", (msg_id,))

    async def delete(self, msg_id: str) -> bool:
        """Remove a message: its row first, so a crash in between leaves only a file the sweep removes."""
        msg = await self.message(msg_id)
        if msg is None:
            return False
        await self.db.run(self.db.execute, "DELETE FROM messages WHERE id=?", (msg_id,))
        self.audio_path(msg).unlink(missing_ok=True)
        return True

    def close(self) -> None:
        self.db.close()


def _row(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    out["meta"] = json.loads(out.get("meta") or "{}")
    out["heard"] = bool(out.get("heard"))
    return out


def _write_wav(path: Path, rec: Recording) -> None:
    """Write the message under a temporary name, flush it to disk, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + PART)
    try:
        with open(tmp, "wb") as fh:
            with wave.open(fh, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rec.sample_rate)
                w.writeframes(rec.pcm)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself must survive a power cut before the row says the file exists.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
