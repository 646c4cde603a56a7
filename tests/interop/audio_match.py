"""Find a known prompt in what a softphone heard, by normalised cross-correlation.

A softphone records the audio it received from the IVR. The IVR plays text
prompts rendered by espeak-ng (deterministic for a given text, voice and
speed) and sends them as G.711, so the expected audio is known sample for
sample: render the same text, pass it through mu-law, and slide it along the
recording. Where it lines up, the normalised cross-correlation (the cosine of
the angle between the prompt and the recording window) is close to 1; a prompt
that was never played stays far below.

Two measures:

- `find` scores the whole prompt at one offset. It is exact and strict: a
  receiver's jitter buffer that drops or repeats one 20 ms frame in the middle
  of the prompt splits it into two halves, each at its own offset, and the
  score falls to somewhere between 0.5 and 0.9, depending on where it slipped.
- `find_pieces` anchors the prompt with `find`, then scores each voiced piece
  (half a second by default) on its own within a little slack around where
  the anchor puts it, and averages. A slip or two of the receiver's playout
  costs almost nothing, while a prompt that was never played stays low, since
  every piece has to be found near its expected place.

Both accept recordings shorter than the prompt's position: the prompt may run
off either end of the recording (a call cut while the prompt plays, a receiver
that drops its last buffered frames when the BYE arrives). The overlap then
scores at most sqrt(fraction of the prompt's energy inside the recording).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from ivr.audio import g711

RATE = 8000  # the line's sample rate for G.711

__all__ = ["RATE", "Match", "PieceMatch", "find", "find_pieces", "line_prompt", "ncc", "pcm_array",
           "score_at", "through_ulaw"]


@dataclass(frozen=True)
class Match:
    """The best alignment of a prompt in a recording."""

    score: float  # normalised cross-correlation, -1..1 (1: identical up to a gain)
    offset: float  # seconds from the start of the recording to the start of the prompt


@dataclass(frozen=True)
class PieceMatch:
    """A prompt found piece by piece around an anchor."""

    score: float  # mean of the pieces' best scores
    offset: float  # the anchor: where the prompt starts in the recording, in seconds
    whole: float  # the whole prompt's score at the anchor (see `find`)
    pieces: tuple[tuple[float, float, float], ...]  # (start in prompt s, score, shift from anchor s)

    def __str__(self) -> str:
        weakest = min((p[1] for p in self.pieces), default=0.0)
        return (f"{self.score:.3f} at {self.offset:.3f} s (whole {self.whole:.3f}, "
                f"weakest of {len(self.pieces)} pieces {weakest:.3f})")


def pcm_array(audio: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """PCM16 little-endian bytes (or any array of samples) as float64 samples."""
    if isinstance(audio, np.ndarray):
        return audio.astype(np.float64, copy=False)
    data = bytes(audio)
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64)


def through_ulaw(pcm: bytes) -> bytes:
    """PCM16 as it arrives after a G.711 mu-law line: encoded, then decoded."""
    return g711.ulaw_decode(g711.ulaw_encode(pcm))


def line_prompt(text: str, language: str = "en-US") -> bytes:
    """A text prompt as the IVR speaks it on a PCMU line: the server's own TTS, through mu-law.

    The server renders text prompts with `EspeakTts` at its default voice and
    speed; espeak-ng is deterministic, so this is the audio the far end should
    receive, sample for sample, when nothing on the way is lost."""
    from ivr.audio.tts import EspeakTts  # needs espeak-ng; only callers that render pay for it

    return through_ulaw(asyncio.run(EspeakTts().render(text, language)))


def ncc(recording: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of `template` at every offset over `recording`.

    Element k is the score with the template starting at sample
    k - (len(template) - 1) of the recording: the recording is padded with
    silence on both sides, so partial overlaps at either end are scored too.
    Windows with next to no energy score 0 rather than noise over noise.
    """
    r = np.asarray(recording, dtype=np.float64)
    t = np.asarray(template, dtype=np.float64)
    if t.size == 0 or r.size == 0:
        return np.zeros(0)
    t_norm = float(np.linalg.norm(t))
    if t_norm == 0.0:
        return np.zeros(r.size + t.size - 1)
    pad = np.zeros(t.size - 1)
    x = np.concatenate([pad, r, pad])
    n_out = x.size - t.size + 1
    size = 1 << (x.size + t.size - 2).bit_length()  # room for the full linear correlation
    corr = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(t, size)), size)[:n_out]
    squares = np.concatenate([[0.0], np.cumsum(x * x)])
    energy = squares[t.size:] - squares[:-t.size]
    # Far below the template's energy a window is silence (or FFT round-off):
    # it cannot hold the prompt, and dividing by ~0 would make noise look like a match.
    floor = 1e-6 * t_norm * t_norm
    denom = np.sqrt(np.maximum(energy, floor)) * t_norm
    return np.where(energy > floor, corr / denom, 0.0)


def find(recording, template, rate: int = RATE) -> Match:
    """Where `template` best lines up with `recording`, and how well (whole prompt)."""
    r, t = pcm_array(recording), pcm_array(template)
    scores = ncc(r, t)
    if scores.size == 0:
        return Match(0.0, 0.0)
    k = int(np.argmax(scores))
    return Match(float(scores[k]), (k - (t.size - 1)) / rate)


def score_at(recording, template, offset: float, rate: int = RATE) -> float:
    """The whole prompt's score (as in `ncc`) with it starting `offset` seconds into the recording."""
    r, t = pcm_array(recording), pcm_array(template)
    start = int(round(offset * rate))
    window = np.zeros(t.size)
    lo, hi = max(start, 0), min(start + t.size, r.size)
    if hi > lo:
        window[lo - start:hi - start] = r[lo:hi]
    t_energy, w_energy = float(np.dot(t, t)), float(np.dot(window, window))
    if t_energy == 0.0 or w_energy <= 1e-6 * t_energy:  # silence is no match (see `ncc`)
        return 0.0
    return float(np.dot(window, t)) / np.sqrt(w_energy * t_energy)


def find_pieces(recording, template, rate: int = RATE, piece: float = 0.5,
                slack: float = 0.1, min_energy: float = 0.1, anchor: float | None = None) -> PieceMatch:
    """Score `template` piece by piece near its best whole-prompt alignment.

    `piece` is the piece length in seconds; pieces holding less than
    `min_energy` of the mean piece's energy (pauses between words) are
    skipped. Each piece may sit up to `slack` seconds either side of where
    the anchor puts it, to absorb a receiver's playout adjustments.
    `anchor` (seconds) imposes where the prompt should start instead of
    searching for it: "is this prompt where that other one was heard?"
    """
    r, t = pcm_array(recording), pcm_array(template)
    whole = find(r, t, rate) if anchor is None else Match(score_at(r, t, anchor, rate), anchor)
    size = max(1, int(piece * rate))
    starts = range(0, max(1, t.size - size // 2), size)
    chunks = [(s, t[s:s + size]) for s in starts]
    energies = np.array([float(np.dot(c, c)) for _, c in chunks])
    voiced = [(s, c) for (s, c), e in zip(chunks, energies, strict=True)
              if energies.mean() > 0 and e >= min_energy * energies.mean()]
    if not voiced:
        return PieceMatch(0.0, whole.offset, whole.score, ())
    base = int(round(whole.offset * rate))
    room = int(round(slack * rate))
    results = []
    for s, chunk in voiced:
        # This piece may start anywhere in [lo, hi] (recording samples); before 0 it overlaps
        # the recording only in part, and it cannot start after the recording's last sample.
        lo = max(base + s - room, -(chunk.size - 1))
        hi = min(base + s + room, r.size - 1)
        if hi < lo:
            results.append((s / rate, 0.0, 0.0))
            continue
        # Correlate against just the stretch of recording the piece may cover.
        window_start = max(lo, 0)
        scores = ncc(r[window_start:hi + chunk.size], chunk)
        # ncc index k means the piece starts at window_start + k - (chunk.size - 1).
        part = scores[lo - window_start + chunk.size - 1:hi - window_start + chunk.size]
        k = int(np.argmax(part))
        shift = (lo + k - (base + s)) / rate
        results.append((s / rate, float(part[k]), shift))
    score = float(np.mean([sc for _, sc, _ in results]))
    return PieceMatch(score, whole.offset, whole.score, tuple(results))
