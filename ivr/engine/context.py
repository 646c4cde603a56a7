"""Per-call state shared by the node handlers, and the helpers they all use."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..flows.expr import Env, basic_functions, evaluate, render_template
from ..flows.hours import local_time_between, local_weekday
from ..flows.model import Flow, Node, Prompt
from ..speech import endpointing_of
from .call import Call, Dtmf, Event, PromptAudio
from .journey import Journey, PromptRecord
from .services import CallbackStore, Clock, Recognizer, Router, SystemClock, VoicemailService


@dataclass
class Services:
    """What a call may use besides the call itself."""

    router: Router
    voicemail: VoicemailService
    callbacks: CallbackStore
    recognizer: Recognizer | None = None
    clock: Clock = field(default_factory=SystemClock)


@dataclass
class Go:
    """Continue at `target`; `via` names the edge (option, escape, failures ...)."""

    target: str
    via: str = "next"


@dataclass
class End:
    """The flow is over for this call."""

    outcome: str
    detail: str | None = None


Step = Go | End


class CallContext:
    """Everything one running call knows."""

    def __init__(self, flow: Flow, call: Call, services: Services, *, overflow: bool = False,
                 observers: list | None = None) -> None:
        self.flow = flow
        self.call = call
        self.services = services
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.started_at = services.clock.now()
        self.variables: dict[str, Any] = dict(flow.variables)
        self.journey = Journey(
            call_id=call.call_id, caller=call.caller, dialled=call.dialled, channel=call.channel,
            flow=flow.name, flow_version=flow.digest, language=flow.language,
            started_at=self.started_at.astimezone(dt.UTC).isoformat(timespec="milliseconds"),
            observers=list(observers or []),
        )
        self.inbox: asyncio.Queue[Event] = asyncio.Queue()
        self.typeahead: deque[Dtmf] = deque()
        self.attempts: dict[str, dict[str, int]] = {}
        self.consecutive_failures = 0
        self.failures_since_success = 0  # not reset by the escape: detects a dead line
        self.intent: str | None = None
        self.reason = "overflow" if overflow else "choice"  # why the next hand-off happens
        self.returns: list[str] = []
        self.resolution: str | None = None  # handoff / voicemail / callback once achieved
        self.hung_up = False
        self.recording = False  # a hangup now ends the recording instead of the flow
        self.node: Node | None = None
        self.swallow: tuple[str, float] | None = None  # a terminator key to drop until a time
        self.endpointing = endpointing_of(flow.speech)

    def swallowed(self, ev: Event) -> bool:
        """True for a terminator pressed just after an entry that was already complete."""
        if self.swallow is None or not isinstance(ev, Dtmf):
            return False
        key, until = self.swallow
        self.swallow = None
        return ev.digit == key and self.loop.time() <= until

    # ---- time -----------------------------------------------------------------
    def t(self) -> float:
        """Seconds since the call started (the loop's clock: virtual in tests)."""
        return self.loop.time() - self.t0

    # ---- variables and conditions ---------------------------------------------
    def scope(self) -> dict[str, Any]:
        """Variables as conditions and prompts see them (built-ins included)."""
        return {
            "caller": self.call.caller, "dialled": self.call.dialled, "channel": self.call.channel,
            "language": self.flow.language, "intent": self.intent, "call_id": self.call.call_id,
            "flow": self.flow.name, **self.variables,
        }

    def evaluate(self, expr) -> Any:
        scope = self.scope()
        now = self.services.clock.now()
        fns = basic_functions(scope)
        fns["open"] = lambda name: self.flow.hours[name].is_open(now) if name in self.flow.hours else False
        fns["time_between"] = lambda a, b, tz=None: local_time_between(now, a, b, tz)
        fns["weekday"] = lambda tz=None: local_weekday(now, tz)
        return evaluate(expr, Env(scope, fns))

    # ---- prompts ----------------------------------------------------------------
    def render(self, prompt: Prompt, **extra: Any) -> PromptAudio:
        text = render_template(prompt.text, {**self.scope(), **extra}) if prompt.text else None
        audio = str(Path(self.flow.media_dir) / prompt.audio) if prompt.audio else None
        return PromptAudio(text=text, audio=audio, id=prompt.id, language=self.flow.language)

    async def play(self, prompts: list[Prompt] | list[PromptAudio], *, bargein: bool = False) -> bool:
        """Play prompts in turn. With barge-in a key stops them and is kept for the
        next input (type-ahead). Returns False when a key cut them short."""
        for p in prompts:
            audio = p if isinstance(p, PromptAudio) else self.render(p)
            if bargein and self.typeahead:
                return False
            rec = self.prompt_started(audio)
            play_task = asyncio.ensure_future(self.call.play(audio))
            cut = False
            try:
                while (ev := await self.event_during(play_task)) is not None:
                    if self.swallowed(ev):
                        continue
                    if isinstance(ev, Dtmf) and bargein:
                        self.typeahead.append(ev)
                        self.call.stop_playback()
                        cut = True
                    else:
                        self.ignored(ev)
            except BaseException:
                self.prompt_abandoned(rec, play_task)
                raise
            result = play_task.result()
            self.prompt_ended(rec, result.played_s, cut or not result.completed)
            if cut:
                return False
        return True

    async def event_during(self, play_task: asyncio.Future) -> Event | None:
        """The next event while a prompt plays, or None once the prompt has ended."""
        getter = asyncio.ensure_future(self.inbox.get())
        try:
            done, _ = await asyncio.wait({play_task, getter}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            getter.cancel()  # an unread event stays in the inbox
            raise
        if getter in done:
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        return None

    def prompt_started(self, audio: PromptAudio) -> PromptRecord:
        node = self.node.id if self.node else ""
        return self.journey.prompt_started(node, self.t(), audio.text, audio.audio, audio.id)

    def prompt_abandoned(self, rec: PromptRecord, play_task: asyncio.Future) -> None:
        """The flow stopped waiting mid-prompt (the caller hung up): stop the prompt and
        record it as cut short, so no play task outlives the call."""
        self.call.stop_playback()
        play_task.cancel()
        self.prompt_ended(rec, max(0.0, self.t() - rec.t), True)

    def prompt_ended(self, rec: PromptRecord, played_s: float, interrupted: bool) -> None:
        self.journey.prompt_ended(rec, played_s, interrupted)

    def ignored(self, ev: Event) -> None:
        node = self.node.id if self.node else ""
        self.journey.note(node, self.t(), "ignored-input", event=type(ev).__name__,
                          value=getattr(ev, "digit", None) or getattr(ev, "text", None))

    def note(self, what: str, **data: Any) -> None:
        self.journey.note(self.node.id if self.node else "", self.t(), what, **data)
