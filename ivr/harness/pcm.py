"""The line's audio as numbers: the basics the harness's listening modules share.

The harness records a line as PCM16 little-endian mono at 8 kHz, as decoded
from G.711. Here are its rate and the 20 ms analysis frame, the samples as a
float array (`pcm_array`), and normalised cross-correlation (`ncc`), which
both prompt finding (`ivr.harness.listen`) and matching hold music against a
known file (`ivr.harness.sounds`) use.
"""

from __future__ import annotations

import numpy as np

RATE = 8000  # the line's sample rate (G.711)
FRAME = 160  # 20 ms analysis frames
FRAME_S = FRAME / RATE


# ---- audio in --------------------------------------------------------------------------------------

def pcm_array(audio: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """PCM16 little-endian bytes (or any array of samples) as float64 samples."""
    if isinstance(audio, np.ndarray):
        return audio.astype(np.float64, copy=False)
    data = bytes(audio)
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64)


# ---- cross-correlation -------------------------------------------------------------------------------

def ncc(recording: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of `template` at every offset over `recording`.

    Element k is the score with the template starting at sample
    k - (len(template) - 1) of the recording: the recording is padded with
    silence on both sides, so partial overlaps at either end are scored too.
    Windows with next to no energy score 0 rather than noise over noise.
    """
    t = np.asarray(template, dtype=np.float64)
    r = np.asarray(recording, dtype=np.float64)
    if t.size == 0 or r.size == 0:
        return np.zeros(0)
    pad = np.zeros(t.size - 1)
    return _ncc_valid(np.concatenate([pad, r, pad]), t)


def _ncc_valid(x: np.ndarray, t: np.ndarray, t_fft: dict | None = None) -> np.ndarray:
    """NCC of `t` starting at each sample k of `x` with the whole of `t` inside `x`
    (len(x) - len(t) + 1 scores; none when `x` is shorter)."""
    n_out = x.size - t.size + 1
    if n_out <= 0 or t.size == 0:
        return np.zeros(max(n_out, 0))
    t_energy = float(np.dot(t, t))
    if t_energy == 0.0:
        return np.zeros(n_out)
    # A circular correlation of length >= len(x) does not wrap for the full overlaps.
    size = 1 << (x.size - 1).bit_length()
    spectrum = t_fft.get(size) if t_fft is not None else None
    if spectrum is None:
        spectrum = np.conj(np.fft.rfft(t, size))
        if t_fft is not None:
            t_fft[size] = spectrum
    corr = np.fft.irfft(np.fft.rfft(x, size) * spectrum, size)[:n_out]
    squares = np.concatenate([[0.0], np.cumsum(x * x)])
    energy = squares[t.size:] - squares[:n_out]
    # Far below the template's energy a window is silence (or FFT round-off): it cannot hold
    # the prompt, and dividing by ~0 would make noise look like a match.
    floor = 1e-6 * t_energy
    return np.where(energy > floor, corr / np.sqrt(np.maximum(energy, floor) * t_energy), 0.0)
