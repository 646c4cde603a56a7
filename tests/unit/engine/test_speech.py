"""Speech through a recogniser: sessions per turn, barge-in by voice, fallback to keys."""

from __future__ import annotations

import asyncio

import pytest

from ivr.engine.call import NoSpeech, SpeechResult, SpeechStarted
from ivr.engine.turn import SPEECH_RESULT_WAIT

from .conftest import texts


class FakeSession:
    def __init__(self, phrases) -> None:
        self.phrases = phrases
        self.queue: asyncio.Queue = asyncio.Queue()
        self.closed = False

    def push(self, frame: bytes) -> None:
        pass

    async def events(self):
        while True:
            yield await self.queue.get()

    async def close(self) -> None:
        self.closed = True


class FakeRecognizer:
    """Hands out sessions the test feeds with recogniser events; or none when busy."""

    name = "fake"

    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.sessions: list[FakeSession] = []
        self.asked: list[list[str] | None] = []

    def open(self, phrases, sample_rate=8000, *, endpointing=None):
        self.endpointing = endpointing
        self.asked.append(phrases)
        if not self.available:
            return None
        self.sessions.append(FakeSession(phrases))
        return self.sessions[-1]

    def hears(self, event):
        """A script action: the current session reports `event`."""
        return lambda call: self.sessions[-1].queue.put_nowait(event)


MENU = """
start:
  kind: menu
  prompt: "Say sales or support, or press 1 or 2, or stay on the line."
  options:
    - {key: 1, say: [sales], goto: sales}
    - {key: 2, say: [support, technical support], goto: support}
sales: {kind: hangup}
support: {kind: hangup}
"""
PROMPT_S = 14 / 2.6


@pytest.fixture
def menu(sim):
    return sim.flow(MENU)


def test_each_turn_opens_a_session_with_its_phrases_and_closes_it(sim, menu):
    rec = FakeRecognizer()
    script = [(1, rec.hears(SpeechResult("pardon", 0.9))), (3, rec.hears(SpeechResult("support", 0.9)))]
    j, _, _ = sim.run(menu, script, services=sim.services(recognizer=rec))
    assert rec.asked == [["sales", "support", "technical support", "agent", "operator"]] * 2
    assert all(s.closed for s in rec.sessions)
    assert [i.result for i in j.inputs] == ["no-match", "option"]
    assert j.path == ["start", "support"]


def test_speaking_stops_the_prompt(sim, menu):
    rec = FakeRecognizer()
    script = [(1.5, rec.hears(SpeechStarted())), (1, rec.hears(SpeechResult("sales", 0.8)))]
    j, _, _ = sim.run(menu, script, services=sim.services(recognizer=rec))
    assert (j.prompts[0].interrupted, j.prompts[0].played_s) == (True, 1.5)
    [inp] = j.inputs
    assert (inp.via, inp.value, inp.confidence, inp.t) == ("speech", "sales", 0.8, 2.5)
    assert j.path == ["start", "sales"]


def test_speech_started_waits_longer_than_the_no_input_timeout(sim, menu):
    rec = FakeRecognizer()
    # The caller starts talking 1 s after the prompt and the result comes 9 s later,
    # well past the 5 s no-input timeout.
    script = [(PROMPT_S + 1, rec.hears(SpeechStarted())), (9, rec.hears(SpeechResult("support", 0.9)))]
    j, _, _ = sim.run(menu, script, services=sim.services(recognizer=rec))
    assert [i.result for i in j.inputs] == ["option"]
    assert j.path == ["start", "support"]


def test_speech_that_never_resolves_is_a_no_input_after_the_result_wait(sim, menu):
    rec = FakeRecognizer()
    j, _, _ = sim.run(menu, [(PROMPT_S + 1, rec.hears(SpeechStarted())), (30, "1")],
                      services=sim.services(recognizer=rec))
    first = j.inputs[0]
    assert first.result == "no-input"
    assert first.t == pytest.approx(PROMPT_S + 1 + SPEECH_RESULT_WAIT, abs=1e-3)


def test_no_speech_is_a_no_match(sim, menu):
    rec = FakeRecognizer()
    j, _, _ = sim.run(menu, [(1, rec.hears(NoSpeech())), (3, "2")], services=sim.services(recognizer=rec))
    assert [(i.via, i.result) for i in j.inputs] == [("speech", "no-match"), ("dtmf", "option")]
    assert "No match one." in texts(j)


def test_keys_work_when_no_recogniser_is_free(sim, menu):
    rec = FakeRecognizer(available=False)
    j, _, _ = sim.run(menu, [(1, "2")], services=sim.services(recognizer=rec))
    assert any(n["what"] == "speech-unavailable" and n["fallback"] == "dtmf" for n in j.notes)
    assert j.path == ["start", "support"]


def test_keys_only_turns_open_no_session(sim):
    flow = sim.flow(MENU.replace("  options:", "  input: dtmf\n  options:"))
    rec = FakeRecognizer()
    sim.run(flow, [(1, "1")], services=sim.services(recognizer=rec))
    assert rec.asked == []


def test_the_caller_is_told_to_use_the_keypad_when_no_recogniser_is_free(sim, menu):
    rec = FakeRecognizer(available=False)
    j, _, _ = sim.run(menu, [(1, "2")], services=sim.services(recognizer=rec))
    assert texts(j)[0] == "Please use your telephone keypad."


def test_a_speech_only_menu_takes_keys_when_no_recogniser_is_free(sim):
    flow = sim.flow(MENU.replace("  options:", "  input: speech\n  options:"))
    rec = FakeRecognizer(available=False)
    j, _, _ = sim.run(flow, [(1, "1")], services=sim.services(recognizer=rec))
    assert texts(j)[0] == "Please use your telephone keypad."
    assert j.path == ["start", "sales"]


def test_a_speech_only_menu_takes_no_keys_while_a_recogniser_listens(sim):
    flow = sim.flow(MENU.replace("  options:", "  input: speech\n  options:"))
    rec = FakeRecognizer()
    j, _, _ = sim.run(flow, [(1, "1"), (PROMPT_S, rec.hears(SpeechResult("sales", 0.9)))],
                      services=sim.services(recognizer=rec))
    assert [(i.via, i.result) for i in j.inputs] == [("speech", "option")]


def test_silence_times_out_after_the_speech_no_speech_timeout(sim):
    flow = sim.flow(MENU, extra="speech: {no_speech_timeout: 2s}\n")
    rec = FakeRecognizer()
    j, _, _ = sim.run(flow, [], services=sim.services(recognizer=rec))
    first = j.inputs[0]
    assert first.result == "no-input"
    assert first.t == pytest.approx(PROMPT_S + 2, abs=1e-3)
    assert rec.endpointing.no_speech_timeout == 2.0


def test_a_node_timeout_wins_over_the_speech_timeout(sim):
    flow = sim.flow(MENU.replace("  options:", "  timeout: 7s\n  options:"))
    rec = FakeRecognizer()
    j, _, _ = sim.run(flow, [], services=sim.services(recognizer=rec))
    assert j.inputs[0].t == pytest.approx(PROMPT_S + 7, abs=1e-3)


def test_without_a_recogniser_the_key_timeout_applies(sim, menu):
    j, _, _ = sim.run(menu, [])
    assert j.inputs[0].t == pytest.approx(PROMPT_S + 5, abs=1e-3)


def test_end_pointing_settings_reach_the_recogniser(sim):
    flow = sim.flow(MENU, extra="speech: {end_silence: 800ms, max_utterance: 20s}\n")
    rec = FakeRecognizer()
    sim.run(flow, [(1, "1")], services=sim.services(recognizer=rec))
    assert (rec.endpointing.end_silence, rec.endpointing.max_utterance) == (0.8, 20.0)


def test_a_free_speech_gather_opens_free_recognition(sim):
    flow = sim.flow("""
    start:
      kind: gather
      prompt: "Tell me briefly what it is about."
      into: topic
      speech: {free: true}
      next: done
    done: {kind: hangup}
    """)
    rec = FakeRecognizer()
    j, _, _ = sim.run(flow, [(1, rec.hears(SpeechResult("my meter is broken", 0.9)))],
                      services=sim.services(recognizer=rec))
    assert rec.asked == [None]
    assert j.variables["topic"] == "my meter is broken"


def test_a_speech_gather_listens_for_its_phrases_and_the_escape(sim):
    flow = sim.flow("""
    start:
      kind: gather
      prompt: "Red or blue?"
      into: colour
      speech: {phrases: [red, blue]}
      next: done
    done: {kind: hangup}
    """)
    rec = FakeRecognizer()
    sim.run(flow, [(1, rec.hears(SpeechResult("blue", 0.9)))], services=sim.services(recognizer=rec))
    assert rec.asked == [["red", "blue", "agent", "operator"]]


def test_the_confirmation_listens_for_yes_no_and_the_escape(sim, menu):
    rec = FakeRecognizer()
    script = [(1, rec.hears(SpeechResult("sales", 0.2))), (2, rec.hears(SpeechResult("yes", 0.9)))]
    j, _, _ = sim.run(menu, script, services=sim.services(recognizer=rec))
    assert rec.asked[1] == ["yes", "yeah", "correct", "right", "no", "nope", "wrong", "agent", "operator"]
    assert j.path == ["start", "sales"]
