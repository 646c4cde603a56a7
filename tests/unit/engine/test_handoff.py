"""The handoff node: the payload the router gets, and what happens when it says no."""

from __future__ import annotations

import asyncio

import jsonschema
import pytest

from ivr.engine.handoff import HANDOFF_SCHEMA, SCHEMA_ID
from ivr.engine.virtual import VirtualCall
from ivr.services.memory import RecordingRouter

from .conftest import texts

FLOW = """
start:
  kind: menu
  prompt: "Press 1 for billing."
  options:
    - {key: 1, intent: billing, set: {tier: gold}, goto: ask}
ask:
  kind: gather
  prompt: "Enter your account number."
  into: account
  digits: {min: 4, max: 4}
  next: billing
billing:
  kind: handoff
  queue: billing
  skills: [billing, payments]
  priority: 7
  context: [account]
  target: "sip:billing@example.org"
  prompt: "Connecting you to billing."
  on_failure: sorry
sorry:
  kind: callback
  queue: billing
"""
SCRIPT = [(1, "7"), (2, "1"), (2, "1234")]  # a wrong key first, then billing, then the account


class ClockedRouter(RecordingRouter):
    """Notes the loop time of each hand-off."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.at: list[float] = []

    async def handoff(self, call, payload, target):
        self.at.append(asyncio.get_running_loop().time())
        return await super().handoff(call, payload, target)


@pytest.fixture
def flow(sim):
    return sim.flow(FLOW, extra="variables:\n  brand: Test\n")


def test_payload_validates_and_carries_the_call(sim, flow):
    router = ClockedRouter()
    j, call, _ = sim.run(flow, SCRIPT, services=sim.services(router=router))
    [payload] = router.payloads
    jsonschema.validate(payload, HANDOFF_SCHEMA)
    assert payload["schema"] == SCHEMA_ID
    assert payload["queue"] == "billing"
    assert payload["skills"] == ["billing", "payments"]
    assert payload["priority"] == 7
    assert payload["target"] == "sip:billing@example.org"
    assert payload["intent"] == "billing"
    assert payload["reason"] == "choice"
    assert payload["variables"] == {"account": "1234"}  # context: [account] keeps only that
    assert payload["path"] == ["start", "ask", "billing"]
    assert payload["attempts"] == {"start": {"no_input": 0, "no_match": 1}}
    assert payload["wait_s"] == round(router.at[0], 3)  # the wait when the router got the call
    assert payload["call_id"] == call.call_id and payload["caller"] == call.caller
    assert payload["dialled"] == call.dialled and payload["channel"] == "fake"
    assert payload["language"] == "en-GB"
    assert payload["node"] == "billing"
    assert payload["flow"] == {"name": "Test line", "version": flow.digest}
    assert payload["started_at"] == j.started_at
    assert j.handoff == payload
    assert j.outcome == "handoff"
    assert texts(j)[-1] == "Connecting you to billing."
    assert call.ended == "normal"  # the transfer target has the caller: the IVR leaves its own leg


def test_payload_without_context_carries_every_variable(sim):
    flow = sim.flow(FLOW.replace("  context: [account]\n", ""), extra="variables:\n  brand: Test\n")
    j, _, services = sim.run(flow, SCRIPT)
    assert services.router.payloads[0]["variables"] == {"brand": "Test", "tier": "gold", "account": "1234"}


def test_node_intent_overrides_the_chosen_one(sim):
    flow = sim.flow(FLOW.replace("  priority: 7", "  priority: 7\n  intent: payments"))
    _, _, services = sim.run(flow, SCRIPT)
    assert services.router.payloads[0]["intent"] == "payments"


def test_transfer_carries_summary_headers(sim, flow):
    router = RecordingRouter(transfer=True)
    j, call, _ = sim.run(flow, SCRIPT, services=sim.services(router=router))
    [(target, headers, _)] = call.transfers
    assert target == "sip:billing@example.org"
    assert headers == {"X-IVR-Intent": "billing", "X-IVR-Queue": "billing", "X-IVR-Reason": "choice",
                       "X-IVR-Priority": "7", "X-IVR-Skills": "billing,payments"}
    assert j.outcome == "handoff"


def test_router_refusal_goes_to_on_failure(sim, flow):
    router = RecordingRouter(accept=False)
    j, _, _ = sim.run(flow, SCRIPT + [(8, "1")], services=sim.services(router=router))
    assert j.path == ["start", "ask", "billing", "sorry"]
    assert j.visits[-1].via == "failure"
    assert any(n["what"] == "handoff-refused" and n["detail"] == "no agents" for n in j.notes)
    assert j.handoff is None
    assert j.outcome == "callback"


def test_refused_transfer_goes_to_on_failure(sim, flow):
    router = RecordingRouter(transfer=True)
    j, call, _ = sim.run(flow, SCRIPT + [(8, "1")], call=VirtualCall(transfer_ok=False),
                         services=sim.services(router=router))
    assert len(call.transfers) == 1
    assert j.path == ["start", "ask", "billing", "sorry"]
    assert j.outcome == "callback"


def test_router_refusal_without_on_failure_apologises_and_hangs_up(sim):
    flow = sim.flow("""
        start: {kind: handoff, queue: general}
    """)
    j, call, _ = sim.run(flow, services=sim.services(router=RecordingRouter(accept=False)))
    assert texts(j) == ["Sorry, nobody can take your call right now. Please call again later. Goodbye."]
    assert j.outcome == "hangup"
    assert "no agents" in j.detail
    assert call.ended == "normal"
    assert j.handoff is None


@pytest.mark.parametrize("action, reason", [("0", "escape"), ("1", "choice")])
def test_reason_follows_how_the_caller_got_there(sim, action, reason):
    flow = sim.flow("""
        start:
          kind: menu
          prompt: "Press 1."
          options:
            - {key: 1, goto: agent}
    """)
    _, _, services = sim.run(flow, [(1, action)])
    assert services.router.payloads[0]["reason"] == reason
