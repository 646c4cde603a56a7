"""In-memory services: for the simulator and unit tests, and as reference behaviour."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..engine.call import Call, Recording
from ..engine.handoff import summary_headers
from ..engine.services import CallbackRequest, QueueStatus, Reservation, RouterResult, VoicemailFull
from ..flows.model import Mailbox
from .mailbox import Usage, crossings, room

# An unused slot goes back to its box this long after the longest message it holds
# could have ended: the greeting, a review and a re-recording fit in the margin, and a
# call that ends releases its slot at once anyway.
RESERVATION_MARGIN_S = 15 * 60.0


@dataclass
class MemoryBox:
    limits: Mailbox
    messages: list[dict[str, Any]] = field(default_factory=list)
    held: dict[str, tuple[float, float]] = field(default_factory=dict)  # token -> (expiry, seconds)

    def usage(self) -> Usage:
        return Usage(len(self.messages), sum(m.get("seconds", 0.0) for m in self.messages),
                     len(self.held), sum(s for _, s in self.held.values()))


class MemoryVoicemail:
    """Mailboxes kept in memory with the same rules as the durable store: reserve()
    holds a slot so two callers cannot both be offered the last one."""

    def __init__(self, limits: dict[str, int | Mailbox] | None = None, default_limit: int = 20) -> None:
        self.default = Mailbox(max_messages=default_limit)
        self.boxes: dict[str, MemoryBox] = {
            k: MemoryBox(v if isinstance(v, Mailbox) else _only_messages(v)) for k, v in (limits or {}).items()}
        self.notices: list[tuple[str, str]] = []  # (mailbox, level) as they were reached

    def box(self, name: str, limits: Mailbox | None = None) -> MemoryBox:
        got = self.boxes.get(name)
        if got is None:
            got = self.boxes[name] = MemoryBox(limits or self.default)
        return got

    async def reserve(self, mailbox: str, call_id: str, limits: Mailbox | None = None) -> Reservation | None:
        now = asyncio.get_running_loop().time()
        box = self.box(mailbox, limits)
        box.held = {t: h for t, h in box.held.items() if h[0] > now}
        seconds = room(box.limits, box.usage())
        if seconds is None:
            return None
        token = uuid.uuid4().hex
        expires = now + seconds + RESERVATION_MARGIN_S
        box.held[token] = (expires, seconds)
        return Reservation(mailbox, token, expires, seconds, box.limits)

    async def commit(self, reservation: Reservation, recording: Recording, meta: dict[str, Any]) -> str:
        box = self.box(reservation.mailbox)
        before = box.usage()
        if box.held.pop(reservation.token, None) is None and room(box.limits, box.usage()) is None:
            raise VoicemailFull(f"mailbox {reservation.mailbox} filled while the message was recorded")
        msg_id = uuid.uuid4().hex[:12]
        box.messages.append({"id": msg_id, "seconds": recording.duration_s, **meta})
        self.notices += [(reservation.mailbox, level) for level in crossings(box.limits, before, box.usage())]
        return msg_id

    async def release(self, reservation: Reservation) -> None:
        self.box(reservation.mailbox).held.pop(reservation.token, None)


def _only_messages(n: int) -> Mailbox:
    """Limits of `n` messages (0: always full), for tests and the simulator."""
    limits = Mailbox(max_messages=max(n, 1))
    if n <= 0:
        limits.max_total = 0.0
    return limits


class MemoryCallbacks:
    """Callback requests kept in a list (lost on exit: use the SQLite store for real)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, CallbackRequest]] = []
        self._ids = itertools.count(1)

    async def store(self, request: CallbackRequest) -> str:
        cb_id = f"cb-{next(self._ids)}"
        self.requests.append((cb_id, request))
        return cb_id


class RecordingRouter:
    """A router that accepts every hand-off (or none) and keeps the payloads.

    With `transfer=True` it also asks the call to transfer to the target, as the
    SIP REFER adapter does, so the call's own transfer path is exercised."""

    def __init__(self, accept: bool = True, transfer: bool = False, default_target: str = "queue:",
                 status: QueueStatus | None = None) -> None:
        self.accept = accept
        self.transfer = transfer
        self.default_target = default_target
        self.status = status  # what queue_status() answers (None: the router cannot say)
        self.payloads: list[dict[str, Any]] = []

    async def queue_status(self, queue: str, call_id: str) -> QueueStatus | None:
        return self.status

    async def handoff(self, call: Call, payload: dict[str, Any], target: str | None) -> RouterResult:
        self.payloads.append(payload)
        if not self.accept:
            return RouterResult(False, "no agents")
        if self.transfer:
            res = await call.transfer(target or self.default_target + payload["queue"], summary_headers(payload))
            return RouterResult(res.ok, res.detail, res)
        return RouterResult(True, f"queued in {payload['queue']}")
