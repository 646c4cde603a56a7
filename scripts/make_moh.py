"""Synthesise the default music-on-hold track (media/moh/default/acme-theme.wav).

A gentle four-chord progression with a melody, 8 kHz 16-bit mono: original
work generated here, so the repository carries no third-party music. Run it
again to rebuild the file; the output is deterministic.
"""

from __future__ import annotations

import math
import struct
import sys
import wave
from pathlib import Path

RATE = 8000
BEAT = 0.5  # seconds
CHORDS = [(261.63, 329.63, 392.00), (220.00, 261.63, 329.63), (174.61, 220.00, 261.63), (196.00, 246.94, 293.66)]
MELODY = [523.25, 587.33, 659.25, 587.33, 523.25, 440.00, 392.00, 440.00]


def render(seconds: float = 24.0) -> bytes:
    n = int(seconds * RATE)
    out = bytearray()
    for i in range(n):
        t = i / RATE
        bar = int(t / (BEAT * 4)) % len(CHORDS)
        beat_pos = (t % BEAT) / BEAT
        env = math.exp(-3.0 * beat_pos)
        s = sum(math.sin(2 * math.pi * f * t) for f in CHORDS[bar]) * 0.12
        note = MELODY[int(t / BEAT) % len(MELODY)]
        s += math.sin(2 * math.pi * note * t) * 0.22 * env
        fade = min(1.0, t / 0.5, (seconds - t) / 0.5)
        out += struct.pack("<h", int(max(-1.0, min(1.0, s * fade)) * 20000))
    return bytes(out)


def main(path: str = "media/moh/default/acme-theme.wav") -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(render())
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
