"""Sound on the line, judged from the audio alone (no help from the IVR).

Works on PCM16 little-endian mono at 8 kHz, as the harness records a line.

- Sound and silence. `speech_spans` cuts audio into sound and silence against
  an adaptive noise floor (`frame_levels`, `noise_floor`, `sound_threshold`).
- Music. `music_span` measures hold music (steady sound, without the constant
  dips between a talker's syllables); `reference_score` compares it with a
  known music file.
- The beep. `find_beep` finds a voicemail beep (a steady single tone).
- Quality. `mos_estimate` is a rough quality proxy.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .pcm import FRAME, FRAME_S, RATE, _ncc_valid, pcm_array

# ---- sound and silence ---------------------------------------------------------------------------------

FLOOR_RANGE_DBFS = (-80.0, -50.0)  # where the noise floor may sit (a line is rarely quieter or louder)
MARGIN_DB = 10.0  # sound is this far above the floor
MIN_SOUND_DBFS = -55.0  # and never quieter than this (mu-law's smallest steps, faint hiss)


def frame_levels(pcm: bytes | np.ndarray) -> np.ndarray:
    """The RMS level of each 20 ms frame, in dBFS."""
    x = pcm_array(pcm)
    n = x.size // FRAME
    if n == 0:
        return np.zeros(0)
    power = np.mean(x[: n * FRAME].reshape(n, FRAME) ** 2, axis=1)
    return 10.0 * np.log10(np.maximum(power, 1e-6) / 32768.0 ** 2)


def noise_floor(levels: np.ndarray) -> float:
    """The line's noise floor in dBFS: the level of its quietest tenth of frames, kept within
    FLOOR_RANGE_DBFS (so that audio with no silence at all, such as music, keeps a sane floor)."""
    if levels.size == 0:
        return FLOOR_RANGE_DBFS[0]
    return float(np.clip(np.percentile(levels, 10), *FLOOR_RANGE_DBFS))


def sound_threshold(levels: np.ndarray) -> float:
    """The level above which a frame is sound: the noise floor plus a margin."""
    return max(noise_floor(levels) + MARGIN_DB, MIN_SOUND_DBFS)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges where `flags` is true."""
    if flags.size == 0:
        return []
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _bridge(sound: np.ndarray, max_gap: int) -> np.ndarray:
    """`sound` with its quiet gaps of at most `max_gap` frames (between sounds) filled in."""
    out = sound.copy()
    for a, b in _runs(~sound):
        if a > 0 and b < sound.size and b - a <= max_gap:
            out[a:b] = True
    return out


def speech_spans(pcm: bytes | np.ndarray, min_gap: float = 0.3,
                 min_span: float = 0.06) -> list[tuple[float, float]]:
    """Where there is sound (speech, music, tones), as (start s, end s), against silence.

    Frames are sound when above an adaptive noise floor (see `sound_threshold`);
    pauses shorter than `min_gap` seconds join their neighbours (a talker's
    pauses between words), and spans shorter than `min_span` (clicks) are dropped."""
    levels = frame_levels(pcm)
    if levels.size == 0:
        return []
    sound = _bridge(levels > sound_threshold(levels), int(round(min_gap / FRAME_S)))
    return [(a * FRAME_S, b * FRAME_S) for a, b in _runs(sound) if (b - a) * FRAME_S >= min_span]


# ---- music ----------------------------------------------------------------------------------------------

MUSIC_MAX_GAP_S = 0.3  # a quiet gap longer than this ends the music
DIP_DB = 18.0  # a frame this far below the loudest within DIP_REACH_S is a dip
DIP_REACH_S = 0.25
TALK_WINDOW_S = 1.5  # dips are counted over windows this long ...
TALK_DIPS = 0.15  # ... and above this fraction the window sounds like talk, not music


def music_frames(pcm: bytes | np.ndarray) -> np.ndarray:
    """Per 20 ms frame: whether it is part of hold music.

    Music is sound (see `sound_threshold`) that stays up: gaps of at most
    MUSIC_MAX_GAP_S, and few dips. A talker's level dips 20-40 dB between
    syllables and words several times a second (measured on the engine's TTS:
    a third of the frames, without any pause longer than 100 ms in a long
    sentence), while music keeps sounding through its notes. So a frame is
    not music when more than TALK_DIPS of the frames around it are dips: at
    least DIP_DB below the loudest frame within DIP_REACH_S, counting the
    short bridged gaps as dips too."""
    levels = frame_levels(pcm)
    if levels.size == 0:
        return np.zeros(0, dtype=bool)
    sound = levels > sound_threshold(levels)
    bridged = _bridge(sound, int(round(MUSIC_MAX_GAP_S / FRAME_S)))
    reach = int(round(DIP_REACH_S / FRAME_S))
    loudest = sliding_window_view(np.pad(levels, reach, mode="edge"), 2 * reach + 1).max(axis=1)
    dips = bridged & (levels < loudest - DIP_DB)
    window = int(round(TALK_WINDOW_S / FRAME_S))
    # "same"-sized and centred however short the audio is (numpy's "same" gives the longer length).
    density = np.convolve(dips.astype(np.float64), np.ones(window) / window, mode="full")
    density = density[(window - 1) // 2:(window - 1) // 2 + dips.size]
    return bridged & (density <= TALK_DIPS)


def music_span(pcm: bytes | np.ndarray) -> float:
    """The longest stretch of continuous hold music, in seconds (0.0 when none)."""
    runs = _runs(music_frames(pcm))
    return max(((b - a) * FRAME_S for a, b in runs), default=0.0)


def is_music(pcm: bytes | np.ndarray, seconds: float) -> bool:
    """Whether the audio holds at least `seconds` of continuous hold music."""
    return music_span(pcm) >= seconds


def reference_score(pcm: bytes | np.ndarray, reference: bytes | np.ndarray, excerpt: float = 1.0) -> float:
    """How well the music heard matches a known music file (best NCC, 0..1).

    Up to three `excerpt`-second pieces of the longest music stretch are each
    looked for anywhere in the reference (looped: hold music repeats), so a
    slip of the receiver's playout between pieces costs nothing."""
    x, ref = pcm_array(pcm), pcm_array(reference)
    size = int(excerpt * RATE)
    runs = _runs(music_frames(x))
    if not runs or ref.size == 0:
        return 0.0
    a, b = max(runs, key=lambda r: r[1] - r[0])
    a, b = a * FRAME, b * FRAME
    if b - a < size:
        return 0.0
    looped = np.concatenate([ref, ref[: size - 1]]) if ref.size >= size else np.tile(ref, size // ref.size + 2)
    starts = np.linspace(a, b - size, num=min(3, 1 + (b - a) // size)).astype(int)
    best = 0.0
    for s in starts:
        piece = x[s:s + size]
        scores = _ncc_valid(looped, piece)
        if scores.size:
            best = max(best, float(scores.max()))
    return best


def matches_reference(pcm: bytes | np.ndarray, reference: bytes | np.ndarray, threshold: float = 0.6) -> bool:
    """Whether the music heard is the given music file (see `reference_score`)."""
    return reference_score(pcm, reference) >= threshold


# ---- the beep -----------------------------------------------------------------------------------------

BEEP_BAND_HZ = (300.0, 2000.0)
BEEP_MIN_S = 0.15
BEEP_PURITY = 0.9  # share of a window's energy within BEEP_WIDTH_HZ of its strongest frequency
BEEP_WIDTH_HZ = 35.0  # narrow enough to tell ringback's 440 + 480 Hz from one tone
BEEP_DRIFT_HZ = 20.0  # a steady tone keeps its frequency within this from window to window
_BEEP_WIN = 4 * FRAME  # 80 ms windows every 20 ms: fine enough in frequency for BEEP_WIDTH_HZ
_BEEP_FFT = 1024
_BEEP_CHUNK = 512  # windows analysed at once (bounds the memory for long recordings)


def _tonal_windows(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of the `n` 80 ms windows (every 20 ms) of `x`: whether it is a loud, almost pure
    tone in BEEP_BAND_HZ, and that tone's frequency."""
    hz = np.fft.rfftfreq(_BEEP_FFT, 1.0 / RATE)
    in_band = np.flatnonzero((hz >= BEEP_BAND_HZ[0]) & (hz <= BEEP_BAND_HZ[1]))
    width = int(round(BEEP_WIDTH_HZ / (RATE / _BEEP_FFT)))
    hann = np.hanning(_BEEP_WIN)
    loud_db = max(sound_threshold(frame_levels(x)), -50.0)
    windows = sliding_window_view(x, _BEEP_WIN)[::FRAME][:n]
    tonal, freq = np.zeros(n, dtype=bool), np.zeros(n)
    for c in range(0, n, _BEEP_CHUNK):
        w = windows[c:c + _BEEP_CHUNK]
        power = np.abs(np.fft.rfft(w * hann, _BEEP_FFT, axis=1)) ** 2
        peak = in_band[0] + np.argmax(power[:, in_band], axis=1)
        cum = np.concatenate([np.zeros((len(w), 1)), np.cumsum(power, axis=1)], axis=1)
        rows = np.arange(len(w))
        near = cum[rows, np.minimum(peak + width + 1, hz.size)] - cum[rows, np.maximum(peak - width, 0)]
        level = 10.0 * np.log10(np.maximum(np.mean(w * w, axis=1), 1e-6) / 32768.0 ** 2)
        tonal[c:c + len(w)] = (level > loud_db) & (near >= BEEP_PURITY * np.maximum(cum[:, -1], 1e-12))
        freq[c:c + len(w)] = hz[peak]
    return tonal, freq


def find_beep(pcm: bytes | np.ndarray, start: float = 0.0) -> float | None:
    """When a recording beep starts (seconds from the start of `pcm`), looking from `start` s.

    A beep is a steady single tone between 300 Hz and 2 kHz lasting about
    BEEP_MIN_S or more (this engine's is 1 kHz for 0.4 s): 80 ms windows
    whose energy sits almost all (BEEP_PURITY) within BEEP_WIDTH_HZ of one
    frequency that stays put. Speech is never that pure (harmonics, formants,
    constant change), and dual tones (DTMF, ringback, busy) are not single
    tones. The first segment of a special-information tone would count."""
    x = pcm_array(pcm)
    first = int(max(0.0, start) * RATE)
    x = x[first:]
    n = (x.size - _BEEP_WIN) // FRAME + 1
    if n <= 0:
        return None
    tonal, freq = _tonal_windows(x, n)
    steady = np.concatenate([[False], np.abs(np.diff(freq)) <= BEEP_DRIFT_HZ])
    # A tone of length D fills about (D + window) / hop - 1 windows (those it only partly
    # covers are still pure on a quiet line).
    need = int(np.ceil((BEEP_MIN_S + _BEEP_WIN / RATE) / FRAME_S)) - 2
    run = 0
    for i in range(n):
        run = (run + 1 if run and steady[i] else 1) if tonal[i] else 0
        if run >= need:
            return (first + _onset(x, (i - run + 1) * FRAME)) / RATE
    return None


def _onset(x: np.ndarray, at: int) -> int:
    """The sample where a tone whose first tonal window starts at `at` actually begins: the
    first 5 ms whose level reaches half the tone's steady level."""
    hop = 40
    lo, hi = at, min(x.size, at + _BEEP_WIN + 4 * FRAME)
    seg = x[lo:hi]
    m = seg.size // hop
    if m == 0:
        return at
    rms = np.sqrt(np.mean(seg[: m * hop].reshape(m, hop) ** 2, axis=1))
    above = np.flatnonzero(rms >= 0.5 * rms.max())
    return lo + int(above[0]) * hop if above.size else at


# ---- quality ----------------------------------------------------------------------------------------------

NOISE_FLATNESS = 0.3  # spectral flatness from which quiet frames count as line noise (white: ~0.6)


def mos_estimate(pcm: bytes | np.ndarray) -> float:
    """A ROUGH audio-quality proxy on the MOS scale (1..4.4), not a standard measure.

    It is not ITU-T P.563 or anything like it: it starts from G.711's ceiling
    (4.4) and takes off points for three things that are cheap to see in
    the heard audio and that listeners notice: clipping (samples at full
    scale), dropouts (frames of near digital silence inside sound, as a lost
    packet replaced by nothing leaves), and a noisy line (the level of the
    sound over the noise floor). Use it to compare calls and spot broken
    ones, never as a quality figure to quote. Silence alone gives 4.4."""
    x = pcm_array(pcm)
    levels = frame_levels(x)
    if levels.size == 0:
        return 4.4
    threshold = sound_threshold(levels)
    sound = levels > threshold
    if not sound.any():
        return 4.4
    score = 4.4
    clipped = float(np.mean(np.abs(x) >= 32000))
    score -= min(1.5, 40.0 * clipped)
    score -= min(2.0, 20.0 * _dropouts(x) / max(1, int(sound.sum())))
    score -= min(1.5, max(0.0, 30.0 - _snr(x, levels, sound)) * 0.05)
    return float(np.clip(score, 1.0, 4.4))


def _dropouts(x: np.ndarray) -> int:
    """How many holes a lost packet could have left: 10-40 ms of near digital silence cut
    straight out of loud sound (a talker's pauses fade, and last longer)."""
    half = FRAME // 2
    n = x.size // half
    if n < 3:
        return 0
    power = np.mean(x[: n * half].reshape(n, half) ** 2, axis=1)
    db = 10.0 * np.log10(np.maximum(power, 1e-6) / 32768.0 ** 2)
    holes = 0
    for a, b in _runs(db < -70.0):
        if a > 0 and b < n and b - a <= 4 and db[a - 1] > -35.0 and db[b] > -35.0:
            holes += 1
    return holes


def _snr(x: np.ndarray, levels: np.ndarray, sound: np.ndarray) -> float:
    """The sound's level over the line's noise, in dB, for `mos_estimate`.

    The noise is the quietest tenth of the frames, when they sound like noise
    (a flat spectrum, as hiss and comfort noise have); when they do not (a
    stretch of music without a pause), no noise was heard and the usual
    floor stands."""
    quiet = levels <= np.percentile(levels, 10)
    n = levels.size
    spectrum = np.mean(np.abs(np.fft.rfft(x[: n * FRAME].reshape(n, FRAME)[quiet], axis=1)) ** 2, axis=0)
    band = spectrum[int(300 / (RATE / FRAME)):int(3400 / (RATE / FRAME)) + 1] + 1e-9
    flatness = float(np.exp(np.mean(np.log(band))) / np.mean(band))
    floor = float(np.percentile(levels, 10)) if flatness >= NOISE_FLATNESS else noise_floor(levels)
    return float(np.percentile(levels[sound], 75)) - floor
