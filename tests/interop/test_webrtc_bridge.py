"""A WebRTC caller handed to a person over SIP: the IVR calls the agent and bridges the audio.

The caller is an aiortc client as in test_webrtc.py; the agent is a SIPp phone
on 127.0.0.1. A browser has no SIP dialog to REFER, so the hand-off is a new
outgoing call carrying the hand-off headers and context, and the IVR relays
audio both ways. The echoing agent (SIPp -rtp_echo) sends the caller's voice
straight back, so what the caller hears proves both directions at once.
"""

from __future__ import annotations

import asyncio

import pytest

from ivr.services.router import decode_context

from .audio_match import find
from .conftest import http_router, logged, need, sipp_agent
from .phrases import phrase
from .test_webrtc import LOOPBACK, SPEECH_FLOW, Caller, gauge_back_to_zero, metrics, run

ECHO = "dial_uas_agent_echo.xml"


def errors(tmp, scenario: str) -> str:
    f = tmp / f"{scenario}.errors"
    return f.read_text()[-2000:] if f.exists() else ""


async def bridged(c: Caller) -> None:
    """Call, press 0 in the menu (the escape), and wait until the agent is on the line."""
    await c.dial()
    await c.wait_state("in-call")
    await c.wait_event("listen", keys=True, timeout=30)
    await c.press("0")
    await c.wait_event("input", value="0", result="escape")
    await c.wait(f"the agent ({c.messages[-1:]})",
                 lambda m: m["type"] == "state" and m.get("reason") == "with an agent", 40)


def test_key_0_bridges_to_a_sip_agent_with_the_context_and_audio_both_ways(serve, tmp_path):
    need("espeak-ng")
    words = phrase("billing please", tmp_path)
    with sipp_agent(tmp_path, ECHO, "-rtp_echo", timeout=60) as (agent, port):
        server = serve(SPEECH_FLOW, *LOOPBACK, "--speech-engine", "off", "--agents", f"sip:agent@127.0.0.1:{port}")

        async def call():
            c = Caller(server.http_port)
            try:
                await bridged(c)
                await asyncio.sleep(0.5)
                mark = len(c.heard)
                c.mic.say(words)
                await asyncio.sleep(len(words) / 8000 + 1.5)
                heard = bytes(c.heard[mark:])
                during = await metrics(server.http_port)
                await c.send({"type": "hangup"})
                ended = await c.wait_state("ended", timeout=10)
                await gauge_back_to_zero(server.http_port)
                return heard, during, ended, c.events("start")[0]["call_id"]
            finally:
                await c.close()

        heard, during, ended, call_id = run(call())
        assert agent.wait(15) == 0, errors(tmp_path, ECHO)  # the agent got the IVR's BYE
    # What the caller said went to the agent and came back through the bridge.
    match = find(heard, words.astype("<i2").tobytes())
    print("the caller's words, back from the agent:", match)
    assert match.score > 0.6, f"the echo of the caller's words was not heard: {match}"
    assert ended.get("reason") == "hangup"
    assert during['ivr_webrtc_bridges_total{result="answered"}'] == 1
    assert during["ivr_webrtc_calls"] == 1
    # The agent was told who and why, as a REFER would have.
    [queue] = logged(tmp_path, ECHO, "QUEUE ")
    [reason] = logged(tmp_path, ECHO, "REASON ")
    [ivr_call] = logged(tmp_path, ECHO, "CALLID ")
    [ctx] = logged(tmp_path, ECHO, "CONTEXT ")
    payload = decode_context(ctx)
    assert (queue, reason) == ("general", "escape")
    assert ivr_call == payload["call_id"] == call_id
    assert payload["path"] == ["main_menu", "agent"] and payload["channel"] == "webrtc"
    journey = server.wait_journeys(1)[0]
    assert journey["outcome"] == "handoff" and journey["path"] == ["main_menu", "agent"]
    m = run(metrics(server.http_port))
    assert m['ivr_webrtc_bridges_ended_total{side="caller"}'] == 1


def test_the_agent_hanging_up_ends_the_browser_call(serve, tmp_path):
    with sipp_agent(tmp_path, "dial_uas_hangs_up.xml", timeout=60) as (agent, port):
        server = serve(SPEECH_FLOW, *LOOPBACK, "--speech-engine", "off", "--agents", f"sip:agent@127.0.0.1:{port}")

        async def call():
            c = Caller(server.http_port)
            try:
                await bridged(c)
                ended = await c.wait_state("ended", timeout=10)  # the agent's BYE, 0.5 s after answering
                await asyncio.wait_for(c.closed.wait(), 10)
                await gauge_back_to_zero(server.http_port)
                return ended
            finally:
                await c.close()

        ended = run(call())
        assert agent.wait(15) == 0, errors(tmp_path, "dial_uas_hangs_up.xml")
    assert ended["reason"].startswith("agent hung up"), ended
    assert server.wait_journeys(1)[0]["outcome"] == "handoff"
    m = run(metrics(server.http_port))
    assert m['ivr_webrtc_bridges_ended_total{side="agent"}'] == 1


@pytest.mark.parametrize("scenario, outcome", [("dial_uas_busy.xml", "busy")])
def test_a_busy_agent_fails_the_hand_off_and_the_flow_goes_on(serve, tmp_path, scenario, outcome):
    with sipp_agent(tmp_path, scenario, timeout=60) as (agent, port):
        server = serve(SPEECH_FLOW, *LOOPBACK, "--speech-engine", "off", "--agents", f"sip:agent@127.0.0.1:{port}")

        async def call():
            c = Caller(server.http_port)
            try:
                await c.dial()
                await c.wait_state("in-call")
                await c.wait_event("listen", keys=True, timeout=30)
                await c.press("0")
                note = await c.wait_event("note", what="handoff-refused", timeout=30)
                ended = await c.wait_state("ended", timeout=20)  # on_failure: "Goodbye.", then the flow hangs up
                await gauge_back_to_zero(server.http_port)
                return note, ended
            finally:
                await c.close()

        note, ended = run(call())
        assert agent.wait(15) == 0, errors(tmp_path, scenario)
    print("refused:", note)
    assert ended["reason"] == "normal"
    journey = server.wait_journeys(1)[0]
    assert journey["path"] == ["main_menu", "agent", "goodbye"], journey["path"]
    m = run(metrics(server.http_port))
    assert m[f'ivr_webrtc_bridges_total{{result="{outcome}"}}'] == 1


def test_a_caller_who_leaves_while_the_agent_rings_cancels_the_agents_call(serve, tmp_path):
    with sipp_agent(tmp_path, "dial_uas_ring_cancel.xml", timeout=60) as (agent, port):
        server = serve(SPEECH_FLOW, *LOOPBACK, "--speech-engine", "off", "--agents", f"sip:agent@127.0.0.1:{port}")

        async def call():
            c = Caller(server.http_port)
            try:
                await c.dial()
                await c.wait_state("in-call")
                await c.wait_event("listen", keys=True, timeout=30)
                await c.press("0")
                await c.wait_event("node", node="agent")
                await asyncio.sleep(1.0)  # the agent's phone rings
                await c.send({"type": "hangup"})
                await c.wait_state("ended", timeout=10)
                await gauge_back_to_zero(server.http_port)
            finally:
                await c.close()

        run(call())
        assert agent.wait(15) == 0, errors(tmp_path, "dial_uas_ring_cancel.xml")  # CANCEL, 487, ACK
    journey = server.wait_journeys(1)[0]
    assert journey["outcome"] == "abandoned", journey
    m = run(metrics(server.http_port))
    assert m['ivr_webrtc_bridges_total{result="abandoned"}'] == 1


def test_an_http_router_names_the_target_and_the_browser_call_is_bridged_there(serve, tmp_path):
    scenario = "dial_uas_agent_hangs_up.xml"
    with sipp_agent(tmp_path, scenario) as (agent, port), \
            http_router({"target": f"sip:expert@127.0.0.1:{port}"}) as (url, seen):
        server = serve(SPEECH_FLOW, *LOOPBACK, "--speech-engine", "off", "--router", "http", "--router-url", url)

        async def call():
            c = Caller(server.http_port)
            try:
                await bridged(c)
                ended = await c.wait_state("ended", timeout=10)  # the agent hangs up 2 s after answering
                await gauge_back_to_zero(server.http_port)
                return ended
            finally:
                await c.close()

        ended = run(call())
        assert agent.wait(15) == 0, errors(tmp_path, scenario)
    assert ended["reason"].startswith("agent hung up"), ended
    journey = server.wait_journeys(1)[0]
    assert seen == [journey["handoff"]]  # the router saw the payload ...
    [ctx] = logged(tmp_path, scenario, "CONTEXT ")
    assert decode_context(ctx) == journey["handoff"]  # ... and the agent got the same
    [invited] = logged(tmp_path, scenario, "INVITE ")
    assert invited == f"<sip:expert@127.0.0.1:{port}>"
