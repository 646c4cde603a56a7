"""The caller's audio: aiortc's frames (48 kHz stereo Opus, 8 kHz PCMU, 16 kHz G.722) as the
engine's 20 ms 8 kHz frames, with no seam between frames and no alias of what 8 kHz cannot hold."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from av import AudioFrame

from ivr.audio.dtmf_detect import DBM0_AMPLITUDE
from ivr.audio.frames import FRAME_BYTES
from ivr.engine.vtime import run_virtual
from ivr.webrtc.inbound import FrameCutter, Inbound, lowpass


def frames_of(x: np.ndarray, rate: int, channels: int = 1, fmt: str = "s16") -> list[AudioFrame]:
    """`x` (mono float samples) as aiortc would deliver it: 20 ms frames, packed s16 or planar float."""
    step = rate // 50
    out = []
    for i in range(0, len(x) - step + 1, step):
        chunk = x[i:i + step]
        if fmt == "s16":
            data = np.repeat(np.round(chunk).astype("<i2"), channels).reshape(1, -1)
            layout = "stereo" if channels == 2 else "mono"
        else:  # fltp
            data = np.tile((chunk / 32767.0).astype(np.float32), (channels, 1))
            layout = "stereo" if channels == 2 else "mono"
        f = AudioFrame.from_ndarray(data, format=fmt, layout=layout)
        f.sample_rate = rate
        f.pts = i
        out.append(f)
    return out


def cut(frames: list[AudioFrame]) -> tuple[list[bytes], np.ndarray]:
    c = FrameCutter()
    out = [pcm for f in frames for pcm in c.push(f)]
    return out, np.frombuffer(b"".join(out), dtype="<i2").astype(np.float64)


def level_at(y: np.ndarray, freq: float, rate: int = 8000) -> float:
    """Amplitude of `freq` in `y` (a whole number of cycles in one second of signal)."""
    seg = y[800:800 + rate]
    spec = np.abs(np.fft.rfft(seg)) * 2 / seg.size
    return float(spec[int(round(freq * seg.size / rate))])


def sines(rate: int, seconds: float, *freqs: tuple[float, float]) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return sum(a * np.sin(2 * np.pi * f * t) for f, a in freqs)


@pytest.mark.parametrize("rate, channels, fmt", [(48000, 2, "s16"), (16000, 1, "s16"), (48000, 2, "fltp")])
def test_higher_rates_come_down_to_8khz_keeping_the_band_and_dropping_what_would_alias(rate, channels, fmt):
    # 1 kHz must stay; 6 kHz (above 4 kHz) would fold to 2 kHz if taken sample by sample.
    high = 6000.0 if rate > 12000 else 5000.0
    x = sines(rate, 2.0, (1000.0, 10000.0), (high, 10000.0))
    out, y = cut(frames_of(x, rate, channels, fmt))
    assert all(len(p) == FRAME_BYTES for p in out)
    assert len(out) == 100
    assert level_at(y, 1000.0) == pytest.approx(10000.0, rel=0.01)
    assert level_at(y, 8000.0 - high) < 30.0  # at least 50 dB down


def test_8khz_audio_passes_unchanged():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(0, 3000, 8000))
    out, y = cut(frames_of(x, 8000))
    assert np.array_equal(y, x)


def test_frame_by_frame_is_the_same_as_all_at_once():
    """The filter carries its history across frames: cutting the input into 20 ms frames
    changes nothing (a per-frame resampler would leave a seam every 20 ms)."""
    x = sines(48000, 1.0, (440.0, 8000.0), (3000.0, 4000.0))
    _, y = cut(frames_of(x, 48000))
    h = lowpass(6)
    whole = np.convolve(np.concatenate([np.zeros(len(h) - 1), x]), h, mode="valid")[::6]
    assert np.max(np.abs(y - np.round(whole[:y.size]))) <= 1.0


def test_a_filter_for_each_step():
    for f in (2, 6):
        h = lowpass(f)
        assert len(h) == 16 * f and np.sum(h) == pytest.approx(1.0)
        assert np.allclose(h, h[::-1])


def test_listeners_get_every_frame_and_inband_keys_are_reported():
    keys: list[tuple[str, str]] = []

    async def main():
        inbound = Inbound(lambda d, via: keys.append((d, via)))
        got: list[bytes] = []

        async def listen():
            async for f in inbound.frames():
                got.append(f)

        task = asyncio.ensure_future(listen())
        await asyncio.sleep(0)
        key5 = sines(8000, 0.1, (770.0, DBM0_AMPLITUDE / 3), (1336.0, DBM0_AMPLITUDE / 3))  # -10 dBm0 each
        pcm = np.concatenate([np.zeros(800), key5, np.zeros(800)])
        data = np.round(pcm).astype("<i2").tobytes()
        for i in range(0, len(data) - FRAME_BYTES + 1, FRAME_BYTES):
            inbound.deliver(data[i:i + FRAME_BYTES])
        await asyncio.sleep(0)
        await inbound.close()  # the call is over: the listener's iterator ends
        await asyncio.wait_for(task, 1)
        return got, inbound.frames_in

    got, n = run_virtual(main())
    assert len(got) == n == 15
    assert keys == [("5", "inband")]


def test_the_track_is_read_until_it_ends():
    class Track:
        def __init__(self, frames):
            self.frames = list(frames)

        async def recv(self):
            await asyncio.sleep(0.02)
            if not self.frames:
                raise RuntimeError("track ended")
            return self.frames.pop(0)

    async def main():
        inbound = Inbound(lambda d, via: None)
        listener = inbound.frames()
        first = asyncio.ensure_future(listener.__anext__())
        inbound.start(Track(frames_of(sines(48000, 0.2, (500.0, 1000.0)), 48000, 2)))
        await first
        rest = [f async for f in listener]
        after = [f async for f in inbound.frames()]  # the track is gone: nothing more will come
        await inbound.close()
        return 1 + len(rest), after

    n, after = run_virtual(main())
    assert n == 10 and after == []  # ten frames in, ten out
