"""The SQLite voicemail store: real files and a real database in a temporary folder."""

from __future__ import annotations

import asyncio
import wave

import pytest

from ivr.engine.call import Recording
from ivr.engine.services import VoicemailFull
from ivr.flows.model import Mailbox
from ivr.services.voicemail import SqliteVoicemail, _write_wav

BOX = Mailbox(max_messages=5, max_total=600, max_message=60, min_message=1)


def rec(seconds: float) -> Recording:
    return Recording(b"\x01\x00" * int(8000 * seconds), 8000, "key", duration_s=seconds)


@pytest.fixture
def store(tmp_path):
    s = SqliteVoicemail(tmp_path / "vm", limits=lambda _b: BOX)
    yield s
    s.close()


def files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.glob("*/*"))


def test_a_committed_message_is_a_complete_wav_and_a_row(store):
    async def go():
        res = await store.reserve("sales", "call-1")
        assert res is not None and res.seconds == 60
        msg_id = await store.commit(res, rec(3.0), {"caller": "+441632960001", "call_id": "call-1",
                                                    "intent": "billing", "variables": {"a": 1}})
        return msg_id, await store.messages("sales"), await store.usage("sales")

    msg_id, [msg], usage = asyncio.run(go())
    assert msg["id"] == msg_id and msg["caller"] == "+441632960001" and msg["intent"] == "billing"
    assert msg["meta"]["variables"] == {"a": 1}
    assert usage.messages == 1 and usage.held == 0 and usage.seconds == pytest.approx(3.0)
    with wave.open(str(store.audio_path(msg))) as w:
        assert w.getnframes() == 24000 and w.getframerate() == 8000
    assert files(store.root) == [f"sales/{msg_id}.wav"]


def test_thirty_callers_race_for_five_slots(store):
    async def go():
        got = await asyncio.gather(*(store.reserve("sales", f"c{i}") for i in range(30)))
        held = [r for r in got if r is not None]
        assert len(held) == 5
        await asyncio.gather(*(store.commit(r, rec(2), {"call_id": r.token}) for r in held))
        return await store.messages("sales"), await store.reserve("sales", "late")

    msgs, late = asyncio.run(go())
    assert len(msgs) == 5 and late is None
    assert len(files(store.root)) == 5


def test_a_released_slot_returns_to_the_box(store):
    async def go():
        held = [await store.reserve("sales", f"c{i}") for i in range(5)]
        assert await store.reserve("sales", "x") is None
        await store.release(held[0])
        return await store.reserve("sales", "x")

    assert asyncio.run(go()) is not None


def test_an_expired_slot_returns_to_the_box(store, monkeypatch):
    async def go():
        held = [await store.reserve("sales", f"c{i}") for i in range(5)]
        assert await store.reserve("sales", "x") is None
        import time as _time
        later = held[0].expires_at + 1
        monkeypatch.setattr("ivr.services.voicemail.time.time", lambda: later)
        assert _time.time() == later
        return await store.reserve("sales", "x")

    assert asyncio.run(go()) is not None


def test_total_seconds_bound_the_slot(tmp_path):
    s = SqliteVoicemail(tmp_path / "vm", limits=lambda _b: Mailbox(max_messages=9, max_total=100, max_message=60))

    async def go():
        first = await s.reserve("b", "1")
        second = await s.reserve("b", "2")  # 40 s of the 100 are left once the first slot is held
        third = await s.reserve("b", "3")
        return first.seconds, second.seconds, third

    try:
        assert asyncio.run(go()) == (60, 40, None)
    finally:
        s.close()


def test_notices_at_eighty_percent_and_full(tmp_path):
    seen: list[dict] = []
    s = SqliteVoicemail(tmp_path / "vm", limits=lambda _b: BOX, notify=seen.append)

    async def go():
        for i in range(5):
            r = await s.reserve("sales", str(i))
            await s.commit(r, rec(2), {})

    try:
        asyncio.run(go())
    finally:
        s.close()
    assert [(e["event"], e["messages"]) for e in seen] == [("mailbox-80-percent", 4), ("mailbox-full", 5)]


def test_a_slot_lost_to_expiry_in_a_full_box_refuses_the_message(store):
    async def go():
        held = [await store.reserve("sales", f"c{i}") for i in range(5)]
        await store.release(held[0])
        other = await store.reserve("sales", "other")  # takes the place held[0] gave back
        await store.commit(other, rec(2), {})
        with pytest.raises(VoicemailFull):
            await store.commit(held[0], rec(2), {})

    asyncio.run(go())
    assert len(files(store.root)) == 1  # the refused message left no file


def test_restart_sweeps_what_a_crash_left(tmp_path):
    root = tmp_path / "vm"
    s = SqliteVoicemail(root, limits=lambda _b: BOX)

    async def before_crash():
        kept = await s.commit(await s.reserve("sales", "a"), rec(2), {})
        gone = await s.commit(await s.reserve("sales", "b"), rec(2), {})
        for _ in range(3):
            await s.reserve("sales", "in-flight")  # calls that were recording when the server died
        return kept, gone

    kept, gone = asyncio.run(before_crash())
    s.close()
    # What a crash can leave: a file renamed but not committed, a half-written temporary
    # file, and a row whose file a person deleted by hand.
    _write_wav(root / "sales" / "uncommitted.wav", rec(1))
    (root / "sales" / ".half.wav.part").write_bytes(b"RIFF....")
    (root / "sales" / f"{gone}.wav").unlink()

    s2 = SqliteVoicemail(root, limits=lambda _b: BOX)
    try:
        assert s2.swept == {"reservations": 3, "partial_files": 1, "orphan_files": 1, "missing_files": 1}
        msgs = asyncio.run(s2.messages("sales"))
        usage = asyncio.run(s2.usage("sales"))
    finally:
        s2.close()
    assert [m["id"] for m in msgs] == [kept]
    assert files(root) == [f"sales/{kept}.wav"]
    assert usage.messages == 1 and usage.held == 0


def test_delete_removes_row_then_file(store):
    async def go():
        msg_id = await store.commit(await store.reserve("sales", "a"), rec(2), {})
        assert await store.delete(msg_id)
        assert not await store.delete(msg_id)
        return await store.messages("sales")

    assert asyncio.run(go()) == []
    assert files(store.root) == []
