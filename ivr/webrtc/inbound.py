"""The caller's audio from aiortc, as the engine's 20 ms PCM16 mono 8 kHz frames.

aiortc hands over decoded frames at the codec's rate: 48 kHz stereo for
Opus, 8 kHz mono for PCMU and PCMA, 16 kHz for G.722, all whole multiples
of 8 kHz. Each call brings them down with a small FIR low-pass and keeps
every n-th sample, carrying the filter's history from frame to frame, so the
audio has no seam every 20 ms (as it would if each frame were resampled on
its own). This is numpy on the event loop, about 60 µs a frame from Opus (PCMU's 8 kHz
frames pass as they are): PyAV's own
resampler would start a filter graph with a thread pool for every call. The
track is always read, listener or not: aiortc queues what nobody reads
without bound. In-band DTMF tones are looked for in every frame, as browsers
have no other way to send keys in the audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import numpy as np
from av import AudioFrame

from ..audio.dtmf_detect import InbandDtmfDetector
from ..audio.frames import FRAME_BYTES, RATE, follow
from ..audio.resample import resample

log = logging.getLogger("ivr.webrtc")
MAX_QUEUED = 500  # frames a listener may fall behind (10 s) before frames are dropped for it
TAPS_PER_STEP = 16  # FIR length per decimation step: 96 taps from 48 kHz, about 60 dB down in the stop band
CUTOFF_HZ = 3600.0  # below the 4 kHz Nyquist of 8 kHz, above the telephone band
TONE_BATCH = 3  # frames looked at together for in-band DTMF


def lowpass(factor: int) -> np.ndarray:
    """A windowed-sinc low-pass for taking every `factor`-th sample down to 8 kHz."""
    taps = TAPS_PER_STEP * factor
    n = np.arange(taps) - (taps - 1) / 2
    fc = CUTOFF_HZ / (RATE * factor)  # cycles per input sample
    h = 2 * fc * np.sinc(2 * fc * n) * np.kaiser(taps, 8.0)
    return h / h.sum()


def mono(frame: AudioFrame) -> np.ndarray:
    """A frame's samples as one float channel on the PCM16 scale."""
    if frame.format.name == "s16" and not frame.format.is_planar and frame.layout.nb_channels == 2:
        # What aiortc's Opus decoder gives: interleaved stereo, read straight from the plane.
        lr = np.frombuffer(frame.planes[0], dtype="<i2", count=frame.samples * 2).astype(np.float32)
        return (lr[0::2] + lr[1::2]) * 0.5
    x = frame.to_ndarray()
    channels = frame.layout.nb_channels
    x = x.mean(axis=0) if frame.format.is_planar else x.reshape(-1, channels).mean(axis=1)
    if frame.format.name.startswith(("flt", "dbl")):
        x = x * 32767.0
    return np.asarray(x, dtype=np.float64)


class FrameCutter:
    """Any aiortc audio frame in, whole 20 ms PCM16 mono 8 kHz frames out."""

    def __init__(self) -> None:
        self._rate = 0
        self._factor = 1
        self._h = np.ones(1)
        self._tail = np.zeros(0)  # input samples not yet filtered, with the filter's history
        self._buf = bytearray()

    def _setup(self, rate: int) -> None:
        self._rate = rate
        self._factor = rate // RATE if rate % RATE == 0 else 0
        if self._factor > 1:
            self._h = lowpass(self._factor).astype(np.float32)  # float32 is plenty for 16-bit audio
            self._tail = np.zeros(len(self._h) - 1, dtype=np.float32)

    def _to_8k(self, x: np.ndarray) -> np.ndarray:
        f = self._factor
        if f == 1:
            return x
        if f == 0:
            # No codec aiortc negotiates has such a rate; resample this frame on its own.
            pcm = np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()
            return np.frombuffer(resample(pcm, self._rate, RATE), dtype="<i2").astype(np.float64)
        buf = np.concatenate([self._tail, x])
        taps = len(self._h)
        if len(buf) < taps:
            self._tail = buf
            return np.zeros(0)
        count = (len(buf) - taps) // f + 1
        # Every f-th window of `taps` samples, as a view (numpy's own helpers check more and cost
        # more than the filtering itself).
        step = buf.strides[0]
        windows = np.ndarray((count, taps), dtype=buf.dtype, buffer=buf, strides=(step * f, step))
        self._tail = buf[count * f:]
        return windows @ self._h  # the filter is symmetric: no need to reverse it

    def push(self, frame: AudioFrame) -> list[bytes]:
        """The whole frames now available (the filter delays the audio by about a millisecond)."""
        if frame.sample_rate != self._rate:
            self._setup(frame.sample_rate)
        if (self._factor == 1 and frame.format.name == "s16" and frame.layout.nb_channels == 1
                and not self._buf and frame.samples * 2 == FRAME_BYTES):
            return [bytes(frame.planes[0])[:FRAME_BYTES]]  # PCMU/PCMA: already what the engine uses
        y = self._to_8k(mono(frame))
        self._buf += np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()
        n = len(self._buf) // FRAME_BYTES * FRAME_BYTES
        frames = [bytes(self._buf[i:i + FRAME_BYTES]) for i in range(0, n, FRAME_BYTES)]
        del self._buf[:n]
        return frames


class Inbound:
    """Reads the remote audio track; fans frames out to listeners and the DTMF detector."""

    def __init__(self, on_dtmf: Callable[[str, str], None]) -> None:
        self.on_dtmf = on_dtmf
        self.cutter = FrameCutter()
        self.inband = InbandDtmfDetector()
        self.listeners: list[asyncio.Queue] = []
        self._tones: list[bytes] = []
        self.frames_in = 0
        self._task: asyncio.Task | None = None
        self._closed = False

    def start(self, track) -> None:
        """Start reading `track` (aiortc's remote audio) until it ends or close()."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._read(track), name="webrtc-audio-in")

    async def _read(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                for pcm in self.cutter.push(frame):
                    self.deliver(pcm)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # MediaStreamError when the track ends, or a frame we cannot read
            log.debug("audio in ended: %r", exc)
        finally:
            self._closed = True  # later listeners get an iterator that ends at once
            self._end_listeners()

    def deliver(self, pcm: bytes) -> None:
        """One 20 ms frame from the caller."""
        self.frames_in += 1
        # Tones are looked for three frames at a time: a key lasts 40 ms or more, and one
        # pass over 60 ms costs little more than one over 20 ms.
        self._tones.append(pcm)
        if len(self._tones) == TONE_BATCH:
            for digit in self.inband.push(b"".join(self._tones)):
                self.on_dtmf(digit, "inband")
            self._tones.clear()
        for q in self.listeners:
            if q.qsize() < MAX_QUEUED:  # a stuck consumer must not grow memory without bound
                q.put_nowait(pcm)

    def frames(self) -> AsyncIterator[bytes]:
        """The caller's frames for as long as the iterator is used (ends with the call)."""
        return follow(self.listeners) if not self._closed else _nothing()

    def _end_listeners(self) -> None:
        for q in self.listeners:
            q.put_nowait(None)

    async def close(self) -> None:
        """Stop reading; every listener's iterator ends."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._end_listeners()


async def _nothing() -> AsyncIterator[bytes]:
    """An iterator that ends at once (the call's audio is over)."""
    return
    yield  # an async generator, with nothing in it
