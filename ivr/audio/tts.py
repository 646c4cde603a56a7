"""Text to speech for text prompts: espeak-ng, run as a subprocess off the event loop."""

from __future__ import annotations

import asyncio
import io
import shutil
import wave

from .frames import RATE
from .resample import resample, to_mono16

VOICES = {"en-gb": "en-gb", "en-us": "en-us", "en": "en"}


class TtsError(RuntimeError):
    """The speech engine failed or is missing."""


def espeak_path() -> str | None:
    """The espeak-ng program, when installed."""
    return shutil.which("espeak-ng")


class EspeakTts:
    """espeak-ng renders text to 8 kHz PCM16; at most `parallel` renders at once."""

    name = "espeak-ng"

    def __init__(self, program: str | None = None, speed: int = 150, parallel: int = 2) -> None:
        self.program = program or espeak_path()
        if not self.program:
            raise TtsError("espeak-ng is not installed (apt-get install espeak-ng)")
        self.speed = speed
        self._slots = asyncio.Semaphore(parallel)

    def voice_for(self, language: str) -> str:
        lang = language.lower()
        return VOICES.get(lang) or VOICES.get(lang.split("-")[0], "en")

    async def render(self, text: str, language: str = "en-US") -> bytes:
        """PCM16 mono 8 kHz audio of `text`."""
        async with self._slots:
            proc = await asyncio.create_subprocess_exec(
                self.program, "-v", self.voice_for(language), "-s", str(self.speed), "--stdout", text,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
        if proc.returncode != 0 or not out:
            raise TtsError(f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
        return wav_to_pcm8k(out)


def wav_to_pcm8k(data: bytes) -> bytes:
    """A RIFF/WAV file's audio as PCM16 mono 8 kHz.

    espeak-ng writes the RIFF sizes as 0xFFFFFFFF when it streams to a pipe;
    `wave` copes with that as long as we read frames by count, which we do."""
    with wave.open(io.BytesIO(data)) as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes() if w.getnframes() < 0x3FFFFFFF else 10 ** 9)
    return resample(to_mono16(raw, channels, width), rate, RATE)
