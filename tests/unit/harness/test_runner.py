"""The journey runner against a fake line: the IVR's audio is streamed twenty times faster than
real time, each frame stamped with the time it would have arrived, so the runner's timings are
checked without a network (the interop tests do the same over real calls)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ivr.audio.tts import espeak_path
from ivr.harness import journey as jm
from ivr.harness import listen
from ivr.harness.line import Line
from ivr.harness.results import FAILED, PASSED
from ivr.harness.runner import run_journey

RATE = 8000
GREETING = "Thank you for calling Acme Energy. Calls may be recorded for training."
MENU = "For billing and payments, press 1 or say billing."
FAST = 20  # frames go out this many times faster than real time

pytestmark = pytest.mark.skipif(espeak_path() is None, reason="espeak-ng is not installed")


def silence(seconds: float) -> bytes:
    return b"\x00\x00" * int(seconds * RATE)


def hiss(pcm: bytes, seed: int = 0) -> bytes:
    x = np.frombuffer(pcm, "<i2").astype(float) + np.random.default_rng(seed).normal(0, 30, len(pcm) // 2)
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


class FakeLine(Line):
    """Streams `audio` as 20 ms frames, stamped at their nominal arrival, then hangs up if told."""

    driver = "fake"
    key_methods = ("rfc4733", "inband")

    def __init__(self, audio: bytes, hang_up_at_end: bool) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(answered_at=loop.time(), setup_s=0.01)
        self.audio, self.hang_up_at_end = audio, hang_up_at_end
        self.sent: list[tuple[str, str, float]] = []  # (digit, method, now) of keys we sent
        self.task = asyncio.ensure_future(self._stream())

    @property
    def call_id(self) -> str:
        return "fake-call"

    async def _stream(self) -> None:
        for i in range(0, len(self.audio) - 319, 320):
            # Stamped where a real-time line would have it, so time_of() reads call time.
            self.add_audio(self.audio[i:i + 320], self.answered_at + (i // 320 + 1) * 0.02)
            await asyncio.sleep(0.02 / FAST)
        if self.hang_up_at_end:
            self.ended_by_ivr("bye")

    def now(self) -> float:
        # The line's clock runs FAST times faster, as its audio does.
        return (asyncio.get_running_loop().time() - self.answered_at) * FAST

    async def send_key(self, digit: str, method: str, duration: float) -> None:
        self.sent.append((digit, method, self.now()))

    async def play(self, pcm: bytes) -> None:
        self.sent.append(("audio", "play", self.now()))

    async def hangup(self) -> None:
        self.task.cancel()


class FakePhone:
    driver = "fake"

    def __init__(self, audio: bytes, hang_up_at_end: bool = False) -> None:
        self.audio, self.hang_up_at_end = audio, hang_up_at_end
        self.lines: list[FakeLine] = []

    async def call(self, target, *, caller=None, headers=None, ring_timeout=30.0, telephone_event=True):
        line = FakeLine(self.audio, self.hang_up_at_end)
        self.lines.append(line)
        return line


def journey(tmp_path: Path, steps: str) -> jm.Journey:
    path = tmp_path / "j.yaml"
    path.write_text("journey: j\nlanguage: en-US\ntarget: sip:ivr@127.0.0.1:5060\nsteps:\n" + steps)
    (j,) = jm.load_many([path])
    return j


@pytest.fixture(scope="module")
def prompts() -> dict[str, bytes]:
    return {t: listen.render_prompt(t) for t in (GREETING, MENU)}


def test_a_prompt_after_a_prompt_recognised_by_its_start_is_timed_where_it_starts(tmp_path, prompts):
    """The greeting is recognised two seconds in, long before it ends: the menu's search must
    start where the greeting ends, not where the line had got to."""
    audio = hiss(silence(0.3) + prompts[GREETING] + silence(0.4) + prompts[MENU] + silence(1.0))
    menu_at = 0.3 + len(prompts[GREETING]) / 16000 + 0.4
    phone = FakePhone(audio)
    j = journey(tmp_path, f'  - expect_prompt: "{GREETING}"\n  - expect_prompt: "{MENU}"\n'
                          '  - press: "1"\n')
    result = asyncio.run(run_journey(j, phone))
    assert result.passed, [(s.label, s.detail) for s in result.steps]
    greeting, menu, press = result.steps
    assert greeting.evidence["at_s"] == pytest.approx(0.3, abs=0.06)
    assert menu.evidence["at_s"] == pytest.approx(menu_at, abs=0.06)
    assert press.detail == "pressed 1 (rfc4733)" and phone.lines[0].sent[0][:2] == ("1", "rfc4733")


def test_a_whole_prompt_the_ivr_hangs_up_on_passes_and_a_step_the_driver_cannot_do_fails(tmp_path, prompts):
    audio = hiss(silence(0.5) + prompts[MENU])  # and nothing after it: the IVR hangs up
    j = journey(tmp_path, f'  - expect_prompt: {{text: "{MENU}", whole: true}}\n'
                          '  - press: {keys: "1", method: info}\n  - hangup\n')
    result = asyncio.run(run_journey(j, FakePhone(audio, hang_up_at_end=True)))
    prompt, press, hangup = result.steps
    assert prompt.status == PASSED, prompt.detail
    assert prompt.evidence["at_s"] == pytest.approx(0.5, abs=0.06)
    assert press.status == FAILED and press.detail == \
        "the fake driver cannot send keys as info (it can: rfc4733, inband)"
    assert press.evidence == {"driver": "fake"} and hangup.status != PASSED and not result.passed
