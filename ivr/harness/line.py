"""One answered call as the harness sees it, whatever phone placed it.

A journey's steps only talk to a `Line`: what was heard so far (8 kHz PCM16,
with each 20 ms frame's arrival time, so a match in the audio has a time),
the transfers the IVR asked for, whether it hung up; and the caller's side:
press keys, play audio, say a phrase, hang up. Each caller driver (the
harness's own SIP phone, a pyVoIP phone, baresip) subclasses it and says
which ways of sending keys it has in `key_methods`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

from ..audio.dtmf_detect import COL_FREQS, KEYPAD, ROW_FREQS
from ..audio.frames import FRAME_BYTES, split_frames, tone
from ..news import News
from ..sip.headers import NameAddr

KEY_METHODS = ("rfc4733", "info", "inband")


class CallFailed(Exception):
    """The IVR did not answer: its final status and reason (ours for no answer at all)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class DriverCannot(Exception):
    """The caller driver has no way to do what the step asks (say, SIP INFO from baresip)."""


@dataclass
class Transfer:
    """A REFER the IVR sent: where to, and what it told the target."""

    target: str  # the Refer-To URI without its ?headers
    headers: dict[str, str]  # the REFER's X- headers, and the Refer-To URI's headers
    at: float  # seconds since the answer

    @classmethod
    def from_refer(cls, refer_to: str, headers: Iterable[tuple[str, str]], at: float) -> Transfer:
        """From a REFER: its Refer-To value, which may carry headers (RFC 3261 19.1.1),
        and its own headers, of which the X- ones are kept (they win over the URI's)."""
        with contextlib.suppress(Exception):
            refer_to = str(NameAddr.parse(refer_to).uri.serialize())
        target, _, query = refer_to.strip().strip("<>").partition("?")
        found: dict[str, str] = {}
        for pair in query.split("&") if query else ():
            name, _, value = pair.partition("=")
            if name:
                found[unquote(name)] = unquote(value)
        found.update((k, v) for k, v in headers if k.lower().startswith("x-"))
        return cls(target, found, at)

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


class Line:
    """One answered call from the caller's side; drivers fill in how to act on it."""

    driver = "?"
    key_methods: tuple[str, ...] = ()  # the ways this driver can send keys, best first

    def __init__(self, answered_at: float, setup_s: float) -> None:
        self.answered_at = answered_at  # loop time of the answer
        self.setup_s = setup_s  # INVITE (or dial command) to answer
        self.heard = bytearray()  # 8 kHz PCM16 of what the IVR sent
        self.arrivals: list[float] = []  # loop time of each 20 ms frame in `heard`
        self.keys: list[tuple[str, float]] = []  # keys the IVR sent us, and when
        self.transfers: list[Transfer] = []
        self.hung_up = asyncio.Event()  # the IVR ended the call
        self.hangup_reason: str | None = None
        self.changed = News()  # poked at every frame, key, transfer, end
        self.key_down: float | None = None  # seconds since the answer when the last key began

    # ---- what was heard --------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        raise NotImplementedError

    @property
    def ended(self) -> bool:
        return self.hung_up.is_set()

    def now(self) -> float:
        """Seconds since the answer."""
        return asyncio.get_running_loop().time() - self.answered_at

    def time_of(self, sample: int) -> float:
        """Seconds since the answer at which sample `sample` of `heard` arrived."""
        if not self.arrivals:
            return 0.0
        i = min(max(sample, 0) * 2 // FRAME_BYTES, len(self.arrivals) - 1)
        return self.arrivals[i] - self.answered_at

    def add_audio(self, pcm: bytes, arrived: float) -> None:
        """Append heard audio that reached us at loop time `arrived` (whole 20 ms frames)."""
        self.heard += pcm
        frames = (len(self.heard) // FRAME_BYTES) - len(self.arrivals)
        # A chunk of several frames (read from a file, say) all arrived by `arrived`:
        # spread them back at the frame rate so later ones are not dated too early.
        self.arrivals += [arrived - 0.02 * (frames - 1 - i) for i in range(frames)]
        self.poke()

    def add_transfer(self, transfer: Transfer) -> None:
        self.transfers.append(transfer)
        self.poke()

    def ended_by_ivr(self, reason: str | None) -> None:
        """The IVR (or the network) ended the call."""
        if not self.hung_up.is_set():
            self.hangup_reason = reason
            self.hung_up.set()
            self.poke()

    def poke(self) -> None:
        """Wake whatever waits for news on this line."""
        self.changed.poke()

    async def wait_change(self, timeout: float) -> None:
        """Until something new is heard or happens, or `timeout` seconds pass."""
        await self.changed.wait(timeout)

    # ---- what the caller does ----------------------------------------------------------------
    def key_method(self, method: str) -> str:
        """The method to press keys with: `method` if this driver has it; rfc4733 falls back
        to in-band tones when the driver (or the call) has no RFC 4733."""
        if method not in KEY_METHODS:
            raise ValueError(f"method must be one of {', '.join(KEY_METHODS)}")
        if method == "rfc4733" and method not in self.key_methods and "inband" in self.key_methods:
            return "inband"
        if method not in self.key_methods:
            raise DriverCannot(f"the {self.driver} driver cannot send keys as {method} "
                               f"(it can: {', '.join(self.key_methods) or 'none'})")
        return method

    async def press(self, keys: str, method: str = "rfc4733", duration: float = 0.1, gap: float = 0.3) -> str:
        """Press `keys` one after another; returns the method used."""
        method = self.key_method(method)
        for i, digit in enumerate(keys):
            if self.ended:
                break
            if i:
                await asyncio.sleep(gap)
            self.key_down = self.now()
            if method == "inband":
                await self.play(b"".join(key_frames(digit, duration)))
            else:
                await self.send_key(digit, method, duration)
        return method

    async def send_key(self, digit: str, method: str, duration: float) -> None:
        """Send one key out of band (rfc4733 or info); drivers that can, override this."""
        raise DriverCannot(f"the {self.driver} driver cannot send keys as {method}")

    async def play(self, pcm: bytes) -> None:
        """Send this audio (8 kHz PCM16) to the IVR, and wait until it has gone out."""
        raise NotImplementedError

    async def say(self, text: str, language: str = "en-US") -> None:
        """Speak `text` with the engine's TTS."""
        from .listen import render_prompt_async

        await self.play(await render_prompt_async(text, language))

    async def hangup(self) -> None:
        """End the call from our side (nothing if the IVR already did), and stop listening."""
        raise NotImplementedError


class CallerPhone(Protocol):
    """What every caller driver offers the runner: a phone that places calls."""

    driver: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def call(self, target: str, *, caller: str | None = None, headers: dict[str, str] | None = None,
                   ring_timeout: float = 30.0, telephone_event: bool = True) -> Line:
        """Dial `target`; CallFailed when unanswered, DriverCannot for what the phone cannot
        do (headers it cannot send, an offer without telephone-event)."""
