"""SipCall: the Call protocol over a SIP dialog and its RTP session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..audio.feed import played
from ..audio.frames import split_frames
from ..audio.g711 import G711Codec
from ..audio.moh import CallerMusic
from ..audio.prompts import PromptCache, PromptError
from ..audio.recorder import Recorder
from ..engine.call import Dtmf, Event, Hangup, PlayResult, PromptAudio, Recording, TransferResult
from .dialog import Dialog
from .media import RtpSession

if TYPE_CHECKING:
    from .ua import SipServer


class SipCall:
    """One answered SIP call, as the engine sees it."""

    channel = "sip"

    def __init__(self, server: SipServer, dialog: Dialog, rtp: RtpSession, prompts: PromptCache,
                 caller: str, dialled: str) -> None:
        self.server = server
        self.dialog = dialog
        self.rtp = rtp
        self.prompts = prompts
        self.call_id = dialog.call_id
        self.caller = caller
        self.dialled = dialled
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.ended = False
        self.moh = CallerMusic()  # music on hold: what plays, and where each resume class continues
        self._recording: Recorder | None = None
        self._transfer: asyncio.Future | None = None
        self.reply_to: object = dialog.source.addr  # where responses to the INVITE go
        self.sdp_origin = [0, 0]  # our SDP's session id and version (counted up by each answer)

    # ---- events from the SIP side --------------------------------------------------
    def dtmf(self, digit: str, via: str) -> None:
        """A key from the caller: `via` is rfc4733, info or inband."""
        self.server.count("ivr_sip_dtmf_received_total", via=via)
        if self._recording is not None:
            self._recording.key(digit)
        self.events.put_nowait(Dtmf(digit, via))

    def remote_hangup(self, reason: str = "caller") -> None:
        if self.ended:
            return
        self.ended = True
        if self._recording is not None:
            self._recording.hangup()
        if self._transfer is not None and not self._transfer.done():
            self._transfer.set_result(TransferResult(False, "call ended"))
        self.rtp.stop()
        self.events.put_nowait(Hangup(reason))

    def transfer_progress(self, status: int, reason: str) -> None:
        """A NOTIFY about our REFER: 2xx means the transfer target answered."""
        if self._transfer is None or self._transfer.done():
            return
        if status >= 200:
            self._transfer.set_result(TransferResult(200 <= status < 300, f"{status} {reason}"))

    # ---- the Call protocol --------------------------------------------------------------
    async def next_event(self) -> Event:
        return await self.events.get()

    async def _payloads(self, prompt: PromptAudio, codec: G711Codec) -> tuple[bytes, ...]:
        if prompt.pcm is not None:
            return tuple(codec.encode(f) for f in split_frames(prompt.pcm))
        return await self.prompts.payloads(prompt, codec)

    async def play(self, prompt: PromptAudio) -> PlayResult:
        if self.ended:
            return PlayResult(False, 0.0)
        try:
            payloads = await self._payloads(prompt, self.rtp.codec)
        except PromptError as exc:
            self.server.note_error(f"prompt failed: {exc}")
            return PlayResult(True, 0.0)
        return PlayResult(*await played(self.rtp.play(payloads), self.rtp.stop))

    def stop_playback(self) -> None:
        self.rtp.stop()

    def audio_in(self) -> AsyncIterator[bytes]:
        return self.rtp.frames()

    async def start_hold(self, music: str, mode: str) -> None:
        try:
            payloads = await self.server.music(music, self.rtp.codec)
        except PromptError as exc:
            self.server.note_error(f"music on hold failed: {exc}")
            return
        if self.ended:
            return  # the caller hung up while the class was being decoded
        self.rtp.feed(self.moh.start(music, mode, payloads, self.rtp.clock))

    async def stop_hold(self) -> None:
        src = self.moh.stop()  # a resume class keeps its place here
        if src is not None and self.rtp.source is src:
            self.rtp.stop()

    async def record(self, max_s: float, end_keys: str = "#", silence_s: float = 5.0) -> Recording:
        self._recording = Recorder()
        try:
            return await self._recording.run(self.rtp.frames(), max_s, end_keys, silence_s)
        finally:
            self._recording = None

    async def transfer(self, target: str, headers: dict[str, str], body: str | None = None) -> TransferResult:
        if self.ended:
            return TransferResult(False, "call ended")
        self._transfer = asyncio.get_running_loop().create_future()
        ok, detail = await self.server.refer(self, target, headers, body)
        if not ok:
            return TransferResult(False, detail)
        try:
            return await asyncio.wait_for(self._transfer, 32.0)
        except TimeoutError:
            # Accepted but never reported: the peer took the call off our hands.
            return TransferResult(True, "refer accepted (no final NOTIFY)")

    async def hangup(self, reason: str = "normal") -> None:
        if self.ended:
            return
        self.ended = True
        self.rtp.stop()
        await self.server.bye(self)
