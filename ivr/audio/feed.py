"""What a call's outgoing audio is taken from, one 20 ms frame (or encoded payload) per tick.

An RTP session (ivr/sip/media.py) and a WebRTC track (ivr/webrtc/track.py)
both send from a Feed: a prompt's Source, or music on hold (ivr/audio/moh.py).
`next()` is called only when a frame really goes out, so a source always
knows what was sent (music resumes exactly, a prompt's end is exact).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol


class Feed(Protocol):
    """One frame per tick, None when done; `finish` ends it early (stopped) or on time."""

    def next(self) -> bytes | None:
        ...

    def finish(self, completed: bool) -> None:
        ...


class Source:
    """A prompt's frames (PCM, or payloads already encoded), sent in turn; `done`
    resolves True when they run out, False when they are stopped."""

    def __init__(self, frames: tuple[bytes, ...]) -> None:
        self.frames = frames
        self.pos = 0
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def next(self) -> bytes | None:
        if self.pos >= len(self.frames):
            self.finish(True)
            return None
        f = self.frames[self.pos]
        self.pos += 1
        return f

    def finish(self, completed: bool) -> None:
        if not self.done.done():
            self.done.set_result(completed)


async def played(src: Source, stop) -> tuple[bool, float]:
    """Wait for a prompt's Source to end: (completed, seconds sent). Cancelled, it stops
    the prompt with `stop()` first, so no frame of it goes out after its call moved on."""
    try:
        completed = await src.done
    except asyncio.CancelledError:
        src.finish(False)
        stop()
        raise
    return completed, src.pos * 0.02


class Relay:
    """Live audio from another call leg, one frame per tick: what arrived, oldest first,
    or silence while nothing has. At most `depth` frames wait, so a sender that
    runs ahead of our clock (or a burst after a stall) costs dropped frames, not delay.
    `encode` turns a PCM frame into what the sender sends (G.711 payloads for RTP).
    `insert` queues frames of our own (a key's tone) that go out whole, ahead of the live ones."""

    MAX_INSERTED = 100  # frames (2 s): a page that sends keys faster than they sound loses the rest

    def __init__(self, encode=None, silence: bytes = b"\x00" * 320, depth: int = 5) -> None:
        self.encode = encode or (lambda pcm: pcm)
        self.silence = silence
        self.depth = depth
        self.frames: deque[bytes] = deque()
        self.inserted: deque[bytes] = deque()
        self.dropped = 0
        self.sent = 0
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def push(self, pcm: bytes) -> None:
        """One PCM frame from the other leg."""
        if self.done.done():
            return
        if len(self.frames) >= self.depth:
            self.frames.popleft()
            self.dropped += 1
        self.frames.append(pcm)

    def insert(self, frames) -> bool:
        """Frames to send whole before any more live audio; False (nothing queued) when too many wait."""
        frames = tuple(frames)
        if self.done.done() or len(self.inserted) + len(frames) > self.MAX_INSERTED:
            return False
        self.inserted.extend(frames)
        return True

    def next(self) -> bytes | None:
        if self.done.done():
            return None
        self.sent += 1
        if self.inserted:
            return self.encode(self.inserted.popleft())
        return self.encode(self.frames.popleft() if self.frames else self.silence)

    def finish(self, completed: bool) -> None:
        if not self.done.done():
            self.done.set_result(completed)
