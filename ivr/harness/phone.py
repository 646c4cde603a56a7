"""The harness's own phone: the engine's SIP stack turned round to place calls, as a person would.

One `Phone` is one UDP SIP port on the tester's machine; `Phone.call` dials an
IVR (ours or anyone's) and gives a `Line`: what was heard so far (8 kHz PCM,
with each frame's arrival time, so a match in the audio has a time), the keys
and the hang-up that came back, and the transfers the IVR asked for. A REFER
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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ..audio.clock import MediaClock
from ..audio.dtmf_detect import COL_FREQS, KEYPAD, ROW_FREQS
from ..audio.frames import FRAME_BYTES, split_frames, tone
from ..audio.prompts import PromptCache
from ..audio.tts import EspeakTts
from ..engine.call import Dtmf, Hangup, PromptAudio
from ..sip.call import SipCall
from ..sip.headers import NameAddr
from ..sip.message import SipRequest
from ..sip.transport import Source
from ..sip.ua import Admission, SipServer, SipSettings

log = logging.getLogger("ivr.harness")

KEY_METHODS = ("rfc4733", "info", "inband")


class CallFailed(Exception):
    """The IVR did not answer: its final status and reason (ours for no answer at all)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass
class Transfer:
    """A REFER the IVR sent: where to, and what it told the target."""

    target: str  # the Refer-To URI without its ?headers
    headers: dict[str, str]  # the REFER's X- headers, and the Refer-To URI's headers
    at: float  # seconds since the answer

    @property
    def context(self) -> dict[str, Any] | None:
        """The X-IVR-Context payload, decoded (None when there is none or it is unreadable)."""
        from ..services.router import decode_context

        raw = self.headers.get("X-IVR-Context")
        if not raw:
            return None
        try:
            return decode_context(raw)
        except ValueError:
            return None


def key_frames(digit: str, seconds: float = 0.1) -> tuple[bytes, ...]:
    """A key's DTMF tone as 20 ms PCM frames."""
    for row, keys in enumerate(KEYPAD):
        col = keys.find(digit.upper()) if len(digit) == 1 else -1
        if col >= 0:
            return tuple(split_frames(tone((ROW_FREQS[row], COL_FREQS[col]), seconds, level=0.5)))
    raise ValueError(f"not a key: {digit!r}")


@dataclass
class Line:
    """One answered call from the harness's side."""

    phone: Phone
    call: SipCall
    answered_at: float  # loop time of the answer
    setup_s: float  # INVITE to answer
    heard: bytearray = field(default_factory=bytearray)  # 8 kHz PCM16 of what the IVR sent
    arrivals: list[float] = field(default_factory=list)  # loop time of each 20 ms frame in `heard`
    keys: list[tuple[str, float]] = field(default_factory=list)  # keys the IVR sent us, and when
    transfers: list[Transfer] = field(default_factory=list)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)  # the IVR ended the call
    hangup_reason: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set at every frame, key, transfer, end
    _tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._listen()), asyncio.ensure_future(self._events())]

    @property
    def call_id(self) -> str:
        return self.call.call_id

    @property
    def ended(self) -> bool:
        return self.call.ended

    def now(self) -> float:
        """Seconds since the answer."""
        return asyncio.get_running_loop().time() - self.answered_at

    def time_of(self, sample: int) -> float:
        """Seconds since the answer at which sample `sample` of `heard` arrived."""
        if not self.arrivals:
            return 0.0
        i = min(max(sample, 0) * 2 // FRAME_BYTES, len(self.arrivals) - 1)
        return self.arrivals[i] - self.answered_at

    def _poke(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        async for pcm in self.call.audio_in():
            self.heard += pcm
            self.arrivals.append(loop.time())
            self._poke()

    async def _events(self) -> None:
        while True:
            event = await self.call.next_event()
            if isinstance(event, Dtmf):
                self.keys.append((event.digit, self.now()))
            elif isinstance(event, Hangup):
                self.hangup_reason = event.reason
                self.hung_up.set()
                self._poke()
                return
            self._poke()

    async def wait_change(self, timeout: float) -> None:
        """Until something new is heard or happens, or `timeout` seconds pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)

    # ---- what the caller does ----------------------------------------------------------------
    async def press(self, keys: str, method: str = "rfc4733", duration: float = 0.1, gap: float = 0.3) -> str:
        """Press `keys` one after another; returns the method used (rfc4733 falls back to
        inband when the IVR did not offer telephone-event)."""
        if method not in KEY_METHODS:
            raise ValueError(f"method must be one of {', '.join(KEY_METHODS)}")
        if method == "rfc4733" and self.call.rtp.dtmf_pt is None:
            method = "inband"
        for i, digit in enumerate(keys):
            if self.ended:
                break
            if i:
                await asyncio.sleep(gap)
            if method == "rfc4733":
                await self.call.rtp.send_dtmf(digit, int(duration * 1000))
            elif method == "info":
                await self._info(digit, duration)
            else:
                await self.play(b"".join(key_frames(digit, duration)))
        return method

    async def _info(self, digit: str, duration: float) -> None:
        body = f"Signal={digit}\r\nDuration={int(duration * 1000)}\r\n".encode()
        req = self.call.dialog.request("INFO", body=body, content_type="application/dtmf-relay")
        resp = await self.phone.server.tx.request(req, self.call.dialog.destination())
        if resp.status >= 300:
            raise CallFailed(resp.status, f"INFO refused: {resp.reason}")
        await asyncio.sleep(duration)

    async def play(self, pcm: bytes) -> None:
        """Send this audio (8 kHz PCM16) to the IVR, and wait until it has gone out."""
        if not self.ended:
            await self.call.play(PromptAudio(pcm=pcm, id="caller audio"))

    async def say(self, text: str, language: str = "en-US") -> None:
        """Speak `text` with the engine's TTS."""
        if not self.ended:
            await self.call.play(PromptAudio(text=text, language=language))

    async def hangup(self) -> None:
        """End the call from our side (nothing if the IVR already did)."""
        if not self.ended:
            await self.call.hangup("harness")
        await self.close()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Phone:
    """A SIP phone for the harness: one UDP port on `host`, any number of calls."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, rtp_ports: range | None = None,
                 user: str = "tester") -> None:
        self.clock = MediaClock()
        self.prompts = PromptCache(EspeakTts())
        self.server = SipServer(
            SipSettings(host=host, port=port, rtp_ports=rtp_ports or range(40000, 50000), user=user),
            self._incoming, self.prompts, self.clock, Admission(hard=0))
        self.server.handlers["REFER"] = self._refer
        self.lines: dict[str, Line] = {}

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
                   ring_timeout: float = 30.0) -> Line:
        """Dial `target` (a sip: URI over UDP); raises CallFailed when it is not answered."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        result = await self.server.dial(target, caller_id=caller, ring_timeout=ring_timeout, headers=headers)
        if not result.answered:
            raise CallFailed(result.status, result.reason)
        now = loop.time()
        line = Line(self, result.call, answered_at=now, setup_s=now - t0)
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
        target, headers = _refer_target(refer_to)
        headers.update({k: v for k, v in _x_headers(req.headers)})
        line.transfers.append(Transfer(target, headers, line.now()))
        line._poke()
        self.server.spawn(self._notify(call))

    async def _notify(self, call: SipCall) -> None:
        # The transferee reached the target: the IVR may now leave the call.
        extra = [("Event", "refer"), ("Subscription-State", "terminated;reason=noresource")]
        req = call.dialog.request("NOTIFY", extra, body=b"SIP/2.0 200 OK\r\n", content_type="message/sipfrag")
        with contextlib.suppress(TimeoutError):
            await self.server.tx.request(req, call.dialog.destination())


def _refer_target(refer_to: str) -> tuple[str, dict[str, str]]:
    """The URI of a Refer-To value, and the headers carried in it (RFC 3261 19.1.1)."""
    with contextlib.suppress(Exception):
        refer_to = str(NameAddr.parse(refer_to).uri.serialize())
    uri = refer_to.strip().strip("<>")
    base, _, query = uri.partition("?")
    headers: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        if name:
            headers[unquote(name)] = unquote(value)
    return base, headers


def _x_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower().startswith("x-")]
