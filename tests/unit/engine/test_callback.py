"""The callback node: confirm or capture a number, store the promise durably."""

from __future__ import annotations

import datetime as dt

import jsonschema
import pytest

from ivr.engine.handoff import HANDOFF_SCHEMA
from ivr.services.memory import MemoryCallbacks

from .conftest import MONDAY_10AM, texts

CALLBACK = """
start:
  kind: callback
  queue: billing
  within: 2h
  prompt: "We can ring you back."
"""
CALLER = "+441632960001"
SPOKEN_CALLER = "4 4 1 6 3 2 9 6 0 0 0 1"


class BrokenCallbacks:
    async def store(self, request):
        raise OSError("disk full")


@pytest.fixture
def flow(sim):
    return sim.flow(CALLBACK)


def test_caller_id_confirmed_with_1(sim, flow):
    store = MemoryCallbacks()
    j, call, _ = sim.run(flow, [(4, "1")], services=sim.services(callbacks=store))
    [(cb_id, req)] = store.requests
    assert req.number == CALLER
    assert req.queue == "billing"
    assert req.call_id == call.call_id
    assert req.due_by == MONDAY_10AM + dt.timedelta(seconds=4, hours=2)  # now + within, on the call's clock
    assert j.callback == {"id": cb_id, "number": CALLER, "queue": "billing",
                          "due_by": req.due_by.astimezone(dt.UTC).isoformat(timespec="seconds")}
    played = texts(j)
    assert played[0] == "We can ring you back."
    assert SPOKEN_CALLER in played[1] and "Press 1 to confirm" in played[1]
    assert SPOKEN_CALLER in played[2] and "within 2 hours" in played[2]
    assert played[-1] == "Goodbye."
    assert [(i.value, i.result) for i in j.inputs] == [("1", "confirm")]
    assert j.outcome == "callback"
    assert call.ended == "normal"


def test_the_stored_context_is_a_valid_handoff_payload(sim):
    flow = sim.flow("""
        start:
          kind: menu
          prompt: "Press 1 for billing."
          options:
            - {key: 1, intent: billing, set: {topic: bills}, goto: cb}
        cb: {kind: callback, queue: billing, within: 30m}
    """)
    store = MemoryCallbacks()
    j, call, _ = sim.run(flow, [(1, "1"), (2, "1")], services=sim.services(callbacks=store))
    [(_, req)] = store.requests
    jsonschema.validate(req.context, HANDOFF_SCHEMA)
    ctx = req.context
    assert ctx["queue"] == "billing"
    assert ctx["intent"] == "billing"
    assert ctx["variables"] == {"topic": "bills"}
    assert ctx["path"] == ["start", "cb"]
    assert ctx["reason"] == "choice"
    assert ctx["call_id"] == call.call_id and ctx["caller"] == CALLER
    assert req.due_by == MONDAY_10AM + dt.timedelta(seconds=3, minutes=30)
    assert "within 30 minutes" in texts(j)[-2]


def test_2_asks_for_another_number(sim, flow):
    store = MemoryCallbacks()
    script = [(4, "2"), (3, "07700900123#"), (2, "1")]
    j, _, _ = sim.run(flow, script, services=sim.services(callbacks=store))
    [(_, req)] = store.requests
    assert req.number == "07700900123"
    assert [(i.value, i.result) for i in j.inputs] == [
        ("2", "change-number"), ("07700900123", "valid"), ("1", "confirm")]
    played = texts(j)
    assert any(t.startswith("Please enter the number") for t in played)
    assert any("0 7 7 0 0 9 0 0 1 2 3" in t and "Press 1 to confirm" in t for t in played)


def test_a_caller_without_a_usable_number_is_asked_for_one(sim, flow):
    store = MemoryCallbacks()
    j, _, _ = sim.run(flow, [(2, "02079460000#"), (1, "1")], caller="anonymous",
                      services=sim.services(callbacks=store))
    assert store.requests[0][1].number == "02079460000"
    assert texts(j)[0].startswith("Please enter the number")


def test_number_ask_always_asks(sim):
    flow = sim.flow(CALLBACK.replace("  within: 2h", "  within: 2h\n  number: ask"))
    store = MemoryCallbacks()
    sim.run(flow, [(2, "02079460000#"), (1, "1")], services=sim.services(callbacks=store))
    assert store.requests[0][1].number == "02079460000"


def test_too_short_a_number_is_a_no_match(sim, flow):
    store = MemoryCallbacks()
    script = [(4, "2"), (3, "123#"), (3, "02079460000#"), (1, "1")]
    j, _, _ = sim.run(flow, script, services=sim.services(callbacks=store))
    assert [i.result for i in j.inputs] == ["change-number", "no-match", "valid", "confirm"]
    assert store.requests[0][1].number == "02079460000"


@pytest.mark.parametrize("said", ["yes please", "that's right"])
def test_spoken_confirmation(sim, flow, said):
    store = MemoryCallbacks()
    j, _, _ = sim.run(flow, [(4, said)], services=sim.services(callbacks=store))
    assert len(store.requests) == 1
    assert j.inputs[0].result == "confirm"


def test_store_failure_apologises_and_escapes(sim, flow):
    j, _, services = sim.run(flow, [(4, "1")], services=sim.services(callbacks=BrokenCallbacks()))
    assert "Sorry, we could not book your callback." in texts(j)
    assert j.path == ["start", "agent"]
    assert j.visits[-1].via == "escape"
    assert any("disk full" in e for e in j.errors)
    assert j.callback is None
    assert services.router.payloads[0]["reason"] == "escape"
    assert j.outcome == "handoff"


@pytest.mark.parametrize("action", ["0", "operator"])
def test_escape_from_the_confirmation(sim, flow, action):
    store = MemoryCallbacks()
    j, _, _ = sim.run(flow, [(4, action)], services=sim.services(callbacks=store))
    assert j.path == ["start", "agent"]
    assert j.visits[-1].via == "escape"
    assert store.requests == []


def test_escape_while_entering_a_number(sim, flow):
    j, _, _ = sim.run(flow, [(4, "2"), (3, "0#")])
    assert j.path == ["start", "agent"]
    assert j.inputs[-1].result == "escape"


def test_node_escape_override_goes_to_its_own_target(sim):
    flow = sim.flow(CALLBACK + """
  escape: {to: night_team}
night_team: {kind: handoff, queue: night}
""")
    j, _, services = sim.run(flow, [(4, "0")])
    assert j.path == ["start", "night_team"]
    assert services.router.payloads[0]["queue"] == "night"


def test_silence_at_the_confirmation_escapes_after_two_failures(sim, flow):
    store = MemoryCallbacks()
    j, _, _ = sim.run(flow, services=sim.services(callbacks=store))
    assert [i.result for i in j.inputs] == ["no-input", "no-input"]
    assert j.path == ["start", "agent"]
    assert j.visits[-1].via == "failures"
    assert store.requests == []


def test_next_continues_after_storing(sim):
    flow = sim.flow(CALLBACK + """
  next: bye
bye: {kind: hangup, prompt: "Bye now."}
""")
    j, _, _ = sim.run(flow, [(4, "1")])
    assert j.path == ["start", "bye"]
    assert texts(j)[-1] == "Bye now."
    assert "Goodbye." not in texts(j)
    assert j.outcome == "callback"  # the hangup node keeps the resolution


def test_a_caller_id_that_is_an_address_is_not_offered_as_a_number(sim, flow):
    from ivr.engine.virtual import VirtualCall

    store = MemoryCallbacks()
    sim.run(flow, [(2, "02079460000#"), (1, "1")], call=VirtualCall(caller="webrtc:127.0.0.1"),
            services=sim.services(callbacks=store))
    assert store.requests[0][1].number == "02079460000"  # asked for, never "127001"
