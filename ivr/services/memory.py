"""In-memory services: for the simulator and unit tests, and as reference behaviour."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..engine.call import Call, Recording
from ..engine.handoff import summary_headers
from ..engine.services import CallbackRequest, Reservation, RouterResult

# A slot offered to a caller is held this long at most: longer than the greeting plus the
# longest message a flow may allow (voicemail max_length is at most 1 h), so a caller still
# talking never loses their slot. Calls release their slot when they end without a message.
RESERVATION_S = 2 * 3600.0


@dataclass
class Mailbox:
    max_messages: int = 20
    messages: list[dict[str, Any]] = field(default_factory=list)
    held: dict[str, float] = field(default_factory=dict)  # reservation token -> expiry (loop time)


class MemoryVoicemail:
    """Mailboxes with a message limit; reserve() holds a slot so two callers
    cannot both be offered the last one."""

    def __init__(self, limits: dict[str, int] | None = None, default_limit: int = 20) -> None:
        self.default_limit = default_limit
        self.boxes: dict[str, Mailbox] = {k: Mailbox(v) for k, v in (limits or {}).items()}

    def box(self, name: str) -> Mailbox:
        return self.boxes.setdefault(name, Mailbox(self.default_limit))

    async def reserve(self, mailbox: str, call_id: str) -> Reservation | None:
        now = asyncio.get_running_loop().time()
        box = self.box(mailbox)
        box.held = {t: exp for t, exp in box.held.items() if exp > now}
        if len(box.messages) + len(box.held) >= box.max_messages:
            return None
        token = uuid.uuid4().hex
        box.held[token] = now + RESERVATION_S
        return Reservation(mailbox, token, now + RESERVATION_S)

    async def commit(self, reservation: Reservation, recording: Recording, meta: dict[str, Any]) -> str:
        box = self.box(reservation.mailbox)
        if box.held.pop(reservation.token, None) is None:
            raise RuntimeError("reservation expired or unknown")
        msg_id = uuid.uuid4().hex[:12]
        box.messages.append({"id": msg_id, "seconds": recording.duration_s, **meta})
        return msg_id

    async def release(self, reservation: Reservation) -> None:
        self.box(reservation.mailbox).held.pop(reservation.token, None)


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

    def __init__(self, accept: bool = True, transfer: bool = False, default_target: str = "queue:") -> None:
        self.accept = accept
        self.transfer = transfer
        self.default_target = default_target
        self.payloads: list[dict[str, Any]] = []

    async def handoff(self, call: Call, payload: dict[str, Any], target: str | None) -> RouterResult:
        self.payloads.append(payload)
        if not self.accept:
            return RouterResult(False, "no agents")
        if self.transfer:
            res = await call.transfer(target or self.default_target + payload["queue"], summary_headers(payload))
            return RouterResult(res.ok, res.detail, res)
        return RouterResult(True, f"queued in {payload['queue']}")
