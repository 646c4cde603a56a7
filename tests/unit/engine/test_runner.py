"""The runner: outcomes, hangups, errors, overflow, runaway loops, observers, and the default flow."""

from __future__ import annotations

import datetime as dt
import json

import jsonschema
import pytest

from ivr.engine.handoff import HANDOFF_SCHEMA
from ivr.engine.runner import APOLOGY, MAX_INSTANT_STEPS
from ivr.services.memory import MemoryCallbacks, MemoryVoicemail, RecordingRouter

from .conftest import LONDON, texts

MENU = """
start:
  kind: menu
  prompt: "For sales press 1, for support press 2, or stay on the line."
  options:
    - {key: 1, intent: sales, goto: sales}
    - {key: 2, goto: support}
sales: {kind: handoff, queue: sales, on_failure: agent}
support: {kind: callback, queue: support, within: 1h}
"""


class BrokenRouter:
    async def handoff(self, call, payload, target):
        raise RuntimeError("router down")


def test_caller_hangs_up_mid_prompt(sim):
    j, call, _ = sim.run(sim.flow(MENU), [(2, "hangup")])
    assert j.outcome == "abandoned"
    assert j.detail == "caller hung up"
    assert j.path == ["start"]
    [prompt] = j.prompts
    assert (prompt.interrupted, prompt.played_s) == (True, 2.0)
    assert j.duration_s == 2.0
    assert j.ended_at is not None
    assert any(n["what"] == "hangup" and n["by"] == "caller" for n in j.notes)
    assert call.ended is None
    json.dumps(j.to_dict())  # the record is plain data


def test_caller_hangs_up_while_keying_digits(sim):
    flow = sim.flow("""
        start:
          kind: gather
          prompt: "Enter your account number and the hash key."
          into: account
          digits: {min: 8, max: 8}
          next: agent
    """)
    j, _, _ = sim.run(flow, [(1, "1234"), (1, "hangup")])
    assert j.outcome == "abandoned"
    assert (j.prompts[0].interrupted, j.prompts[0].played_s) == (True, 1.0)
    assert "account" not in j.variables


def test_hangup_after_a_callback_was_stored_is_a_callback(sim):
    store = MemoryCallbacks()
    # "2" at 1 s, "1" confirms at 3 s; hang up during the thank-you.
    j, call, _ = sim.run(sim.flow(MENU), [(1, "2"), (2, "1"), (1, "hangup")],
                         services=sim.services(callbacks=store))
    assert len(store.requests) == 1
    assert j.outcome == "callback"
    assert j.prompts[-1].interrupted is True
    assert call.ended is None


def test_an_exception_in_a_handler_ends_the_call_cleanly(sim):
    j, call, _ = sim.run(sim.flow(MENU), [(1, "1")], services=sim.services(router=BrokenRouter()))
    assert j.outcome == "error"
    assert j.errors == ["RuntimeError: router down"]
    assert j.detail == "router down"
    assert texts(j)[-1] == APOLOGY
    assert call.ended == "normal"
    assert j.path == ["start", "sales"]


def test_an_error_after_a_resolution_keeps_the_resolution(sim):
    flow = sim.flow("""
        start: {kind: callback, queue: support, next: onwards}
        onwards: {kind: handoff, queue: general}
    """)
    j, _, _ = sim.run(flow, [(4, "1")], services=sim.services(router=BrokenRouter()))
    assert j.outcome == "callback"
    assert j.errors == ["RuntimeError: router down"]


def test_overflow_calls_are_handed_off_as_overflow(sim):
    router = RecordingRouter()
    j, _, _ = sim.run(sim.flow(MENU), [(1, "1")], services=sim.services(router=router), overflow=True)
    assert router.payloads[0]["reason"] == "overflow"
    jsonschema.validate(router.payloads[0], HANDOFF_SCHEMA)
    assert j.outcome == "handoff"


def test_overflow_can_start_at_another_node(sim):
    router = RecordingRouter()
    j, _, _ = sim.run(sim.flow(MENU), services=sim.services(router=router), overflow=True, start="agent")
    assert j.path == ["agent"]
    assert router.payloads[0]["reason"] == "overflow"


def test_a_loop_that_never_waits_is_stopped(sim):
    flow = sim.flow("""
        start: {kind: set, vars: {n: "= n + 1"}, next: check}
        check:
          kind: branch
          cases:
            - {when: "n < 0", goto: done}
          else: start
        done: {kind: hangup}
    """, extra="variables:\n  n: 0\n")
    j, call, _ = sim.run(flow)
    assert j.outcome == "error"
    assert len(j.errors) == 1 and "looped" in j.errors[0]
    assert MAX_INSTANT_STEPS < len(j.path) <= MAX_INSTANT_STEPS + 3
    assert texts(j) == [APOLOGY]
    assert call.ended == "normal"


def test_a_loop_that_waits_is_not_stopped(sim):
    flow = sim.flow("""
        start: {kind: say, prompt: "Tick.", next: count}
        count: {kind: set, vars: {n: "= n + 1"}, next: check}
        check:
          kind: branch
          cases:
            - {when: "n >= 1200", goto: done}
          else: start
        done: {kind: hangup}
    """, extra="variables:\n  n: 0\n")
    j, _, _ = sim.run(flow)
    assert j.outcome == "hangup"
    assert j.variables["n"] == 1200


def test_observers_see_the_call_as_it_happens(sim):
    events: list[tuple[str, dict]] = []
    j, _, _ = sim.run(sim.flow(MENU), [(1, "1")], observers=[lambda e, d: events.append((e, d))])
    kinds = [e for e, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    nodes = [d["node"] for e, d in events if e == "node"]
    assert nodes == ["start", "sales"]
    prompts = [d["text"] for e, d in events if e == "prompt"]
    assert prompts == ["For sales press 1, for support press 2, or stay on the line."]
    ends = [d for e, d in events if e == "prompt-end"]
    assert ends[0]["interrupted"] is True and ends[0]["played_s"] == 1.0
    [inp] = [d for e, d in events if e == "input"]
    assert (inp["node"], inp["value"], inp["result"]) == ("start", "1", "option")
    assert kinds.index("prompt") < kinds.index("input") < kinds.index("end")
    assert events[-1][1] == {"outcome": "handoff", "detail": "queued in sales", "duration_s": j.duration_s}


@pytest.mark.parametrize("when", [
    dt.datetime(2026, 11, 23, 10, 0, tzinfo=LONDON),  # Monday, open
    dt.datetime(2026, 11, 23, 23, 0, tzinfo=LONDON),  # Monday night, closed
    dt.datetime(2026, 7, 6, 10, 0, tzinfo=LONDON),  # summer time, open
    dt.datetime(2026, 7, 6, 23, 0, tzinfo=LONDON),  # summer time, closed
    dt.datetime(2026, 12, 25, 10, 0, tzinfo=LONDON),  # a holiday
])
@pytest.mark.parametrize("delay", [0, 0.5])
def test_default_flow_pressing_0_at_once_reaches_a_person(sim, default_flow, when, delay):
    router = RecordingRouter()
    services = sim.services(router=router, when=when)
    j, _, _ = sim.run(default_flow, [(delay, "0")], services=services)
    assert j.outcome == "handoff"
    [payload] = router.payloads
    assert payload["reason"] == "escape"
    jsonschema.validate(payload, HANDOFF_SCHEMA)
    is_open = when.hour == 10 and when.day != 25
    assert payload["queue"] == ("general" if is_open else "out_of_hours")
    assert j.duration_s < 10


def test_default_flow_billing_question_waits_then_reaches_billing(sim, default_flow):
    router = RecordingRouter()
    script = [(1, "1"), (3, "12345678#"), (5, "question")]
    j, _, _ = sim.run(default_flow, script, services=sim.services(router=router))
    assert j.path == ["check_hours", "welcome", "main_menu", "identify_billing", "identify.ask_account",
                      "identify.account_ok", "identify.done", "billing_menu", "billing_hold", "billing_agent"]
    [payload] = router.payloads
    assert payload["intent"] == "billing_query"
    assert payload["variables"] == {"account": "12345678"}
    assert j.variables["account_digits"] == 8 and j.variables["verified"] is True


def test_default_flow_after_hours_message(sim, default_flow):
    vm = MemoryVoicemail()
    when = dt.datetime(2026, 11, 23, 23, 0, tzinfo=LONDON)
    j, _, _ = sim.run(default_flow, [(1, "1"), (8, "my boiler is broken")],
                      services=sim.services(voicemail=vm, when=when))
    assert j.path == ["check_hours", "after_hours", "after_hours_voicemail"]
    assert j.outcome == "voicemail"
    assert vm.box("general").messages[0]["text"] == "my boiler is broken"


def test_default_flow_silent_caller_is_put_through(sim, default_flow):
    j, _, services = sim.run(default_flow)
    assert j.path == ["check_hours", "welcome", "main_menu", "agent"]
    assert services.router.payloads[0]["reason"] == "failures"
