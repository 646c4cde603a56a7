"""`ivr simulate`: a text call through a flow, typed or scripted.

The real engine runs on a virtual-time loop. The simulated caller acts only
when the IVR is listening and its prompt has finished (or during the prompt,
with `barge`), so scripts read like what a caller does, and every timeout
behaves as on a phone line without any real waiting.

Script lines (and interactive input):
    1 / 123# / *      press keys
    say billing       say a phrase (plain words work too: "billing")
    barge 1           act while the prompt is still playing
    silence           say nothing this time (the no-input timeout runs)
    wait 10           let 10 seconds pass, then go on with the next line
    hangup            hang up
    expect node X     the IVR must be listening at node X now
    expect prompt T   a prompt since the caller last acted must contain T
    # comment
When the script runs out the caller stays silent until the flow ends.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from .engine.context import Services
from .engine.journey import Journey
from .engine.runner import run_call
from .engine.services import LoopClock
from .engine.virtual import VirtualCall
from .engine.vtime import VirtualTimeLoop
from .flows.model import Flow
from .services.memory import MemoryCallbacks, MemoryVoicemail, RecordingRouter

KEYS = re.compile(r"[0-9*#A-Da-d]+")
MAX_CALL_S = 4 * 3600.0  # a simulated call this long is stuck: hang it up


class ScriptError(ValueError):
    """A script line that cannot be understood."""


@dataclass
class ScriptStep:
    """One thing the simulated caller does."""

    action: str  # keys, say, silence, wait, hangup, expect-node, expect-prompt
    arg: str = ""
    barge: bool = False
    line: int = 0


def parse_step(text: str, line: int = 0) -> ScriptStep | None:
    """One script line; None for blank lines and comments."""
    s = text.strip()
    if not s or s.startswith("#") and not KEYS.fullmatch(s):
        return None
    word, _, rest = s.partition(" ")
    rest = rest.strip()
    w = word.lower()
    if w == "barge":
        step = parse_step(rest, line)
        if step is None or step.action not in ("keys", "say"):
            raise ScriptError(f"line {line}: barge needs keys or words after it")
        step.barge = True
        return step
    if w in ("press", "keys", "dtmf"):
        if not KEYS.fullmatch(rest.replace(" ", "")):
            raise ScriptError(f"line {line}: {rest!r} are not keys (0-9, *, #, A-D)")
        return ScriptStep("keys", rest.replace(" ", ""), line=line)
    if KEYS.fullmatch(s) and not s.isalpha():
        return ScriptStep("keys", s, line=line)
    if w == "say":
        if not rest:
            raise ScriptError(f"line {line}: say needs words")
        return ScriptStep("say", rest, line=line)
    if w in ("silence", "silent", "...") and not rest:
        return ScriptStep("silence", line=line)
    if w == "wait":
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*s?", rest)
        if not m:
            raise ScriptError(f"line {line}: wait needs seconds, e.g. wait 10")
        return ScriptStep("wait", m.group(1), line=line)
    if w in ("hangup", "hang") and rest in ("", "up"):
        return ScriptStep("hangup", line=line)
    if w == "expect":
        what, _, arg = rest.partition(" ")
        if what == "node" and arg.strip():
            return ScriptStep("expect-node", arg.strip(), line=line)
        if what == "prompt" and arg.strip():
            return ScriptStep("expect-prompt", arg.strip().strip('"').lower(), line=line)
        raise ScriptError(f"line {line}: use 'expect node ID' or 'expect prompt TEXT'")
    return ScriptStep("say", s, line=line)


def parse_script(text: str) -> list[ScriptStep]:
    """All steps of a script file (ScriptError names the bad line)."""
    steps = []
    for i, raw in enumerate(text.splitlines(), 1):
        step = parse_step(raw, i)
        if step is not None:
            steps.append(step)
    return steps


class Simulation:
    """One simulated call: a virtual call, in-memory services and a caller."""

    def __init__(self, flow: Flow, steps: list[ScriptStep] | None = None, *, interactive: bool = False,
                 out: TextIO | None = None, stdin: TextIO | None = None, caller: str = "+441632960001",
                 dialled: str = "+441632960000", at: dt.datetime | None = None,
                 router_accepts: bool = True, full_mailboxes: tuple[str, ...] = ()) -> None:
        self.flow = flow
        self.steps = list(steps or [])
        self.interactive = interactive
        self.out = out
        self.stdin = stdin or sys.stdin
        self.at = at or dt.datetime.now(dt.UTC)
        self.caller, self.dialled = caller, dialled
        self.router = RecordingRouter(accept=router_accepts)
        self.voicemail = MemoryVoicemail(limits={m: 0 for m in full_mailboxes})
        self.callbacks = MemoryCallbacks()
        self.failures: list[str] = []
        self.listening: str | None = None
        self._silent_turn = False
        self._awaiting_reaction = False
        self._resume_at = 0.0
        self._recent_prompts: list[str] = []
        self._done = False
        self.call: VirtualCall | None = None
        self.loop: VirtualTimeLoop | None = None

    # ---- output ---------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.out is not None:
            t = self.loop.time() if self.loop else 0.0
            print(f"{t:8.1f}s  {text}", file=self.out, flush=True)

    def observe(self, event: str, data: dict[str, Any]) -> None:
        """Journey events: print a transcript and track whether the IVR listens."""
        if event == "node":
            self._say(f"-> {data['node']} ({data['kind']})" + (f"  via {data['via']}" if data["via"] not in
                                                               ("next", "start") else ""))
        elif event == "prompt":
            self._awaiting_reaction = False
            label = data.get("text") or (f"<{data['id']}>" if data.get("id") else f"<audio {data.get('audio')}>")
            self._recent_prompts.append((data.get("text") or data.get("id") or "").lower())
            self._say(f"IVR: {label}")
        elif event == "prompt-end" and data.get("interrupted"):
            self._say(f"     (prompt cut after {data['played_s']:.1f}s)")
        elif event == "input":
            how = f"{data['via']} {data['value']!r}" if data["value"] else data["via"]
            conf = f" conf {data['confidence']:.2f}" if data.get("confidence") not in (None, 1.0) else ""
            self._say(f"     heard {how}{conf} => {data['result']}")
        elif event == "listen":
            self.listening = data["node"]
            self._silent_turn = self._awaiting_reaction = False
        elif event == "listen-end":
            self.listening = None
            self._silent_turn = self._awaiting_reaction = False
        elif event == "note" and data["what"] in ("mailbox-full", "escape-after-failures", "handoff-refused",
                                                  "callback-stored", "voicemail-saved", "hold-start", "hangup"):
            extra = {k: v for k, v in data.items() if k not in ("node", "t", "what")}
            self._say(f"     [{data['what']}] " + " ".join(f"{k}={v}" for k, v in extra.items()))
        elif event == "handoff":
            p = data["payload"]
            self._say(f"=> hand-off to queue {p['queue']!r} (reason {p['reason']}, intent {p['intent']})")
        elif event == "end":
            self._say(f"== call ended: {data['outcome']}" + (f" ({data['detail']})" if data.get("detail") else ""))

    # ---- the caller ----------------------------------------------------------------
    def _idle(self) -> bool:
        """Called by the loop before its clock jumps: the caller's moment to act."""
        loop, call = self.loop, self.call
        if self._done or call is None or loop is None:
            return False
        if loop.time() > MAX_CALL_S:
            self._say("(simulated call too long: hanging up)")
            call.hang_up()
            self._done = True
            return True
        if loop.time() < self._resume_at:
            return False
        if not (self.listening or call.recording) or self._silent_turn:
            return False
        if self._awaiting_reaction and not call.recording:
            # One line is one answer: "0" in a gather is complete, its timer runs now.
            return False
        step = self.steps[0] if self.steps else None
        if call.playing is not None and not (step and step.barge):
            return False
        if step is None and self.interactive:
            step = self._ask()
            if step is None:
                return False
        elif step is not None:
            self.steps.pop(0)
        if step is None:
            return False
        return self._act(step)

    def _ask(self) -> ScriptStep | None:
        where = "recording" if self.call and self.call.recording else self.listening
        while True:
            print(f"  you ({where})> ", end="", file=self.out or sys.stderr, flush=True)
            line = self.stdin.readline()
            if not line:  # end of input: the caller goes quiet
                self.interactive = False
                return None
            try:
                step = parse_step(line)
            except ScriptError as exc:
                print(f"  {exc}", file=self.out or sys.stderr)
                continue
            return step or ScriptStep("silence")

    def _act(self, step: ScriptStep) -> bool:
        call, loop = self.call, self.loop
        assert call is not None and loop is not None
        if step.action == "keys":
            self._say(f"you: press {step.arg}")
            call.press(step.arg)
            self._awaiting_reaction = True
        elif step.action == "say":
            self._say(f"you: \"{step.arg}\"")
            call.say(step.arg)
            self._awaiting_reaction = True
        elif step.action == "silence":
            self._silent_turn = True
            return False
        elif step.action == "wait":
            self._resume_at = loop.time() + float(step.arg)
            loop.call_at(self._resume_at, lambda: None)
        elif step.action == "hangup":
            self._say("you: hang up")
            call.hang_up()
            self._done = True
        elif step.action == "expect-node":
            if self.listening != step.arg:
                self._fail(step, f"expected the IVR at {step.arg!r}, it is at {self.listening!r}")
            return self._idle()
        elif step.action == "expect-prompt":
            if not any(step.arg in p for p in self._recent_prompts):
                self._fail(step, f"expected a prompt containing {step.arg!r}")
            return self._idle()
        self._recent_prompts = []
        return True

    def _fail(self, step: ScriptStep, message: str) -> None:
        msg = f"script line {step.line}: {message}"
        self.failures.append(msg)
        self._say(f"!! {msg}")

    # ---- running ---------------------------------------------------------------------
    def run(self) -> Journey:
        self.loop = loop = VirtualTimeLoop()
        loop.idle_hook = self._idle
        try:
            return loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> Journey:
        self.call = VirtualCall(caller=self.caller, dialled=self.dialled, channel="text")
        services = Services(self.router, self.voicemail, self.callbacks, clock=LoopClock(self.at))
        journey = await run_call(self.flow, self.call, services, observers=[self.observe])
        self._done = True
        for step in self.steps:
            if step.action.startswith("expect"):
                self._fail(step, "not reached: the call ended first")
        return journey
