"""The callback worker against the real SQLite store, with virtual calls and a recording router."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from ivr.engine.call import PlayResult
from ivr.engine.services import CallbackRequest
from ivr.engine.virtual import VirtualCall
from ivr.services.callback_worker import CallbackWorker
from ivr.services.callbacks import SqliteCallbacks
from ivr.services.memory import RecordingRouter

NOW = dt.datetime.now(dt.UTC)


def request(number="+441632960001", *, dial_in: float | None = 0.0, attempts=3, retry_after=0.2,
            queue="billing") -> CallbackRequest:
    return CallbackRequest(number=number, queue=queue, due_by=NOW + dt.timedelta(hours=1),
                           context={"queue": queue, "intent": "billing", "variables": {"account": "12345678"}},
                           call_id="orig-1", dial_at=None if dial_in is None else NOW + dt.timedelta(seconds=dial_in),
                           attempts=attempts, retry_after=retry_after, greeting="This is your callback from Acme.")


class InstantCall(VirtualCall):
    """A virtual callee whose prompts take no time (this test runs on the real clock)."""

    async def play(self, prompt):
        self.played.append((asyncio.get_running_loop().time(), prompt, True))
        return PlayResult(True, 0.0)


class Dialler:
    """Answers with a VirtualCall, or refuses with the next scripted reason."""

    def __init__(self, refusals: list[str] | None = None) -> None:
        self.refusals = list(refusals or [])
        self.dialled: list[tuple[str, float]] = []
        self.calls: list[VirtualCall] = []

    async def __call__(self, number: str):
        self.dialled.append((number, asyncio.get_running_loop().time()))
        if self.refusals:
            return None, self.refusals.pop(0)
        call = InstantCall(caller="ivr", dialled=number)
        self.calls.append(call)
        return call, "200 OK"


async def until(pred, timeout=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await pred():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
def store(tmp_path):
    s = SqliteCallbacks(tmp_path / "callbacks.db")
    yield s
    s.close()


def keep(store, dial, router, req: CallbackRequest, until_status: str) -> dict:
    """Store `req`, run a worker until the request reaches `until_status`; the row then."""
    async def go():
        cb_id = await store.store(req)
        worker = CallbackWorker(store, dial, router, poll_s=0.02)
        worker.start()
        await until(lambda: _status(store, cb_id, until_status))
        await worker.stop()
        return await store.get(cb_id)

    return asyncio.run(go())


def test_a_due_callback_is_dialled_greeted_and_handed_over_with_its_context(store):
    router, dial = RecordingRouter(), Dialler()

    row = keep(store, dial, router, request(), "done")
    assert row["attempts"] == 1 and row["last_result"].startswith("answered")
    [payload] = router.payloads
    assert payload["reason"] == "callback" and payload["variables"] == {"account": "12345678"}
    assert payload["callback"]["id"] == row["id"] and payload["callback"]["attempt"] == 1
    [call] = dial.calls
    assert [p.text for _, p, _ in call.played] == ["This is your callback from Acme."]
    assert call.ended == "normal"


def test_an_unanswered_callee_is_retried_per_policy_then_failed(store):
    router, dial = RecordingRouter(), Dialler(["486 Busy Here", "408 no answer", "480 Unavailable"])

    row = keep(store, dial, router, request(attempts=3, retry_after=0.3), "failed")
    assert row["attempts"] == 3 and "480" in row["last_result"]
    times = [t for _, t in dial.dialled]
    assert len(times) == 3
    assert all(b - a >= 0.3 for a, b in zip(times, times[1:], strict=False))
    assert router.payloads == []


def test_a_refusing_router_counts_as_an_attempt(store):
    router, dial = RecordingRouter(accept=False), Dialler()

    row = keep(store, dial, router, request(attempts=2, retry_after=0.1), "failed")
    assert row["attempts"] == 2 and "router refused" in row["last_result"]
    assert len(dial.calls) == 2


def test_a_request_waiting_for_an_agent_is_dialled_when_one_is_free(store):
    router, dial = RecordingRouter(), Dialler()

    async def go():
        waiting = await store.store(request(dial_in=None, queue="billing"))
        other = await store.store(request(dial_in=None, queue="sales"))
        worker = CallbackWorker(store, dial, router, poll_s=0.02)
        worker.start()
        await asyncio.sleep(0.2)
        assert dial.dialled == []  # nobody is free yet, and the promise is an hour away
        assert await worker.agent_free("billing") == waiting
        await until(lambda: _status(store, waiting, "done"))
        assert await worker.agent_free("billing") is None
        await worker.stop()
        return (await store.get(other))["status"]

    assert asyncio.run(go()) == "pending"


def test_a_callback_interrupted_by_a_restart_is_pending_again(tmp_path):
    path = tmp_path / "callbacks.db"
    first = SqliteCallbacks(path)

    async def claim():
        cb_id = await first.store(request())
        [row] = await first.claim_due(5)
        return cb_id, row

    cb_id, row = asyncio.run(claim())
    assert row["status"] == "dialling"
    first.close()  # the process died while the call was ringing
    second = SqliteCallbacks(path)
    try:
        assert second.recovered == 1
        row = asyncio.run(second.get(cb_id))
    finally:
        second.close()
    assert row["status"] == "pending" and row["attempts"] == 1


def test_claiming_never_hands_one_row_out_twice(store):
    async def go():
        for i in range(10):
            await store.store(request(number=f"+4416329600{i:02d}"))
        got = await asyncio.gather(*(store.claim_due(3) for _ in range(6)))
        return [r["id"] for rows in got for r in rows]

    ids = asyncio.run(go())
    assert len(ids) == 10 and len(set(ids)) == 10


async def _status(store, cb_id, status):
    row = await store.get(cb_id)
    return row is not None and row["status"] == status


def test_a_paused_worker_starts_no_calls(store):
    router, dial = RecordingRouter(), Dialler()

    async def go():
        cb_id = await store.store(request())
        waiting = await store.store(request(dial_in=None))
        worker = CallbackWorker(store, dial, router, poll_s=0.02)
        worker.pause()  # the server drains
        worker.start()
        await asyncio.sleep(0.2)
        assert await worker.agent_free("billing") is None
        await worker.stop()
        return [(await store.get(i))["status"] for i in (cb_id, waiting)]

    assert asyncio.run(go()) == ["pending", "pending"]
    assert dial.dialled == []
