"""The pocketsphinx recogniser on real audio: espeak-ng phrases sent through
mu-law like a phone line, pushed as 20 ms frames on an ordinary event loop."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from ivr.audio.g711 import ulaw_decode, ulaw_encode
from ivr.audio.tts import EspeakTts, espeak_path
from ivr.engine.call import NoSpeech, SpeechResult, SpeechStarted
from ivr.speech.vad import EnergyVad, VadEvent

pytest.importorskip("pocketsphinx")
pytestmark = pytest.mark.skipif(espeak_path() is None, reason="espeak-ng is not installed")

from ivr.speech.pocketsphinx_engine import PocketsphinxEngine, unknown_words  # noqa: E402

MENU = ["billing", "appointments", "technical support", "agent", "representative",
        "operator", "human", "person"]
FRAME = 320  # 20 ms of PCM16 at 8 kHz
OFF_MENU = ["what is the weather like tomorrow", "i want to buy a pizza", "where is my package",
            "my internet is not working", "reset my password", "i lost my credit card"]


def line(pcm: bytes, seed: int = 0) -> bytes:
    """Audio as it arrives over a G.711 call: 0.4 s of faint line hiss either side."""
    rng = np.random.default_rng(seed)
    hiss = lambda n: rng.normal(0, 20, n).astype("<i2").tobytes()  # noqa: E731
    return ulaw_decode(ulaw_encode(hiss(3200) + pcm + hiss(8000)))


async def listen(rec: PocketsphinxEngine, phrases: list[str], audio: bytes):
    """Push `audio` frame by frame and collect the session's events."""
    session = rec.open(phrases)
    assert session is not None
    events = []

    async def read():
        async for ev in session.events():
            events.append(ev)

    reader = asyncio.ensure_future(read())
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        session.push(audio[i:i + FRAME])
        if i % (FRAME * 10) == 0:
            await asyncio.sleep(0)  # let the loop breathe, as a real call would
    await asyncio.wait_for(reader, 10)
    await session.close()
    return events, session


@pytest.fixture(scope="module")
def rendered():
    async def render_all():
        tts = EspeakTts(parallel=4)
        texts = MENU + ["i would like to cancel my subscription"] + OFF_MENU
        return dict(zip(texts, await asyncio.gather(*(tts.render(t) for t in texts)), strict=True))
    return asyncio.run(render_all())


def test_menu_phrases_are_recognised(rendered):
    async def run():
        rec = PocketsphinxEngine(max_sessions=2, workers=2)
        results, audio_s, decode_s = {}, 0.0, 0.0
        for n, phrase in enumerate(MENU):
            events, session = await listen(rec, MENU, line(rendered[phrase], seed=n))
            assert isinstance(events[0], SpeechStarted), events
            assert len(events) == 2, events
            results[phrase] = events[1]
            audio_s += session.audio_seconds
            decode_s += session.decode_seconds
        rec.shutdown()
        return results, decode_s / audio_s
    t0 = time.perf_counter()
    results, rtf = asyncio.run(run())
    right = [p for p, ev in results.items() if isinstance(ev, SpeechResult) and ev.text == p]
    print(f"\n{len(right)}/{len(MENU)} right, real-time factor {rtf:.3f}, "
          f"{time.perf_counter() - t0:.2f} s wall")
    # Every menu phrase, end-pointed from a hissy line, must come back right.
    assert len(right) == len(MENU), results
    assert all(ev.engine == "pocketsphinx" and 0 < ev.confidence <= 1 for ev in results.values())


@pytest.fixture
def fresh_decoders():
    """A decoding pool of its own. A worker's grammar decoder gives slightly different
    answers after it has decoded other utterances (not the cepstral mean: resetting it
    does not help; still open), and this test's noise sits near the no-match edge."""
    import ivr.speech.pocketsphinx_engine as pe

    saved, saved_started = pe._processes, list(pe._started)
    pe._processes, pe._started[:] = None, []
    try:
        yield
    finally:
        if pe._processes is not None:
            pe._processes.shutdown(wait=True, cancel_futures=True)
        pe._processes, pe._started[:] = saved, saved_started


def test_noise_and_mumbling_are_no_match(rendered, fresh_decoders):
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 3000, 8000)).astype("<i2").tobytes()
    # Mumbling: a real phrase low-passed hard (a crude moving average) and quiet.
    x = np.frombuffer(rendered["i would like to cancel my subscription"], "<i2").astype(float)
    mumble = (np.convolve(x, np.ones(24) / 24, mode="same") * 0.5).astype("<i2").tobytes()

    async def run():
        rec = PocketsphinxEngine(max_sessions=1, workers=1)
        out = [await listen(rec, MENU, line(a, seed=9)) for a in (noise, mumble)]
        rec.shutdown()
        return [events for events, _ in out]
    for events in asyncio.run(run()):
        assert events == [SpeechStarted(), NoSpeech("no-match")], events


def test_off_menu_speech_is_never_taken_for_a_choice(rendered):
    """Forced onto the nearest phrase by the grammar, but the path fits badly: a
    no-match, or at most a "did you say ...?" (below the default 0.5)."""
    async def run():
        rec = PocketsphinxEngine(max_sessions=1, workers=1)
        out = [(await listen(rec, MENU, line(rendered[t], seed=n)))[0] for n, t in enumerate(OFF_MENU)]
        rec.shutdown()
        return out
    finals = [events[-1] for events in asyncio.run(run())]
    sure = [f for f in finals if isinstance(f, SpeechResult) and f.confidence >= 0.5]
    assert not sure, finals
    assert sum(isinstance(f, NoSpeech) for f in finals) >= len(OFF_MENU) // 2, finals


def test_silence_gives_no_events():
    async def run():
        rec = PocketsphinxEngine(max_sessions=1, workers=1)
        session = rec.open(MENU)
        for _ in range(100):
            session.push(line(b"")[:FRAME])
        await session.close()
        events = [ev async for ev in session.events()]
        rec.shutdown()
        return events
    assert asyncio.run(run()) == []


def test_slot_cap_makes_open_return_none():
    async def run():
        rec = PocketsphinxEngine(max_sessions=2, workers=2)
        a, b = rec.open(MENU), rec.open(MENU)
        assert a is not None and b is not None
        assert rec.open(MENU) is None  # every slot taken: the turn falls back to keys
        await a.close()
        c = rec.open(MENU)
        assert c is not None
        await b.close()
        await c.close()
        assert rec.busy == 0
        rec.shutdown()
    asyncio.run(run())


def test_unknown_words_are_reported_and_dropped():
    assert unknown_words(["billing", "talk to zorblaxian"]) == {"talk to zorblaxian": ["zorblaxian"]}
    rec = PocketsphinxEngine(max_sessions=1, workers=1)
    assert rec.open(["zorblaxian"]) is None  # nothing speakable: keys only
    assert rec.busy == 0
    rec.shutdown()


def test_vad_starts_after_100ms_and_ends_after_silence():
    vad = EnergyVad(end_ms=600)
    quiet = np.zeros(160, "<i2").tobytes()
    loud = (np.sin(np.arange(160) * 0.3) * 8000).astype("<i2").tobytes()
    seen = [vad.push(quiet) for _ in range(10)]
    seen += [vad.push(loud) for _ in range(10)]
    assert seen.index(VadEvent.START) == 10 + 4  # the fifth voiced frame: 100 ms
    ends = [vad.push(quiet) for _ in range(40)]
    assert ends.index(VadEvent.END) == 29  # 600 ms of silence
