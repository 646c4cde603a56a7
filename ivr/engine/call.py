"""The Call protocol: what the engine needs from a call, whatever carries it.

SIP, WebRTC, the text simulator and the unit tests' fake call all implement
this. Inside the engine audio is PCM16 mono in 20 ms frames; codecs, sample
rates and transports stay at the edges.

Events (keys, speech, hangup) travel on their own queue, apart from audio, so a
key pressed during a prompt is seen at once: events overtake audio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

FRAME_MS = 20


@dataclass(frozen=True)
class Dtmf:
    """A key pressed by the caller; `via` says how it arrived (rfc4733, info, inband, text)."""

    digit: str
    via: str = "rfc4733"
    duration_ms: int = 100


@dataclass(frozen=True)
class SpeechStarted:
    """The caller began to speak (used for barge-in)."""


@dataclass(frozen=True)
class SpeechResult:
    """What the caller said, as recognised."""

    text: str
    confidence: float = 1.0
    alternatives: tuple[tuple[str, float], ...] = ()
    engine: str = ""


@dataclass(frozen=True)
class NoSpeech:
    """The recogniser heard nothing it could use (noise, mumbling)."""

    reason: str = "no-match"


@dataclass(frozen=True)
class Hangup:
    """The caller (or the network) ended the call."""

    reason: str = "caller"


Event = Dtmf | SpeechStarted | SpeechResult | NoSpeech | Hangup


@dataclass(frozen=True)
class PromptAudio:
    """A prompt as the engine hands it to a call: the text to speak and/or a media file."""

    text: str | None = None
    audio: str | None = None  # absolute path, already checked to be under media/
    id: str | None = None
    language: str = "en-US"
    # Audio made during the call (a caller's own message, played back for review):
    # PCM16 mono 8 kHz, played as it is and never cached.
    pcm: bytes | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.pcm is not None:
            return self.id or f"recorded audio ({len(self.pcm) / 16000:.1f}s)"
        return self.text or self.id or (self.audio or "").rsplit("/", 1)[-1]


@dataclass
class PlayResult:
    """How a prompt ended."""

    completed: bool  # False when stopped early (barge-in, hangup)
    played_s: float


@dataclass
class Recording:
    """A recorded message: PCM16 mono audio and why it ended."""

    pcm: bytes
    sample_rate: int
    ended_by: str  # "silence", "key", "max-length", "hangup"
    text: str | None = None  # what the simulator's caller typed instead of audio
    duration_s: float = 0.0


@dataclass
class TransferResult:
    """The outcome of handing the call over to someone else."""

    ok: bool
    detail: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Call(Protocol):
    """One caller, seen by the engine."""

    call_id: str
    caller: str  # the caller's number or user (caller id)
    dialled: str  # the number or user that was called
    channel: str  # sip, webrtc, text, fake

    async def next_event(self) -> Event:
        """The next key, speech or hangup event; overtakes any audio in flight."""
        ...

    async def play(self, prompt: PromptAudio) -> PlayResult:
        """Play one prompt to the end, or until stop_playback()."""
        ...

    def stop_playback(self) -> None:
        """Stop the prompt that is playing now (barge-in); harmless when none is."""
        ...

    def audio_in(self) -> AsyncIterator[bytes]:
        """The caller's audio: 20 ms PCM16 frames, for recognisers and recording."""
        ...

    async def start_hold(self, music: str, mode: str) -> None:
        """Start music on hold of class `music` (mode resume or stream)."""
        ...

    async def stop_hold(self) -> None:
        """Stop the music (its position is kept for `resume`)."""
        ...

    async def record(self, max_s: float, end_keys: str = "#", silence_s: float = 5.0) -> Recording:
        """Record the caller until a key, silence, the maximum length or hangup."""
        ...

    async def transfer(self, target: str, headers: dict[str, str], body: str | None = None) -> TransferResult:
        """Hand the call to `target` (e.g. SIP REFER), with context headers."""
        ...

    async def hangup(self, reason: str = "normal") -> None:
        """End the call from our side."""
        ...
