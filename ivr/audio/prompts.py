"""Prompts as frames: decoded or spoken once, cached, shared by every call.

Text is rendered by TTS; audio files under media/ are decoded (WAV directly,
other formats through pydub and ffmpeg). Decoding runs in a small executor and
TTS in a subprocess, so the event loop never waits on either.
"""

from __future__ import annotations

import asyncio
import wave
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..engine.call import PromptAudio
from .frames import RATE, split_frames, tone
from .moh import MusicError, MusicLibrary
from .resample import resample, to_mono16
from .tts import EspeakTts, TtsError

Frames = tuple[bytes, ...]
TONES = {"tone:beep": ((1000.0,), 0.4)}


class PromptError(RuntimeError):
    """A prompt that cannot be turned into audio."""


def decode_file(path: str) -> bytes:
    """Any audio file to PCM16 mono 8 kHz (blocking: call it in an executor)."""
    p = Path(path)
    if p.suffix.lower() == ".wav":
        try:
            with wave.open(str(p)) as w:
                raw = w.readframes(w.getnframes())
                return resample(to_mono16(raw, w.getnchannels(), w.getsampwidth()), w.getframerate(), RATE)
        except wave.Error:
            pass  # a WAV that wave can't read (mu-law, float): let ffmpeg try
    try:
        from pydub import AudioSegment
    except ImportError as exc:  # pragma: no cover - pydub is a dependency
        raise PromptError(f"cannot decode {p.name}: pydub is not installed") from exc
    try:
        seg = AudioSegment.from_file(str(p))
    except Exception as exc:
        raise PromptError(f"cannot decode {p}: {exc}") from exc
    raw = seg.raw_data
    return resample(to_mono16(raw, seg.channels, seg.sample_width), seg.frame_rate, RATE)


class PromptCache:
    """Frames for prompts, keyed by text+language or by file path (LRU bounded)."""

    def __init__(self, tts: EspeakTts | None = None, max_items: int = 2000, workers: int = 2) -> None:
        self.tts = tts
        self.max_items = max_items
        self._items: OrderedDict[tuple, Frames] = OrderedDict()
        self._pending: dict[tuple, asyncio.Future] = {}
        self._encoded: dict[tuple, tuple[bytes, ...]] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prompt-decode")
        self.misses = 0
        self.moh = MusicLibrary(self._decode)

    @staticmethod
    def key(prompt: PromptAudio) -> tuple:
        if prompt.id and prompt.id in TONES:
            return ("tone", prompt.id)
        if prompt.audio:
            return ("file", prompt.audio)
        return ("tts", prompt.text or "", prompt.language.lower())

    async def frames(self, prompt: PromptAudio) -> Frames:
        """The prompt's 20 ms frames; concurrent requests for one prompt render it once."""
        key = self.key(prompt)
        got = self._items.get(key)
        if got is not None:
            self._items.move_to_end(key)
            return got
        fut = self._pending.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._render(key, prompt))
            self._pending[key] = fut
            fut.add_done_callback(lambda _f, k=key: self._pending.pop(k, None))
        return await asyncio.shield(fut)

    async def _render(self, key: tuple, prompt: PromptAudio) -> Frames:
        self.misses += 1
        if key[0] == "tone":
            freqs, secs = TONES[key[1]]
            pcm = tone(freqs, secs)
        elif key[0] == "file":
            pcm = await asyncio.get_running_loop().run_in_executor(self._pool, decode_file, key[1])
        else:
            if not prompt.text:
                raise PromptError("a prompt with neither text nor audio")
            if self.tts is None:
                raise PromptError(f"no TTS installed to speak: {prompt.text[:40]!r}")
            try:
                pcm = await self.tts.render(prompt.text, prompt.language)
            except TtsError as exc:
                raise PromptError(str(exc)) from exc
        frames = split_frames(pcm)
        self._items[key] = frames
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return frames

    async def payloads(self, prompt: PromptAudio, codec) -> tuple[bytes, ...]:
        """The prompt encoded for `codec` (e.g. G.711), encoded once and shared by all calls."""
        key = (self.key(prompt), codec.name)
        got = self._encoded.get(key)
        if got is None:
            frames = await self.frames(prompt)
            got = tuple(codec.encode(f) for f in frames)
            self._encoded[key] = got
            if len(self._encoded) > 2 * self.max_items:
                self._encoded.pop(next(iter(self._encoded)))
        return got

    async def music(self, folder: str, codec) -> tuple[bytes, ...]:
        """Every audio file of a music-on-hold class, in name order, as one encoded loop.

        The class is decoded once (see ivr.audio.moh.MusicLibrary) and its
        encoding for `codec` is one tuple shared by every call on hold."""
        try:
            return await self.moh.payloads(folder, codec)
        except MusicError as exc:
            raise PromptError(str(exc)) from exc

    async def _decode(self, path: str) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(self._pool, decode_file, path)

    async def settle(self, timeout: float) -> None:
        """Let renders in progress finish (at most `timeout` seconds). A text-to-speech
        subprocess cancelled while asyncio still connects its pipes can hang the loop's
        shutdown, so renders are finished rather than cancelled when the server stops."""
        pending = list(self._pending.values())
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
