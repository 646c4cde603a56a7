"""WebRtcCall against the Call protocol, as SipCall behaves: prompts, barge-in, keys, hangup,
music on hold, recording and the hand-off that is not available yet.

The call's track is ticked by a real MediaClock on a virtual-time loop, and a
stand-in for aiortc's sender takes its frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest

from ivr.audio.clock import MediaClock
from ivr.audio.frames import FRAME_BYTES, SILENCE
from ivr.audio.prompts import PromptError
from ivr.engine.call import Dtmf, Hangup, PlayResult, PromptAudio, TransferResult
from ivr.engine.vtime import run_virtual
from ivr.webrtc.call import NO_TRANSFER, WebRtcCall
from ivr.webrtc.inbound import Inbound
from ivr.webrtc.track import OutgoingTrack


def numbered(n: int, base: int = 1) -> tuple[bytes, ...]:
    return tuple(struct.pack("<H", base + i) + bytes(FRAME_BYTES - 2) for i in range(n))


def index(pcm: bytes) -> int:
    return struct.unpack("<H", pcm[:2])[0]


class Prompts:
    """The prompt cache's frames(): a prompt's text says how many frames it has."""

    async def frames(self, prompt: PromptAudio) -> tuple[bytes, ...]:
        if prompt.text == "broken":
            raise PromptError("cannot render")
        await asyncio.sleep(0.001)
        return numbered(int(prompt.text))


class Rig:
    """A call with its clock, a sender taking its audio, and what it reported."""

    def __init__(self, transferer=None) -> None:
        self.clock = MediaClock()
        self.track = OutgoingTrack(self.clock)
        self.counts: list[tuple[str, dict]] = []
        self.ends: list[str] = []
        self.inbound = Inbound(lambda d, via: self.call.dtmf(d, via))
        self.call = WebRtcCall("webrtc-1", "webrtc:127.0.0.1", prompts=Prompts(), track=self.track,
                               inbound=self.inbound, clock=self.clock, music=self.music, end=self.end,
                               transferer=transferer, count=lambda name, **kw: self.counts.append((name, kw)))
        self.sent: list[bytes] = []
        self._sender = asyncio.ensure_future(self._send())

    async def music(self, name: str) -> tuple[bytes, ...]:
        return numbered(50, base=1000)

    async def end(self, reason: str) -> None:
        self.ends.append(reason)

    async def _send(self) -> None:
        while True:
            f = await self.track.recv()
            self.sent.append(bytes(f.planes[0])[:FRAME_BYTES])

    async def close(self) -> None:
        self._sender.cancel()
        with contextlib.suppress(BaseException):
            await self._sender
        self.track.stop()
        await self.inbound.close()
        await self.clock.stop()


def run(test):
    async def main():
        rig = Rig()
        try:
            return await test(rig)
        finally:
            await rig.close()
    return run_virtual(main())


def test_identity():
    async def t(rig):
        c = rig.call
        return c.call_id, c.caller, c.dialled, c.channel
    assert run(t) == ("webrtc-1", "webrtc:127.0.0.1", "softphone", "webrtc")


def test_a_prompt_plays_to_its_end():
    async def t(rig):
        res = await rig.call.play(PromptAudio(text="10"))
        return res, [index(p) for p in rig.sent if p != SILENCE]
    res, played = run(t)
    assert res == PlayResult(True, pytest.approx(0.2)) and played == list(range(1, 11))


def test_recorded_audio_plays_as_it_is():
    async def t(rig):
        pcm = b"".join(numbered(3, base=70))
        res = await rig.call.play(PromptAudio(pcm=pcm))
        return res, [index(p) for p in rig.sent if p != SILENCE]
    assert run(t) == (PlayResult(True, pytest.approx(0.06)), [70, 71, 72])


def test_barge_in_stops_the_prompt_and_a_key_is_an_event():
    async def t(rig):
        playing = asyncio.ensure_future(rig.call.play(PromptAudio(text="100")))
        await asyncio.sleep(0.3)
        rig.call.dtmf("5", "datachannel")
        ev = await rig.call.next_event()
        rig.call.stop_playback()
        return ev, await playing, rig.counts
    ev, res, counts = run(t)
    assert ev == Dtmf("5", "datachannel")
    assert res.completed is False and 0.2 <= res.played_s <= 0.32
    assert counts == [("ivr_webrtc_dtmf_received_total", {"via": "datachannel"})]


def test_a_prompt_that_cannot_be_rendered_is_skipped():
    async def t(rig):
        return await rig.call.play(PromptAudio(text="broken"))
    assert run(t) == PlayResult(True, 0.0)


def test_the_caller_hanging_up_ends_prompt_recording_and_the_call():
    async def t(rig):
        recording = asyncio.ensure_future(rig.call.record(30.0))
        await asyncio.sleep(0.1)
        for _ in range(10):
            rig.inbound.deliver(struct.pack("<h", 8000) * 160)  # the caller talking
        playing = asyncio.ensure_future(rig.call.play(PromptAudio(text="100")))
        await asyncio.sleep(0.1)
        rig.call.remote_hangup("closed")
        rig.call.remote_hangup("again")  # once only
        ev = await rig.call.next_event()
        rec = await recording
        res = await playing
        later = await rig.call.play(PromptAudio(text="5"))
        rig.call.dtmf("1", "datachannel")  # after the end: ignored
        await rig.call.hangup()  # already over: no second end
        return ev, rec.ended_by, res.completed, later, rig.call.events.qsize(), rig.ends
    ev, ended_by, completed, later, left, ends = run(t)
    assert ev == Hangup("closed") and ended_by == "hangup" and completed is False
    assert later == PlayResult(False, 0.0) and left == 0 and ends == []


def test_a_recording_ends_at_its_end_key_without_trailing_silence():
    async def t(rig):
        recording = asyncio.ensure_future(rig.call.record(30.0, end_keys="#", silence_s=5.0))
        await asyncio.sleep(0.01)
        voice = struct.pack("<h", 8000) * 160
        for _ in range(25):
            rig.inbound.deliver(voice)
        for _ in range(10):
            rig.inbound.deliver(SILENCE)
        await asyncio.sleep(0.01)
        rig.call.dtmf("#", "inband")
        return await recording
    rec = run(t)
    assert rec.ended_by == "key" and rec.sample_rate == 8000
    assert rec.duration_s == pytest.approx(0.5) and rec.pcm == struct.pack("<h", 8000) * 160 * 25


def test_music_on_hold_resumes_after_the_last_frame_sent():
    async def t(rig):
        await rig.call.start_hold("default", "resume")
        await asyncio.sleep(0.2)
        await rig.call.stop_hold()
        first = [index(p) for p in rig.sent if p != SILENCE]
        await asyncio.sleep(0.1)
        await rig.call.start_hold("default", "resume")
        await asyncio.sleep(0.1)
        await rig.call.stop_hold()
        return first, [index(p) for p in rig.sent if p != SILENCE][len(first):]
    first, again = run(t)
    assert first == list(range(1000, 1000 + len(first))) and len(first) >= 9
    assert again[0] == first[-1] + 1 and again == list(range(again[0], again[0] + len(again)))


def test_a_hand_off_is_not_available_yet_and_a_transferer_can_be_plugged_in():
    async def t(rig):
        return await rig.call.transfer("sip:agents@127.0.0.1", {"X-IVR-Queue": "general"}, "{}")
    assert run(t) == TransferResult(False, NO_TRANSFER)

    class Bridge:
        async def transfer(self, call, target, headers, body):
            return TransferResult(True, f"bridged {call.call_id} to {target}")

    async def main():
        rig = Rig(transferer=Bridge())
        try:
            return await rig.call.transfer("sip:agents@127.0.0.1", {}, None)
        finally:
            await rig.close()
    assert run_virtual(main()) == TransferResult(True, "bridged webrtc-1 to sip:agents@127.0.0.1")


def test_hanging_up_from_the_flow_ends_the_session_once():
    async def t(rig):
        playing = asyncio.ensure_future(rig.call.play(PromptAudio(text="100")))
        await asyncio.sleep(0.1)
        await rig.call.hangup("normal")
        await rig.call.hangup("again")
        return await playing, rig.ends, await rig.call.transfer("x", {})
    res, ends, transfer = run(t)
    assert res.completed is False and ends == ["normal"]
    assert transfer == TransferResult(False, "call ended")
