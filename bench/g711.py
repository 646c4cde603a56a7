"""How fast G.711 converts 20 ms frames (160 samples), in frames per second.

    python bench/g711.py [seconds-per-case]

Prints frames/s and microseconds per frame for mu-law and A-law, encode and
decode, and the same through the deprecated `audioop` when it is importable.
One call carries 50 frames/s each way, so frames/s / 100 is a rough ceiling
on the calls one core could transcode (both directions).
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np

from ivr.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode


def _rate(fn, arg, seconds: float) -> float:
    """Frames per second of fn(arg), timed over batches until `seconds` have passed."""
    n = 0
    batch = 1000
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn(arg)
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rng = np.random.default_rng(1)
    frame = (rng.normal(0, 3000, 160).clip(-32768, 32767)).astype("<i2").tobytes()
    ulaw, alaw = ulaw_encode(frame), alaw_encode(frame)
    cases = [
        ("ulaw_encode", ulaw_encode, frame),
        ("ulaw_decode", ulaw_decode, ulaw),
        ("alaw_encode", alaw_encode, frame),
        ("alaw_decode", alaw_decode, alaw),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            audioop = None
    if audioop is not None:
        cases += [
            ("audioop.lin2ulaw", lambda b: audioop.lin2ulaw(b, 2), frame),
            ("audioop.ulaw2lin", lambda b: audioop.ulaw2lin(b, 2), ulaw),
            ("audioop.lin2alaw", lambda b: audioop.lin2alaw(b, 2), frame),
            ("audioop.alaw2lin", lambda b: audioop.alaw2lin(b, 2), alaw),
        ]
    print(f"G.711, 160-sample frames, {seconds:g} s per case")
    for name, fn, arg in cases:
        rate = _rate(fn, arg, seconds)
        print(f"  {name:18s} {rate:12,.0f} frames/s  {1e6 / rate:6.2f} us/frame")


if __name__ == "__main__":
    main()
