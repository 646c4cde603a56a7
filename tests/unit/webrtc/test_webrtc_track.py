"""The outgoing track: 20 ms frames at the media clock's pace, prompts and music like an RTP session.

A stand-in for aiortc's sender pulls frames from the track on a virtual-time
loop, with the real MediaClock ticking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import struct

import pytest
from aiortc.mediastreams import MediaStreamError

from ivr.audio.clock import MediaClock
from ivr.audio.frames import FRAME_BYTES, SILENCE
from ivr.audio.moh import StreamSource, clock_frame
from ivr.engine.vtime import VirtualTimeLoop
from ivr.webrtc.track import OutgoingTrack


def numbered(n: int, base: int = 1) -> tuple[bytes, ...]:
    """Frames that say which they are (their first two bytes); never silence."""
    return tuple(struct.pack("<H", base + i) + bytes(FRAME_BYTES - 2) for i in range(n))


def index(pcm: bytes) -> int:
    return struct.unpack("<H", pcm[:2])[0]


@pytest.fixture
def vloop():
    loop = VirtualTimeLoop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


class Sender:
    """What aiortc's RTCRtpSender does with a track: recv, encode (`work` seconds), repeat."""

    def __init__(self, track: OutgoingTrack, work: float = 0.0) -> None:
        self.track = track
        self.work = work
        self.got: list[tuple[float, object]] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await self.track.recv()
            self.got.append((loop.time(), frame))
            if self.work:
                await asyncio.sleep(self.work)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
            await self.task

    def pcm(self) -> list[bytes]:
        return [bytes(f.planes[0])[:FRAME_BYTES] for _, f in self.got]


def test_frames_are_20_ms_of_s16_mono_8khz_paced_by_the_clock(vloop):
    async def main():
        clock = MediaClock()
        track = OutgoingTrack(clock)
        sender = Sender(track)
        await asyncio.sleep(1.0)
        await sender.stop()
        track.stop()
        await clock.stop()
        return sender.got

    got = vloop.run_until_complete(main())
    assert 49 <= len(got) <= 50
    for i, (_, f) in enumerate(got):
        assert (f.format.name, f.layout.name, f.sample_rate, f.samples) == ("s16", "mono", 8000, 160)
        assert f.pts == 160 * i and f.time_base == fractions.Fraction(1, 8000)
        assert bytes(f.planes[0])[:FRAME_BYTES] == SILENCE
    gaps = [b[0] - a[0] for a, b in zip(got, got[1:], strict=False)]
    assert all(g == pytest.approx(0.02, abs=1e-9) for g in gaps)


def test_a_prompt_plays_to_its_end_and_nothing_is_taken_before_the_sender_runs(vloop):
    async def main():
        clock = MediaClock()
        track = OutgoingTrack(clock)
        src = track.play(numbered(10))
        await asyncio.sleep(0.5)  # the connection is not up yet: no sender
        assert src.pos == 0 and not src.done.done()
        sender = Sender(track)
        completed = await src.done
        await asyncio.sleep(0.1)
        await sender.stop()
        track.stop()
        await clock.stop()
        return completed, src.pos, sender.pcm()

    completed, pos, pcm = vloop.run_until_complete(main())
    assert completed is True and pos == 10
    assert [index(p) for p in pcm[:10]] == list(range(1, 11))
    assert all(p == SILENCE for p in pcm[10:])


def test_a_stopped_prompt_ends_incomplete_where_it_was(vloop):
    async def main():
        clock = MediaClock()
        track = OutgoingTrack(clock)
        sender = Sender(track)
        await asyncio.sleep(0.1)
        src = track.play(numbered(100))
        await asyncio.sleep(0.2)
        track.stop_feed()  # barge-in
        completed = await src.done
        nxt = track.play(numbered(5, base=500))
        other = track.play(numbered(5, base=900))  # a new prompt replaces one playing
        done = await nxt.done, await other.done
        await sender.stop()
        track.stop()
        await clock.stop()
        return completed, src.pos, done

    completed, pos, done = vloop.run_until_complete(main())
    assert completed is False and 9 <= pos <= 11
    assert done == (False, True)


def test_a_sender_busy_at_a_tick_misses_no_frame_of_a_prompt(vloop):
    async def main():
        clock = MediaClock()
        track = OutgoingTrack(clock)
        sender = Sender(track, work=0.025)  # slower than the clock: every few ticks find it busy
        await asyncio.sleep(0.05)
        src = track.play(numbered(20))
        await src.done
        await sender.stop()
        track.stop()
        await clock.stop()
        return sender.pcm(), track.late

    pcm, late = vloop.run_until_complete(main())
    played = [index(p) for p in pcm if p != SILENCE]
    assert played == list(range(1, 21))  # each frame once, in order
    assert late > 0


def test_stopping_the_track_ends_a_waiting_recv_and_leaves_the_clock(vloop):
    async def main():
        clock = MediaClock()
        track = OutgoingTrack(clock)
        src = track.play(numbered(5))
        assert len(clock) == 1
        waiting = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0)
        track.stop()
        with pytest.raises(MediaStreamError):
            await waiting
        with pytest.raises(MediaStreamError):
            await track.recv()
        await clock.stop()
        return len(clock), await src.done

    assert vloop.run_until_complete(main()) == (0, False)


def test_stream_music_sends_the_clocks_frame_at_every_tick(vloop):
    loop_frames = numbered(300, base=1000)  # frame k of the loop says 1000 + k

    async def main():
        clock = MediaClock()
        track = OutgoingTrack(clock)
        seen: list[tuple[int, int]] = []

        async def sender():
            while True:
                f = await track.recv()
                pcm = bytes(f.planes[0])[:FRAME_BYTES]
                if pcm != SILENCE:
                    seen.append((index(pcm) - 1000, clock_frame(clock)))

        task = asyncio.ensure_future(sender())
        await asyncio.sleep(0.33)
        track.feed(StreamSource(loop_frames, clock))
        await asyncio.sleep(1.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        track.stop()
        await clock.stop()
        return seen

    seen = vloop.run_until_complete(main())
    music = seen
    assert len(music) >= 45
    # The frame sent is the one the clock's period count names (as for SIP callers; read just
    # after the tick, the count may have moved on by one), one after another.
    assert all((c - i) % 300 in (0, 1) for i, c in music)
    assert [b[0] - a[0] for a, b in zip(music, music[1:], strict=False)] == [1] * (len(music) - 1)
