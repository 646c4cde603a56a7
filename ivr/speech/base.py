"""What every speech engine shares: end-pointing, slots, the executor, events.

A listening turn opens a session and pushes the caller's 20 ms frames into it.
The session finds the utterance with the voice activity detector (start after
a short run of voice, end after `end_silence` of quiet or `max_utterance` of
talk), reports `SpeechStarted` at once (that is what stops the prompt), and
hands the audio to the engine's decoder off the event loop. The decoder's
answer comes back as one `SpeechResult` or `NoSpeech("no-match")`.

Engines differ only in how they decode, so they implement `Utterance`:
streaming engines (vosk) decode chunk by chunk while the caller talks, which
keeps the time from end of speech to result short; batch engines (pocketsphinx)
decode the whole utterance at the end on a decoder owned by the worker thread.

Two limits protect the process: at most `max_sessions` sessions at once
(`open()` returns None beyond that, and the turn falls back to keys), and one
bounded thread pool for all decoding, so a burst of talkers queues for CPU
instead of starting a thread each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from ..engine.call import Event, NoSpeech, SpeechResult, SpeechStarted
from ..engine.matching import best_match
from ..flows.fields import normalise_phrase
from .vad import EnergyVad, VadEvent

log = logging.getLogger(__name__)

FRAME_MS = 20
# Streaming engines get audio in chunks of this many frames: fewer executor hops
# than frame by frame, and still little left to decode when the caller stops.
CHUNK_FRAMES = 10
# Of the silence that ends an utterance only this much is decoded: a long silence
# around a phrase measurably hurts grammar decoding.
KEEP_TAIL_FRAMES = 25


@dataclass(frozen=True)
class Endpointing:
    """When an utterance starts and ends, in seconds."""

    no_speech_timeout: float = 4.0  # after the prompts, silence that counts as no input
    end_silence: float = 0.6  # quiet that ends an utterance
    max_utterance: float = 13.0  # talk longer than this is cut and decoded
    start_ms: int = 100  # voice needed before speech counts as started (clicks do not)
    preroll_ms: int = 300  # audio kept from before the start: word onsets are quiet


@dataclass(frozen=True)
class Hypothesis:
    """A decoder's answer; empty text means nothing usable was heard."""

    text: str
    confidence: float = 0.0
    alternatives: tuple[tuple[str, float], ...] = ()


class Utterance(Protocol):
    """One utterance on an engine's decoder. Its methods block; they run on the executor.

    A streaming engine's feed() decodes as it goes; a batch engine's gets the
    whole utterance at once, just before result()."""

    def feed(self, pcm: bytes) -> None:
        ...

    def result(self) -> Hypothesis:
        ...

    def release(self) -> None:
        """Give the decoder back (called once, after result() or on abandon)."""
        ...


# Phrases are spelled for grammars exactly as the flow compares them.
normalise = normalise_phrase


class Engine:
    """The engine's `Recognizer`: sessions, slots and the decoding pool.

    Subclasses set `name` and implement `known_words` and `_utterance`."""

    name = "speech"
    streaming = False  # True: audio is decoded chunk by chunk while the caller talks

    def __init__(self, *, max_sessions: int = 64, workers: int | None = None,
                 endpointing: Endpointing | None = None) -> None:
        self.max_sessions = max_sessions
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.endpointing = endpointing or Endpointing()
        # Streaming work (a chunk every 200 ms from every talker) and the work at
        # the end of an utterance (the answer a caller is waiting for) have
        # separate pools, so an answer never queues behind other callers' chunks.
        self.executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.name)
        self.finisher = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self.name + "-end")
        self.busy = 0  # sessions holding a slot
        self.refused = 0  # sessions refused because every slot was taken
        self._warned: set[str] = set()
        self._usable: dict[tuple[str, ...], list[str]] = {}

    # -- for subclasses ------------------------------------------------------

    def known_words(self, words: set[str]) -> set[str]:
        """The subset of `words` the engine can recognise (its vocabulary)."""
        return words

    def _utterance(self, phrases: list[str] | None, sample_rate: int) -> Utterance:
        """A decoder for one utterance: restricted to `phrases` (normalised), or free when None."""
        raise NotImplementedError

    def load(self) -> None:
        """Load models now rather than on the first caller (blocking)."""

    # -- the Recognizer interface ---------------------------------------------

    def usable(self, phrases: list[str]) -> list[str]:
        """The phrases whose every word the engine knows; the rest are logged once.

        Worked out once per list: a menu opens a session with the same phrases
        for every caller."""
        key = tuple(phrases)
        got = self._usable.get(key)
        if got is None:
            if len(self._usable) >= 4096:  # flows reloaded many times: start afresh
                self._usable.clear()
            got = self._usable[key] = self._check_words(phrases)
        return list(got)

    def _check_words(self, phrases: list[str]) -> list[str]:
        words = {w for p in phrases for w in normalise(p).split()}
        known = self.known_words(words)
        out, dropped = [], []
        for p in phrases:
            ws = normalise(p).split()
            (out if ws and all(w in known for w in ws) else dropped).append(p)
        for p in dropped:
            if p not in self._warned:
                self._warned.add(p)
                log.warning("%s: phrase %r has words the model does not know; it cannot be recognised",
                            self.name, p)
        return out

    def open(self, phrases: list[str] | None, sample_rate: int = 8000, *,
             endpointing: Endpointing | None = None) -> Session | None:
        """A session for one turn: `phrases` restrict recognition, None means free speech.

        None when every slot is taken or none of the phrases can be recognised."""
        if phrases is not None:
            phrases = self.usable(phrases)
            if not phrases:
                return None
        if self.busy >= self.max_sessions:
            self.refused += 1
            return None
        self.busy += 1
        return Session(self, phrases, sample_rate, endpointing or self.endpointing)

    def _release(self) -> None:
        self.busy -= 1

    def shutdown(self) -> None:
        """Stop the worker threads (at process exit)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.finisher.shutdown(wait=False, cancel_futures=True)


class Session:
    """One listening turn: end-point with the VAD, decode the utterance, report."""

    def __init__(self, engine: Engine, phrases: list[str] | None, sample_rate: int,
                 ep: Endpointing) -> None:
        self.engine = engine
        self.rate = sample_rate
        self.endpointing = ep
        # Decoders answer in normalised words; callers expect the flow's own spelling.
        self._spelling = {normalise(p): p for p in phrases} if phrases is not None else None
        self._grammar = sorted(self._spelling) if self._spelling is not None else None
        self._vad = EnergyVad(sample_rate=sample_rate, frame_ms=FRAME_MS, start_ms=ep.start_ms,
                              end_ms=int(ep.end_silence * 1000))
        self._preroll: collections.deque[bytes] = collections.deque(maxlen=max(1, ep.preroll_ms // FRAME_MS))
        self._held: list[bytes] = []  # quiet frames inside the utterance, not yet known to be its end
        self._chunk: list[bytes] = []
        self._frames = 0
        self._max_frames = int(ep.max_utterance * 1000 / FRAME_MS)
        self._audio: asyncio.Queue[tuple[bytes, bool]] = asyncio.Queue()  # (pcm, last)
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._lock = threading.Lock()
        self._done = False
        self._closed = False
        self.speech_ended_at: float | None = None  # loop time the end-of-speech was found
        self.decode_seconds = 0.0
        self.audio_seconds = 0.0  # audio of the utterance handed to the decoder
        self.fed_seconds = 0.0  # of which a streaming decoder has already decoded

    def push(self, frame: bytes) -> None:
        """Feed one 20 ms PCM16 frame at the session's sample rate."""
        if self._done or self._closed:
            return
        ev = self._vad.push(frame)
        if ev is VadEvent.START:
            self._events.put_nowait(SpeechStarted())
            self._worker = asyncio.ensure_future(self._decode())
            self._emit([*self._preroll, frame])
            self._frames = len(self._preroll) + 1
            return
        if not self._vad.in_speech and ev is not VadEvent.END:
            self._preroll.append(frame)
            return
        self._frames += 1
        if ev is VadEvent.END:
            self._emit(self._held[:KEEP_TAIL_FRAMES])
            self._end()
            return
        if self._vad.last_voiced:
            self._emit(self._held + [frame])
            self._held = []
        else:
            self._held.append(frame)
        if self._frames >= self._max_frames:
            self._emit(self._held)
            self._end()

    def _emit(self, frames: list[bytes]) -> None:
        self._chunk.extend(frames)
        if len(self._chunk) >= CHUNK_FRAMES:
            self._audio.put_nowait((b"".join(self._chunk), False))
            self._chunk = []

    def _end(self) -> None:
        self._done = True
        self._audio.put_nowait((b"".join(self._chunk), True))
        self._chunk = []
        self.speech_ended_at = asyncio.get_running_loop().time()

    def _step(self, utt: Utterance | None, pcm: bytes, last: bool) -> tuple[Utterance, Hypothesis | None]:
        """On a worker: make the decoder if needed, feed it, and answer after the last audio.

        One job per chunk, and one at the end (the last audio and the answer
        together), so the caller's answer costs a single trip through a pool.
        Calls for one utterance never overlap, even when a cancelled turn
        leaves a job running while release() starts on another worker."""
        with self._lock:
            if utt is None:
                utt = self.engine._utterance(self._grammar, self.rate)
            if pcm:
                utt.feed(pcm)
            return utt, (utt.result() if last else None)

    async def _decode(self) -> None:
        loop = asyncio.get_running_loop()
        engine = self.engine
        utt: Utterance | None = None
        pending: list[bytes] = []
        try:
            while True:
                pcm, last = await self._audio.get()
                self.audio_seconds += len(pcm) / 2 / self.rate
                if not engine.streaming:
                    # A batch engine decodes once, at the end: collect on the loop until then.
                    pending.append(pcm)
                    if not last:
                        continue
                    pcm = b"".join(pending)
                t0 = loop.time()
                pool = engine.finisher if last else engine.executor
                job = loop.run_in_executor(pool, self._step, utt, pcm, last)
                try:
                    utt, hyp = await asyncio.shield(job)
                except asyncio.CancelledError:
                    # The job runs on; whatever decoder it ends up holding is released after it.
                    job.add_done_callback(functools.partial(self._release_after, utt))
                    utt = None
                    raise
                self.decode_seconds += loop.time() - t0
                if last:
                    break
                self.fed_seconds += len(pcm) / 2 / self.rate
        except asyncio.CancelledError:
            if utt is not None:
                self._release_later(utt)
            raise
        except Exception:
            log.exception("%s: decoding failed", engine.name)
            if utt is not None:
                self._release_later(utt)
            self._events.put_nowait(NoSpeech("error"))
            self._events.put_nowait(None)
            return
        self._release_later(utt)
        self._report(hyp)

    def _release_after(self, before: Utterance | None, job: asyncio.Future) -> None:
        if job.cancelled() or job.exception() is not None:
            if before is not None:
                self._release_later(before)
        else:
            self._release_later(job.result()[0])

    def _release_later(self, utt: Utterance) -> None:
        def release():
            with self._lock:
                utt.release()
        with contextlib.suppress(RuntimeError):  # the pool is shut down at exit
            self.engine.executor.submit(release)

    def _report(self, hyp: Hypothesis) -> None:
        text = normalise(hyp.text)
        if self._spelling is not None:
            # A grammar of words (vosk) can return several of them ("no billing"):
            # the phrase heard within, as the menu itself would match it.
            text = self._spelling.get(text) or best_match(text, list(self._spelling.items())) or ""
            alts = tuple((self._spelling[normalise(t)], c) for t, c in hyp.alternatives
                         if normalise(t) in self._spelling)
        else:
            alts = tuple((normalise(t), c) for t, c in hyp.alternatives)
        if text:
            self._events.put_nowait(SpeechResult(text, round(hyp.confidence, 3), alts, self.engine.name))
        else:
            self._events.put_nowait(NoSpeech("no-match"))
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[Event]:
        """SpeechStarted when the caller starts, then one SpeechResult or NoSpeech."""
        while (ev := await self._events.get()) is not None:
            yield ev

    async def close(self) -> None:
        """End the session; its slot is free again at once (decoders are released by the pool)."""
        if self._closed:
            return
        self._closed = True
        self._events.put_nowait(None)
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self.engine._release()
