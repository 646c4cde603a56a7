"""Relay: another leg's live audio, one frame per tick, silence while nothing waits,
at most `depth` frames behind (the oldest dropped), each frame encoded on its way out."""

from __future__ import annotations

import asyncio
import struct

from ivr.audio.feed import Relay
from ivr.audio.frames import FRAME_BYTES


def frame(n: int) -> bytes:
    return struct.pack("<H", n) + bytes(FRAME_BYTES - 2)


def run(test):
    async def main():
        return test(Relay(encode=lambda pcm: b"enc:" + pcm[:2], depth=3))
    return asyncio.run(main())


def test_silence_while_nothing_has_arrived():
    def t(relay):
        return [relay.next() for _ in range(3)], relay.sent
    out, sent = run(t)
    assert out == [b"enc:\x00\x00"] * 3 and sent == 3


def test_the_default_relay_sends_pcm_and_pcm_silence():
    async def main():
        relay = Relay()
        first = relay.next()
        relay.push(frame(7))
        return first, relay.next()
    assert asyncio.run(main()) == (bytes(FRAME_BYTES), frame(7))


def test_frames_go_out_in_order_then_silence_again():
    def t(relay):
        relay.push(frame(1))
        relay.push(frame(2))
        out = [relay.next()]
        relay.push(frame(3))
        return out + [relay.next() for _ in range(3)]
    assert run(t) == [b"enc:" + frame(n)[:2] for n in (1, 2, 3)] + [b"enc:\x00\x00"]


def test_at_most_depth_frames_wait_and_the_oldest_are_dropped():
    def t(relay):
        for n in range(1, 7):
            relay.push(frame(n))
        queued = len(relay.frames)
        return queued, relay.dropped, [relay.next() for _ in range(4)]
    queued, dropped, out = run(t)
    assert queued == 3 and dropped == 3
    assert out == [b"enc:" + frame(n)[:2] for n in (4, 5, 6)] + [b"enc:\x00\x00"]


def test_encode_is_applied_to_every_frame_sent():
    seen: list[bytes] = []

    async def main():
        relay = Relay(encode=lambda pcm: seen.append(pcm) or len(seen).to_bytes(1, "big"))
        relay.push(frame(9))
        return [relay.next() for _ in range(2)]
    assert asyncio.run(main()) == [b"\x01", b"\x02"]
    assert seen == [frame(9), bytes(FRAME_BYTES)]


def test_after_finish_nothing_more_goes_out_or_is_taken():
    async def main():
        relay = Relay()
        relay.push(frame(1))
        relay.finish(False)
        relay.finish(True)  # the first finish counts
        relay.push(frame(2))
        return relay.next(), relay.next(), relay.done.done(), await relay.done, len(relay.frames), relay.sent
    assert asyncio.run(main()) == (None, None, True, False, 1, 0)


def test_inserted_frames_go_out_whole_before_live_audio_and_are_bounded():
    async def t():
        r = Relay(depth=2)
        r.push(b"live1")
        assert r.insert([b"k1", b"k2", b"k3"])
        r.push(b"live2")
        out = [r.next() for _ in range(5)]
        too_many = r.insert([b"x"] * (Relay.MAX_INSERTED + 1))
        return out, too_many, len(r.inserted)
    out, too_many, waiting = asyncio.run(t())
    assert out == [b"k1", b"k2", b"k3", b"live1", b"live2"]
    assert too_many is False and waiting == 0
