"""The harness's own phone: the engine's SIP stack turned round to place calls, as a person would.

One `Phone` is one UDP SIP port on the tester's machine; `Phone.call` dials an
IVR (ours or anyone's) and gives a `SipLine` (see line.py): what was heard,
the keys and the hang-up that came back, and the transfers the IVR asked for. A REFER
from the IVR is accepted (202, then NOTIFY 200) and recorded with its headers:
the harness plays the transferee who reached the target, so the IVR finishes
its hand-off as it would in production.

Keys go as RFC 4733 events (when the IVR offered telephone-event), as SIP INFO
(application/dtmf-relay) or as tones in the audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..audio.clock import MediaClock
from ..audio.prompts import PromptCache
from ..audio.tts import EspeakTts
from ..engine.call import Dtmf, Hangup, PromptAudio
from ..sip.call import SipCall
from ..sip.message import SipRequest
from ..sip.transport import Source
from ..sip.ua import Admission, SipServer, SipSettings
from .line import KEY_METHODS, CallFailed, Line, Transfer, key_frames

__all__ = ["KEY_METHODS", "CallFailed", "Phone", "SipLine", "Transfer", "key_frames"]

log = logging.getLogger("ivr.harness")

class SipLine(Line):
    """One answered call placed by the harness's own SIP phone."""

    driver = "sip"

    def __init__(self, phone: Phone, call: SipCall, answered_at: float, setup_s: float) -> None:
        super().__init__(answered_at, setup_s)
        self.phone = phone
        self.call = call
        # RFC 4733 only when the IVR offered telephone-event; else keys go as tones (or INFO).
        self.key_methods = ("rfc4733", "info", "inband") if call.rtp.dtmf_pt is not None else ("info", "inband")
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._listen()), asyncio.ensure_future(self._events())]

    @property
    def call_id(self) -> str:
        return self.call.call_id

    @property
    def ended(self) -> bool:
        return self.call.ended

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        async for pcm in self.call.audio_in():
            self.add_audio(pcm, loop.time())

    async def _events(self) -> None:
        while True:
            event = await self.call.next_event()
            if isinstance(event, Dtmf):
                self.keys.append((event.digit, self.now()))
                self.poke()
            elif isinstance(event, Hangup):
                self.ended_by_ivr(event.reason)
                return

    # ---- what the caller does ----------------------------------------------------------------
    async def send_key(self, digit: str, method: str, duration: float) -> None:
        if method == "rfc4733":
            await self.call.rtp.send_dtmf(digit, int(duration * 1000))
        else:
            await self._info(digit, duration)

    async def _info(self, digit: str, duration: float) -> None:
        body = f"Signal={digit}\r\nDuration={int(duration * 1000)}\r\n".encode()
        req = self.call.dialog.request("INFO", body=body, content_type="application/dtmf-relay")
        resp = await self.phone.server.tx.request(req, self.call.dialog.destination())
        if resp.status >= 300:
            raise CallFailed(resp.status, f"INFO refused: {resp.reason}")
        await asyncio.sleep(duration)

    async def play(self, pcm: bytes) -> None:
        if not self.ended:
            await self.call.play(PromptAudio(pcm=pcm, id="caller audio"))

    async def say(self, text: str, language: str = "en-US") -> None:
        if not self.ended:
            await self.call.play(PromptAudio(text=text, language=language))

    async def hangup(self) -> None:
        if not self.ended:
            await self.call.hangup("harness")
        await self.close()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Phone:
    """A SIP phone for the harness: one UDP port on `host`, any number of calls."""

    driver = "sip"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, rtp_ports: range | None = None,
                 user: str = "tester") -> None:
        self.clock = MediaClock()
        self.prompts = PromptCache(EspeakTts())
        self.server = SipServer(
            SipSettings(host=host, port=port, rtp_ports=rtp_ports or range(40000, 50000), user=user),
            self._incoming, self.prompts, self.clock, Admission(hard=0))
        self.server.handlers["REFER"] = self._refer
        self.lines: dict[str, SipLine] = {}

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        for line in list(self.lines.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(line.hangup(), 5)
        await self.server.close()
        await self.clock.stop()
        await self.prompts.settle(10.0)

    async def _incoming(self, call, overflow: bool) -> None:
        # Admission(hard=0) turns every INVITE away before it gets here; a phone that only dials.
        await call.hangup("not taking calls")

    async def call(self, target: str, *, caller: str | None = None, headers: dict[str, str] | None = None,
                   ring_timeout: float = 30.0, telephone_event: bool = True) -> SipLine:
        """Dial `target` (a sip: URI over UDP); raises CallFailed when it is not answered."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        result = await self.server.dial(target, caller_id=caller, ring_timeout=ring_timeout, headers=headers,
                                        telephone_event=telephone_event)
        if not result.answered:
            raise CallFailed(result.status, result.reason)
        now = loop.time()
        line = SipLine(self, result.call, answered_at=now, setup_s=now - t0)
        self.lines[line.call_id] = line
        line.start()
        return line

    def _refer(self, req: SipRequest, source: Source) -> None:
        call = self.server.in_dialog(req, source)
        if call is None:
            return
        line = self.lines.get(call.call_id)
        refer_to = req.get("Refer-To") or ""
        if line is None or not refer_to:
            self.server.reply(req, source, 400 if not refer_to else 481, None)
            return
        self.server.reply(req, source, 202, None)
        line.add_transfer(Transfer.from_refer(refer_to, req.headers, line.now()))
        self.server.spawn(self._notify(call))

    async def _notify(self, call: SipCall) -> None:
        # The transferee reached the target: the IVR may now leave the call.
        extra = [("Event", "refer"), ("Subscription-State", "terminated;reason=noresource")]
        req = call.dialog.request("NOTIFY", extra, body=b"SIP/2.0 200 OK\r\n", content_type="message/sipfrag")
        with contextlib.suppress(TimeoutError):
            await self.server.tx.request(req, call.dialog.destination())



