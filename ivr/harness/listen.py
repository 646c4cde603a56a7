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
- Words (`ivr.harness.transcript`). `transcribe` runs pocketsphinx's
  free-speech English model over what was heard and `similarity` compares
  words. This is the fallback when the audio is not known sample for sample,
  and it is rough: the model is wideband and phone audio stops at 4 kHz (see
  `transcribe`).
- Sound (`ivr.harness.sounds`). `speech_spans` cuts audio into sound and
  silence against an adaptive noise floor; `music_span` measures hold music
  (steady sound, without the constant dips between a talker's syllables);
  `find_beep` finds a voicemail beep (a steady single tone); `mos_estimate`
  is a rough quality proxy.

This module holds the prompts: rendering them and finding them in what was
heard. The words and the sounds live in their own modules, and the shared
basics (rate, frames, `pcm_array`, `ncc`) in `ivr.harness.pcm`; every name
is importable from here as well.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivr.audio import g711

from .pcm import FRAME, RATE, _ncc_valid, ncc, pcm_array
from .sounds import (
    find_beep,
    frame_levels,
    is_music,
    matches_reference,
    mos_estimate,
    music_span,
    noise_floor,
    reference_score,
    sound_threshold,
    speech_spans,
)
from .transcript import similarity, transcribe, transcribe_async

__all__ = [
    "RATE", "Alignment", "Match", "PieceMatch", "PromptSearch", "align", "find_beep", "find_pieces",
    "frame_levels", "is_music", "line_prompt", "load_wav", "matches_reference", "mos_estimate",
    "music_span", "ncc", "noise_floor", "pcm_array", "reference_score", "render_prompt",
    "render_prompt_async", "score_at", "similarity", "sound_threshold", "speech_spans",
    "through_ulaw", "transcribe", "transcribe_async",
]


# ---- audio in --------------------------------------------------------------------------------------

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
        self._finished = False
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

    @property
    def ended(self) -> bool:
        """Whether `finish` was called."""
        return self._finished

    def finish(self) -> None:
        """No more audio will come (the call ended): pad with silence so the last offsets,
        which wait for audio after them, can be judged too (a prompt cut by a hang-up)."""
        if not self._finished:
            self._finished = True
            self.feed(np.zeros(int(self.SLACK_S * RATE) + self.BLOCK))

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
