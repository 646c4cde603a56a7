"""The prompt cache: files decoded once (WAV directly, other formats through pydub
and ffmpeg), text spoken by espeak-ng, all as 8 kHz frames shared by every call."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.audio.frames import FRAME_BYTES, RATE, tone
from ivr.audio.g711 import PCMU
from ivr.audio.prompts import PromptCache, PromptError, decode_file
from ivr.engine.call import PromptAudio


def _wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def _peak_hz(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    spec = np.abs(np.fft.rfft(x))
    return float(np.argmax(spec) * RATE / len(x))


def test_wav_at_another_rate_is_resampled_to_8k(tmp_path):
    src = tmp_path / "a.wav"
    n = 44100
    t = np.arange(n) / 44100
    _wav(src, (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes(), 44100)
    pcm = decode_file(str(src))
    assert abs(len(pcm) / 2 / RATE - 1.0) < 0.01  # one second
    assert abs(_peak_hz(pcm) - 440) < 3


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (scripts/test installs it)")
def test_mp3_goes_through_pydub_and_ffmpeg(tmp_path):
    wav = tmp_path / "t.wav"
    _wav(wav, tone((1000.0,), 1.0, 0.5), RATE)
    mp3 = tmp_path / "t.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), str(mp3)], check=True, timeout=60)
    pcm = decode_file(str(mp3))
    assert 0.95 < len(pcm) / 2 / RATE < 1.2  # mp3 adds a little padding
    assert abs(_peak_hz(pcm) - 1000) < 5


def test_an_unreadable_file_is_a_prompt_error(tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(PromptError):
        decode_file(str(bad))


def test_each_prompt_is_rendered_once_and_shared(tmp_path):
    wav = tmp_path / "p.wav"
    _wav(wav, tone((500.0,), 0.5), RATE)

    async def go():
        cache = PromptCache(tts=None)
        prompt = PromptAudio(audio=str(wav))
        a, b = await asyncio.gather(cache.frames(prompt), cache.frames(prompt))
        enc1 = await cache.payloads(prompt, PCMU)
        enc2 = await cache.payloads(prompt, PCMU)
        cache.close()
        return a, b, enc1, enc2, cache.misses

    a, b, enc1, enc2, misses = asyncio.run(go())
    assert a is b and enc1 is enc2 and misses == 1
    assert len(a) == 25 and all(len(f) == FRAME_BYTES for f in a)
    assert len(enc1) == 25 and all(len(p) == 160 for p in enc1)


def test_text_without_tts_is_a_prompt_error():
    async def go():
        return await PromptCache(tts=None).frames(PromptAudio(text="Hello"))

    with pytest.raises(PromptError, match="no TTS"):
        asyncio.run(go())


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (scripts/test installs it)")
def test_text_is_spoken_by_espeak_at_8k():
    from ivr.audio.tts import EspeakTts

    async def go():
        return await PromptCache(tts=EspeakTts()).frames(PromptAudio(text="Press one for billing.", language="en-GB"))

    frames = asyncio.run(go())
    pcm = b"".join(frames)
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    assert 0.8 < len(frames) * 0.02 < 4.0  # a short sentence
    assert np.sqrt(np.mean(x * x)) > 300  # speech, not silence
