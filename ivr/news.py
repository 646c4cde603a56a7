"""A wake-up for tasks that wait for something new (a frame heard, an event logged)."""

from __future__ import annotations

import asyncio


class News:
    """`poke()` wakes every task in `wait()` at that moment; a task that starts waiting
    later waits for the next poke, so nothing that came before is taken as new."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def poke(self) -> None:
        """Wake whoever waits now."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float | None) -> bool:
        """True when poked, False when `timeout` seconds passed first (None: no limit)."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True
