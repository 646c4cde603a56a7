"""Offline recognition with pocketsphinx, restricted to the turn's phrases.

Measured on espeak phrases passed through G.711: a JSGF grammar of the menu's
phrases is far more accurate than the free language model, 8 kHz input must be
upsampled to 16 kHz, and exact digital silence makes results flip, so a faint
noise floor is added before decoding.

Decoding is blocking C code, so it runs in one bounded ThreadPoolExecutor.
Each worker thread owns one decoder, loaded on first use and reused for every
later utterance (a pocketsphinx decoder must not be shared between threads).
`open()` hands out at most `workers` sessions; when all are taken it returns
None and the turn falls back to keys rather than queueing callers behind each
other. One `PocketsphinxRecognizer` is meant to serve the whole process.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
import re
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..audio.resample import resample
from ..engine.call import Event, NoSpeech, SpeechResult, SpeechStarted
from .vad import EnergyVad, VadEvent

log = logging.getLogger(__name__)

DECODER_RATE = 16000
FRAME_MS = 20

_dictionary: frozenset[str] | None = None
_dictionary_lock = threading.Lock()


def _words_of_dictionary() -> frozenset[str]:
    """The words of pocketsphinx's English dictionary, read once per process."""
    global _dictionary
    with _dictionary_lock:
        if _dictionary is None:
            import pocketsphinx

            path = os.path.join(pocketsphinx.get_model_path(), "en-us", "cmudict-en-us.dict")
            words = set()
            with open(path, encoding="utf-8") as f:
                for line in f:
                    # Pronunciation variants are listed as "word(2)".
                    words.add(line.split(" ", 1)[0].split("(", 1)[0])
            _dictionary = frozenset(words)
        return _dictionary


def normalise(phrase: str) -> str:
    """A phrase as the grammar spells it: lower case words, no punctuation."""
    return " ".join(re.findall(r"[a-z0-9']+", phrase.lower()))


def unknown_words(phrases: list[str]) -> dict[str, list[str]]:
    """Phrases that use words the dictionary lacks, mapped to those words.

    Call this when a flow is loaded so designers hear about "billin" before a
    caller does; `open()` also drops such phrases and logs them."""
    words = _words_of_dictionary()
    out: dict[str, list[str]] = {}
    for phrase in phrases:
        missing = [w for w in normalise(phrase).split() if w not in words]
        if missing or not normalise(phrase):
            out[phrase] = missing
    return out


def build_jsgf(phrases: list[str]) -> str:
    """A JSGF grammar that accepts exactly one of the (normalised) phrases."""
    alts = " | ".join(sorted({normalise(p) for p in phrases}))
    return f"#JSGF V1.0;\ngrammar menu;\npublic <menu> = {alts} ;\n"


class _Worker(threading.local):
    """Per-thread state: this worker's decoder and the grammars it already holds."""

    decoder = None
    searches: set[str]


_worker = _Worker()


def _decode(jsgf: str, pcm16k: bytes, noise_floor: float, seed: int) -> tuple[str, float]:
    """Decode one utterance on this worker's decoder; returns (hypothesis, posterior)."""
    import pocketsphinx

    if _worker.decoder is None:
        _worker.decoder = pocketsphinx.Decoder(lm=None, loglevel="FATAL")
        _worker.searches = set()
    dec = _worker.decoder
    # Grammars are cached on the decoder by content, so a menu heard by many
    # callers is compiled once per worker.
    name = "g" + hashlib.sha1(jsgf.encode()).hexdigest()[:16]
    if name not in _worker.searches:
        dec.add_jsgf_string(name, jsgf)
        _worker.searches.add(name)
    dec.activate_search(name)
    x = np.frombuffer(pcm16k, dtype="<i2").astype(np.float64)
    x += np.random.default_rng(seed).normal(0.0, noise_floor, x.size)
    audio = np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()
    dec.start_utt()
    dec.process_raw(audio, False, True)
    dec.end_utt()
    hyp = dec.hyp()
    if hyp is None:
        return "", 0.0
    return hyp.hypstr.strip(), float(dec.get_prob())


class PocketsphinxRecognizer:
    """The engine's Recognizer, backed by pocketsphinx with a JSGF grammar per turn."""

    name = "pocketsphinx"

    def __init__(self, workers: int = 2, *, end_silence_ms: int = 600, start_ms: int = 100,
                 preroll_ms: int = 300, max_utterance_s: float = 10.0,
                 noise_floor: float = 3.0, use_posterior: bool = False) -> None:
        self.workers = workers
        self.end_silence_ms = end_silence_ms
        self.start_ms = start_ms
        self.preroll_ms = preroll_ms
        self.max_utterance_s = max_utterance_s
        self.noise_floor = noise_floor
        # The decoder's posterior with a grammar sits near 0.5 even for clean
        # hits (it does not separate in- from out-of-grammar speech either), so
        # by default an in-grammar hypothesis reports 1.0; the raw posterior is
        # still available for those who want to calibrate their own threshold.
        self.use_posterior = use_posterior
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pocketsphinx")
        self._busy = 0
        self._seed = 0

    @property
    def busy(self) -> int:
        """Sessions currently holding a recogniser slot."""
        return self._busy

    def open(self, phrases: list[str] | None, sample_rate: int = 8000) -> _Session | None:
        """A session for one turn, or None when every slot is taken or nothing is speakable."""
        if not phrases:
            # Free dictation is out of scope here: menus always pass their phrases.
            log.warning("pocketsphinx: no phrases given; speech disabled for this turn")
            return None
        bad = unknown_words(phrases)
        if bad:
            log.warning("pocketsphinx: dropping phrases with words missing from the dictionary: %s",
                        "; ".join(f"{p!r}: {', '.join(w) or '(empty)'}" for p, w in bad.items()))
        usable = [p for p in phrases if p not in bad]
        if not usable or self._busy >= self.workers:
            return None
        self._busy += 1
        self._seed += 1
        return _Session(self, usable, sample_rate, self._seed)

    def _release(self) -> None:
        self._busy -= 1

    def shutdown(self) -> None:
        """Stop the worker threads (at process exit)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class _Session:
    """One listening turn: end-point with the VAD, then decode the utterance once."""

    def __init__(self, rec: PocketsphinxRecognizer, phrases: list[str], sample_rate: int,
                 seed: int) -> None:
        self._rec = rec
        self._rate = sample_rate
        self._seed = seed
        # The decoder answers in normalised words; callers expect their own spelling.
        self._spelling = {normalise(p): p for p in phrases}
        self._jsgf = build_jsgf(phrases)
        self._vad = EnergyVad(sample_rate=sample_rate, frame_ms=FRAME_MS, start_ms=rec.start_ms,
                              end_ms=rec.end_silence_ms)
        # Keep a little audio from before the VAD fired: it needs ~100 ms of voice
        # to decide, and word onsets are quiet.
        self._preroll: collections.deque[bytes] = collections.deque(
            maxlen=max(1, rec.preroll_ms // FRAME_MS))
        self._utterance: list[bytes] = []
        self._max_frames = int(rec.max_utterance_s * 1000 / FRAME_MS)
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._decoding: asyncio.Future | None = None
        self._done = False
        self._closed = False
        self.decode_seconds = 0.0
        self.audio_seconds = 0.0

    def push(self, frame: bytes) -> None:
        """Feed one 20 ms PCM16 frame at the session's sample rate."""
        if self._done or self._closed:
            return
        ev = self._vad.push(frame)
        if not self._vad.in_speech and ev is not VadEvent.END:
            self._preroll.append(frame)
            return
        if ev is VadEvent.START:
            self._utterance = list(self._preroll)
            self._queue.put_nowait(SpeechStarted())
        self._utterance.append(frame)
        if ev is VadEvent.END or len(self._utterance) >= self._max_frames:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        # Most of the trailing silence is dropped: long silence around the
        # phrase measurably hurts grammar decoding.
        keep_tail = max(0, len(self._utterance) - self._vad.end_frames + 10)
        pcm = b"".join(self._utterance[:keep_tail] if keep_tail else self._utterance)
        self._utterance = []
        self._decoding = asyncio.ensure_future(self._decode(pcm))

    async def _decode(self, pcm: bytes) -> None:
        loop = asyncio.get_running_loop()
        rec = self._rec
        t0 = loop.time()
        try:
            pcm16k = resample(pcm, self._rate, DECODER_RATE)
            text, prob = await loop.run_in_executor(
                rec._executor, _decode, self._jsgf, pcm16k, rec.noise_floor, self._seed)
        except Exception:
            log.exception("pocketsphinx: decoding failed")
            self._queue.put_nowait(NoSpeech("error"))
            self._queue.put_nowait(None)
            return
        self.decode_seconds = loop.time() - t0
        self.audio_seconds = len(pcm) / 2 / self._rate
        phrase = self._spelling.get(text)
        if phrase is None:
            self._queue.put_nowait(NoSpeech("no-match"))
        else:
            conf = min(1.0, max(0.0, prob)) if rec.use_posterior else 1.0
            self._queue.put_nowait(SpeechResult(phrase, conf, (), rec.name))
        self._queue.put_nowait(None)

    async def events(self) -> AsyncIterator[Event]:
        """SpeechStarted when the caller starts, then one SpeechResult or NoSpeech."""
        while (ev := await self._queue.get()) is not None:
            yield ev

    async def close(self) -> None:
        """Give the slot back once any decode in flight is over (it cannot be interrupted)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._decoding is not None and not self._decoding.done():
            # The worker thread stays busy until the decode ends, so the slot does too.
            self._decoding.add_done_callback(lambda _f: self._rec._release())
        else:
            self._rec._release()
