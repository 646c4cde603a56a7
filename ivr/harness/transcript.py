"""Words: what was said on the line, and how close it is to what was expected.

`transcribe` runs pocketsphinx's free-speech English model over what was
heard and `similarity` compares words. This is the fallback when the audio is
not known sample for sample, and it is rough: the model is wideband and phone
audio stops at 4 kHz (see `transcribe`).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import re

import numpy as np

from .pcm import RATE, pcm_array
from .sounds import frame_levels, sound_threshold, speech_spans

log = logging.getLogger("ivr.harness")


# ---- words --------------------------------------------------------------------------------------------

TRANSCRIBE_NOISE = 150.0  # noise added before decoding (at 16 kHz); see `transcribe`
# Speech is brought to this level (90th percentile of its frames) first; None: decoded as heard.
TRANSCRIBE_LEVEL_DBFS: float | None = -15.0
TRANSCRIBE_GAP_S = 0.5  # pauses longer than this split the audio into separately decoded parts
TRANSCRIBE_PAD_S = 0.1  # of silence kept around each part
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def transcribe(pcm: bytes | np.ndarray, language: str = "en-US") -> str:
    """What was said, in words, by pocketsphinx's free-speech English model (blocking).

    Rough by nature: the model is wideband and sees 4 kHz phone audio. Measured
    on the engine's TTS through mu-law over fifteen typical prompts, the mean
    `similarity` to the text is about 0.46: "please leave a message after the
    tone" comes out exactly, "thank you for calling Acme" as "thank you for
    calling at me", but single words such as "billing" (heard as "really")
    and "talk to an agent" mostly not. Faint noise is added before decoding
    (exact digital silence makes pocketsphinx erratic, and this level scored
    best), the audio is first brought to one level so that the noise means
    the same for every IVR, and each stretch of sound is decoded on its own
    with the long silences left out. Languages other than English, or no pocketsphinx,
    give "" (and a warning in the log)."""
    if not language.lower().startswith("en"):
        log.warning("transcription is English only (pocketsphinx); nothing transcribed for %s", language)
        return ""
    from ivr.speech import pocketsphinx_engine as ps

    if not ps.available():
        log.warning("pocketsphinx is not installed; nothing transcribed")
        return ""
    x = pcm_array(pcm)
    levels = frame_levels(x)
    spans = speech_spans(x, min_gap=TRANSCRIBE_GAP_S)
    if not spans:
        return ""
    loud = levels[levels > sound_threshold(levels)]
    if loud.size and TRANSCRIBE_LEVEL_DBFS is not None:
        gain = 10.0 ** ((TRANSCRIBE_LEVEL_DBFS - float(np.percentile(loud, 90))) / 20.0)
        x = x * float(np.clip(gain, 0.1, 30.0))
    words = []
    for i, (a, b) in enumerate(spans):
        lo = max(0, int((a - TRANSCRIBE_PAD_S) * RATE))
        hi = min(x.size, int((b + TRANSCRIBE_PAD_S) * RATE))
        part = np.clip(np.round(x[lo:hi]), -32768, 32767).astype("<i2").tobytes()
        text = ps.decode_pcm8k(None, part, RATE, TRANSCRIBE_NOISE, i).text
        if text:
            words.append(text)
    return " ".join(words)


async def transcribe_async(pcm: bytes | np.ndarray, language: str = "en-US", *, processes: bool = True) -> str:
    """`transcribe` off the event loop.

    pocketsphinx holds the GIL while it decodes, which would stall the loop
    (and the phone's audio) in a thread, so by default the work goes to the
    engine's pool of decoding processes (started on first use, from this,
    the loop's thread). `processes=False` uses a thread (tools, tests)."""
    loop = asyncio.get_running_loop()
    data = bytes(pcm) if not isinstance(pcm, np.ndarray) else pcm
    if not processes:
        return await loop.run_in_executor(None, transcribe, data, language)
    from ivr.speech import pocketsphinx_engine as ps

    if not ps.available():
        return transcribe(data, language)  # says why, returns ""
    pool = ps.decoding_processes(max(1, min(4, os.cpu_count() or 1)))
    return await asyncio.wrap_future(pool.submit(transcribe, data, language))


def _words(text: str) -> list[str]:
    """Lower-case words without punctuation; a lone digit spelled out, as the TTS says it."""
    out = []
    for w in re.sub(r"[^\w']+", " ", text.lower()).split():
        w = w.strip("'")
        if len(w) == 1 and w.isdecimal():
            out.append(_DIGITS[int(w)])
        elif w:
            out.append(w)
    return out


def similarity(expected: str, heard: str) -> float:
    """How alike two texts are, word by word: 0..1 (difflib's ratio over the normalised words:
    twice the words in common, in order, over the words of both). Case and punctuation do
    not count; a lone digit counts as its word ("press 1" is "press one"; numbers of more
    digits are left as they are written)."""
    a, b = _words(expected), _words(heard)
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
