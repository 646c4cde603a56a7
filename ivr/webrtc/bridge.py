"""Hand-off of a WebRTC call to a SIP target: a new outgoing leg, audio relayed both ways.

A browser caller cannot be REFERred: there is no SIP dialog on its side. So a
hand-off (from the sip-refer router, or the target an HTTP router names) calls
the target with `SipServer.dial`, carrying the same X-IVR-* headers and
X-IVR-Context a REFER would, and once the agent answers the IVR stays in the
middle: the caller's audio (8 kHz frames, as the flow heard them) goes to the
agent in G.711, the agent's to the caller's track, both on the media clock.
Keys pressed on the page after the hand-off reach the agent as RFC 4733 events
(or as tones in the audio when the agent's phone did not offer telephone-event).

The bridge outlives the flow: the runner's hang-up after a hand-off leaves a
bridged call alone, and the bridge ends both legs when either side hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..audio.dtmf_detect import COL_FREQS, KEYPAD, ROW_FREQS
from ..audio.feed import Relay
from ..audio.frames import split_frames, tone
from ..engine.call import Hangup, TransferResult

if TYPE_CHECKING:
    from ..sip.call import SipCall
    from ..sip.dial import DialResult
    from .call import WebRtcCall

log = logging.getLogger("ivr.webrtc.bridge")

Dial = Callable[..., Awaitable["DialResult"]]
KEY_TONE_S = 0.1  # how long a key from the page sounds to the agent


def key_tone(digit: str) -> tuple[bytes, ...]:
    """The DTMF tone of `digit` as 20 ms PCM frames, with a pause after it."""
    for row, keys in enumerate(KEYPAD):
        col = keys.find(digit.upper()) if len(digit) == 1 else -1
        if col >= 0:
            return tuple(split_frames(tone((ROW_FREQS[row], COL_FREQS[col]), KEY_TONE_S, level=0.5)
                                      + bytes(int(8000 * 0.06) * 2)))
    raise ValueError(f"not a key: {digit!r}")


def dial_target(target: str) -> str:
    """The URI to call: a hand-off target without its `?header=...` part, which a REFER
    needs (RFC 3261 19.1.1) but an INVITE carries as real headers."""
    return target.split("?", 1)[0]


class Bridge:
    """A WebRTC call and the SIP leg it was handed to, relaying audio until either ends."""

    def __init__(self, web: WebRtcCall, sip: SipCall, count: Callable[..., None]) -> None:
        self.web = web
        self.sip = sip
        self._count = count
        self.to_sip = Relay(encode=lambda pcm: sip.rtp.codec.encode(pcm))
        self.to_web = Relay()
        self.ended_by: str | None = None
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        """Connect the two legs' audio, and watch the SIP leg for its end."""
        self.web.track.feed(self.to_web)
        self.sip.rtp.feed(self.to_sip)
        self._tasks = [asyncio.ensure_future(self._pump(self.web.audio_in(), self.to_sip)),
                       asyncio.ensure_future(self._pump(self.sip.audio_in(), self.to_web)),
                       asyncio.ensure_future(self._watch_sip())]

    async def _pump(self, frames, relay: Relay) -> None:
        async for pcm in frames:
            relay.push(pcm)

    async def _watch_sip(self) -> None:
        # Nobody else reads the SIP leg's events: a Hangup is the agent (or the network) leaving.
        while True:
            event = await self.sip.next_event()
            if isinstance(event, Hangup):
                await self.end("agent", event.reason)
                return

    def key(self, digit: str) -> None:
        """A key the caller pressed on the page: an RFC 4733 event when the agent's phone took
        telephone-event, else its tone in the audio."""
        if getattr(self.sip.rtp, "dtmf_pt", None) is not None:
            self.sip.rtp.send_dtmf(digit)
            return
        with contextlib.suppress(ValueError):
            # Whole, ahead of the caller's audio: the live queue's depth would cut the tone short.
            self.to_sip.insert(key_tone(digit))

    async def end(self, by: str, reason: str = "normal") -> None:
        """End the bridge once: `by` is "caller" or "agent"; the other leg is hung up."""
        if self.done.done():
            return
        self.ended_by = by
        self.done.set_result(by)
        self._count("ivr_webrtc_bridges_ended_total", side=by)
        log.info("%s: bridge to %s ended by the %s (%s)", self.web.call_id, self.sip.call_id, by, reason)
        me = asyncio.current_task()
        for t in self._tasks:
            if t is not me:
                t.cancel()
        self.to_sip.finish(False)
        self.to_web.finish(False)
        if by == "caller":
            await self.sip.hangup("caller hung up")
        else:
            await self.web.end_bridged(f"agent hung up ({reason})" if reason != "caller" else "agent hung up")

    async def wait(self) -> None:
        """Until either side has hung up."""
        await asyncio.shield(self.done)


class SipBridge:
    """The Transferer of WebRTC calls: bridges each hand-off to its SIP target."""

    def __init__(self, dial: Dial, *, caller_id: str | None = None, ring_timeout: float = 30.0,
                 count: Callable[..., None] | None = None) -> None:
        self.dial = dial
        self.caller_id = caller_id
        self.ring_timeout = ring_timeout
        self._count = count or (lambda *a, **k: None)

    async def transfer(self, call: WebRtcCall, target: str, headers: dict[str, str],
                       body: str | None) -> TransferResult:
        uri = dial_target(target)
        extra: dict[str, Any] = {k: v for k, v in headers.items() if v}
        if body is not None:
            extra["X-IVR-Context"] = body
        extra["X-IVR-Call-ID"] = call.call_id
        dial = asyncio.ensure_future(self.dial(uri, caller_id=self.caller_id, ring_timeout=self.ring_timeout,
                                               headers=extra))
        gone = asyncio.ensure_future(call.gone.wait())
        try:
            await asyncio.wait({dial, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not dial.done():  # the caller left while the agent's phone rang (or the flow was cancelled)
                dial.cancel()  # the dialler CANCELs the INVITE, or hangs up an answer that crossed it
                self._count("ivr_webrtc_bridges_total", result="abandoned")
                with contextlib.suppress(asyncio.CancelledError, ValueError):
                    await dial
        if dial.cancelled():
            return TransferResult(False, "call ended")
        try:
            result = dial.result()
        except ValueError as exc:  # a target or header we cannot send
            self._count("ivr_webrtc_bridges_total", result="failed")
            return TransferResult(False, f"cannot call {uri}: {exc}")
        if not result.answered:
            self._count("ivr_webrtc_bridges_total", result=result.outcome)
            return TransferResult(False, f"{result.status} {result.reason}")
        sip = result.call
        if call.ended:  # the caller left while the agent's phone rang
            self._count("ivr_webrtc_bridges_total", result="abandoned")
            await sip.hangup("caller hung up")
            return TransferResult(False, "call ended")
        self._count("ivr_webrtc_bridges_total", result="answered")
        bridge = Bridge(call, sip, self._count)
        call.bridged(bridge)
        bridge.start()
        return TransferResult(True, f"bridged to {uri} ({sip.call_id})")
