"""A call without a network: the simulator's text caller and the tests' fake call.

Prompts "play" for as long as they would take to speak (or the audio file
lasts) on the loop's clock, so on a virtual-time loop a call runs instantly
yet every timeout behaves as on a real line.
"""

from __future__ import annotations

import asyncio
import itertools
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .call import (
    Dtmf,
    Event,
    Hangup,
    PlayResult,
    PromptAudio,
    Recording,
    SpeechResult,
    TransferResult,
)

WORDS_PER_SECOND = 2.6  # a steady prompt voice
_ids = itertools.count(1)


def prompt_seconds(prompt: PromptAudio) -> float:
    """How long a prompt lasts: the audio file's length, else an estimate from its words."""
    if prompt.audio and prompt.audio.lower().endswith(".wav"):
        try:
            with wave.open(prompt.audio) as w:
                return w.getnframes() / float(w.getframerate())
        except (OSError, wave.Error, EOFError):
            pass
    if prompt.id and prompt.id.startswith("tone:"):
        return 0.5
    words = len((prompt.text or "").split())
    return max(0.4, words / WORDS_PER_SECOND)


@dataclass
class HoldSpan:
    """One stretch of music on hold: its class, mode, when it played (loop time) and
    `at`, where in the music it began, in seconds of music (not wrapped at the loop's
    end, whose length a virtual call does not know): for resume, what this caller had
    heard of the class before; for stream, the loop's clock, the stream's own time."""

    music: str
    mode: str
    start: float
    end: float | None = None
    at: float = 0.0


@dataclass
class VirtualCall:
    """Implements the Call protocol on the loop's clock; drive it with press/say/hang_up."""

    caller: str = "+441632960001"
    dialled: str = "+441632960000"
    channel: str = "fake"
    call_id: str = field(default_factory=lambda: f"virtual-{next(_ids)}")
    transfer_ok: bool = True

    def __post_init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.played: list[tuple[float, PromptAudio, bool]] = []  # (start, prompt, completed)
        self.holds: list[HoldSpan] = []
        self.music_heard: dict[str, float] = {}  # resume class -> seconds heard
        self.transfers: list[tuple[str, dict[str, str], str | None]] = []
        self.ended: str | None = None
        self.playing: PromptAudio | None = None
        self.recording = False
        self._stop = asyncio.Event()
        self._message: asyncio.Future | None = None
        self._end_keys = "#"

    # ---- driving it (the caller's side) ---------------------------------------
    def press(self, digits: str, via: str = "text") -> None:
        for d in digits:
            if self.recording and d in self._end_keys and self._message and not self._message.done():
                self._message.set_result(("key", None))
            self.events.put_nowait(Dtmf(d, via))

    def say(self, text: str, confidence: float = 1.0) -> None:
        if self.recording and self._message and not self._message.done():
            self._message.set_result(("speech", text))
            return
        self.events.put_nowait(SpeechResult(text, confidence, engine="text"))

    def hang_up(self) -> None:
        if self.recording and self._message and not self._message.done():
            self._message.set_result(("hangup", None))
        self.events.put_nowait(Hangup("caller"))

    # ---- the Call protocol ---------------------------------------------------------
    async def next_event(self) -> Event:
        return await self.events.get()

    async def play(self, prompt: PromptAudio) -> PlayResult:
        loop = asyncio.get_running_loop()
        start = loop.time()
        length = prompt_seconds(prompt)
        self._stop.clear()
        self.playing = prompt
        try:
            await asyncio.wait_for(self._stop.wait(), length)
            completed = False
        except TimeoutError:
            completed = True
        finally:
            self.playing = None
        self.played.append((start, prompt, completed))
        return PlayResult(completed, loop.time() - start)

    def stop_playback(self) -> None:
        self._stop.set()

    async def audio_in(self) -> AsyncIterator[bytes]:
        # No audio: speech arrives as text events instead.
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    async def start_hold(self, music: str, mode: str) -> None:
        await self.stop_hold()  # as on a line: starting the music again first stops what plays
        now = asyncio.get_running_loop().time()
        at = now if mode == "stream" else self.music_heard.get(music, 0.0)
        self.holds.append(HoldSpan(music, mode, now, at=at))

    async def stop_hold(self) -> None:
        if self.holds and self.holds[-1].end is None:
            span = self.holds[-1]
            span.end = asyncio.get_running_loop().time()
            if span.mode == "resume":
                self.music_heard[span.music] = span.at + (span.end - span.start)

    async def record(self, max_s: float, end_keys: str = "#", silence_s: float = 5.0) -> Recording:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.recording = True
        self._end_keys = end_keys
        text: str | None = None
        wait, over = min(max_s, silence_s), False  # nothing said for this long ends it
        try:
            while True:
                self._message = loop.create_future()
                try:
                    how, said = await asyncio.wait_for(self._message, wait)
                except TimeoutError:
                    how = "max-length" if over else "silence"
                    break
                if how != "speech":
                    break  # an end key or a hangup
                # The caller speaks, then stops: silence ends the recording unless they
                # go on, press an end key or hang up first.
                text = f"{text} {said}" if text else said
                talk = len(said.split()) / WORDS_PER_SECOND + silence_s
                left = max_s - (loop.time() - start)
                wait, over = min(talk, left), talk >= left
        finally:
            self.recording = False
            self._message = None
        if text is None:
            # Nothing said: no message, however it ended (silence is trimmed).
            return Recording(b"", 8000, how, text=None, duration_s=0.0)
        return Recording(b"", 8000, how, text=text, duration_s=loop.time() - start)

    async def transfer(self, target: str, headers: dict[str, str], body: str | None = None) -> TransferResult:
        self.transfers.append((target, dict(headers), body))
        return TransferResult(self.transfer_ok, "transferred" if self.transfer_ok else "refused")

    async def hangup(self, reason: str = "normal") -> None:
        self.ended = reason
