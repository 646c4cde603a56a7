"""Recording a caller's message: the loop every kind of call shares.

A call hands the recorder its audio (20 ms PCM16 frames) and pushes in what
happens meanwhile: keys (`key`) and the caller hanging up (`hangup`). The
recording ends at an end key, after `silence_s` without the caller making a
sound, at `max_s`, or at hangup; trailing silence is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

from ..engine.call import Recording
from .frames import FRAME_BYTES, RATE

SILENCE_RMS = 300.0  # below this level a frame counts as silence when recording


class Recorder:
    """One recording in progress."""

    def __init__(self) -> None:
        self._q: asyncio.Queue = asyncio.Queue()

    def key(self, digit: str) -> None:
        """The caller pressed a key."""
        self._q.put_nowait(("key", digit))

    def hangup(self) -> None:
        """The caller hung up: the recording ends with what it has."""
        self._q.put_nowait(("hangup", None))

    async def run(self, audio: AsyncIterator[bytes], max_s: float, end_keys: str = "#",
                  silence_s: float = 5.0) -> Recording:
        """Record from `audio` until a key in `end_keys`, silence, `max_s` or hangup."""
        q = self._q
        frames: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_s
        # Silence is measured in time since the caller last made a sound, not in quiet
        # frames: a phone that stops sending audio when its user is quiet sends none at all.
        voiced = loop.time()
        ended = "max-length"

        async def pump():
            async for frame in audio:
                q.put_nowait(("audio", frame))

        feeder = asyncio.ensure_future(pump())
        try:
            while True:
                now = loop.time()
                if now >= deadline:
                    break
                if now - voiced >= silence_s:
                    ended = "silence"
                    break
                try:
                    kind, value = await asyncio.wait_for(q.get(), min(deadline, voiced + silence_s) - now)
                except TimeoutError:
                    continue
                if kind == "hangup":
                    ended = "hangup"
                    break
                if kind == "key":
                    if value in end_keys:
                        ended = "key"
                        break
                    continue
                frames.append(value)
                if rms(value) >= SILENCE_RMS:
                    voiced = loop.time()
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        # Trailing silence is not part of the message.
        while frames and rms(frames[-1]) < SILENCE_RMS:
            frames.pop()
        pcm = b"".join(frames)
        return Recording(pcm, RATE, ended, duration_s=len(pcm) / (2 * RATE))


def rms(frame: bytes) -> float:
    """The level of one 20 ms frame (0 for a short one)."""
    if len(frame) < FRAME_BYTES:
        return 0.0
    import numpy as np

    x = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    return math.sqrt(float(np.mean(x * x)))
