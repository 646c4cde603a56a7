"""Black-box listening on real audio: the engine's own TTS, beep and hold music, sent through
mu-law like a phone line, with faint line hiss and 20 ms frames lost or repeated on the way."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.audio.frames import FRAME_BYTES, tone
from ivr.audio.prompts import TONES
from ivr.audio.tts import espeak_path
from ivr.harness import listen
from ivr.harness.listen import RATE, PromptSearch

needs_espeak = pytest.mark.skipif(espeak_path() is None, reason="espeak-ng is not installed")
MOH = Path(__file__).resolve().parents[3] / "media" / "moh" / "default" / "acme-theme.wav"

GREETING = "Welcome to Acme Corporation."
MENU = "For billing, press one. To talk to an agent, press two."
HOURS = "Our office hours are nine to five, Monday to Friday."


def samples(pcm: bytes) -> np.ndarray:
    return listen.pcm_array(pcm)


def line(parts: list[np.ndarray | float], seed: int = 0, hiss: float = 30.0) -> tuple[bytes, list[float]]:
    """Audio pieces (arrays) and pauses (seconds) one after the other, with line hiss, through
    mu-law; also where each piece starts, in seconds."""
    rng = np.random.default_rng(seed)
    chunks, starts, pos = [], [], 0
    for p in parts:
        chunk = np.zeros(int(p * RATE)) if isinstance(p, float) else p
        if not isinstance(p, float):
            starts.append(pos / RATE)
        chunks.append(chunk)
        pos += chunk.size
    x = np.concatenate(chunks) + rng.normal(0, hiss, pos)
    return listen.through_ulaw(np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()), starts


def jitter(pcm: bytes, drop: set[int] = frozenset(), repeat: set[int] = frozenset()) -> bytes:
    """A receiver's playout: 20 ms frames `drop`ped (lost) or played twice (`repeat`)."""
    frames = [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    out = []
    for i, f in enumerate(frames):
        if i not in drop:
            out.append(f)
            if i in repeat:
                out.append(f)
    return b"".join(out)


@pytest.fixture(scope="module")
def prompts() -> dict[str, bytes]:
    if espeak_path() is None:
        pytest.skip("espeak-ng is not installed")
    return {t: listen.render_prompt(t) for t in (GREETING, MENU, HOURS)}


@pytest.fixture(scope="module")
def call(prompts) -> tuple[bytes, float]:
    """A greeting, a pause, then the menu, received with frames lost and one repeated; and
    where the menu starts in what was received."""
    pcm, (_, menu_at) = line([1.0, samples(prompts[GREETING]), 0.7, samples(prompts[MENU]), 1.0])
    at = int(menu_at * RATE) // 160  # the menu's first frame
    drop = {at - 30, at + 70, at + 160}  # one lost before the menu, two inside it
    repeat = {at + 25}  # and one played twice, inside its first second
    return jitter(pcm, drop, repeat), menu_at - 0.02  # the frame lost before it moves it earlier


# ---- prompts ------------------------------------------------------------------------------------------

@needs_espeak
def test_a_rendered_prompt_is_the_tts_through_mu_law_and_cached(prompts):
    again = listen.render_prompt(MENU)
    assert again is prompts[MENU]  # cached by (text, language)
    assert listen.through_ulaw(again) == again  # already what a PCMU line delivers
    assert asyncio.run(listen.render_prompt_async(MENU)) is again
    assert 3.0 < len(again) / 2 / RATE < 7.0


@needs_espeak
@pytest.mark.parametrize("whole", [False, True])
def test_a_prompt_is_found_after_another_despite_mu_law_hiss_and_lost_frames(prompts, call, whole):
    pcm, menu_at = call
    search = PromptSearch(prompts[MENU])
    search.feed(pcm)
    found = search.find(whole=whole)
    assert found is not None
    assert found.score > 0.8  # measured 0.86 (first 2 s) and 0.95 (whole)
    assert abs(found.start_s - menu_at) <= 0.05
    length = len(prompts[MENU]) / 2 / RATE
    assert abs(found.end_s - (menu_at + length)) <= 0.1  # two frames lost in it, one repeated
    assert search.match == found and search.find(whole=whole) == found  # found once, kept


@needs_espeak
def test_the_whole_prompt_needs_every_part_of_it(prompts, call):
    """Only the menu's first half was played (the call was cut): found by its start, not whole."""
    pcm, menu_at = call
    cut = pcm[: int((menu_at + 2.6) * RATE) * 2]
    search = PromptSearch(prompts[MENU])
    search.feed(cut)
    assert search.find(whole=True) is None
    assert search.find() is not None


@needs_espeak
def test_a_whole_prompt_that_ends_the_call_is_found_once_the_call_is_over(prompts):
    """The IVR hung up as the prompt ended: no audio after it, so only `finish` lets it be judged."""
    pcm, (menu_at,) = line([0.5, samples(prompts[MENU])])
    search = PromptSearch(prompts[MENU])
    search.feed(pcm)
    assert search.find(whole=True) is None and not search.ended
    search.finish()
    found = search.find(whole=True)
    assert search.ended and found is not None and found.score > 0.8
    assert abs(found.start_s - menu_at) <= 0.05
    cut = PromptSearch(prompts[MENU])  # and a prompt cut short is still not whole
    cut.feed(pcm[: len(pcm) * 2 // 3 // 2 * 2])
    cut.finish()
    assert cut.find(whole=True) is None


@needs_espeak
def test_a_prompt_that_was_not_played_is_not_found(prompts, call):
    pcm, _ = call
    search = PromptSearch(prompts[HOURS])
    search.feed(pcm)
    assert search.find() is None and search.find(whole=True) is None
    assert search.best < 0.3  # measured 0.14


@needs_espeak
def test_nothing_before_start_counts(prompts, call):
    pcm, menu_at = call
    greeting = PromptSearch(prompts[GREETING], None)  # None: the default threshold
    greeting.feed(pcm)
    assert greeting.threshold == 0.6
    assert abs(greeting.find().start_s - 1.0) <= 0.05
    late = PromptSearch(prompts[GREETING], start=int(menu_at * RATE))
    late.feed(pcm)
    assert late.find() is None


@needs_espeak
def test_feeding_a_quarter_second_at_a_time_finds_what_one_shot_finds(prompts, call):
    pcm, menu_at = call
    one = PromptSearch(prompts[MENU])
    one.feed(pcm)
    expected = one.find()
    search, found, fed = PromptSearch(prompts[MENU]), None, 0
    step = RATE // 4 * 2
    while found is None and fed < len(pcm):
        search.feed(pcm[fed:fed + step])
        fed += step
        found = search.find()
    assert found is not None
    assert found.start_s == pytest.approx(expected.start_s, abs=1e-9)
    assert found.score == pytest.approx(expected.score, abs=1e-6)
    # Known as soon as its first two seconds (plus the slack) have been heard.
    assert fed / 2 / RATE <= menu_at + PromptSearch.HEAD_S + PromptSearch.SLACK_S + 0.25 + 0.02


def test_a_minute_of_audio_fed_every_quarter_second_costs_little():
    """Each `find` correlates only what arrived since the last one (plus the prompt's length)."""
    rng = np.random.default_rng(5)
    template = (rng.normal(0, 3000, 4 * RATE)).astype("<i2").tobytes()
    audio = (rng.normal(0, 3000, 60 * RATE)).astype("<i2").tobytes()
    search = PromptSearch(template)
    step = RATE // 4 * 2
    started, worst = time.perf_counter(), 0.0
    for i in range(0, len(audio), step):
        search.feed(audio[i:i + step])
        t = time.perf_counter()
        assert search.find() is None
        worst = max(worst, time.perf_counter() - t)
    assert time.perf_counter() - started < 5.0  # measured 0.4 s for the 240 calls
    assert worst < 0.5
    assert search.seconds == 60.0


@needs_espeak
def test_one_shot_alignment_the_interop_tests_use(prompts, call):
    pcm, menu_at = call
    greeting = listen.align(pcm, prompts[GREETING])
    assert greeting.score > 0.95 and abs(greeting.offset - 1.0) <= 0.01
    menu = listen.find_pieces(pcm, prompts[MENU])
    assert abs(menu.offset - menu_at) <= 0.05
    assert menu.score > 0.9 > menu.whole  # the slips cost the whole-prompt score, not the pieces'
    assert listen.score_at(pcm, prompts[MENU], menu.offset) == pytest.approx(menu.whole)
    assert listen.find_pieces(pcm, prompts[HOURS]).score < 0.3


def test_ncc_scores_partial_overlaps_and_silence():
    rng = np.random.default_rng(1)
    t = rng.normal(0, 1000, 800)
    rec = np.concatenate([np.zeros(500), t, np.zeros(300)])
    scores = listen.ncc(rec, t)
    assert scores.size == rec.size + t.size - 1
    assert int(np.argmax(scores)) - (t.size - 1) == 500
    assert scores.max() == pytest.approx(1.0)
    assert listen.ncc(np.zeros(2000), t).max() == 0.0  # silence is no match


# ---- sound, music, beep ---------------------------------------------------------------------------------

@needs_espeak
def test_speech_spans_separate_prompts_by_their_pause(prompts, call):
    pcm, menu_at = call
    spans = listen.speech_spans(pcm)
    assert spans[0][0] == pytest.approx(1.0, abs=0.08)  # the greeting
    menu_spans = [s for s in spans if s[0] >= menu_at - 0.1]
    assert menu_spans and menu_spans[0][0] == pytest.approx(menu_at, abs=0.08)
    assert spans[-1][1] < len(pcm) / 2 / RATE - 0.5  # the trailing hiss is silence
    assert listen.speech_spans(line([2.0])[0]) == []  # hiss only


def moh() -> np.ndarray:
    return samples(listen.load_wav(MOH))


def test_hold_music_is_music_for_as_long_as_it_plays():
    music = moh()[: 6 * RATE]
    pcm, _ = line([1.0, music, 1.0], seed=2)
    span = listen.music_span(pcm)
    assert span == pytest.approx(6.0, abs=0.1)
    assert listen.is_music(pcm, 2.0) and not listen.is_music(pcm, 7.0)
    assert listen.music_span(line([3.0])[0]) == 0.0  # hiss is not music


@needs_espeak
def test_spoken_prompts_are_not_music(prompts):
    long_sentence = listen.render_prompt("Please enter your account number followed by the pound key")
    for text, pcm in [*prompts.items(), ("long", long_sentence)]:
        span = listen.music_span(line([0.5, samples(pcm), 0.5])[0])
        assert span < 1.0, (text, span)  # measured at most 0.5 s


@needs_espeak
def test_music_right_after_a_prompt_is_measured_on_its_own():
    hold = samples(listen.render_prompt("Please hold while we transfer your call"))
    pcm, _ = line([hold, 0.2, moh()[: 5 * RATE]], seed=3)
    assert listen.music_span(pcm) == pytest.approx(5.0, abs=0.3)


def test_the_music_heard_is_recognised_as_the_reference_file():
    ref = moh()
    looped = np.concatenate([ref[15 * RATE:], ref[: 5 * RATE]])  # the loop wrapping round
    pcm, _ = line([looped], seed=4)
    assert listen.reference_score(pcm, listen.load_wav(MOH)) > 0.95
    assert listen.matches_reference(pcm, ref)
    rng = np.random.default_rng(4)
    other = np.concatenate([np.sin(2 * np.pi * f * np.arange(RATE) / RATE) * 6000
                            for f in rng.choice([262, 330, 392, 523], 6)])
    assert not listen.matches_reference(line([other])[0], ref)


def engine_beep() -> np.ndarray:
    freqs, seconds = TONES["tone:beep"]  # what the voicemail node plays
    return samples(tone(freqs, seconds))


@needs_espeak
def test_the_engines_beep_is_found_where_it_starts():
    greeting = samples(listen.render_prompt("Please leave a message after the tone."))
    pcm, (_, beep_at) = line([0.5, greeting, 0.3, engine_beep(), 2.0], seed=6)
    pcm = jitter(pcm, drop={20})  # a frame lost before it
    at = listen.find_beep(pcm)
    assert at is not None and abs(at - (beep_at - 0.02)) <= 0.03
    assert listen.find_beep(pcm, start=at + 0.5) is None
    assert listen.find_beep(pcm[: int(at * RATE) * 2]) is None  # the greeting alone: no beep


@needs_espeak
def test_speech_music_and_dual_tones_are_no_beep(prompts):
    for pcm in prompts.values():
        assert listen.find_beep(line([0.3, samples(pcm), 0.3])[0]) is None
    assert listen.find_beep(line([moh()[: 6 * RATE]])[0]) is None
    dtmf = samples(tone((697.0, 1209.0), 0.3))  # the key 1
    ringback = samples(tone((440.0, 480.0), 1.0))
    assert listen.find_beep(line([0.2, dtmf, 0.2, ringback, 0.2])[0]) is None
    short = samples(tone((1000.0,), 0.1))
    assert listen.find_beep(line([0.2, short, 0.5])[0]) is None  # a blip of tone is not a beep
    assert listen.find_beep(line([0.2, samples(tone((700.0,), 0.2)), 0.5])[0]) == pytest.approx(0.2, abs=0.03)


# ---- words ----------------------------------------------------------------------------------------------

def test_similarity_compares_words():
    assert listen.similarity("For billing, press 1.", "for billing press one") == 1.0
    assert listen.similarity("Talk to an agent", "talk to an egg and") == pytest.approx(6 / 9)
    assert listen.similarity("billing", "our office hours") == 0.0
    assert listen.similarity("", "") == 1.0 and listen.similarity("billing", "") == 0.0


@needs_espeak
def test_transcription_of_a_prompt_is_close_to_its_text():
    pytest.importorskip("pocketsphinx")
    for text in ("Please leave a message after the tone.", "Thank you for calling Acme."):
        pcm, _ = line([0.5, samples(listen.render_prompt(text)), 0.8])
        heard = listen.transcribe(pcm)
        assert listen.similarity(text, heard) >= 0.5, heard  # measured 1.0 and 0.55
        assert listen.similarity(HOURS, heard) <= 0.2, heard  # measured 0.0
    assert listen.transcribe(line([1.0])[0]) == ""  # hiss: nothing said
    assert listen.transcribe(pcm, "fr-FR") == ""  # English only


@needs_espeak
def test_transcription_runs_off_the_event_loop():
    pytest.importorskip("pocketsphinx")
    text = "Please leave a message after the tone."
    pcm, _ = line([0.3, samples(listen.render_prompt(text)), 0.5])

    async def go() -> tuple[str, str]:
        return (await listen.transcribe_async(pcm, processes=False),
                await listen.transcribe_async(pcm))  # in the engine's decoding processes

    in_thread, in_process = asyncio.run(go())
    assert in_thread == in_process == listen.transcribe(pcm)


# ---- files and quality ----------------------------------------------------------------------------------

def test_load_wav_gives_8khz_mono(tmp_path):
    t = np.arange(16000) / 16000
    left = (np.sin(2 * np.pi * 600 * t) * 8000).astype("<i2")
    stereo = np.stack([left, left], axis=1).tobytes()
    path = tmp_path / "wide.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(stereo)
    x = samples(listen.load_wav(path))
    assert x.size == RATE
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) * RATE / x.size == pytest.approx(600, abs=2)


def test_mos_estimate_is_a_rough_proxy_that_drops_with_damage():
    music = moh()[: 6 * RATE]
    clean, _ = line([0.5, music, 0.5])
    assert listen.mos_estimate(clean) > 4.0
    holes = samples(clean).copy()
    for s in range(RATE, 6 * RATE, RATE // 5):  # 20 ms of nothing five times a second
        holes[s:s + 160] = 0
    damaged = listen.mos_estimate(holes.astype("<i2").tobytes())
    clipped = listen.mos_estimate(np.clip(samples(clean) * 8, -32768, 32767).astype("<i2").tobytes())
    noisy = listen.mos_estimate(line([0.5, music, 0.5], hiss=800)[0])
    assert damaged < 3.5 and clipped < 3.5 and noisy < listen.mos_estimate(clean)
    assert min(damaged, clipped, noisy) >= 1.0


def test_music_is_judged_on_audio_shorter_than_the_talk_window():
    # A quarter of a second of a tone: too short to tell, and no error for being short.
    t = np.arange(2000) / 8000
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()
    assert listen.music_span(pcm) <= 0.25
    assert listen.music_span(b"") == 0.0
