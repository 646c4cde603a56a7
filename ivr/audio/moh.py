"""Music on hold: classes decoded once, and positions that never restart.

A class is a folder `media/moh/<class>/`: every audio file in it, in name
order, forms one loop. The library decodes a class once into 20 ms PCM16
frames and encodes it once per codec; every call on hold sends from those same
payload tuples.

A class plays in one of two modes:

- stream: one running stream per class, like a radio station. The frame sent
  is a function of the media clock (how many periods it has run), not of the
  listener: everyone on the class sends the same frame at the same tick, a
  caller put on hold joins wherever the stream is, and a class costs nothing
  while nobody listens (there is no stream object to tick).
- resume: each caller has their own place per class. A caller who comes back
  to the class continues with the frame after the last one actually sent.

The sources here are what an RTP session (or any sender ticked by the media
clock) pulls one payload from per tick: `next()` and `finish()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from .frames import split_frames

# What a class folder may hold (the flow validator accepts the same kinds of file).
AUDIO_EXT = frozenset({".wav", ".mp3", ".ogg", ".flac", ".ulaw", ".alaw", ".raw", ".au", ".m4a", ".aac", ".opus"})
MODES = ("resume", "stream")


class MusicError(RuntimeError):
    """A music class that cannot be played (no folder, no audio files)."""


class Codec(Protocol):
    """What encoding needs of a codec: a name to cache by and a frame encoder."""

    name: str

    def encode(self, pcm: bytes) -> bytes:
        ...


class Clock(Protocol):
    """The parts of the media clock (ivr.audio.clock.MediaClock) a stream position reads."""

    ticks: int
    skipped: int
    slots: list


def class_files(folder: str | Path) -> list[Path]:
    """The audio files of a class folder, in name order (hidden files left out)."""
    path = Path(folder)
    if not path.is_dir():
        raise MusicError(f"no music class folder {path}")
    files = sorted((p for p in path.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_EXT),
                   key=lambda p: p.name)
    if not files:
        raise MusicError(f"no audio files in music class folder {path}")
    return files


class MusicLoop:
    """One class as a loop of PCM frames, with its encodings made once per codec and shared."""

    def __init__(self, name: str, frames: tuple[bytes, ...]) -> None:
        self.name = name
        self.frames = frames
        self._encoded: dict[str, tuple[bytes, ...]] = {}

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def seconds(self) -> float:
        """How long the loop lasts."""
        return len(self.frames) * 0.02

    def payloads(self, codec: Codec) -> tuple[bytes, ...]:
        """The loop encoded for `codec`; every listener of the class gets this same tuple."""
        got = self._encoded.get(codec.name)
        if got is None:
            got = tuple(codec.encode(f) for f in self.frames)
            self._encoded[codec.name] = got
        return got


class MusicLibrary:
    """Music classes by folder, each decoded once however many calls ask for it at once.

    `decode` turns one audio file into PCM16 mono 8 kHz; it should run off the
    event loop (the prompt cache hands it its decoding executor).
    """

    def __init__(self, decode: Callable[[str], Awaitable[bytes]]) -> None:
        self._decode = decode
        self._loops: dict[str, MusicLoop] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self.loads = 0

    async def load(self, folder: str | Path) -> MusicLoop:
        """The class in `folder` as one loop (decoded at its first use, then cached)."""
        key = str(folder)
        got = self._loops.get(key)
        if got is not None:
            return got
        fut = self._pending.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._load(key))
            self._pending[key] = fut
            fut.add_done_callback(lambda _f, k=key: self._pending.pop(k, None))
        return await asyncio.shield(fut)

    async def _load(self, folder: str) -> MusicLoop:
        self.loads += 1
        # Files are decoded one by one, each cut into frames on its own: a file whose
        # length is not a whole number of frames gets its last frame padded, not merged.
        frames: list[bytes] = []
        for f in class_files(folder):
            frames.extend(split_frames(await self._decode(str(f))))
        if not frames:
            raise MusicError(f"music class folder {folder} holds no audio")
        loop = MusicLoop(Path(folder).name, tuple(frames))
        self._loops[folder] = loop  # failures are not cached: files added later are found
        return loop

    async def payloads(self, folder: str | Path, codec: Codec) -> tuple[bytes, ...]:
        """The class encoded for `codec`, shared by every call."""
        return (await self.load(folder)).payloads(codec)


def clock_frame(clock: Clock) -> int:
    """How many 20 ms periods the media clock has run: the shared position of every stream class.

    It counts the clock's slot ticks (skipped ones too, so after a stall the
    streams are where the wall clock says, not late), divided by the slots per
    period. Every sender ticked in one burst reads the same value; senders in
    the other slots of a period read it or the next one.
    """
    return (clock.ticks + clock.skipped) // len(clock.slots)


class StreamSource:
    """A listener of a stream class: on each tick, the frame the class is at on the clock."""

    __slots__ = ("clock", "payloads", "_slots")

    def __init__(self, payloads: tuple[bytes, ...], clock: Clock) -> None:
        if not payloads:
            raise MusicError("an empty music loop")
        self.payloads = payloads
        self.clock = clock
        self._slots = len(clock.slots)

    @property
    def pos(self) -> int:
        """The frame a tick would send now."""
        c = self.clock
        return (c.ticks + c.skipped) // self._slots % len(self.payloads)

    def next(self) -> bytes:
        # The position is read from the clock at every tick rather than counted here:
        # a listener cannot drift from the stream, whenever it joined.
        c = self.clock
        return self.payloads[(c.ticks + c.skipped) // self._slots % len(self.payloads)]

    def finish(self, completed: bool) -> None:
        """Nothing to settle: a stream has no place of its own to keep."""


class ResumeSource:
    """One caller's own run through a loop, from `start`; `pos` is the next frame to send."""

    __slots__ = ("payloads", "pos", "sent")

    def __init__(self, payloads: tuple[bytes, ...], start: int = 0) -> None:
        if not payloads:
            raise MusicError("an empty music loop")
        self.payloads = payloads
        self.pos = start % len(payloads)
        self.sent = 0  # frames handed to the sender

    def next(self) -> bytes:
        # The sender asks for a frame only when it sends one, so `pos` moves with what
        # went out: nothing is fetched ahead that a stop would lose.
        p = self.payloads[self.pos]
        self.pos += 1
        if self.pos == len(self.payloads):
            self.pos = 0
        self.sent += 1
        return p

    def finish(self, completed: bool) -> None:
        """Stopped: `pos` stays where the music is to continue."""


class CallerMusic:
    """One call's music on hold: what plays now, and per resume class where to continue."""

    def __init__(self) -> None:
        self.positions: dict[str, int] = {}  # class -> next frame to send (resume mode)
        self.playing: tuple[str, str, StreamSource | ResumeSource] | None = None

    def start(self, music: str, mode: str, payloads: tuple[bytes, ...],
              clock: Clock) -> StreamSource | ResumeSource:
        """A source for `music` in `mode`: the running stream, or this caller's own place."""
        if mode not in MODES:
            raise MusicError(f"unknown music mode {mode!r}")
        self.stop()
        src: StreamSource | ResumeSource
        if mode == "stream":
            src = StreamSource(payloads, clock)
        else:
            src = ResumeSource(payloads, self.positions.get(music, 0))
        self.playing = (music, mode, src)
        return src

    def stop(self) -> StreamSource | ResumeSource | None:
        """Forget what plays, keeping a resume class's place; the source that played, if any."""
        if self.playing is None:
            return None
        music, mode, src = self.playing
        self.playing = None
        if isinstance(src, ResumeSource):
            self.positions[music] = src.pos
        return src
