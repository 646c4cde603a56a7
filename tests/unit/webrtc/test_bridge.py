"""The hand-off of a WebRTC call to a SIP target: the dial (headers, failures, the caller
leaving while it rings), and the bridge that follows (audio both ways, keys as tones,
the flow's hang-up left alone, either side's hang-up ending both).

The web side is a real WebRtcCall with its track on a MediaClock over a virtual-time
loop and a stand-in for aiortc's sender; the SIP side is a fake dial and a fake SipCall
whose RTP session only records what it was fed.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest

from ivr.audio.clock import MediaClock
from ivr.audio.dtmf_detect import DIGITS, InbandDtmfDetector
from ivr.audio.frames import FRAME_BYTES, SILENCE
from ivr.audio.g711 import ulaw_decode, ulaw_encode
from ivr.engine.call import Dtmf, Hangup, TransferResult
from ivr.engine.vtime import run_virtual
from ivr.sip.dial import DialResult
from ivr.webrtc.bridge import Bridge, SipBridge, dial_target, key_tone
from ivr.webrtc.call import WebRtcCall
from ivr.webrtc.inbound import Inbound
from ivr.webrtc.track import OutgoingTrack

TARGET = "sip:agents@192.0.2.10?X-IVR-Queue=sales&X-IVR-Context=%7B%7D"
URI = "sip:agents@192.0.2.10"


def numbered(n: int, base: int = 1) -> tuple[bytes, ...]:
    return tuple(struct.pack("<H", base + i) + bytes(FRAME_BYTES - 2) for i in range(n))


def index(pcm: bytes) -> int:
    return struct.unpack("<H", pcm[:2])[0]


def detected(frames) -> str:
    det = InbandDtmfDetector()
    return "".join(d for f in frames for d in det.push(f))


# ---- the SIP side -----------------------------------------------------------------------------


class Ulaw:
    name = "PCMU"

    @staticmethod
    def encode(pcm: bytes) -> bytes:
        return ulaw_encode(pcm)


class Rtp:
    """An RTP session that only remembers what it was told to send from."""

    def __init__(self) -> None:
        self.codec = Ulaw()
        self.source = None

    def feed(self, source) -> None:
        self.source = source


class Agent:
    """The answered SIP leg: its audio and events are what a test puts in."""

    def __init__(self, call_id: str = "sip-agent-1") -> None:
        self.call_id = call_id
        self.rtp = Rtp()
        self.audio: asyncio.Queue = asyncio.Queue()
        self.events: asyncio.Queue = asyncio.Queue()
        self.hangups: list[str] = []

    async def audio_in(self):
        while (pcm := await self.audio.get()) is not None:
            yield pcm

    async def next_event(self):
        return await self.events.get()

    async def hangup(self, reason: str = "normal") -> None:
        self.hangups.append(reason)


class Dialler:
    """SipServer.dial: records each call; rings until cancelled, raises, or gives `result`."""

    def __init__(self, result: DialResult | None = None, *, error: Exception | None = None,
                 ring: bool = False, before=None) -> None:
        self.result = result
        self.error = error
        self.ring = ring
        self.before = before  # run just before the answer is returned
        self.calls: list[tuple[str, dict]] = []
        self.cancelled = False

    async def __call__(self, uri: str, **kw) -> DialResult:
        self.calls.append((uri, kw))
        await asyncio.sleep(0.5)  # the agent's phone rings a while
        if self.ring:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        if self.error is not None:
            raise self.error
        if self.before is not None:
            self.before()
        return self.result


def answered(agent: Agent) -> DialResult:
    return DialResult(agent, 200, "OK", "answered")


# ---- the web side -----------------------------------------------------------------------------


class Prompts:
    async def frames(self, prompt):
        return numbered(5)


class Rig:
    """A WebRTC call with a SipBridge for its hand-offs, a sender taking its track's audio,
    and what it reported (counters of the call and the bridge in one list)."""

    def __init__(self, dialler: Dialler) -> None:
        self.dialler = dialler
        self.clock = MediaClock()
        self.track = OutgoingTrack(self.clock)
        self.counts: list[tuple[str, dict]] = []
        self.ends: list[str] = []
        self.inbound = Inbound(lambda d, via: self.call.dtmf(d, via))
        self.bridger = SipBridge(dialler, caller_id="sip:ivr@192.0.2.1", ring_timeout=20.0, count=self.count)
        self.call = WebRtcCall("webrtc-1", "webrtc:127.0.0.1", prompts=Prompts(), track=self.track,
                               inbound=self.inbound, clock=self.clock, music=self.music, end=self.end,
                               transferer=self.bridger, count=self.count)
        self.sent: list[bytes] = []
        self._sender = asyncio.ensure_future(self._send())

    def count(self, name: str, **labels) -> None:
        self.counts.append((name, labels))

    def counted(self, name: str) -> list[dict]:
        return [labels for n, labels in self.counts if n == name]

    async def music(self, name: str) -> tuple[bytes, ...]:
        return numbered(50, base=1000)

    async def end(self, reason: str) -> None:
        self.ends.append(reason)

    async def _send(self) -> None:
        while True:
            f = await self.track.recv()
            self.sent.append(bytes(f.planes[0])[:FRAME_BYTES])

    async def hand_off(self, headers: dict[str, str] | None = None, body: str | None = "{}") -> TransferResult:
        return await self.call.transfer(TARGET, headers or {}, body)

    async def close(self) -> None:
        bridge = self.call.bridge
        if bridge is not None:
            if not bridge.done.done():
                await bridge.end("caller", "test over")
            await asyncio.sleep(0)  # the cancelled pumps finish
        self._sender.cancel()
        with contextlib.suppress(BaseException):
            await self._sender
        self.track.stop()
        await self.inbound.close()
        await self.clock.stop()


def run(test, dialler: Dialler):
    async def main():
        rig = Rig(dialler)
        try:
            return await test(rig)
        finally:
            await rig.close()
    return run_virtual(main())


def bridged(test):
    """Run `test(rig, agent, bridge)` once a hand-off has reached the agent."""
    async def main():
        agent = Agent()
        rig = Rig(Dialler(answered(agent)))
        try:
            res = await rig.hand_off()
            assert res.ok, res
            rig.counts.clear()
            await asyncio.sleep(0.01)  # the bridge's pumps start listening
            return await test(rig, agent, rig.call.bridge)
        finally:
            await rig.close()
    return run_virtual(main())


def drain(relay, n: int) -> list[bytes]:
    return [relay.next() for _ in range(n)]


# ---- dial_target and key_tone -----------------------------------------------------------------


def test_dial_target_drops_the_uri_headers_a_refer_needs():
    assert dial_target(TARGET) == URI
    assert dial_target("sip:agents@192.0.2.10;transport=udp?X-IVR-Queue=a?b") == \
        "sip:agents@192.0.2.10;transport=udp"


def test_dial_target_leaves_a_plain_target_alone():
    for t in ("sip:agents@192.0.2.10", "sip:1000@pbx.example.com:5070;user=phone"):
        assert dial_target(t) == t


@pytest.mark.parametrize("digit", list(DIGITS))
def test_each_key_tone_is_detected_as_that_key_once(digit):
    frames = key_tone(digit)
    assert frames and all(len(f) == FRAME_BYTES for f in frames)
    assert detected(frames) == digit
    assert detected(frames + frames) == digit * 2  # the pause after it lets the same key come again


def test_key_tone_takes_letter_keys_in_either_case():
    assert key_tone("a") == key_tone("A") and detected(key_tone("d")) == "D"


@pytest.mark.parametrize("bad", ["x", "E", "+", "5 "])
def test_key_tone_of_a_non_key_is_an_error(bad):
    with pytest.raises(ValueError, match="not a key"):
        key_tone(bad)


# ---- the dial -----------------------------------------------------------------------------------


def test_the_dial_carries_the_hand_off_headers_context_and_call_id():
    dialler = Dialler(DialResult(None, 486, "Busy Here", "busy"))

    async def t(rig):
        await rig.hand_off({"X-IVR-Queue": "sales", "X-IVR-Lang": "", "X-IVR-Segment": "gold"},
                           '{"account":"42"}')
        await rig.call.transfer("sip:agents@192.0.2.10", {"X-IVR-Queue": "sales"}, None)
    run(t, dialler)
    (uri, kw), (uri2, kw2) = dialler.calls
    assert uri == URI and uri2 == URI
    assert kw == {"caller_id": "sip:ivr@192.0.2.1", "ring_timeout": 20.0,
                  "headers": {"X-IVR-Queue": "sales", "X-IVR-Segment": "gold",
                              "X-IVR-Context": '{"account":"42"}', "X-IVR-Call-ID": "webrtc-1"}}
    assert kw2["headers"] == {"X-IVR-Queue": "sales", "X-IVR-Call-ID": "webrtc-1"}  # no body, no context


def test_a_busy_agent_fails_the_hand_off():
    async def t(rig):
        return await rig.hand_off(), rig.counted("ivr_webrtc_bridges_total"), rig.call.bridge, rig.call.ended
    res, counts, bridge, ended = run(t, Dialler(DialResult(None, 486, "Busy Here", "busy")))
    assert res == TransferResult(False, "486 Busy Here")
    assert counts == [{"result": "busy"}] and bridge is None and ended is False


def test_a_target_that_cannot_be_called_fails_the_hand_off():
    async def t(rig):
        return await rig.hand_off(), rig.counted("ivr_webrtc_bridges_total")
    res, counts = run(t, Dialler(error=ValueError("can only dial sip: URIs with a host")))
    assert res.ok is False
    assert res.detail == f"cannot call {URI}: can only dial sip: URIs with a host"
    assert counts == [{"result": "failed"}]


def test_the_caller_leaving_while_it_rings_cancels_the_dial():
    dialler = Dialler(ring=True)

    async def t(rig):
        handing = asyncio.ensure_future(rig.hand_off())
        await asyncio.sleep(2.0)
        assert not handing.done() and dialler.calls
        rig.call.remote_hangup("closed")
        res = await asyncio.wait_for(handing, 1.0)
        return res, rig.counted("ivr_webrtc_bridges_total"), rig.call.bridge
    res, counts, bridge = run(t, dialler)
    assert res == TransferResult(False, "call ended")
    assert dialler.cancelled is True and counts == [{"result": "abandoned"}] and bridge is None


def test_an_answer_that_crosses_the_caller_leaving_is_hung_up():
    agent = Agent()
    holder: list[Rig] = []
    dialler = Dialler(answered(agent), before=lambda: holder[0].call.remote_hangup("closed"))

    async def t(rig):
        holder.append(rig)
        return await rig.hand_off(), rig.counted("ivr_webrtc_bridges_total"), rig.call.bridge
    res, counts, bridge = run(t, dialler)
    assert res == TransferResult(False, "call ended")
    assert counts == [{"result": "abandoned"}] and bridge is None and agent.hangups == ["caller hung up"]


def test_an_answer_bridges_the_two_legs():
    agent = Agent()

    async def t(rig):
        res = await rig.hand_off()
        bridge = rig.call.bridge
        return (res, rig.counted("ivr_webrtc_bridges_total"), bridge, rig.track.source is bridge.to_web,
                agent.rtp.source is bridge.to_sip, bridge.web is rig.call, bridge.sip is agent)
    res, counts, bridge, web_fed, sip_fed, web, sip = run(t, Dialler(answered(agent)))
    assert res == TransferResult(True, f"bridged to {URI} (sip-agent-1)")
    assert counts == [{"result": "answered"}] and isinstance(bridge, Bridge)
    assert web_fed and sip_fed and web and sip


# ---- the bridge ---------------------------------------------------------------------------------


def test_audio_goes_both_ways():
    async def t(rig, agent, bridge):
        caller = numbered(3, base=100)
        for pcm in caller:
            rig.inbound.deliver(pcm)  # the caller's microphone
        for pcm in numbered(4, base=500):
            agent.audio.put_nowait(pcm)  # the agent's
        await asyncio.sleep(0.3)
        to_agent = drain(bridge.to_sip, 4)
        to_caller = [index(p) for p in rig.sent if p != SILENCE]
        return caller, to_agent, to_caller
    caller, to_agent, to_caller = bridged(t)
    assert to_agent == [ulaw_encode(p) for p in caller] + [ulaw_encode(SILENCE)]
    assert to_caller == [500, 501, 502, 503]


def test_the_flows_hang_up_after_the_hand_off_leaves_the_call_to_the_bridge():
    async def t(rig, agent, bridge):
        await rig.call.hangup("normal")
        await asyncio.sleep(0.1)
        return list(rig.ends), rig.call.ended, list(agent.hangups), bridge.done.done(), \
            rig.track.source is bridge.to_web
    assert bridged(t) == ([], False, [], False, True)


def test_a_key_on_the_page_goes_to_the_agent_as_a_tone_not_to_the_flow():
    async def t(rig, agent, bridge):
        rig.call.dtmf("5", "datachannel")
        queued = len(bridge.to_sip.inserted)
        heard = [ulaw_decode(p) for p in drain(bridge.to_sip, 12)]
        return queued, heard, rig.call.events.qsize(), list(rig.counts)
    queued, heard, events, counts = bridged(t)
    assert queued > 0 and events == 0
    assert detected(heard) == "5"
    assert counts == [("ivr_webrtc_dtmf_received_total", {"via": "datachannel"})]


def test_an_inband_key_is_neither_repeated_as_a_tone_nor_an_event():
    async def t(rig, agent, bridge):
        rig.call.dtmf("7", "inband")  # the tone itself is in the caller's audio already
        return len(bridge.to_sip.frames) + len(bridge.to_sip.inserted), rig.call.events.qsize()
    assert bridged(t) == (0, 0)


def test_a_key_reaches_the_agent_as_its_whole_tone():
    # KEY_TONE_S says a key sounds 100 ms to the agent: all of key_tone() should go out.
    async def t(rig, agent, bridge):
        rig.call.dtmf("5", "datachannel")
        return drain(bridge.to_sip, len(key_tone("5"))), bridge.to_sip.dropped
    out, dropped = bridged(t)
    assert dropped == 0
    assert out == [ulaw_encode(f) for f in key_tone("5")]


def test_a_key_pressed_while_the_callers_audio_flows_reaches_the_agent():
    async def t(rig, agent, bridge):
        rig.call.dtmf("5", "datachannel")
        rig.inbound.deliver(SILENCE)  # the caller's next (quiet) frame comes before the next tick
        await asyncio.sleep(0.005)
        return detected(ulaw_decode(p) for p in drain(bridge.to_sip, 12))
    assert bridged(t) == "5"


def test_the_agent_hanging_up_ends_the_bridge_and_the_web_call():
    async def t(rig, agent, bridge):
        agent.events.put_nowait(Dtmf("3"))  # the agent's keys are not the bridge's business
        await asyncio.sleep(0.1)
        still = bridge.done.done()
        agent.events.put_nowait(Hangup("caller"))  # a BYE from the agent
        await asyncio.wait_for(bridge.wait(), 1.0)
        await rig.call.hangup("normal")  # the call is over: no second end
        return (still, bridge.ended_by, list(rig.ends), rig.call.ended, list(agent.hangups),
                rig.counted("ivr_webrtc_bridges_ended_total"), rig.track.source,
                bridge.to_sip.next(), bridge.to_web.next())
    still, by, ends, ended, hangups, counts, source, to_sip, to_web = bridged(t)
    assert still is False and by == "agent"
    assert ends == ["agent hung up"] and ended is True and hangups == []
    assert counts == [{"side": "agent"}] and source is None and to_sip is None and to_web is None


def test_the_agent_leg_failing_says_why():
    async def t(rig, agent, bridge):
        agent.events.put_nowait(Hangup("rtp-timeout"))
        await asyncio.wait_for(bridge.wait(), 1.0)
        return bridge.ended_by, rig.ends
    by, ends = bridged(t)
    assert by == "agent" and len(ends) == 1 and ends[0].startswith("agent hung up")
    assert ends == ["agent hung up (rtp-timeout)"]


def test_the_caller_hanging_up_ends_the_bridge_once_and_hangs_up_the_agent():
    async def t(rig, agent, bridge):
        await bridge.end("caller", "closed")
        await bridge.end("caller", "again")
        await bridge.end("agent")
        await asyncio.sleep(0.1)
        agent.events.put_nowait(Hangup("caller"))  # nobody watches the agent's leg any more
        await asyncio.sleep(0.1)
        return (bridge.ended_by, list(agent.hangups), list(rig.ends), rig.counted("ivr_webrtc_bridges_ended_total"),
                all(t.done() for t in bridge._tasks), rig.track.source)
    by, hangups, ends, counts, stopped, source = bridged(t)
    assert by == "caller" and hangups == ["caller hung up"] and ends == []
    assert counts == [{"side": "caller"}] and stopped and source is None


def test_once_the_bridge_is_over_the_call_hangs_up_as_usual():
    async def t(rig, agent, bridge):
        await bridge.end("caller")
        await rig.call.hangup("normal")
        return list(rig.ends), rig.call.ended
    assert bridged(t) == (["normal"], True)


def test_an_agent_phone_with_telephone_event_gets_keys_as_rfc4733_not_tones():
    async def t(rig, agent, bridge):
        sent: list[str] = []
        agent.rtp.dtmf_pt = 101
        agent.rtp.send_dtmf = lambda digit, duration_ms=100: sent.append(digit)
        rig.call.dtmf("7", "datachannel")
        rig.call.dtmf("#", "datachannel")
        return sent, len(bridge.to_sip.inserted), rig.call.events.qsize()
    assert bridged(t) == (["7", "#"], 0, 0)
