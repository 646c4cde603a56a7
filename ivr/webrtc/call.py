"""WebRtcCall: the Call protocol over one aiortc peer connection.

It behaves as SipCall does (ivr/sip/call.py): events on their own queue,
prompts that end complete or stopped, music on hold from the same shared
classes and modes, the same recording loop. What differs is the carriage:
keys come from the "dtmf" data channel (or as tones in the audio), audio
goes out through an aiortc track, and the call ends through the session that
owns the peer connection and the WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from ..audio.feed import played
from ..audio.frames import split_frames
from ..audio.moh import CallerMusic
from ..audio.prompts import PromptCache, PromptError
from ..audio.recorder import Recorder
from ..engine.call import Dtmf, Event, Hangup, PlayResult, PromptAudio, Recording, TransferResult
from .inbound import Inbound
from .track import OutgoingTrack

if TYPE_CHECKING:
    from .bridge import Bridge

log = logging.getLogger("ivr.webrtc")

NO_TRANSFER = "no SIP side to hand WebRTC calls to"


class Pcm16:
    """The identity "codec": music classes as the PCM frames the outgoing track sends."""

    name = "pcm16"

    @staticmethod
    def encode(pcm: bytes) -> bytes:
        return pcm


PCM16 = Pcm16()


class Transferer(Protocol):
    """Hands a WebRTC call to someone else (a bridge to SIP, say); plugged into the server."""

    async def transfer(self, call: WebRtcCall, target: str, headers: dict[str, str],
                       body: str | None) -> TransferResult:
        ...


class NoTransfer:
    """Without a SIP server to call out from: a hand-off fails, and the flow takes its on_failure path."""

    async def transfer(self, call: WebRtcCall, target: str, headers: dict[str, str],
                       body: str | None) -> TransferResult:
        return TransferResult(False, NO_TRANSFER)


class WebRtcCall:
    """One browser caller, as the engine sees it."""

    channel = "webrtc"

    def __init__(self, call_id: str, caller: str, *, prompts: PromptCache, track: OutgoingTrack,
                 inbound: Inbound, clock, music: Callable[[str], Awaitable[tuple[bytes, ...]]],
                 end: Callable[[str], Awaitable[None]], transferer: Transferer | None = None,
                 count: Callable[..., None] | None = None, dialled: str = "softphone") -> None:
        self.call_id = call_id
        self.caller = caller
        self.dialled = dialled
        self.prompts = prompts
        self.track = track
        self.inbound = inbound
        self.clock = clock  # the media clock: a stream music class's position is read off it
        self._music = music
        self._end = end  # closes the peer connection and the socket (the session's end)
        self.transferer = transferer or NoTransfer()
        self._count = count or (lambda *a, **k: None)
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.ended = False
        self.moh = CallerMusic()
        self._recording: Recorder | None = None
        self.bridge: Bridge | None = None  # set once a hand-off reached an agent over SIP
        self.gone = asyncio.Event()  # set when the caller has hung up

    # ---- events from the browser -------------------------------------------------------------
    def dtmf(self, digit: str, via: str) -> None:
        """A key from the caller: `via` is datachannel or inband."""
        if self.ended:
            return
        self._count("ivr_webrtc_dtmf_received_total", via=via)
        if self.bridge is not None:
            if via == "datachannel":  # an in-band tone reaches the agent by itself
                self.bridge.key(digit)
            return
        if self._recording is not None:
            self._recording.key(digit)
        self.events.put_nowait(Dtmf(digit, via))

    def remote_hangup(self, reason: str = "caller") -> None:
        """The caller (page, socket or network) ended the call."""
        if self.ended:
            return
        self.ended = True
        self.gone.set()
        if self._recording is not None:
            self._recording.hangup()
        self.track.stop_feed()
        self.events.put_nowait(Hangup(reason))

    # ---- the Call protocol -------------------------------------------------------------------
    async def next_event(self) -> Event:
        return await self.events.get()

    async def play(self, prompt: PromptAudio) -> PlayResult:
        if self.ended:
            return PlayResult(False, 0.0)
        try:
            frames = split_frames(prompt.pcm) if prompt.pcm is not None else await self.prompts.frames(prompt)
        except PromptError as exc:
            log.warning("%s: prompt failed: %s", self.call_id, exc)
            return PlayResult(True, 0.0)
        if self.ended:
            return PlayResult(False, 0.0)  # the track is off the clock: a Source would never finish
        return PlayResult(*await played(self.track.play(frames), self.track.stop_feed))

    def stop_playback(self) -> None:
        self.track.stop_feed()

    def audio_in(self) -> AsyncIterator[bytes]:
        return self.inbound.frames()

    async def start_hold(self, music: str, mode: str) -> None:
        try:
            frames = await self._music(music)
        except PromptError as exc:
            log.warning("%s: music on hold failed: %s", self.call_id, exc)
            return
        if self.ended:
            return  # the caller hung up while the class was being decoded
        self.track.feed(self.moh.start(music, mode, frames, self.clock))

    async def stop_hold(self) -> None:
        src = self.moh.stop()  # a resume class keeps its place here
        if src is not None and self.track.source is src:
            self.track.stop_feed()

    async def record(self, max_s: float, end_keys: str = "#", silence_s: float = 5.0) -> Recording:
        self._recording = Recorder()
        try:
            return await self._recording.run(self.inbound.frames(), max_s, end_keys, silence_s)
        finally:
            self._recording = None

    async def transfer(self, target: str, headers: dict[str, str], body: str | None = None) -> TransferResult:
        if self.ended:
            return TransferResult(False, "call ended")
        return await self.transferer.transfer(self, target, headers, body)

    async def hangup(self, reason: str = "normal") -> None:
        if self.ended:
            return
        if self.bridge is not None and not self.bridge.done.done():
            return  # handed off: the flow is done, the call is the bridge's until a side hangs up
        self.ended = True
        self.track.stop_feed()
        await self._end(reason)

    # ---- the bridge's side ---------------------------------------------------------------------
    def bridged(self, bridge: Bridge) -> None:
        """The hand-off reached an agent: from now on the bridge carries the call."""
        self.bridge = bridge

    async def end_bridged(self, reason: str) -> None:
        """The agent's leg ended: end the caller's too."""
        if self.ended:
            return
        self.ended = True
        self.track.stop_feed()
        await self._end(reason)
