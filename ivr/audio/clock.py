"""One media clock paces all outgoing audio of the process.

Every stream sends one frame each 20 ms, at absolute deadlines (so the rate is
exactly 50 frames a second over any stretch of time). One timer for a thousand
calls costs far less than a thousand timers. Streams are spread over a few
phases of the period (slots) so the clock never has to send a thousand packets
in one burst: with 10 slots it wakes every 2 ms and serves a tenth of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Protocol

PERIOD = 0.020
SLOTS = 10
# Behind by more than this (a stalled machine): skip ticks instead of bursting.
MAX_CATCH_UP = 0.1


class Ticking(Protocol):
    """Something that sends one frame per tick (an RTP stream, a WebRTC track)."""

    def tick(self) -> None:
        ...


class MediaClock:
    """The process's media tick. `lateness` keeps, per slot tick, how late its
    last packet went out (the worst of that burst) for /metrics and benchmarks."""

    def __init__(self, period: float = PERIOD, slots: int = SLOTS, keep: int = 20000) -> None:
        self.period = period
        self.slots: list[dict[int, Ticking]] = [{} for _ in range(slots)]
        self._slot_of: dict[int, int] = {}
        self._task: asyncio.Task | None = None
        self.lateness: deque[float] = deque(maxlen=keep)
        self.ticks = 0
        self.skipped = 0
        self.errors = 0

    def add(self, stream: Ticking) -> None:
        """Start ticking `stream` (in the least busy slot)."""
        if id(stream) in self._slot_of:
            return
        slot = min(range(len(self.slots)), key=lambda i: len(self.slots[i]))
        self.slots[slot][id(stream)] = stream
        self._slot_of[id(stream)] = slot
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="media-clock")

    def remove(self, stream: Ticking) -> None:
        slot = self._slot_of.pop(id(stream), None)
        if slot is not None:
            self.slots[slot].pop(id(stream), None)

    def __len__(self) -> int:
        return len(self._slot_of)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        step = self.period / len(self.slots)
        start = loop.time()
        n = 0
        while self._slot_of:
            n += 1
            deadline = start + n * step
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            late = loop.time() - deadline
            if late > MAX_CATCH_UP:
                missed = int(late / step)
                n += missed
                self.skipped += missed
                deadline += missed * step
            streams = self.slots[n % len(self.slots)]
            for key, stream in list(streams.items()):
                try:
                    stream.tick()
                except Exception:  # one broken stream must not silence the others
                    self.errors += 1
                    streams.pop(key, None)
                    self._slot_of.pop(key, None)
            if streams:
                self.lateness.append(loop.time() - deadline)
            self.ticks += 1

    def percentile(self, q: float) -> float:
        """Send lateness at quantile q (0..1) over recent bursts, in seconds."""
        if not self.lateness:
            return 0.0
        data = sorted(self.lateness)
        return data[min(len(data) - 1, int(q * len(data)))]

    async def stop(self) -> None:
        for s in self.slots:
            s.clear()
        self._slot_of.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
