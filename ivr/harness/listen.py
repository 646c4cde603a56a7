"""Black-box listening: what a caller's phone heard, judged without help from the IVR.

Everything here works on the line's audio as the harness records it: PCM16
little-endian mono at 8 kHz, as decoded from G.711. Nothing asks the IVR what
it played; the evidence is the audio alone.

- Prompts. A text prompt is rendered by the engine's own TTS (espeak-ng is
  deterministic for a given text, voice and speed) and passed through mu-law,
  which is what a PCMU line delivers sample for sample when nothing is lost.
  `PromptSearch` slides it along the heard audio by normalised
  cross-correlation (NCC: the cosine between the prompt and a window of the
  recording, 1 when identical up to a gain), incrementally as audio arrives.
  A receiver's jitter buffer that drops or repeats a 20 ms frame splits the
  prompt into parts at different offsets, which lowers a whole-prompt score,
  so a candidate alignment is confirmed piece by piece (half a second each,
  each free to move a little), as `tests/interop/audio_match.py` does.
  Another IVR's prompts (other voices, recordings) are given as WAV files.
- Words. `transcribe` runs pocketsphinx's free-speech English model over what
  was heard and `similarity` compares words. This is the fallback when the
  audio is not known sample for sample, and it is rough: the model is
  wideband and phone audio stops at 4 kHz (see `transcribe`).
- Sound. `speech_spans` cuts audio into sound and silence against an adaptive
  noise floor; `music_span` measures hold music (steady sound, without the
  constant dips between a talker's syllables); `find_beep` finds a voicemail
  beep (a steady single tone); `mos_estimate` is a rough quality proxy.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ivr.audio import g711

log = logging.getLogger("ivr.harness")

RATE = 8000  # the line's sample rate (G.711)
FRAME = 160  # 20 ms analysis frames
FRAME_S = FRAME / RATE

__all__ = [
    "RATE", "Alignment", "Match", "PieceMatch", "PromptSearch", "align", "find_beep", "find_pieces",
    "frame_levels", "is_music", "line_prompt", "load_wav", "matches_reference", "mos_estimate",
    "music_span", "ncc", "noise_floor", "pcm_array", "reference_score", "render_prompt",
    "render_prompt_async", "score_at", "similarity", "sound_threshold", "speech_spans",
    "through_ulaw", "transcribe", "transcribe_async",
]


# ---- audio in --------------------------------------------------------------------------------------

def pcm_array(audio: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """PCM16 little-endian bytes (or any array of samples) as float64 samples."""
    if isinstance(audio, np.ndarray):
        return audio.astype(np.float64, copy=False)
    data = bytes(audio)
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64)


def through_ulaw(pcm: bytes) -> bytes:
    """PCM16 as it arrives after a G.711 mu-law line: encoded, then decoded."""
    return g711.ulaw_decode(g711.ulaw_encode(pcm[: len(pcm) // 2 * 2]))


_PROMPTS: OrderedDict[tuple[str, str], bytes] = OrderedDict()
_PROMPTS_MAX = 256
_prompts_lock = threading.Lock()


def _cached(key: tuple[str, str]) -> bytes | None:
    with _prompts_lock:
        pcm = _PROMPTS.get(key)
        if pcm is not None:
            _PROMPTS.move_to_end(key)
        return pcm


def _remember(key: tuple[str, str], pcm: bytes) -> bytes:
    with _prompts_lock:
        _PROMPTS[key] = pcm
        _PROMPTS.move_to_end(key)
        while len(_PROMPTS) > _PROMPTS_MAX:
            _PROMPTS.popitem(last=False)
    return pcm


async def render_prompt_async(text: str, language: str = "en-US") -> bytes:
    """A text prompt as this engine speaks it on a PCMU line: its own TTS, through mu-law.

    The engine renders text prompts with `EspeakTts` at its default voice and
    speed, so this is the audio the far end receives, sample for sample, when
    nothing on the way is lost. Cached by (text, language). Raises
    `ivr.audio.tts.TtsError` when espeak-ng is missing."""
    key = (text, language)
    pcm = _cached(key)
    if pcm is None:
        from ivr.audio.tts import EspeakTts  # needs espeak-ng; only callers that render pay for it

        pcm = _remember(key, through_ulaw(await EspeakTts().render(text, language)))
    return pcm


def render_prompt(text: str, language: str = "en-US") -> bytes:
    """`render_prompt_async` for code without an event loop (not from inside a running loop)."""
    pcm = _cached((text, language))
    return pcm if pcm is not None else asyncio.run(render_prompt_async(text, language))


def load_wav(path: str | os.PathLike) -> bytes:
    """An audio file (WAV at any rate, mono or stereo; other formats through ffmpeg) as 8 kHz
    mono PCM16, with the engine's own decoder and resampler. Blocking: it reads the file."""
    from ivr.audio.prompts import decode_file

    return decode_file(str(Path(path)))


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


# ---- one-shot alignment (the interop tests' measures) -------------------------------------------------

@dataclass(frozen=True)
class Alignment:
    """The best alignment of a prompt in a whole recording."""

    score: float  # normalised cross-correlation, -1..1 (1: identical up to a gain)
    offset: float  # seconds from the start of the recording to the start of the prompt


@dataclass(frozen=True)
class PieceMatch:
    """A prompt found piece by piece around an anchor."""

    score: float  # mean of the pieces' best scores
    offset: float  # the anchor: where the prompt starts in the recording, in seconds
    whole: float  # the whole prompt's score at the anchor (see `align`)
    pieces: tuple[tuple[float, float, float], ...]  # (start in prompt s, score, shift from anchor s)

    def __str__(self) -> str:
        weakest = min((p[1] for p in self.pieces), default=0.0)
        return (f"{self.score:.3f} at {self.offset:.3f} s (whole {self.whole:.3f}, "
                f"weakest of {len(self.pieces)} pieces {weakest:.3f})")


def line_prompt(text: str, language: str = "en-US") -> bytes:
    """The same as `render_prompt` (the name the interop tests know)."""
    return render_prompt(text, language)


def align(recording, template, rate: int = RATE) -> Alignment:
    """Where `template` best lines up with the whole of `recording`, and how well (one offset for
    the whole prompt: exact and strict, a slipped frame mid-prompt costs a lot)."""
    r, t = pcm_array(recording), pcm_array(template)
    scores = ncc(r, t)
    if scores.size == 0:
        return Alignment(0.0, 0.0)
    k = int(np.argmax(scores))
    return Alignment(float(scores[k]), (k - (t.size - 1)) / rate)


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
    """Score `template` piece by piece near its best whole-prompt alignment (one shot).

    `piece` is the piece length in seconds; pieces holding less than
    `min_energy` of the mean piece's energy (pauses between words) are
    skipped. Each piece may sit up to `slack` seconds either side of where
    the anchor puts it, to absorb a receiver's playout adjustments.
    `anchor` (seconds) imposes where the prompt should start instead of
    searching for it: "is this prompt where that other one was heard?"
    Recordings may end (or start) inside the prompt: the overlap then scores
    at most sqrt(fraction of the prompt's energy inside the recording).
    """
    r, t = pcm_array(recording), pcm_array(template)
    whole = align(r, t, rate) if anchor is None else Alignment(score_at(r, t, anchor, rate), anchor)
    size = max(1, int(piece * rate))
    voiced = _voiced_pieces(t, size, min_energy)
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
        window_start = max(lo, 0)
        scores = ncc(r[window_start:hi + chunk.size], chunk)
        # ncc index k means the piece starts at window_start + k - (chunk.size - 1).
        part = scores[lo - window_start + chunk.size - 1:hi - window_start + chunk.size]
        k = int(np.argmax(part))
        results.append((s / rate, float(part[k]), (lo + k - (base + s)) / rate))
    score = float(np.mean([sc for _, sc, _ in results]))
    return PieceMatch(score, whole.offset, whole.score, tuple(results))


def _voiced_pieces(t: np.ndarray, size: int, min_energy: float) -> list[tuple[int, np.ndarray]]:
    """The template cut into pieces of `size` samples (the last one at least half that), less
    those with under `min_energy` of the mean piece's energy (pauses), with their offsets."""
    chunks = [(s, t[s:s + size]) for s in range(0, max(1, t.size - size // 2), size)]
    energies = np.array([float(np.dot(c, c)) for _, c in chunks])
    if not chunks or energies.mean() <= 0:
        return []
    return [(s, c) for (s, c), e in zip(chunks, energies, strict=True) if e >= min_energy * energies.mean()]


# ---- prompts -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Match:
    """Where a prompt was heard, in seconds from the first sample fed to the search."""

    score: float  # mean piece-wise NCC, 0..1 (1: identical up to a gain)
    start_s: float  # where the prompt starts
    end_s: float  # where it ends (estimated from its length when only its start was needed)


class PromptSearch:
    """Looks for one known prompt in audio that keeps arriving.

    `feed` appends what the line heard; `find` looks at whatever arrived since
    the last call (plus the template's length of overlap), so calling it every
    quarter of a second over a minute of audio costs about the same each time.

    How: candidate alignments come from the NCC of the prompt's first
    `HEAD_S` seconds (all of it when `whole`) at every offset, taking the best
    offset of each 20 ms block that reaches `CANDIDATE`. Each candidate is
    then confirmed piece by piece: every voiced `PIECE_S` piece of that part
    of the prompt is looked for within `SLACK_S` of where the candidate puts
    it, and the score is the mean of the pieces' best NCCs. A dropped or
    repeated frame costs one piece a little, while a prompt that was never
    played stays low because every piece must be found near its place. The
    first candidate reaching `threshold` is the match; later calls return it.

    Only audio after sample `start` of what was fed may hold the prompt's
    start. Results depend on the audio only, never on how it was split into
    feeds: blocks are fixed on the sample grid, and each candidate is judged
    on the audio up to its block's end plus the head's length and the slack,
    once all of that has arrived.
    """

    HEAD_S = 2.0
    PIECE_S = 0.5
    SLACK_S = 0.1
    CANDIDATE = 0.3  # anchor NCC worth confirming (a slip mid-head leaves ~0.5-0.7 each side)
    MIN_PIECE_ENERGY = 0.1  # of the mean piece's energy; quieter pieces are pauses, not scored
    BLOCK = FRAME

    def __init__(self, template: bytes | np.ndarray, threshold: float | None = 0.6, *,
                 start: int = 0) -> None:
        self.template = pcm_array(template)
        self.threshold = 0.6 if threshold is None else float(threshold)
        self.start = max(0, int(start))
        self.best = 0.0  # the best score seen, anchor or piece-wise (for "not heard, best ...")
        self.match: Match | None = None
        self._buf = np.zeros(RATE * 8)
        self._n = 0
        self._next_block = {False: 0, True: 0}  # per mode: the first block not yet searched
        self._found: dict[bool, Match | None] = {False: None, True: None}
        self._fft: dict[tuple[bool, int], dict] = {}
        head = min(self.template.size, int(self.HEAD_S * RATE))
        self._parts = {False: self._pieces(head), True: self._pieces(self.template.size)}

    # -- input --

    @property
    def seconds(self) -> float:
        """How much audio has been fed."""
        return self._n / RATE

    def feed(self, pcm: bytes | np.ndarray) -> None:
        """Append audio the line heard."""
        x = pcm_array(pcm)
        if x.size == 0:
            return
        need = self._n + x.size
        if need > self._buf.size:
            grown = np.zeros(max(need, 2 * self._buf.size))
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n:need] = x
        self._n = need

    # -- search --

    def _pieces(self, length: int) -> list[tuple[int, np.ndarray]]:
        """The voiced pieces of the first `length` samples of the template, with their offsets."""
        return _voiced_pieces(self.template[:length], max(1, int(self.PIECE_S * RATE)), self.MIN_PIECE_ENERGY)

    def find(self, whole: bool = False) -> Match | None:
        """The prompt in what has been fed so far, or None (yet).

        With `whole` the entire prompt must be heard and every part of it is
        checked; otherwise its first two seconds suffice, which finds it
        sooner (the end is then estimated from the prompt's length)."""
        if self._found[whole] is not None:
            return self._found[whole]
        t = self.template
        length = t.size if whole else min(t.size, int(self.HEAD_S * RATE))
        if length == 0 or not self._parts[whole]:
            return None
        head = t[:length]
        block, room = self.BLOCK, int(self.SLACK_S * RATE)
        first = max(self._next_block[whole], self.start // block)
        # A block is complete when, from its last offset, the head and the slack around its
        # last piece are inside the buffer.
        last = (self._n - length - room + 1) // block  # blocks [first, last) are complete
        if last <= first:
            return None
        self._next_block[whole] = last
        lo, hi = first * block, last * block
        scores = _ncc_valid(self._buf[lo:hi + length - 1], head, self._fft.setdefault((whole, length), {}))
        scores[: max(0, self.start - lo)] = -1.0  # offsets before `start` may not hold the prompt
        for b in range(last - first):
            part = scores[b * block:(b + 1) * block]
            k = int(np.argmax(part))
            anchor = float(part[k])
            self.best = max(self.best, anchor)
            if anchor < self.CANDIDATE:
                continue
            limit = lo + (b + 1) * block - 1 + length + room  # never beyond the buffer (see `last`)
            found = self._confirm(lo + b * block + k, whole, limit)
            if found is not None:
                self._found[whole] = found
                self.match = found
                return found
        return None

    def _confirm(self, base: int, whole: bool, limit: int) -> Match | None:
        """Score the pieces around the anchor `base` using audio before `limit` only."""
        room = int(self.SLACK_S * RATE)
        results = []
        for s, chunk in self._parts[whole]:
            lo = max(base + s - room, self.start)
            hi = min(base + s + room, limit - chunk.size)  # the piece's possible starts, inclusive
            if hi < lo:
                results.append((0.0, 0))
                continue
            part = _ncc_valid(self._buf[lo:hi + chunk.size], chunk)
            k = int(np.argmax(part))
            results.append((float(part[k]), lo + k - (base + s)))
        score = float(np.mean([sc for sc, _ in results]))
        self.best = max(self.best, score)
        if score < self.threshold:
            return None
        first_shift, last_shift = results[0][1], results[-1][1]
        start = base + first_shift
        end = base + self.template.size + last_shift
        return Match(score, start / RATE, end / RATE)


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


# ---- words --------------------------------------------------------------------------------------------

TRANSCRIBE_NOISE = 150.0  # noise added before decoding (at 16 kHz); see `transcribe`
# Speech is brought to this level (90th percentile of its frames) first; None: decoded as heard.
TRANSCRIBE_LEVEL_DBFS: float | None = -15.0
TRANSCRIBE_GAP_S = 0.5  # pauses longer than this split the audio into separately decoded parts
TRANSCRIBE_PAD_S = 0.1  # of silence kept around each part
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def transcribe(pcm: bytes | np.ndarray, language: str = "en-US") -> str:
    """What was said, in words, by pocketsphinx's free-speech English model (blocking).

    Rough by nature: the model is wideband and sees 4 kHz phone audio. Measured
    on the engine's TTS through mu-law over fifteen typical prompts, the mean
    `similarity` to the text is about 0.46: "please leave a message after the
    tone" comes out exactly, "thank you for calling Acme" as "thank you for
    calling at me", but single words such as "billing" (heard as "really")
    and "talk to an agent" mostly not. Faint noise is added before decoding
    (exact digital silence makes pocketsphinx erratic, and this level scored
    best), the audio is first brought to one level so that the noise means
    the same for every IVR, and each stretch of sound is decoded on its own
    with the long silences left out. Languages other than English, or no pocketsphinx,
    give "" (and a warning in the log)."""
    if not language.lower().startswith("en"):
        log.warning("transcription is English only (pocketsphinx); nothing transcribed for %s", language)
        return ""
    from ivr.speech import pocketsphinx_engine as ps

    if not ps.available():
        log.warning("pocketsphinx is not installed; nothing transcribed")
        return ""
    x = pcm_array(pcm)
    levels = frame_levels(x)
    spans = speech_spans(x, min_gap=TRANSCRIBE_GAP_S)
    if not spans:
        return ""
    loud = levels[levels > sound_threshold(levels)]
    if loud.size and TRANSCRIBE_LEVEL_DBFS is not None:
        gain = 10.0 ** ((TRANSCRIBE_LEVEL_DBFS - float(np.percentile(loud, 90))) / 20.0)
        x = x * float(np.clip(gain, 0.1, 30.0))
    words = []
    for i, (a, b) in enumerate(spans):
        lo = max(0, int((a - TRANSCRIBE_PAD_S) * RATE))
        hi = min(x.size, int((b + TRANSCRIBE_PAD_S) * RATE))
        part = np.clip(np.round(x[lo:hi]), -32768, 32767).astype("<i2").tobytes()
        text = ps.decode_pcm8k(None, part, RATE, TRANSCRIBE_NOISE, i).text
        if text:
            words.append(text)
    return " ".join(words)


async def transcribe_async(pcm: bytes | np.ndarray, language: str = "en-US", *, processes: bool = True) -> str:
    """`transcribe` off the event loop.

    pocketsphinx holds the GIL while it decodes, which would stall the loop
    (and the phone's audio) in a thread, so by default the work goes to the
    engine's pool of decoding processes (started on first use, from this,
    the loop's thread). `processes=False` uses a thread (tools, tests)."""
    loop = asyncio.get_running_loop()
    data = bytes(pcm) if not isinstance(pcm, np.ndarray) else pcm
    if not processes:
        return await loop.run_in_executor(None, transcribe, data, language)
    from ivr.speech import pocketsphinx_engine as ps

    if not ps.available():
        return transcribe(data, language)  # says why, returns ""
    pool = ps.decoding_processes(max(1, min(4, os.cpu_count() or 1)))
    return await asyncio.wrap_future(pool.submit(transcribe, data, language))


def _words(text: str) -> list[str]:
    """Lower-case words without punctuation; a lone digit spelled out, as the TTS says it."""
    out = []
    for w in re.sub(r"[^\w']+", " ", text.lower()).split():
        w = w.strip("'")
        if len(w) == 1 and w.isdecimal():
            out.append(_DIGITS[int(w)])
        elif w:
            out.append(w)
    return out


def similarity(expected: str, heard: str) -> float:
    """How alike two texts are, word by word: 0..1 (difflib's ratio over the normalised words:
    twice the words in common, in order, over the words of both). Case and punctuation do
    not count; a lone digit counts as its word ("press 1" is "press one"; numbers of more
    digits are left as they are written)."""
    a, b = _words(expected), _words(heard)
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


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
