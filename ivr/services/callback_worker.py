"""The callback worker: keeps the promises the callback node stored.

It dials each request when its time comes (or as soon as the router says an
agent of its queue is free), says who is calling, and hands the answered call
to the router with the context stored when the caller asked, so the agent
knows everything the IVR learned. A callee who does not answer is tried again
per the request's policy (attempts, spacing). Everything lives in the store,
so pending callbacks survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..engine.call import Call, PromptAudio
from ..engine.services import Router
from .callbacks import SqliteCallbacks

log = logging.getLogger("ivr.callbacks")

# Dial a number: the answered call, or None and why not ("486 Busy Here", "no answer").
Dial = Callable[[str], Awaitable[tuple[Call | None, str]]]
SORRY = "Sorry, nobody is free to take your call just now. We will try you again soon. Goodbye."


class CallbackWorker:
    """Dials due callbacks, at most `max_calls` at once, looking for due rows every `poll_s`."""

    def __init__(self, store: SqliteCallbacks, dial: Dial, router: Router, *, poll_s: float = 1.0,
                 max_calls: int = 4, on_result: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.store = store
        self.dial = dial
        self.router = router
        self.poll_s = poll_s
        self.max_calls = max_calls
        self.on_result = on_result
        self.active: dict[str, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.paused = False  # draining: calls in progress finish, no new ones start

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop dialling; calls in progress are cut and their rows go back to pending at next start."""
        for task in [self._task, *self.active.values()]:
            if task is not None:
                task.cancel()
        for task in [self._task, *self.active.values()]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def pause(self) -> None:
        """Start no more calls (the server drains); calls in progress go on."""
        self.paused = True

    def wake(self) -> None:
        """Look for due requests now (a request was stored, a policy changed)."""
        self._wake.set()

    async def agent_free(self, queue: str) -> str | None:
        """An agent of `queue` is free: dial the oldest request waiting for one; its id, or None."""
        if self.paused or len(self.active) >= self.max_calls:
            return None
        row = await self.store.claim_for_agent(queue)
        if row is None:
            return None
        self._spawn(row)
        return row["id"]

    async def _run(self) -> None:
        while True:
            free = 0 if self.paused else self.max_calls - len(self.active)
            if free > 0:
                try:
                    for row in await self.store.claim_due(free):
                        self._spawn(row)
                except Exception:  # a database hiccup must not end the worker: try again next round
                    log.exception("callbacks: could not read due requests")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    def _spawn(self, row: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._keep(row))
        self.active[row["id"]] = task
        task.add_done_callback(lambda _t, cb_id=row["id"]: (self.active.pop(cb_id, None), self._wake.set()))

    async def _keep(self, row: dict[str, Any]) -> None:
        """One attempt at one request, recorded whatever happens."""
        cb_id, attempt = row["id"], row["attempts"]
        log.info("callbacks: %s attempt %d of %d to %s", cb_id, attempt, row["max_attempts"], row["number"])
        try:
            call, why = await self.dial(row["number"])
        except Exception as exc:
            call, why = None, f"dial failed: {exc}"
        if call is None:
            await self._again(row, f"not answered: {why}")
            return
        try:
            done, detail = await self._hand_over(call, row)
        except Exception as exc:
            log.exception("callbacks: %s failed after answer", cb_id)
            done, detail = False, f"failed after answer: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await call.hangup("normal")  # after a transfer the IVR leaves the call (RFC 5589)
        if done:
            await self._record(row, "done", detail)
        else:
            await self._again(row, detail)

    async def _hand_over(self, call: Call, row: dict[str, Any]) -> tuple[bool, str]:
        if row["greeting"]:
            played = await call.play(PromptAudio(text=row["greeting"], language=row["language"]))
            if not played.completed:
                return False, "callee hung up during the greeting"
        payload = dict(row["context"])
        payload["reason"] = "callback"
        payload["callback"] = {"id": row["id"], "attempt": row["attempts"], "number": row["number"],
                               "requested_at": row["created_at"], "due_by": row["due_by"]}
        result = await self.router.handoff(call, payload, None)
        if result.accepted:
            return True, f"answered; handed to {row['queue']}: {result.detail}"
        with contextlib.suppress(Exception):
            await call.play(PromptAudio(text=SORRY, language=row["language"]))
        return False, f"answered, router refused: {result.detail}"

    async def _again(self, row: dict[str, Any], why: str) -> None:
        if row["attempts"] >= row["max_attempts"]:
            await self._record(row, "failed", why)
        else:
            await self._record(row, "pending", why, retry_in=row["retry_after"])

    async def _record(self, row: dict[str, Any], status: str, result: str, retry_in: float | None = None) -> None:
        await self.store.finish(row["id"], status, result, retry_in)
        log.info("callbacks: %s %s (%s)", row["id"], status, result)
        if self.on_result is not None:
            self.on_result({"id": row["id"], "status": status, "attempt": row["attempts"], "result": result})
