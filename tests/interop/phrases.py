"""What a caller says, as a softphone's microphone file: espeak-ng phrases on a noisy line.

A speech test needs a caller who talks at a known moment. baresip plays its
microphone WAV from the start of the call and hangs up when the file ends, so
a mic file here is: a faint line noise for `lead` seconds, the utterance, then
faint line noise long enough to outlast the call. The noise matters: a line of
exact digital silence is not what a phone sends, and it makes recognisers flip.

Utterances:

- `phrase`: espeak-ng (`-v en-us -s 150`) resampled to 8 kHz PCM16 with sox,
  as docs in ../shared/PEERS.md describe;
- `mumble`: speech-like noise that holds no words: brown noise, band-limited
  to the voice band, amplitude-modulated at a syllable rate of about 4 Hz,
  at the loudness of the rendered phrases. The VAD takes it for talk; the
  recogniser must not turn it into a menu choice.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio_match import RATE, pcm_array

__all__ = ["MicFile", "line_noise", "mic_file", "mumble", "phrase", "voiced_onset", "write_wav"]

# Faint line noise: RMS about 12 (-69 dBFS). Far below the VAD's -45 dBFS floor for voice.
NOISE_RMS = 12.0
# Loudness of the caller's speech, RMS of the voiced part (espeak renders near this level).
SPEECH_RMS = 3000.0


@dataclass(frozen=True)
class MicFile:
    """A microphone WAV and when the utterance in it starts and ends (seconds from its start)."""

    path: Path
    onset: float  # first voiced 20 ms frame of the utterance
    end: float  # end of the utterance's last voiced frame
    duration: float  # of the whole file


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Mono PCM16 WAV from float samples (clipped)."""
    pcm = np.clip(np.round(samples), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2), path
        return pcm_array(w.readframes(w.getnframes()))


def phrase(text: str, workdir: Path) -> np.ndarray:
    """`text` spoken by espeak-ng (en-us, 150 wpm) as 8 kHz samples, silence trimmed off both ends."""
    for program in ("espeak-ng", "sox"):
        if shutil.which(program) is None:
            raise RuntimeError(f"{program} is not installed")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        wide, narrow = Path(tmp) / "x_22k.wav", Path(tmp) / "x_8k.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wide), text], check=True,
                       capture_output=True, timeout=30)
        subprocess.run(["sox", str(wide), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                        str(narrow)], check=True, capture_output=True, timeout=30)
        x = read_wav(narrow)
    start, end = _voiced_span(x)
    return x[start:end]


def mumble(seconds: float, seed: int = 7) -> np.ndarray:
    """Wordless speech-like noise: voice-band brown noise with a ~4 Hz syllable envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    brown = np.cumsum(rng.normal(0.0, 1.0, n))
    # Band-limit to roughly 150-1200 Hz (a muffled voice), in the frequency domain.
    spec = np.fft.rfft(brown - brown.mean())
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spec[(freqs < 150) | (freqs > 1200)] = 0
    band = np.fft.irfft(spec, n)
    # Syllables: a rate wandering around 4 Hz, raised-cosine bursts with short gaps.
    t = np.arange(n) / RATE
    rate = 4.0 + 0.8 * np.sin(2 * np.pi * 0.37 * t + rng.uniform(0, 6.28))
    phase = 2 * np.pi * np.cumsum(rate) / RATE
    envelope = np.clip(np.sin(phase), 0.0, None) ** 0.7
    # Louder and quieter syllables, like stress.
    stress = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6.28)))
    out = band * envelope * stress
    # Fade in and out over 30 ms.
    ramp = min(n // 2, int(0.03 * RATE))
    if ramp:
        fade = np.linspace(0.0, 1.0, ramp)
        out[:ramp] *= fade
        out[-ramp:] *= fade[::-1]
    voiced = out[envelope > 0.3]
    level = float(np.sqrt(np.mean(voiced * voiced))) if voiced.size else 1.0
    return out * (SPEECH_RMS / max(level, 1e-9))


def line_noise(seconds: float, seed: int = 1, rms: float = NOISE_RMS) -> np.ndarray:
    """Faint white noise: a quiet phone line rather than digital silence."""
    return np.random.default_rng(seed).normal(0.0, rms, int(seconds * RATE))


def _voiced_span(x: np.ndarray, frame: int = RATE // 50, threshold_dbfs: float = -45.0) -> tuple[int, int]:
    """First and last sample of the 20 ms frames louder than `threshold_dbfs`."""
    n = x.size // frame
    if n == 0:
        return 0, x.size
    frames = x[: n * frame].reshape(n, frame)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    loud = np.nonzero(20 * np.log10(np.maximum(rms, 1e-3) / 32768.0) > threshold_dbfs)[0]
    if loud.size == 0:
        return 0, 0
    return int(loud[0]) * frame, int(loud[-1] + 1) * frame


def voiced_onset(x: np.ndarray) -> float:
    """Seconds to the first voiced 20 ms frame of `x`."""
    return _voiced_span(x)[0] / RATE


def mic_file(path: Path, utterance: np.ndarray | None, lead: float = 1.5, total: float = 60.0,
             seed: int = 1) -> MicFile:
    """Write the microphone: line noise, the utterance at `lead` seconds, line noise up to `total`.

    `utterance` None gives line noise only (a caller who says nothing)."""
    body = np.zeros(0) if utterance is None else np.asarray(utterance, dtype=np.float64)
    start = int(lead * RATE)
    n = max(int(total * RATE), start + body.size + RATE)
    x = line_noise(n / RATE, seed)
    x[start:start + body.size] += body
    write_wav(path, x)
    if utterance is None:
        return MicFile(path, float("nan"), float("nan"), n / RATE)
    first, last = _voiced_span(body)
    return MicFile(path, (start + first) / RATE, (start + last) / RATE, n / RATE)
