"""Music on hold: classes decoded once and shared, stream positions read off the media
clock, resume positions that continue with the frame after the last one sent.

The session tests tick real RtpSessions on a real MediaClock running on a
virtual-time loop; the sessions send into fake sockets that keep every packet.
"""

from __future__ import annotations

import asyncio
import struct
import wave
from pathlib import Path
from types import SimpleNamespace

import pytest

from ivr.audio.clock import MediaClock
from ivr.audio.frames import FRAME_BYTES
from ivr.audio.g711 import PCMA, PCMU
from ivr.audio.moh import (
    CallerMusic,
    MusicError,
    MusicLibrary,
    ResumeSource,
    StreamSource,
    class_files,
    clock_frame,
)
from ivr.audio.prompts import PromptCache, PromptError
from ivr.engine.call import PromptAudio
from ivr.engine.vtime import VirtualTimeLoop
from ivr.sip.call import SipCall
from ivr.sip.media import RtpSession

SINK = ("127.0.0.1", 4000)


def _wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)


def _numbered(n: int, base: int = 0) -> tuple[bytes, ...]:
    """Payloads that say which frame they are (their first two bytes)."""
    return tuple(struct.pack("!H", base + i) + bytes(158) for i in range(n))


def _index(packet: bytes) -> int:
    return struct.unpack("!H", packet[12:14])[0]


class FakeSocket:
    """Keeps what a session sends, with the clock's burst count at the time."""

    def __init__(self, clock: MediaClock) -> None:
        self.clock = clock
        self.sent: list[tuple[int, bytes]] = []

    def sendto(self, packet: bytes, dest) -> None:
        self.sent.append((self.clock.ticks + self.clock.skipped, packet))


def _session(clock: MediaClock) -> tuple[RtpSession, FakeSocket]:
    rtp = RtpSession(clock, PCMU, SINK, dtmf_pt=101, on_dtmf=lambda d, via: None)
    sock = FakeSocket(clock)
    rtp._sock, rtp.transport = sock, SimpleNamespace(close=lambda: None)
    clock.add(rtp)
    return rtp, sock


@pytest.fixture
def vloop():
    loop = VirtualTimeLoop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


# ---- the library ------------------------------------------------------------------------------
def test_a_class_is_its_audio_files_in_name_order_decoded_once(tmp_path, vloop):
    folder = tmp_path / "jazz"
    folder.mkdir()
    _wav(folder / "b.wav", b"\x02\x00" * 320)  # two frames of sample 2
    _wav(folder / "a.wav", b"\x01\x00" * 200)  # 1.25 frames of sample 1: its last frame is padded
    (folder / "notes.txt").write_text("not audio")
    (folder / ".hidden.wav").write_bytes(b"")
    assert [p.name for p in class_files(folder)] == ["a.wav", "b.wav"]
    decoded: list[str] = []

    async def decode(path: str) -> bytes:
        decoded.append(Path(path).name)
        await asyncio.sleep(0.01)
        with wave.open(path) as w:
            return w.readframes(w.getnframes())

    lib = MusicLibrary(decode)

    async def main():
        # Ten calls put on hold at once wait for one decoding.
        loops = await asyncio.gather(*(lib.load(folder) for _ in range(10)))
        assert all(x is loops[0] for x in loops)
        return loops[0]

    music = vloop.run_until_complete(main())
    assert decoded == ["a.wav", "b.wav"] and lib.loads == 1
    assert len(music) == 4 and music.seconds == pytest.approx(0.08)
    assert music.frames[0] == b"\x01\x00" * 160
    assert music.frames[1] == b"\x01\x00" * 40 + bytes(FRAME_BYTES - 80)
    assert music.frames[2] == music.frames[3] == b"\x02\x00" * 160
    # Encoded once per codec, and every caller gets the same tuple.
    assert music.payloads(PCMU) is music.payloads(PCMU)
    assert music.payloads(PCMA) is not music.payloads(PCMU)
    assert vloop.run_until_complete(lib.payloads(folder, PCMU)) is music.payloads(PCMU)
    assert decoded == ["a.wav", "b.wav"]


def test_a_missing_or_empty_class_is_an_error_and_not_cached(tmp_path, vloop):
    cache = PromptCache()
    try:
        with pytest.raises(PromptError, match="no music class folder"):
            vloop.run_until_complete(cache.music(str(tmp_path / "nope"), PCMU))
        empty = tmp_path / "empty"
        empty.mkdir()
        with pytest.raises(PromptError, match="no audio files"):
            vloop.run_until_complete(cache.music(str(empty), PCMU))
        _wav(empty / "x.wav", b"\x05\x00" * 480)  # files added later are found
        got = vloop.run_until_complete(cache.music(str(empty), PCMU))
        assert len(got) == 3 and got is vloop.run_until_complete(cache.music(str(empty), PCMU))
    finally:
        cache.close()


def test_the_prompt_cache_plays_the_repository_class(vloop):
    cache = PromptCache()
    try:
        root = Path(__file__).resolve().parents[3] / "media" / "moh" / "default"
        got = vloop.run_until_complete(cache.music(str(root), PCMU))
        assert len(got) == 1200  # acme-theme.wav: 24 s of 20 ms frames
        assert all(len(p) == 160 for p in got)
    finally:
        cache.close()


# ---- sources ---------------------------------------------------------------------------------------
def test_the_stream_position_is_the_clock_period_count():
    clock = SimpleNamespace(ticks=0, skipped=0, slots=[{}] * 10)
    payloads = _numbered(7)
    early = StreamSource(payloads, clock)
    clock.ticks = 123
    late = StreamSource(payloads, clock)
    assert clock_frame(clock) == 12
    assert _index(b"\0" * 12 + early.next()) == _index(b"\0" * 12 + late.next()) == 12 % 7 == late.pos
    clock.skipped = 50  # a stall: the stream is where the wall clock is, not late
    assert early.pos == late.pos == (173 // 10) % 7


def test_resume_continues_with_the_frame_after_the_last_one_sent():
    music = CallerMusic()
    clock = SimpleNamespace(ticks=0, skipped=0, slots=[{}])
    payloads = _numbered(5)
    src = music.start("jazz", "resume", payloads, clock)
    sent = [src.next() for _ in range(7)]  # wraps after 5
    assert [p[1] for p in sent] == [0, 1, 2, 3, 4, 0, 1]
    assert music.stop() is src and music.positions == {"jazz": 2}
    again = music.start("jazz", "resume", payloads, clock)
    assert isinstance(again, ResumeSource) and again.next()[1] == 2
    other = music.start("rock", "resume", payloads, clock)  # starting another class stops this one
    assert music.positions == {"jazz": 3} and other.next()[1] == 0
    assert music.stop() is other and music.stop() is None
    with pytest.raises(MusicError):
        music.start("jazz", "shuffle", payloads, clock)


# ---- on a real media clock ------------------------------------------------------------------------
def test_stream_listeners_send_the_same_frame_at_the_same_tick(vloop):
    """Three calls join one stream class at different times, one leaves for a prompt and comes
    back: in every burst all send the same frame, slots of one period at most one frame apart,
    and each listener's frames follow on one from the next."""
    payloads = _numbered(300)

    async def main():
        clock = MediaClock()
        sessions = []
        for delay in (0.0, 0.37, 1.01):
            await asyncio.sleep(delay)
            rtp, sock = _session(clock)
            rtp.feed(StreamSource(payloads, clock))
            sessions.append((rtp, sock))
        await asyncio.sleep(0.5)
        rtp, _ = sessions[1]
        src = rtp.play(_numbered(10, base=1000))  # an announcement: 200 ms
        await src.done
        rtp.feed(StreamSource(payloads, clock))  # back to the running stream
        await asyncio.sleep(1.0)
        await clock.stop()
        return clock, sessions

    clock, sessions = vloop.run_until_complete(main())
    by_tick: dict[int, set[int]] = {}
    for _, sock in sessions:
        music = [(t, _index(p)) for t, p in sock.sent if _index(p) < 1000]
        for t, i in music:
            by_tick.setdefault(t, set()).add(i)
            assert i == (t // len(clock.slots)) % len(payloads)
        runs = [b[1] - a[1] for a, b in zip(music, music[1:], strict=False) if b[0] - a[0] == len(clock.slots)]
        assert runs and set(runs) == {1}
    assert all(len(v) == 1 for v in by_tick.values())
    assert len(by_tick) > 100
    # The announcement went out in full, and the listener came back to where the stream was.
    sock = sessions[1][1]
    idx = [_index(p) for _, p in sock.sent]
    first = idx.index(1000)
    assert idx[first:first + 10] == list(range(1000, 1010))
    # (The tick on which the prompt runs out sends silence: the music follows on the next.)
    after = sock.sent[first + 10:first + 12]
    assert [_index(p) for _, p in after][0] == 0xFFFF
    t, p = after[1]
    assert _index(p) == (t // len(clock.slots)) % len(payloads)


def _fake_server(music_payloads: tuple[bytes, ...]):
    async def music(name, codec):
        return music_payloads

    return SimpleNamespace(music=music, note_error=lambda text: None)


def test_a_sip_call_resumes_within_a_frame_after_an_announcement(vloop):
    """start_hold / stop_hold of a real SipCall around a prompt: the first music frame after
    the prompt is the one after the last music frame that went out."""
    payloads = _numbered(500)

    async def main():
        clock = MediaClock()
        rtp, sock = _session(clock)
        dialog = SimpleNamespace(call_id="c1", source=SimpleNamespace(addr=SINK))
        prompts = SimpleNamespace(payloads=None)
        call = SipCall(_fake_server(payloads), dialog, rtp, prompts, "a", "b")
        for _ in range(3):
            await call.start_hold("default", "resume")
            await asyncio.sleep(0.73)
            await call.stop_hold()
            await call.play(PromptAudio(pcm=bytes(FRAME_BYTES * 12)))
        await clock.stop()
        return sock, call

    sock, call = vloop.run_until_complete(main())
    idx = [_index(p) for _, p in sock.sent]
    music = [i for i in idx if i < 500]
    assert len(music) >= 3 * 36
    assert music == list(range(len(music)))  # never a restart, never a frame lost or repeated
    assert call.moh.positions == {"default": len(music)}
    # Between the stretches of music: the prompt (its twelve frames of silence), whole.
    assert idx.count(0xFFFF) >= 3 * 12
