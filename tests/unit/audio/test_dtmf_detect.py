"""In-band DTMF: every key at several levels and durations, through G.711, with and without
noise; one digit per press; no digits from speech-like sound, speech, or the hold music."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.audio.dtmf_detect import (
    BLOCK,
    COL_FREQS,
    DBM0_AMPLITUDE,
    DIGITS,
    KEYPAD,
    ROW_FREQS,
    InbandDtmfDetector,
    goertzel_power,
)
from ivr.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

RATE = 8000
ROOT = Path(__file__).resolve().parents[3]
MUSIC = ROOT / "media" / "moh" / "default" / "acme-theme.wav"
SIPP_ALAW_PCAP = Path("/usr/share/sip-tester/g711a.pcap")


# --- signal helpers ---------------------------------------------------------------------------


def key_freqs(key: str) -> tuple[float, float]:
    for r, row in enumerate(KEYPAD):
        if key in row:
            return ROW_FREQS[r], COL_FREQS[row.index(key)]
    raise KeyError(key)


def amplitude(dbm0: float) -> float:
    return DBM0_AMPLITUDE * 10 ** (dbm0 / 20)


def tone(key: str, ms: float, dbm0: float = -10.0, twist_db: float = 0.0, rng=None) -> np.ndarray:
    """A DTMF tone; `twist_db` > 0 makes the high (column) tone louder than the low one."""
    low, high = key_freqs(key)
    t = np.arange(int(ms * RATE / 1000)) / RATE
    p1, p2 = rng.uniform(0, 2 * np.pi, 2) if rng is not None else (0.0, 0.0)
    a = amplitude(dbm0)
    return a * np.sin(2 * np.pi * low * t + p1) + a * 10 ** (twist_db / 20) * np.sin(
        2 * np.pi * high * t + p2
    )


def silence(ms: float) -> np.ndarray:
    return np.zeros(int(ms * RATE / 1000))


def pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def through(law: str, data: bytes) -> bytes:
    if law == "ulaw":
        return ulaw_decode(ulaw_encode(data))
    if law == "alaw":
        return alaw_decode(alaw_encode(data))
    return data


def detect(x: np.ndarray, law: str = "ulaw", chunk: int = 160, detector=None) -> str:
    """Run a signal through G.711 and the detector in frames; all digits, in order."""
    detector = detector or InbandDtmfDetector()
    data = through(law, pcm(x))
    out: list[str] = []
    for i in range(0, len(data), chunk * 2):
        out += detector.push(data[i : i + chunk * 2])
    return "".join(out)


def speech_like(seconds: float, rng: np.random.Generator, f0_lo: float, f0_hi: float):
    """Voiced sound: harmonics of a gliding pitch, shaped by moving vowel formants."""
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (660, 1720, 2410),
              (530, 1840, 2480), (640, 1190, 2390), (490, 1350, 1690), (570, 840, 2410)]  # fmt: skip
    n = int(seconds * RATE)
    knots = rng.uniform(f0_lo, f0_hi, int(seconds * 8) + 2)
    f0 = np.interp(np.arange(n), np.linspace(0, n, knots.size), knots)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    syllables = int(seconds / 0.15) + 2
    chosen = [vowels[i] for i in rng.integers(0, len(vowels), syllables)]
    formants = [
        np.interp(np.arange(n), np.linspace(0, n, syllables), [v[j] for v in chosen])
        for j in range(3)
    ]
    y = np.zeros(n)
    for h in range(1, 40):
        fh = h * f0
        gain = sum(
            (1.0 / (j + 1)) / (1 + ((fh - formants[j]) / bw) ** 2)
            for j, bw in enumerate((80, 100, 120))
        )
        y += gain * (fh < 3900) / np.sqrt(h) * np.sin(h * phase)
    y *= np.abs(np.sin(np.pi * np.arange(n) / RATE / 0.3)) ** 0.5  # syllable rhythm
    return y / np.sqrt(np.mean(y**2)) * amplitude(-15) / np.sqrt(2)


# --- the filter -------------------------------------------------------------------------------


def test_block_filters_match_the_goertzel_recursion():
    rng = np.random.default_rng(0)
    block = rng.normal(0, 3000, BLOCK)
    det = InbandDtmfDetector()
    from ivr.audio import dtmf_detect

    projections = block @ dtmf_detect._BASIS
    for i, f in enumerate(ROW_FREQS + COL_FREQS):
        matrix = projections[i] ** 2 + projections[8 + i] ** 2
        assert matrix == pytest.approx(goertzel_power(block, f), rel=1e-9)
    assert det.push(pcm(block)) == []


# --- every key, levels, durations, noise ------------------------------------------------------


@pytest.mark.parametrize("law", ["ulaw", "alaw", "linear"])
@pytest.mark.parametrize("dbm0", [0.0, -10.0, -20.0, -26.0])
@pytest.mark.parametrize("ms", [40, 65, 250])
def test_each_key_once(law, dbm0, ms):
    rng = np.random.default_rng(int(ms * 100 - dbm0))
    for key in DIGITS:
        lead = silence(rng.uniform(0, 30))  # tones start anywhere within a block
        x = np.concatenate([lead, tone(key, ms, dbm0, rng=rng), silence(60)])
        assert detect(x, law) == key, (key, law, dbm0, ms)


@pytest.mark.parametrize("snr_db", [20.0, 12.0])
def test_each_key_in_white_noise(snr_db):
    rng = np.random.default_rng(int(snr_db))
    for dbm0 in (-5.0, -20.0):
        for key in DIGITS:
            x = np.concatenate([silence(20), tone(key, 60, dbm0, rng=rng), silence(60)])
            tone_power = amplitude(dbm0) ** 2  # two sines of peak A: 2 * A^2 / 2
            x += rng.normal(0, np.sqrt(tone_power * 10 ** (-snr_db / 10)), x.size)
            assert detect(x) == key, (key, snr_db, dbm0)


def test_a_dialled_number():
    rng = np.random.default_rng(7)
    number = "0123456789*#ABCD"
    parts = [silence(13)]
    for key in number:  # the fastest dialling the standards ask for: 40 ms on, 40 ms off
        parts += [tone(key, 40, -12, rng=rng), silence(40)]
    assert detect(np.concatenate(parts)) == number


def test_one_long_press_is_one_digit():
    assert detect(np.concatenate([tone("5", 3000, -8), silence(100)])) == "5"


def test_same_key_again_after_silence_repeats():
    rng = np.random.default_rng(3)
    parts = []
    for _ in range(4):
        parts += [tone("7", 80, -15, rng=rng), silence(45)]
    assert detect(np.concatenate(parts)) == "7777"


def test_short_dropout_inside_a_press_is_bridged():
    rng = np.random.default_rng(4)
    for key in DIGITS:
        for dropout_ms in (5, 10):
            lead = silence(rng.uniform(0, 13))
            x = np.concatenate(
                [lead, tone(key, 200, rng=rng), silence(dropout_ms), tone(key, 200, rng=rng)]
            )
            assert detect(x) == key, (key, dropout_ms)


def test_key_changes_without_gap_reports_both():
    x = np.concatenate([tone("1", 100), tone("9", 100), silence(50)])
    assert detect(x) == "19"


def test_too_short_or_too_quiet_or_too_twisted_is_ignored():
    rng = np.random.default_rng(5)
    for key in DIGITS:
        assert detect(np.concatenate([silence(5), tone(key, 15, rng=rng), silence(50)])) == ""
        assert detect(np.concatenate([tone(key, 100, -40, rng=rng), silence(50)])) == ""
        # The low group 11 dB louder, or the high group 7 dB louder: beyond the twist limits.
        assert detect(tone(key, 100, -12, twist_db=-11, rng=rng)) == ""
        assert detect(tone(key, 100, -12, twist_db=7, rng=rng)) == ""


def test_twist_within_limits_is_accepted():
    rng = np.random.default_rng(6)
    for key in DIGITS:
        assert detect(tone(key, 100, -12, twist_db=-6, rng=rng)) == key
        assert detect(tone(key, 100, -12, twist_db=3, rng=rng)) == key


def test_off_frequency_within_tolerance():
    # Keypads may be 1.5 % off nominal; both tones high, then both low.
    t = np.arange(800) / RATE
    for key in DIGITS:
        low, high = key_freqs(key)
        for k in (1.015, 0.985):
            x = amplitude(-10) * (np.sin(2 * np.pi * low * k * t) + np.sin(2 * np.pi * high * k * t))
            assert detect(x) == key, (key, k)


def test_any_chunking_gives_the_same_digits():
    rng = np.random.default_rng(8)
    x = np.concatenate([tone(k, 60, -10, rng=rng) for k in "4#"] + [silence(60)])
    x = np.concatenate([x[:480], silence(50), x[480:]])
    expected = detect(x)
    assert expected == "4#"
    for chunk in (1, 7, 80, 102, 333, 4000):
        assert detect(x, chunk=chunk) == expected


def test_reset_and_bad_input():
    half = through("ulaw", pcm(tone("3", 40)))[:320]  # 20 ms of a 40 ms tone
    rest = through("ulaw", pcm(tone("3", 40)))[320:]
    det = InbandDtmfDetector()
    assert det.push(half) == [] and det.push(rest) == ["3"]
    det = InbandDtmfDetector()
    det.push(half)
    det.reset()  # forgets the first half: 20 ms alone is too short
    assert det.push(rest) == []
    with pytest.raises(ValueError):
        det.push(b"\x00")


# --- no talk-off: speech, music, noise --------------------------------------------------------


def test_silence_and_noise_give_nothing():
    rng = np.random.default_rng(9)
    assert detect(silence(2000)) == ""
    assert detect(rng.normal(0, amplitude(-10), 8000 * 5)) == ""
    assert detect(rng.normal(0, amplitude(-30), 8000 * 5)) == ""


@pytest.mark.parametrize("f0_range", [(70, 140), (85, 260), (150, 350), (200, 450)])
def test_speech_like_sound_gives_nothing(f0_range):
    rng = np.random.default_rng(f0_range[0])
    for _ in range(6):
        voice = speech_like(8.0, rng, *f0_range)
        for gain_db in (8, -5, -20):
            assert detect(voice * 10 ** (gain_db / 20)) == "", (f0_range, gain_db)


def _wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


@pytest.mark.parametrize("gain", [0.25, 1.0, 2.5])
def test_hold_music_gives_nothing(gain):
    music = _wav(MUSIC)
    assert detect(music * gain) == ""
    assert detect(music * gain, law="alaw") == ""


def test_hold_music_does_not_hide_a_key():
    # A key pressed while music plays (the caller is on hold) is still found.
    music = _wav(MUSIC)[: 8000 * 2] * 0.1
    x = music.copy()
    x[8000 : 8000 + 800] += tone("8", 100, -6)
    assert detect(x) == "8"


@pytest.mark.skipif(not SIPP_ALAW_PCAP.exists(), reason="sip-tester (SIPp) is not installed")
def test_captured_call_audio_gives_nothing():
    from ivr.sip.pcap import read_pcap_file

    payloads = [d.payload[12:] for d in read_pcap_file(SIPP_ALAW_PCAP)]
    audio = np.frombuffer(alaw_decode(b"".join(payloads)), dtype="<i2").astype(np.float64)
    assert audio.size > 8000 * 5
    for gain in (0.5, 1.0, 4.0):
        assert detect(audio * gain, law="linear") == ""
