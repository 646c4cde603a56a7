"""The small interfaces the engine is handed: voicemail, callbacks, router,
recogniser and clock. Real and in-memory versions live in ivr/services/."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .call import Call, Event, Recording, TransferResult


class Clock(Protocol):
    """Wall-clock time for opening hours and records (durations use the loop's clock)."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class LoopClock:
    """Wall time that follows the event loop's clock from a fixed start (virtual time)."""

    def __init__(self, start: dt.datetime, loop: asyncio.AbstractEventLoop | None = None):
        self.start = start
        self._loop = loop
        self._t0: float | None = None

    def now(self) -> dt.datetime:
        loop = self._loop or asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        return self.start + dt.timedelta(seconds=loop.time() - self._t0)


@dataclass
class Reservation:
    """A voicemail slot held for one caller while they are offered the mailbox."""

    mailbox: str
    token: str
    expires_at: float  # when an unused slot goes back to the box (the store's own clock)
    seconds: float = 3600.0  # the longest message this slot holds
    limits: Any = None  # the mailbox's limits when it was reserved (flows.model.Mailbox)


class VoicemailFull(RuntimeError):
    """A message that can no longer be stored: its slot expired and the box filled meanwhile."""


class VoicemailService(Protocol):
    """Mailboxes with limits; a slot is reserved before voicemail is offered."""

    async def reserve(self, mailbox: str, call_id: str, limits: Any = None) -> Reservation | None:
        """Hold a slot for this caller, or None when the mailbox has no room. `limits`
        (flows.model.Mailbox) are the flow's; None means the store's defaults."""
        ...

    async def commit(self, reservation: Reservation, recording: Recording, meta: dict[str, Any]) -> str:
        """Store the message (atomically: complete or absent) and use the slot; returns
        the message id. Raises VoicemailFull when the slot was lost and no room is left."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Give an unused slot back."""
        ...


@dataclass
class CallbackRequest:
    """A promise to call someone back, with everything needed to keep it."""

    number: str
    queue: str
    due_by: dt.datetime
    context: dict[str, Any] = field(default_factory=dict)
    call_id: str = ""
    dial_at: dt.datetime | None = None  # None: when an agent of the queue is free, by due_by at the latest
    attempts: int = 3
    retry_after: float = 300.0
    greeting: str = ""  # said when the callee answers
    language: str = "en-US"


class CallbackStore(Protocol):
    """Durable storage of callback promises."""

    async def store(self, request: CallbackRequest) -> str:
        """Save the request durably; returns its id. Raises on failure."""
        ...


@dataclass
class RouterResult:
    """What the router did with a hand-off."""

    accepted: bool
    detail: str = ""
    transfer: TransferResult | None = None


@dataclass
class QueueStatus:
    """Where a waiting caller stands in a router queue, as far as the router knows."""

    position: int | None = None  # 1: next to be answered
    expected_wait_s: float | None = None


class Router(Protocol):
    """Takes calls to people: a SIP REFER target, an HTTP router, a built-in queue."""

    async def handoff(self, call: Call, payload: dict[str, Any], target: str | None) -> RouterResult:
        """Hand the call over with the payload; accepted=False sends the flow to on_failure."""
        ...

    async def queue_status(self, queue: str, call_id: str) -> QueueStatus | None:
        """The caller's place and expected wait in `queue`, or None when the router cannot say."""
        ...


class RecognizerSession(Protocol):
    """One listening turn: push the caller's 20 ms frames, read events
    (SpeechStarted as soon as the caller talks, then one SpeechResult or NoSpeech)."""

    def push(self, frame: bytes) -> None:
        ...

    def events(self) -> AsyncIterator[Event]:
        ...

    async def close(self) -> None:
        ...


class Recognizer(Protocol):
    """Speech recognition for turns (ivr/speech): one per process, shared by all calls."""

    name: str

    def open(self, phrases: list[str] | None, sample_rate: int = 8000, *,
             endpointing: Any = None) -> RecognizerSession | None:
        """A session restricted to `phrases` (None: free speech), end-pointed by
        `endpointing`; None when no recogniser is free (the caller then uses keys)."""
        ...
