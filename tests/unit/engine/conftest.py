"""Engine tests: small flows run against the fake call on a virtual clock.

`sim.flow(nodes)` wraps node YAML in a standard flow head (an escape to the
`agent` handoff on key 0 or "agent"/"operator", numbered retry prompts) and
checks it; `sim.run(flow, script)` runs one call on the test's own virtual-time
loop and returns (journey, call, services).

A script is a list of (delay_seconds, action): each delay counts from the
previous action (the first from the start of the call). An action is
- a string of keys ("1", "12345678#"),
- "hangup",
- any other string: the caller says it (confidence 1.0),
- a tuple (method, *args) called on the VirtualCall, e.g. ("say", "billing", 0.2),
- or a callable taking the VirtualCall.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest

from ivr.engine.context import Services
from ivr.engine.journey import Journey
from ivr.engine.runner import run_call
from ivr.engine.services import LoopClock
from ivr.engine.virtual import VirtualCall
from ivr.engine.vtime import VirtualTimeLoop
from ivr.flows import Report, load_flow, parse_text, validate
from ivr.flows.model import Flow
from ivr.services.memory import MemoryCallbacks, MemoryVoicemail, RecordingRouter

REPO = Path(__file__).resolve().parents[3]
LONDON = ZoneInfo("Europe/London")
# A Monday in November (London time is UTC then), mid-morning.
MONDAY_10AM = dt.datetime(2026, 11, 23, 10, 0, tzinfo=LONDON)

KEYS = set("0123456789*#ABCD")

HEAD = """\
version: 1
name: Test line
language: en-GB
start: {start}
escape:
  to: agent
  keys: ["0"]
  phrases: [agent, operator]
  after_failures: {after_failures}
  prompt: "Let me put you through."
defaults:
  timeout: 5s
  inter_digit_timeout: 2s
  no_input: ["No input one.", "No input two.", "No input three."]
  no_match: ["No match one.", "No match two.", "No match three."]
"""

AGENT = """\
  agent:
    kind: handoff
    queue: general
    skills: [general]
    prompt: "Connecting you."
"""

Action = str | tuple | Callable[[VirtualCall], Any]


class Run(NamedTuple):
    journey: Journey
    call: VirtualCall
    services: Services


def parse_flow(text: str, *, unused_agent_ok: bool = False) -> Flow:
    """Parse and validate flow text; fails the test on any error."""
    report = Report("t.yaml")
    flow = parse_text(text, report)
    assert flow is not None, [d.format() for d in report.errors]
    validate(flow, report, check_media=False)
    errors = [d.format() for d in report.errors
              if not (unused_agent_ok and d.code == "unreachable" and "'agent'" in d.message)]
    assert not errors, errors
    return flow


def act(call: VirtualCall, action: Action) -> None:
    if callable(action):
        action(call)
    elif isinstance(action, tuple):
        method, *args = action
        getattr(call, method)(*args)
    elif action == "hangup":
        call.hang_up()
    elif action and set(action) <= KEYS:
        call.press(action)
    else:
        call.say(action)


async def drive(call: VirtualCall, script: Iterable[tuple[float, Action]]) -> None:
    """Play the caller's part: wait each delay, then act."""
    for delay, action in script:
        await asyncio.sleep(delay)
        act(call, action)


class Sim:
    """Runs calls on one virtual-time loop (one per test)."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self.loop = loop

    def flow(self, nodes: str, *, start: str = "start", after_failures: int = 2, extra: str = "",
             agent: str = AGENT) -> Flow:
        """A checked flow made of `nodes` (YAML, any indentation) plus the standard head and agent."""
        body = textwrap.indent(textwrap.dedent(nodes).strip("\n"), "  ")
        text = (HEAD.format(start=start, after_failures=after_failures) + "nodes:\n" + body + "\n" + agent
                + textwrap.dedent(extra))
        # Flows that never listen cannot reach the escape's agent; that is fine here.
        return parse_flow(text, unused_agent_ok=True)

    def services(self, *, router=None, voicemail=None, callbacks=None, recognizer=None,
                 when: dt.datetime = MONDAY_10AM) -> Services:
        return Services(router or RecordingRouter(), voicemail or MemoryVoicemail(), callbacks or MemoryCallbacks(),
                        recognizer, clock=LoopClock(when, self.loop))

    async def call(self, flow: Flow, script: Iterable[tuple[float, Action]] = (), *,
                   call: VirtualCall | None = None, services: Services | None = None,
                   **kw: Any) -> Run:
        """One scripted call, as a coroutine (to run several on the same loop)."""
        call = call or VirtualCall()
        services = services or self.services()
        driver = asyncio.ensure_future(drive(call, list(script)))
        try:
            journey = await run_call(flow, call, services, **kw)
        finally:
            driver.cancel()
        return Run(journey, call, services)

    def run(self, flow: Flow | str, script: Iterable[tuple[float, Action]] = (), *,
            call: VirtualCall | None = None, services: Services | None = None,
            caller: str | None = None, when: dt.datetime | None = None, **kw: Any) -> Run:
        """Run one scripted call to its end; see the module doc for the script."""
        if isinstance(flow, str):
            flow = parse_flow(flow)
        if call is None:
            call = VirtualCall() if caller is None else VirtualCall(caller=caller)
        if services is None:
            services = self.services(when=when or MONDAY_10AM)
        return self.until_done(self.call(flow, script, call=call, services=services, **kw))

    def until_done(self, coro):
        """Run a coroutine on the loop, then check the engine left no task behind."""
        result = self.loop.run_until_complete(coro)
        for _ in range(10):  # cancelled tasks need a few turns of the loop to finish
            self.loop.run_until_complete(asyncio.sleep(0))
        left = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        assert not left, f"tasks left running after the call: {left}"
        return result


@pytest.fixture
def vloop():
    loop = VirtualTimeLoop()
    yield loop
    loop.close()


@pytest.fixture
def sim(vloop) -> Sim:
    return Sim(vloop)


@pytest.fixture(scope="session")
def default_flow() -> Flow:
    return load_flow(REPO / "flows.yaml")


def texts(journey: Journey) -> list[str | None]:
    """The texts of the prompts played, in order."""
    return [p.text for p in journey.prompts]
