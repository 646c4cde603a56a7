"""The shared session with a scripted decoder: what reaches the turn."""

from __future__ import annotations

import asyncio

import numpy as np

from ivr.engine.call import NoSpeech, SpeechResult, SpeechStarted
from ivr.speech.base import Engine, Hypothesis

FRAME = 320


class Scripted:
    """An utterance whose answer is fixed in advance."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def feed(self, pcm: bytes) -> None:
        pass

    def result(self) -> Hypothesis:
        return Hypothesis(self.answer, 0.9)

    def release(self) -> None:
        pass


class ScriptedEngine(Engine):
    name = "scripted"

    def __init__(self, answer: str) -> None:
        super().__init__(max_sessions=2, workers=1)
        self.answer = answer

    def _utterance(self, phrases, sample_rate):
        return Scripted(self.answer)


def hear(answer: str, phrases: list[str]) -> list:
    async def run():
        eng = ScriptedEngine(answer)
        session = eng.open(phrases)
        loud = (np.sin(np.arange(160) * 0.3) * 8000).astype("<i2").tobytes()
        quiet = np.zeros(160, "<i2").tobytes()
        for frame in [quiet] * 10 + [loud] * 20 + [quiet] * 40:
            session.push(frame)
        events = [ev async for ev in session.events()]
        await session.close()
        eng.shutdown()
        return events
    return asyncio.run(run())


def test_a_phrase_inside_a_longer_answer_is_the_phrase_as_spelled():
    assert hear("no billing", ["Billing", "sales"]) == [SpeechStarted(), SpeechResult("Billing", 0.9, (), "scripted")]


def test_an_answer_holding_no_phrase_is_a_no_match():
    assert hear("hello there", ["billing", "sales"]) == [SpeechStarted(), NoSpeech("no-match")]
