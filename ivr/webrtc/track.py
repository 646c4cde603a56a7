"""The call's outgoing audio: an aiortc track paced by the process's media clock.

aiortc's sender asks the track for one frame after another (`recv`) and
encodes each (Opus or PCMU) as soon as it has it, so the track sets the pace.
This one is ticked by the media clock (ivr.audio.clock), like an RTP session:
each 20 ms tick takes the next frame of whatever plays, a prompt's Source or
music on hold, or silence, and hands it to the waiting sender. Pacing on the
shared clock, not a timer per call, keeps one timer for every call of the
process, and a stream music class (whose position is read off that clock)
plays to WebRTC callers exactly as to SIP callers.

A feed is asked for a frame only when the sender takes one, so a prompt's
position is what was really sent: before the connection is up (the sender is
not running yet) nothing is taken, and a stop keeps nothing fetched ahead.
Timestamps are the track's own: 160 samples a frame at 8 kHz, whatever the
codec (aiortc's encoders resample for Opus).
"""

from __future__ import annotations

import asyncio
import fractions
from typing import Protocol

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from ..audio.feed import Feed, Source
from ..audio.frames import FRAME_SAMPLES, RATE, SILENCE

TIME_BASE = fractions.Fraction(1, RATE)


class Clock(Protocol):
    """The parts of ivr.audio.clock.MediaClock the track uses."""

    def add(self, stream) -> None:
        ...

    def remove(self, stream) -> None:
        ...


class OutgoingTrack(MediaStreamTrack):
    """Audio to the caller: 20 ms frames of s16 mono 8 kHz, one per media clock tick."""

    kind = "audio"

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.source: Feed | None = None
        self.pts = 0
        self.sent = 0  # frames handed to the sender
        self.late = 0  # ticks whose frame the sender was not ready for
        self._waiter: asyncio.Future | None = None
        self._ready: bytes | None = None  # one frame taken at a tick the sender missed
        clock.add(self)

    # ---- what plays ----------------------------------------------------------------------
    def play(self, frames: tuple[bytes, ...]) -> Source:
        """Start sending a prompt's frames (replacing what plays); returns its Source."""
        src = Source(frames)
        self.feed(src)
        return src

    def feed(self, source: Feed) -> None:
        """Send from `source` from the next tick on, replacing (and finishing) what plays."""
        if self.source is not None and self.source is not source:
            self.source.finish(False)
        self.source = source

    def stop_feed(self) -> None:
        """Stop what plays (barge-in, hold over); silence follows."""
        if self.source is not None:
            self.source.finish(False)
            self.source = None

    # ---- the media clock's side --------------------------------------------------------------
    def _take(self) -> bytes:
        frame = None
        if self.source is not None:
            frame = self.source.next()
            if frame is None:
                self.source = None
        return frame or SILENCE

    def tick(self) -> None:
        """One 20 ms period: the waiting sender gets the next frame."""
        w = self._waiter
        if w is not None and not w.done():
            self._waiter = None
            w.set_result(self._take())
        elif self._ready is None and self.sent:
            # The sender is busy with the last frame: keep one for it. (Before it has
            # taken any, nothing is taken, so a prompt never starts before the media does.)
            self._ready = self._take()
        elif self.sent:
            self.late += 1

    # ---- aiortc's side ---------------------------------------------------------------------
    async def recv(self) -> AudioFrame:
        """The next frame, at the media clock's pace."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._ready is not None:
            pcm, self._ready = self._ready, None
        else:
            self._waiter = asyncio.get_running_loop().create_future()
            pcm = await self._waiter
        return self._frame(pcm)

    def _frame(self, pcm: bytes) -> AudioFrame:
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = RATE
        frame.time_base = TIME_BASE
        frame.pts = self.pts
        self.pts += FRAME_SAMPLES
        self.sent += 1
        return frame

    def stop(self) -> None:
        """The call is over: off the clock, the prompt ends, a waiting sender is told."""
        self.clock.remove(self)
        self.stop_feed()
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_exception(MediaStreamError())
        super().stop()
