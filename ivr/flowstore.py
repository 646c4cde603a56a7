"""The flows a server runs, reloaded when the file changes, never replaced by a broken one.

A call keeps the Flow object it started with, so an edit applies to new calls
only; an invalid edit is refused with the validator's messages and the running
version stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from .flows import Flow, check_file

log = logging.getLogger("ivr.flows")


class FlowStore:
    """The current flow and where it came from."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.flow: Flow | None = None
        self.version = 0
        self.failures = 0  # edits refused
        self.last_errors: list[str] = []
        self._mtime: float | None = None
        self._watch: asyncio.Task | None = None

    def load(self) -> bool:
        """(Re)load the file; False (and the old flow kept) when it has errors."""
        try:
            self._mtime = os.stat(self.path).st_mtime
        except OSError:
            self._mtime = None
        flow, report = check_file(self.path)
        if flow is None:
            self.failures += 1
            self.last_errors = [d.format() for d in report.sorted() if d.severity == "error"]
            for line in self.last_errors:
                log.error("%s", line)
            log.error("flows not reloaded: %d error(s); still running version %s", len(self.last_errors),
                      self.flow.digest if self.flow else "none")
            return False
        old = self.flow.digest if self.flow else None
        self.flow = flow
        self.last_errors = []
        if old != flow.digest:
            self.version += 1
            log.info("flows loaded: %s (version %s, %d nodes)", self.path, flow.digest, len(flow.nodes))
        return True

    def start_watching(self, interval: float = 1.0) -> None:
        """Poll the file's modification time (works on every filesystem, no extra dependency)."""
        self._watch = asyncio.get_running_loop().create_task(self._poll(interval), name="flows-watch")

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                mtime = os.stat(self.path).st_mtime
            except OSError:
                continue
            if mtime != self._mtime:
                self.load()

    def stop(self) -> None:
        if self._watch:
            self._watch.cancel()
