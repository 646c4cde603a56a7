"""In-band DTMF detection on 8 kHz PCM16 frames (for callers whose keys arrive as tones).

A Goertzel filter per DTMF frequency measures the power of the eight tones in
blocks of 102 samples (12.75 ms). That block length puts the neighbouring
row and column frequencies near the nulls of each other's filters (as in
spandsp), and it is short enough that any tone of 40 ms covers two whole
blocks wherever it starts. A block can start a key when:

- the strongest row and the strongest column each reach a minimum level;
- their levels differ by no more than the allowed twist: the low (row) group
  may be up to 8 dB louder ("normal" twist, as lines lose the highs) and the
  high group up to 4 dB louder ("reverse" twist);
- each beats the other frequencies of its group by a margin, which speech
  (many harmonics close together) rarely does;
- together they hold most of the block's energy (80 %), so a tone buried
  under speech or music is not taken for a key;
- the column tone has no strong second harmonic: DTMF is two pure sines,
  while a voiced sound or an instrument puts energy at twice its partials.

Timing is a small state machine over blocks: a key is reported once it has
started in enough consecutive blocks for a tone of `min_tone_ms`, and it is
released after enough blocks without it for a gap of `min_gap_ms`. While a key
is held, looser blocks keep it alive (same strongest pair, half the energy),
so a dropout of up to 12 ms inside one press does not make a second digit.
One long press gives one digit; the same key again after a pause gives it again.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DBM0_AMPLITUDE", "DIGITS", "InbandDtmfDetector", "goertzel_power"]

RATE = 8000
BLOCK = 102
ROW_FREQS = (697.0, 770.0, 852.0, 941.0)
COL_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")
DIGITS = "0123456789*#ABCD"

DBM0_AMPLITUDE = 4 * 8159 / 10 ** (3.17 / 20)
"""Peak amplitude (16-bit scale) of a 0 dBm0 sine: G.711's full scale is +3.17 dBm0."""


def goertzel_power(samples: np.ndarray | list[float], freq: float, rate: int = RATE) -> float:
    """The Goertzel recursion for one frequency: |X(f)|^2 over the given samples.

    The detector computes the same quantity for all eight frequencies at once
    as a matrix product (faster with numpy than a per-sample loop); this
    textbook form is its reference.
    """
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = float(x) + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def _basis(freqs: tuple[float, ...]) -> np.ndarray:
    """Cosine and sine columns for each frequency over one block: shape (BLOCK, 2 * len)."""
    n = np.arange(BLOCK)[:, None]
    w = 2.0 * np.pi * np.asarray(freqs)[None, :] / RATE
    return np.hstack([np.cos(w * n), np.sin(w * n)])


_FREQS = ROW_FREQS + COL_FREQS
_BASIS = _basis(_FREQS)
_HARMONIC_BASIS = _basis(tuple(2 * f for f in COL_FREQS))
_KEYS = "".join(KEYPAD)  # index: row * 4 + column


def _db(x: float) -> float:
    return 10.0 ** (x / 10.0)


class InbandDtmfDetector:
    """Streaming DTMF detector: `push(frame)` returns the digits recognised in it.

    Frames are PCM16 little-endian mono at 8 kHz, any even length (the engine's
    are 320 bytes); samples left over from a block carry to the next push.

    min_level_dbm0: quietest tone (each of the two) that may start a key.
    normal_twist_db / reverse_twist_db: how much louder the low / high group may be.
    relative_peak_db: margin of the chosen row (column) over the other rows (columns).
    min_tone_fraction: share of the block's power the two tones must hold to start a key;
        hold_tone_fraction: the share that keeps a held key alive.
    max_harmonic_db: ceiling on the column tone's second harmonic, relative to the tone.
    min_tone_ms / min_gap_ms: the shortest tone and gap that are always recognised.
    """

    def __init__(
        self,
        *,
        min_level_dbm0: float = -30.0,
        normal_twist_db: float = 8.0,
        reverse_twist_db: float = 4.0,
        relative_peak_db: float = 8.0,
        min_tone_fraction: float = 0.8,
        hold_tone_fraction: float = 0.5,
        max_harmonic_db: float = -12.0,
        min_tone_ms: float = 40.0,
        min_gap_ms: float = 40.0,
    ) -> None:
        # Tone power of a sine of peak A is A^2 / 2; levels below compare mean squares.
        self._min_power = (DBM0_AMPLITUDE**2 / 2) * _db(min_level_dbm0)
        self._normal_twist = _db(normal_twist_db)
        self._reverse_twist = _db(reverse_twist_db)
        self._relative_peak = _db(relative_peak_db)
        self._min_fraction = min_tone_fraction
        self._hold_fraction = hold_tone_fraction
        self._max_harmonic = _db(max_harmonic_db)
        self._tone_blocks = self._blocks_within(min_tone_ms)
        self._gap_blocks = self._blocks_within(min_gap_ms)
        self.reset()

    @staticmethod
    def _blocks_within(ms: float) -> int:
        """Whole blocks that any stretch of `ms` is sure to cover, wherever it starts."""
        samples = int(ms * RATE / 1000)
        return max(1, (samples + 1) // BLOCK - 1)

    def reset(self) -> None:
        """Forget everything heard so far (a new call, or after a re-INVITE)."""
        self._pending = np.zeros(0, dtype=np.float64)
        self._current: str | None = None  # the key being held, already reported
        self._candidate: str | None = None
        self._candidate_blocks = 0
        self._missing_blocks = 0

    def push(self, frame: bytes | bytearray | memoryview) -> list[str]:
        """Feed PCM16 audio; return the digits whose tones were recognised in it."""
        if len(frame) % 2:
            raise ValueError(f"PCM16 needs an even number of bytes, got {len(frame)}")
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        if self._pending.size:
            samples = np.concatenate([self._pending, samples])
        whole = samples.size // BLOCK * BLOCK
        self._pending = samples[whole:]
        if not whole:
            return []
        keys, starts, holds = self._classify(samples[:whole].reshape(-1, BLOCK))
        digits = []
        for key, start, hold in zip(keys, starts, holds, strict=True):
            digit = self._step(key, start, hold)
            if digit is not None:
                digits.append(digit)
        return digits

    def _classify(self, blocks: np.ndarray) -> tuple[list[str], list[bool], list[bool]]:
        """For each block: the key its strongest row and column name, whether the block
        is clean enough to start that key, and whether it is enough to keep it held."""
        projections = blocks @ _BASIS
        k = len(_FREQS)
        # 2|X|^2 / N^2: the mean square of a sine at that frequency (its power).
        power = (projections[:, :k] ** 2 + projections[:, k:] ** 2) * (2.0 / BLOCK**2)
        total = np.maximum(np.einsum("ij,ij->i", blocks, blocks) / BLOCK, 1e-9)
        rows, cols = power[:, :4], power[:, 4:]
        r, c = rows.argmax(axis=1), cols.argmax(axis=1)
        idx = np.arange(len(blocks))
        row_p, col_p = rows[idx, r], cols[idx, c]
        fraction = (row_p + col_p) / total

        # Holding a key through a short dropout (a block half tone, half silence smears
        # the spectrum) needs only the same strongest pair, half the energy and a
        # level within 6 dB of the minimum.
        hold = (np.minimum(row_p, col_p) >= self._min_power / 4) & (fraction >= self._hold_fraction)
        start = (np.minimum(row_p, col_p) >= self._min_power) & (fraction >= self._min_fraction)
        start &= (row_p <= col_p * self._normal_twist) & (col_p <= row_p * self._reverse_twist)
        # Every other row (column) must be well below the best one.
        others_r = np.where(np.arange(4) == r[:, None], 0.0, rows).max(axis=1)
        others_c = np.where(np.arange(4) == c[:, None], 0.0, cols).max(axis=1)
        start &= (others_r * self._relative_peak < row_p) & (others_c * self._relative_peak < col_p)
        if start.any():
            # Second harmonic of the column tone (the row tones' harmonics fall too near
            # the column frequencies for a 102-sample filter to tell them apart).
            sel = idx[start]
            harm = blocks[sel] @ _HARMONIC_BASIS
            at = (np.arange(sel.size), c[sel])
            harm_p = (harm[:, :4][at] ** 2 + harm[:, 4:][at] ** 2) * (2.0 / BLOCK**2)
            start[sel[harm_p > col_p[sel] * self._max_harmonic]] = False
        keys = [_KEYS[i] for i in (r * 4 + c).tolist()]
        return keys, start.tolist(), hold.tolist()

    def _step(self, key: str, start: bool, hold: bool) -> str | None:
        """Advance the timing state machine by one block; return a newly recognised digit."""
        if start and key == self._candidate:
            self._candidate_blocks += 1
        elif start:
            self._candidate, self._candidate_blocks = key, 1
        else:
            self._candidate, self._candidate_blocks = None, 0
        if self._current is not None:
            if hold and key == self._current:
                self._missing_blocks = 0
                return None
            self._missing_blocks += 1
            if self._missing_blocks < self._gap_blocks:
                return None  # perhaps only a dropout inside one press
            self._current = None  # released: the same key may now be reported again
        if self._candidate is not None and self._candidate_blocks >= self._tone_blocks:
            self._current, self._missing_blocks = self._candidate, 0
            return self._current
        return None
