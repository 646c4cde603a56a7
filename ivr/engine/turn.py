"""One listening turn: play the prompts, then wait for keys or speech.

A turn ends with a named reason (as a gather does in jambonz): a menu key, the
terminator, the number of digits, the inter-digit timeout, a speech result, or
a timeout. Classifying the answer (option, escape, valid) is the node's job.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from .call import Dtmf, Event, NoSpeech, PromptAudio, SpeechResult, SpeechStarted
from .context import CallContext

# While the caller is speaking, wait this long for the recogniser's final result.
SPEECH_RESULT_WAIT = 15.0


@dataclass
class KeyRules:
    """How keys end a turn: a menu's key set, or a digit entry's rules."""

    menu_keys: frozenset[str] | None = None  # menu: entry ends when it matches one of these
    min_digits: int = 1
    max_digits: int = 1
    terminator: str | None = None


@dataclass
class TurnResult:
    """What the caller did in a turn."""

    via: str  # dtmf, speech, nothing, nospeech
    value: str = ""
    reason: str = "timeout"
    confidence: float | None = None


class Turn:
    """Prompts, then input, with barge-in and timers on the event loop."""

    def __init__(self, ctx: CallContext, prompts: list[PromptAudio], *, keys: KeyRules | None,
                 phrases: list[str] | None, timeout: float, inter_digit: float, bargein: bool,
                 speech_timeout: float | None = None, fallback_keys: KeyRules | None = None) -> None:
        self.ctx = ctx
        self.prompts = prompts
        self.keys = keys
        self.phrases = phrases  # None: no speech this turn
        self.timeout = timeout
        # Silence that counts as no input while a recogniser listens (end-pointing's no-speech timeout).
        self.speech_timeout = speech_timeout
        # Keys accepted when speech was the only way to answer but no recogniser is free.
        self.fallback_keys = fallback_keys
        self.inter_digit = inter_digit
        self.bargein = bargein
        self.digits = ""
        self._session = None
        self._feeders: list[asyncio.Task] = []

    async def run(self) -> TurnResult:
        ctx = self.ctx
        ctx.journey.emit("listen", node=ctx.node.id if ctx.node else "", keys=self.keys is not None,
                         speech=self.phrases is not None, bargein=self.bargein)
        self._open_recognizer()
        try:
            return await self._run()
        finally:
            ctx.journey.emit("listen-end", node=ctx.node.id if ctx.node else "")
            for t in self._feeders:
                t.cancel()
            if self._session is not None:
                with contextlib.suppress(Exception):
                    await self._session.close()

    def _open_recognizer(self) -> None:
        ctx = self.ctx
        rec = ctx.services.recognizer
        if self.phrases is None:
            return
        if rec is None:
            # No recogniser here: the call itself may deliver speech as text (the simulator).
            return
        session = rec.open(self.phrases or None, endpointing=ctx.endpointing)
        if session is None:
            # Every recogniser busy (or no phrase it can hear): keys only, and the
            # caller is told so rather than talking to a deaf line.
            self.phrases = None
            if self.keys is None:
                self.keys = self.fallback_keys
            if self.keys is not None:
                ctx.note("speech-unavailable", fallback="dtmf", engine=rec.name)
                self.prompts = [ctx.render(p) for p in ctx.flow.speech.keypad_prompt] + list(self.prompts)
            return
        self._session = session
        if self.speech_timeout is not None:
            self.timeout = self.speech_timeout

        async def feed_audio():
            async for frame in self.ctx.call.audio_in():
                session.push(frame)

        async def feed_events():
            async for ev in session.events():
                self.ctx.inbox.put_nowait(ev)

        self._feeders = [asyncio.ensure_future(feed_audio()), asyncio.ensure_future(feed_events())]

    async def _run(self) -> TurnResult:
        ctx = self.ctx
        speaking = False
        # Keys typed ahead (during an earlier say) count as barge-in right away.
        while ctx.typeahead and ctx.swallowed(ctx.typeahead[0]):
            ctx.typeahead.popleft()
        if self.bargein and ctx.typeahead and self.keys is not None:
            first = ctx.typeahead.popleft()
            return await self._collect_digits(first)
        # A prompt that must be heard in full, or that takes no keys, is not answered by keys
        # typed ahead: drop them rather than let them answer some later question.
        while ctx.typeahead:
            ctx.ignored(ctx.typeahead.popleft())
        for prompt in self.prompts:
            rec = ctx.prompt_started(prompt)
            play = asyncio.ensure_future(ctx.call.play(prompt))
            out = None
            try:
                while out is None and (ev := await ctx.event_during(play)) is not None:
                    if not self.bargein:
                        ctx.ignored(ev)
                        continue
                    if isinstance(ev, SpeechStarted) and self.phrases is not None:
                        speaking = True
                        ctx.call.stop_playback()
                        continue
                    out = self._accept(ev)
                if out is not None:
                    ctx.call.stop_playback()
                res = await play
            except BaseException:
                ctx.prompt_abandoned(rec, play)
                if out is not None:
                    out.close()
                raise
            ctx.prompt_ended(rec, res.played_s, out is not None or not res.completed)
            if out is not None:
                # Outside the try: a hangup while more keys are awaited must not
                # rewrite the record of a prompt that has already ended.
                return await out
            if speaking:
                break
        # Prompts are done: the no-input timer starts now.
        deadline = ctx.loop.time() + (SPEECH_RESULT_WAIT if speaking else self.timeout)
        while True:
            left = deadline - ctx.loop.time()
            if left <= 0:
                return TurnResult("nothing", "", "timeout")
            try:
                ev = await asyncio.wait_for(ctx.inbox.get(), left)
            except TimeoutError:
                return TurnResult("nothing", "", "timeout")
            if isinstance(ev, SpeechStarted) and self.phrases is not None:
                deadline = ctx.loop.time() + SPEECH_RESULT_WAIT
                continue
            out = self._accept(ev)
            if out is not None:
                return await out

    def _accept(self, ev: Event):
        """A coroutine finishing the turn for this event, or None to keep waiting."""
        if self.ctx.swallowed(ev):
            return None
        if isinstance(ev, Dtmf) and self.keys is not None:
            return self._collect_digits(ev)
        if isinstance(ev, SpeechResult) and self.phrases is not None:
            return _done(TurnResult("speech", ev.text, "speech", ev.confidence))
        if isinstance(ev, NoSpeech) and self.phrases is not None:
            return _done(TurnResult("nospeech", "", ev.reason))
        self.ctx.ignored(ev)
        return None

    async def _collect_digits(self, first: Dtmf) -> TurnResult:
        ctx, rules = self.ctx, self.keys
        assert rules is not None
        buf = ""
        ev: Dtmf | None = first
        while True:
            if ev is not None:
                if rules.terminator and ev.digit == rules.terminator and rules.menu_keys is None:
                    return TurnResult("dtmf", buf, "dtmf-terminator-key")
                buf += ev.digit
                done = self._complete(buf)
                if done:
                    if done == "dtmf-num-digits" and rules.terminator:
                        # Callers often press the terminator after a full entry anyway.
                        ctx.swallow = (rules.terminator, ctx.loop.time() + self.inter_digit)
                    return TurnResult("dtmf", buf, done)
            # Wait for the next key (type-ahead first), up to the inter-digit timeout.
            if ctx.typeahead:
                ev = ctx.typeahead.popleft()
                continue
            try:
                nxt = await asyncio.wait_for(self._next_key(), self.inter_digit)
            except TimeoutError:
                return TurnResult("dtmf", buf, "inter-digit-timeout")
            ev = nxt

    async def _next_key(self) -> Dtmf:
        while True:
            ev = await self.ctx.inbox.get()
            if isinstance(ev, Dtmf):
                return ev
            self.ctx.ignored(ev)

    def _complete(self, buf: str) -> str | None:
        rules = self.keys
        assert rules is not None
        if rules.menu_keys is not None:
            longer = any(k != buf and k.startswith(buf) for k in rules.menu_keys)
            if buf in rules.menu_keys and not longer:
                return "menu-key"
            if not longer:
                return "no-such-key"
            return None
        if len(buf) >= rules.max_digits:
            return "dtmf-num-digits"
        return None


async def _done(result: TurnResult) -> TurnResult:
    return result
