"""Resampling to the engine's 8 kHz (prompts, TTS) and up to 16 kHz (recognisers).

Band-limited by FFT: prompts are converted once and cached, so quality matters
more than speed here.
"""

from __future__ import annotations

import numpy as np


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """PCM16 mono from `src_rate` to `dst_rate` without aliasing."""
    if src_rate == dst_rate or not pcm:
        return pcm
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    n_out = max(1, int(round(len(x) * dst_rate / src_rate)))
    spec = np.fft.rfft(x)
    keep = n_out // 2 + 1
    if keep <= len(spec):
        spec = spec[:keep]
    else:
        spec = np.concatenate([spec, np.zeros(keep - len(spec), dtype=spec.dtype)])
    y = np.fft.irfft(spec, n_out) * (n_out / len(x))
    return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()


def to_mono16(raw: bytes, channels: int, width: int) -> bytes:
    """Interleaved PCM of 8/16/24/32-bit samples to mono PCM16."""
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        x = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8) >> 8
    elif width == 4:
        x = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i4").astype(np.int64) >> 16
    else:
        raise ValueError(f"unsupported sample width {width}")
    if channels > 1:
        x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()
