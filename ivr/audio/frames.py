"""Frames: the engine's unit of audio (PCM16 little-endian, mono, 8 kHz, 20 ms)."""

from __future__ import annotations

RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 160
FRAME_BYTES = FRAME_SAMPLES * 2  # 320
SILENCE = bytes(FRAME_BYTES)


def split_frames(pcm: bytes) -> tuple[bytes, ...]:
    """Cut PCM16 audio into 20 ms frames, padding the last one with silence."""
    if len(pcm) % 2:
        pcm = pcm[:-1]
    out = [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    if out and len(out[-1]) < FRAME_BYTES:
        out[-1] = out[-1] + bytes(FRAME_BYTES - len(out[-1]))
    return tuple(out)


def tone(freqs: tuple[float, ...], seconds: float, level: float = 0.3) -> bytes:
    """A sum of sine waves as PCM16 (beeps, test tones)."""
    import numpy as np

    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    sig = sum(np.sin(2 * np.pi * f * t) for f in freqs) / max(1, len(freqs))
    ramp = min(n // 2, 80)  # 10 ms fades: no clicks
    env = np.ones(n)
    if ramp:
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
    return (sig * env * level * 32767).astype("<i2").tobytes()


async def follow(listeners: list):
    """A caller's frames as they arrive: a queue of its own is added to `listeners` (whoever
    receives the audio puts each frame on every queue, and None at the end) and taken off
    again when the iterator ends or is dropped."""
    import asyncio

    q: asyncio.Queue = asyncio.Queue()
    listeners.append(q)
    try:
        while (frame := await q.get()) is not None:
            yield frame
    finally:
        if q in listeners:
            listeners.remove(q)
