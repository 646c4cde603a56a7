"""pocketsphinx: the embedded offline default (its wheel ships an English model).

Measured on espeak phrases passed through G.711: a JSGF grammar of the menu's
phrases is far more accurate than the free language model, 8 kHz input must be
upsampled to 16 kHz, and exact digital silence makes results flip, so a faint
noise floor is added before decoding.

pocketsphinx's binding holds the GIL while it decodes, so decoding runs in a
pool of worker processes (one per core by default, started at load time and
shared by the whole server); each owns one decoder (plus one for free speech)
and reuses it for every utterance. Decoding is batch: the utterance is decoded
once, when it has ended (a few hundredths of its length in CPU time with a
grammar); only PCM goes in and a few words come out.

A grammar forces any sound onto its nearest phrase, so the result is judged by
how well the best path fits the audio (`fit_confidence`): mumbling, noise and
most off-menu sentences fit badly and are rejected as no-match below
`reject_below`; between that and the menu's threshold the caller is asked
"did you say ...?". The English model is wideband (16 kHz) and phone audio
stops at 4 kHz, so words whose sound lives in sibilants ("sales", "person")
are its weak spot; list synonyms, or use vosk with a telephone model.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import math
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..audio.resample import resample
from .base import Endpointing, Engine, Hypothesis, normalise

DECODER_RATE = 16000
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
# The confidence is a logistic of how far the best grammar path's score (per
# frame of words, and per frame of the utterance with its silences) is above
# these levels; tuned on espeak phrases, off-menu sentences and noise sent
# through G.711 and this engine's end-pointing (bench/speech_engines.py).
SCORE_PER_SPEECH_FRAME = -92.0
SCORE_SPEECH_SCALE = 15.0
SCORE_PER_FRAME = -42.0
SCORE_FRAME_SCALE = 6.0

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


def unknown_words(phrases: list[str]) -> dict[str, list[str]]:
    """Phrases that use words the dictionary lacks, mapped to those words.

    Useful when a flow is loaded, so designers hear about "billin" before a
    caller does; the engine also drops such phrases and logs them."""
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
    """Per-thread state: this worker's decoders and the grammars they already hold."""

    grammar = None
    free = None
    searches: set[str]


_worker = _Worker()


def _grammar_decoder():
    import pocketsphinx

    if _worker.grammar is None:
        _worker.grammar = pocketsphinx.Decoder(lm=None, loglevel="FATAL")
        _worker.searches = set()
    return _worker.grammar


def _free_decoder():
    import pocketsphinx

    if _worker.free is None:
        _worker.free = pocketsphinx.Decoder(loglevel="FATAL")
    return _worker.free


@dataclass(frozen=True)
class Decoded:
    """One decoded utterance: the words and how well the best path fits the audio."""

    text: str
    finished: bool  # the search reached the end of a phrase (not stuck half-way)
    score_per_speech_frame: float  # path score, log base 1.0001, per frame of words
    score_per_frame: float  # the same per frame of the whole utterance


def decode(jsgf: str | None, pcm16k: bytes, noise_floor: float = 10.0, seed: int = 0) -> Decoded:
    """Decode one utterance on this thread's decoder."""
    if jsgf is None:
        dec = _free_decoder()
    else:
        dec = _grammar_decoder()
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
    if hyp is None or not hyp.hypstr.strip():
        return Decoded("", False, -1e9, -1e9)
    segs = list(dec.seg() or [])
    words = [g for g in segs if g.word not in ("<s>", "</s>", "<sil>") and not g.word.startswith(("[", "+"))]
    finished = bool(segs) and (segs[-1].word == "</s>" or jsgf is None)
    # pocketsphinx scores each frame against that frame's best-scoring sound, so
    # the path score already reads like a ratio against an unconstrained model:
    # near zero when the words fit the audio, far below when forced onto it.
    score = dec.get_logmath().log(hyp.score) if hyp.score > 0 else -1e9
    n_words = (words[-1].end_frame - words[0].start_frame + 1) if words else 1
    return Decoded(hyp.hypstr.strip(), finished, score / max(n_words, 1), score / max(dec.n_frames(), 1))


def fit_confidence(d: Decoded) -> float:
    """A 0..1 confidence from how well the grammar's best path fits (see SCORE_*)."""
    if not d.text or not d.finished:
        return 0.0
    z = min((d.score_per_speech_frame - SCORE_PER_SPEECH_FRAME) / SCORE_SPEECH_SCALE,
            (d.score_per_frame - SCORE_PER_FRAME) / SCORE_FRAME_SCALE)
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def decode_pcm8k(jsgf: str | None, pcm: bytes, rate: int, noise_floor: float, seed: int) -> Decoded:
    """Resample and decode one utterance here (in a decoding process, or a thread)."""
    return decode(jsgf, resample(pcm, rate, DECODER_RATE), noise_floor, seed)


def _init_process(parent: int) -> None:
    """Initialise a decoding process: it dies with the server, and its decoder is
    ready before the first caller."""
    # A server killed outright (SIGKILL, OOM) cannot shut its pool down, and the
    # workers would wait on their queue for ever: the kernel ends them instead.
    with contextlib.suppress(Exception):  # not Linux: left to the pool's own shutdown
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the server died before prctl took effect
        os._exit(0)
    _grammar_decoder()


def _ready() -> None:
    """A no-op job, to wait until a worker has started."""


_processes: ProcessPoolExecutor | None = None
_started: list = []
_processes_lock = threading.Lock()


def decoding_processes(workers: int) -> ProcessPoolExecutor:
    """The process-wide pool of decoding processes, all started by the first call.

    pocketsphinx holds the GIL while it decodes, which would stall the event loop
    (and every call's audio) for the length of each decode; in processes it
    stalls nothing, and uses every core. The parent-death signal follows the
    thread that started a worker, so every worker is started here, by the
    thread that makes the engine (the server's main thread), never by a
    short-lived worker thread."""
    global _processes
    with _processes_lock:
        if _processes is None:
            _processes = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_process, initargs=(os.getpid(),))
            # One job per worker while none is idle starts each of them, in this thread.
            _started.extend(_processes.submit(_ready) for _ in range(workers))
        return _processes


class _Utterance:
    """Collects the utterance, then decodes it in one go on a decoding process."""

    streaming = False

    def __init__(self, engine: PocketsphinxEngine, jsgf: str | None, rate: int, seed: int) -> None:
        self.engine = engine
        self.jsgf = jsgf
        self.rate = rate
        self.seed = seed
        self.pcm: list[bytes] = []

    def feed(self, pcm: bytes) -> None:
        self.pcm.append(pcm)

    def result(self) -> Hypothesis:
        args = (self.jsgf, b"".join(self.pcm), self.rate, self.engine.noise_floor, self.seed)
        if self.engine.processes:
            # This worker thread waits without the GIL while a process decodes.
            d = decoding_processes(self.engine.workers).submit(decode_pcm8k, *args).result()
        else:
            d = decode_pcm8k(*args)
        self.engine.last = d
        if not d.text:
            return Hypothesis("")
        if self.jsgf is None:
            return Hypothesis(d.text, 1.0)
        conf = fit_confidence(d)
        # Below the floor it is noise or words the grammar does not hold: a no-match,
        # not a "did you say ...?" about something the caller never said.
        if conf < self.engine.reject_below:
            return Hypothesis("")
        return Hypothesis(d.text, conf)

    def release(self) -> None:
        self.pcm = []


class PocketsphinxEngine(Engine):
    """The engine's Recognizer backed by pocketsphinx, a JSGF grammar per turn."""

    name = "pocketsphinx"

    def __init__(self, *, max_sessions: int = 64, workers: int | None = None,
                 endpointing: Endpointing | None = None, noise_floor: float = 10.0,
                 reject_below: float = 0.2, processes: bool = True) -> None:
        super().__init__(max_sessions=max_sessions, workers=workers, endpointing=endpointing)
        # Decode in worker processes (the default) or, for tools, on the worker threads.
        self.processes = processes
        self.noise_floor = noise_floor
        self.reject_below = reject_below
        self.last: Decoded | None = None  # the latest decode, for tuning and tests
        self._seed = 0
        if processes:
            decoding_processes(self.workers)

    def known_words(self, words: set[str]) -> set[str]:
        return words & _words_of_dictionary()

    def load(self) -> None:
        """Read the dictionary and start the decoding processes (each loads its decoder) now."""
        _words_of_dictionary()
        if self.processes:
            for started in _started:
                started.result()

    def _utterance(self, phrases: list[str] | None, sample_rate: int) -> _Utterance:
        self._seed += 1
        return _Utterance(self, build_jsgf(phrases) if phrases is not None else None, sample_rate, self._seed)


def available() -> bool:
    """Whether pocketsphinx and its English model are installed."""
    try:
        import pocketsphinx

        return os.path.isdir(os.path.join(pocketsphinx.get_model_path(), "en-us"))
    except ImportError:
        return False
