"""Runs one journey over one call: dial, then each step in turn against what the line hears.

A table maps each step kind to its handler. Every handler gets the run's
state (the line, where in the heard audio the step starts looking, when the
last input ended) and returns what it found, or raises StepFailed saying why.
The first failed step ends the journey: the rest are skipped and the call is
hung up, so a failing journey never leaves a call behind.

Prompts are recognised without any help from the IVR: by lining the heard
audio up with the prompt's own audio (rendered by TTS from its text, or a WAV
the tester gives), and, failing that, by transcribing what was said and
comparing words. Against this engine, when its event stream is given, the
prompt's id can be checked exactly; the report says which way each step was
judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from . import journey as jm
from . import listen
from .line import CallerPhone, CallFailed, DriverCannot, Line
from .results import FAILED, PASSED, JourneyResult, StepResult

log = logging.getLogger("ivr.harness")

POLL_S = 0.25  # how often a waiting step looks at the heard audio again
FAILED_AUDIO_S = 20.0  # at most this much of a failed step's audio is kept for the report


class StepFailed(Exception):
    """A step's expectation was not met; the text says what was found instead."""

    def __init__(self, text: str, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(text)
        self.evidence = evidence or {}


@dataclass
class Run:
    """The state one journey's steps share."""

    journey: jm.Journey
    line: Line
    events: Any = None  # our engine's event stream for this call (EventStream), when available
    cursor: int = 0  # byte offset in line.heard where the next expectation starts looking
    input_end: float | None = None  # seconds since the answer when the last key or phrase ended
    latencies: list[float] = field(default_factory=list)

    def input_starts(self) -> None:
        """A key or a phrase is about to go out: what is expected next comes after this point
        (an IVR may answer a key before the last packet of its press has gone)."""
        self.cursor = len(self.line.heard)

    def input_ended(self, at: float | None = None) -> None:
        """The key or phrase has gone: latencies count from here (or from `at`)."""
        self.input_end = self.line.now() if at is None else at


Handler = Callable[[Run, Any], Awaitable[str | tuple[str, dict[str, Any]]]]


# ---- the steps ---------------------------------------------------------------------------------------

async def _dial(run: Run, step) -> str:
    return "dialled"  # the call is placed before the steps; a dial step only sets its caller and headers


async def _press(run: Run, step) -> str:
    run.input_starts()
    method = await run.line.press(step.keys, step.method, step.duration, step.gap)
    # From the last key's start: IVRs act on a key as it goes down, often before its
    # end has been sent, and a latency counted from the end would read 0 for them.
    run.input_ended(run.line.key_down)
    return f"pressed {step.keys} ({method})"


async def _say(run: Run, step) -> str:
    run.input_starts()
    if step.wav is not None:
        await run.line.play(listen.load_wav(step.wav))
    else:
        await run.line.say(step.text, run.journey.language)
    run.input_ended()
    return "said " + (f'"{step.text}"' if step.text else step.wav.name)


async def _silence(run: Run, step) -> str:
    run.input_starts()
    await asyncio.sleep(step.seconds)  # with nothing fed, the phone sends silence
    run.input_ended()
    return f"silent for {step.seconds:g} s"


async def _wait(run: Run, step) -> str:
    await asyncio.sleep(step.seconds)
    return f"waited {step.seconds:g} s"


async def _expect_prompt(run: Run, step) -> tuple[str, dict[str, Any]]:
    line = run.line
    loop = asyncio.get_running_loop()
    deadline = loop.time() + step.within
    template = None
    if step.match in ("auto", "audio") and (step.wav is not None or step.text):
        template = listen.load_wav(step.wav) if step.wav is not None else \
            await listen.render_prompt_async(step.text, run.journey.language)
    if step.match == "event" and run.events is None:
        raise StepFailed("match: event needs the engine's event stream (--events URL)")
    search = listen.PromptSearch(template, step.threshold) if template is not None else None
    fed = run.cursor  # may lie ahead of what was heard: a prompt recognised by its start ends later
    while True:
        if search is not None:
            if len(line.heard) > fed:
                search.feed(bytes(line.heard[fed:]))
                fed = len(line.heard)
            found = search.find(whole=step.whole)
            if found is not None:
                at = line.time_of(run.cursor // 2 + int(found.start_s * 8000))
                ev = {"via": "audio", "score": round(found.score, 3), "at_s": round(at, 2)}
                _latency(run, at, ev)
                run.cursor += int(found.end_s * 8000) * 2
                if run.events is not None and step.id:
                    ev["event"] = run.events.prompt(step.id, step.text) is not None
                return f"heard at {at:.2f} s (score {found.score:.2f})", ev
        if run.events is not None and (step.match == "event" or (search is None and step.id)):
            event = run.events.prompt(step.id, step.text)
            if event is not None:
                ev = {"via": "event", "id": event.get("id"), "text": event.get("text")}
                return f"the engine said it played {event.get('id') or event.get('text')!r}", ev
        if line.hung_up.is_set() and len(line.heard) <= fed and search is not None and not search.ended:
            search.finish()  # the call is over: judge the audio up to its very end, then stop
            continue
        if loop.time() >= deadline or line.hung_up.is_set() and len(line.heard) <= fed:
            break
        await line.wait_change(min(POLL_S, max(0.0, deadline - loop.time())))
    # Not lined up: what was said, in words, is the second way to recognise it.
    heard = bytes(line.heard[run.cursor:])
    if step.text and step.match in ("auto", "transcript") and heard:
        words = await listen.transcribe_async(heard, run.journey.language)
        sim = listen.similarity(step.text, words)
        threshold = step.threshold if step.match == "transcript" and step.threshold is not None else 0.5
        ev = {"via": "transcript", "heard": words, "similarity": round(sim, 2)}
        if sim >= threshold:
            run.cursor = len(line.heard)
            return f'transcribed "{words}" (similarity {sim:.2f})', ev
        raise StepFailed(f'not heard within {step.within:g} s; the line said "{words}" '
                         f"(similarity {sim:.2f} < {threshold:.2f})", ev)
    best = search.best if search is not None else None
    raise StepFailed(f"not heard within {step.within:g} s" + (f" (best score {best:.2f})" if best else "")
                     + ("; the IVR hung up" if line.hung_up.is_set() else ""))


def _latency(run: Run, at: float, ev: dict[str, Any]) -> None:
    if run.input_end is not None:
        latency = max(0.0, at - run.input_end)
        run.latencies.append(latency)
        ev["latency_s"] = round(latency, 3)
        run.input_end = None


async def _expect_hold_music(run: Run, step) -> tuple[str, dict[str, Any]]:
    line = run.line
    loop = asyncio.get_running_loop()
    deadline = loop.time() + step.within + step.seconds
    while True:
        span = listen.music_span(bytes(line.heard[run.cursor:]))
        if span >= step.seconds:
            run.cursor = len(line.heard)
            return f"music for {span:.1f} s", {"via": "audio", "music_s": round(span, 2)}
        if loop.time() >= deadline or line.hung_up.is_set():
            raise StepFailed(f"no {step.seconds:g} s of hold music (longest {span:.1f} s)", {"music_s": span})
        await line.wait_change(POLL_S)


async def _expect_voicemail(run: Run, step) -> tuple[str, dict[str, Any]]:
    line = run.line
    loop = asyncio.get_running_loop()
    deadline = loop.time() + step.within
    while True:
        at = listen.find_beep(bytes(line.heard[run.cursor:]))
        if at is not None:
            when = line.time_of(run.cursor // 2 + int(at * 8000))
            run.cursor = len(line.heard)
            run.input_end = None
            return f"the beep at {when:.2f} s", {"via": "audio", "beep_at_s": round(when, 2)}
        if loop.time() >= deadline or line.hung_up.is_set():
            raise StepFailed(f"no recording beep within {step.within:g} s")
        await line.wait_change(POLL_S)


async def _expect_handoff(run: Run, step) -> tuple[str, dict[str, Any]]:
    line = run.line
    loop = asyncio.get_running_loop()
    deadline = loop.time() + step.within
    while not line.transfers:
        if loop.time() >= deadline or line.hung_up.is_set():
            raise StepFailed(f"no transfer within {step.within:g} s"
                             + ("; the IVR hung up" if line.hung_up.is_set() else ""))
        await line.wait_change(POLL_S)
    t = line.transfers[0]
    ctx = t.context or {}
    ev = {"via": "refer", "target": t.target, "headers": {k: v for k, v in t.headers.items() if k != "X-IVR-Context"},
          "context": ctx}
    wrong = []
    if step.target and step.target not in t.target:
        wrong.append(f"target {t.target} (wanted {step.target})")
    for field_name, header in (("queue", "X-IVR-Queue"), ("intent", "X-IVR-Intent"), ("reason", "X-IVR-Reason")):
        want = getattr(step, field_name)
        got = t.headers.get(header) or str(ctx.get(field_name) or "")
        if want and got != want:
            wrong.append(f"{field_name} {got or 'none'} (wanted {want})")
    variables = ctx.get("variables") or {}
    for name, want in step.context.items():
        got = variables.get(name)
        if got is None or str(got) != str(want):
            wrong.append(f"context {name}={got!r} (wanted {want!r})")
    if wrong:
        raise StepFailed("transferred, but: " + "; ".join(wrong), ev)
    return f"transferred to {t.target} at {t.at:.2f} s", ev


async def _expect_hangup(run: Run, step) -> str:
    try:
        await asyncio.wait_for(run.line.hung_up.wait(), step.within)
    except TimeoutError:
        raise StepFailed(f"the IVR did not hang up within {step.within:g} s") from None
    return f"the IVR hung up at {run.line.now():.2f} s"


async def _hangup(run: Run, step) -> str:
    if run.line.hung_up.is_set():
        return "the IVR had hung up already"
    await run.line.hangup()
    return "hung up"


HANDLERS: dict[str, Handler] = {
    "dial": _dial, "press": _press, "say": _say, "silence": _silence, "wait": _wait,
    "expect_prompt": _expect_prompt, "expect_hold_music": _expect_hold_music,
    "expect_voicemail": _expect_voicemail, "expect_handoff": _expect_handoff,
    "expect_hangup": _expect_hangup, "hangup": _hangup,
}


# ---- one journey -----------------------------------------------------------------------------------

async def run_journey(journey: jm.Journey, phone: CallerPhone, target: str | None = None, *,
                      events=None) -> JourneyResult:
    """Place the call with `phone` (any caller driver) and run the steps; never raises for
    what the IVR did."""
    driver = phone.driver
    target = target or journey.target
    steps = [StepResult(i, s.kind, s.describe(), s.line) for i, s in enumerate(journey.steps)]
    result = JourneyResult(journey.name, str(journey.file), driver, target or "", steps, tags=list(journey.tags))
    if not target:
        result.error = "no target: give --target or `target:` in the journey"
        return result
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    dial = next((s for s in journey.steps if s.kind == "dial"), None)
    caller = (dial.caller if dial is not None and dial.caller else None) or journey.caller
    headers = {**journey.headers, **(dial.headers if dial is not None else {})}
    telephone_event = dial.telephone_event if dial is not None else True
    line: Line | None = None
    stream = None
    try:
        async with asyncio.timeout(journey.timeout):
            try:
                line = await phone.call(target, caller=caller, headers=headers or None,
                                        telephone_event=telephone_event)
            except CallFailed as exc:
                result.error = f"the call was not answered: {exc}"
                return result
            except DriverCannot as exc:
                result.error = str(exc)
                return result
            except ValueError as exc:
                result.error = f"cannot call {target}: {exc}"
                return result
            result.call_id, result.setup_s = line.call_id, round(line.setup_s, 3)
            stream = await events.open(line.call_id) if events is not None else None
            run = Run(journey, line, stream)
            await _steps(run, journey, steps, t0)
            result.latencies_s = [round(x, 3) for x in run.latencies]
    except TimeoutError:
        result.error = f"the journey's timeout ({journey.timeout:g} s) ran out"
        for s in steps:
            if s.status != PASSED and s.started_s is not None and s.elapsed_s is None:
                s.status, s.detail = FAILED, "the journey's timeout ran out during this step"
    finally:
        if line is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(line.hangup(), 10)
            await _audio_quality(result, bytes(line.heard))
        if stream is not None:
            await stream.close()  # waits for the journey's end, so the path is whole
            result.nodes, result.edges = stream.nodes(), [tuple(e) for e in stream.edges()]
        result.duration_s = round(loop.time() - t0, 3)
    result.passed = result.error is None and all(s.status == PASSED for s in steps)
    return result


async def _audio_quality(result: JourneyResult, heard: bytes) -> None:
    """How much was heard, and the rough MOS-like figure of it (off the loop: numpy over minutes)."""
    from .sounds import mos_estimate

    result.heard_s = round(len(heard) / 16000, 2)
    if heard:
        result.mos = round(await asyncio.to_thread(mos_estimate, heard), 2)


async def _steps(run: Run, journey: jm.Journey, steps: list[StepResult], t0: float) -> None:
    loop = asyncio.get_running_loop()
    for step, res in zip(journey.steps, steps, strict=True):
        res.started_s = round(loop.time() - t0, 3)
        start_byte = run.cursor
        try:
            out = await HANDLERS[step.kind](run, step)
        except (StepFailed, DriverCannot) as exc:
            res.status, res.detail = FAILED, str(exc)
            res.evidence = exc.evidence if isinstance(exc, StepFailed) else {"driver": run.line.driver}
            res.audio = bytes(run.line.heard[start_byte:])[-int(FAILED_AUDIO_S * 16000):] or None
            res.elapsed_s = round(loop.time() - t0 - res.started_s, 3)
            return
        res.detail, res.evidence = out if isinstance(out, tuple) else (out, {})
        res.status = PASSED
        res.elapsed_s = round(loop.time() - t0 - res.started_s, 3)
