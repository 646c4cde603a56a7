"""Each call's journey events as they happen, for whoever follows the call from outside.

The testers' harness, calling this engine, reads the events of its own call
(by SIP Call-ID) to check prompt ids exactly and to learn the path for flow
coverage. Events are kept per call, a bounded number of calls and events, so
a follower that connects a moment after the call started still gets them all.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from .news import News

Observer = Callable[[str, dict[str, Any]], None]


@dataclass
class _Call:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ended: bool = False
    changed: News = field(default_factory=News)

    def poke(self) -> None:
        self.changed.poke()


class CallEvents:
    """The events of the last `keep_calls` calls, at most `per_call` each."""

    def __init__(self, keep_calls: int = 500, per_call: int = 2000) -> None:
        self.keep_calls = keep_calls
        self.per_call = per_call
        self._calls: OrderedDict[str, _Call] = OrderedDict()

    def _get(self, call_id: str) -> _Call:
        c = self._calls.get(call_id)
        if c is None:
            c = self._calls[call_id] = _Call()
            while len(self._calls) > self.keep_calls:
                old_id, old = self._calls.popitem(last=False)
                old.ended = True
                old.poke()
        return c

    def observer(self, call_id: str) -> Observer:
        """A journey observer that records this call's events."""
        c = self._get(call_id)

        def observe(event: str, data: dict[str, Any]) -> None:
            if len(c.events) < self.per_call:
                c.events.append((event, dict(data)))
                c.poke()

        return observe

    def ended(self, call_id: str) -> None:
        """The call's journey is written: followers get the end."""
        c = self._get(call_id)
        c.ended = True
        c.poke()

    async def follow(self, call_id: str, wait_s: float = 10.0) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The call's events from the first, then as they come, until it ends. A call not
        seen yet (the follower was quicker than the flow) is waited for `wait_s` seconds."""
        c = self._get(call_id)
        i = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            while i < len(c.events):
                yield c.events[i]
                i += 1
            if c.ended:
                return
            timeout = None if c.events else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                return
            if not await c.changed.wait(timeout):
                return
