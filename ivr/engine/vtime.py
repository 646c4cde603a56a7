"""A virtual-time event loop: timers fire at once, in order, with no real waiting.

Unit tests and the simulator run the real engine on it, so a scripted
30-second call finishes in milliseconds and timeouts are exact. When the loop
would sleep, it asks `idle_hook` first (the simulated caller may act then);
otherwise it jumps its clock to the next timer. No real I/O is possible on it.
"""

from __future__ import annotations

import asyncio
import select
import selectors
from collections.abc import Callable


class Deadlock(RuntimeError):
    """Nothing is scheduled and nothing can happen: a test waits forever."""


class _VirtualSelector(selectors.BaseSelector):
    def __init__(self) -> None:
        self._map: dict[int, selectors.SelectorKey] = {}
        self.loop: VirtualTimeLoop | None = None

    def register(self, fileobj, events, data=None):
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._map[fd] = key
        return key

    def unregister(self, fileobj):
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return self._map.pop(fd)

    def select(self, timeout=None):
        loop = self.loop
        assert loop is not None
        if loop.pending_jobs and (timeout is None or timeout > 0):
            # Blocking work runs in a real thread: wait for it in real time while
            # the virtual clock stands still, as if the work took no time.
            return self._real_select(5.0)
        ready = self._real_select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        hook = loop.idle_hook
        if hook is not None and hook():
            return []
        if timeout is None:
            raise Deadlock("virtual loop is idle with nothing scheduled")
        loop.advance(timeout)
        return []

    def _real_select(self, timeout):
        fds = [k.fd for k in self._map.values() if k.events & selectors.EVENT_READ]
        if not fds:
            return []
        r, _, _ = select.select(fds, [], [], timeout)
        return [(self._map[fd], selectors.EVENT_READ) for fd in r]

    def get_map(self):
        return self._map

    def close(self) -> None:
        self._map.clear()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock only moves when every task is waiting."""

    def __init__(self, start: float = 0.0) -> None:
        sel = _VirtualSelector()
        super().__init__(selector=sel)
        sel.loop = self
        self._now = start
        self.idle_hook: Callable[[], bool] | None = None
        self.pending_jobs = 0

    def run_in_executor(self, executor, func, *args):
        fut = super().run_in_executor(executor, func, *args)
        self.pending_jobs += 1

        def done(_):
            self.pending_jobs -= 1
        fut.add_done_callback(done)
        return fut

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def run_virtual(coro, idle_hook: Callable[[], bool] | None = None):
    """Run a coroutine to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    loop.idle_hook = idle_hook
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
