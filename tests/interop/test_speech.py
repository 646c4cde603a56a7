"""Callers talk to the IVR through baresip: speech over real SIP calls, with pocketsphinx.

One `ivr serve --speech-engine pocketsphinx` on tests/interop/flows/speech.yaml
takes five baresip calls at once. Each phone's microphone is a WAV (see
`phrases`): faint line noise, then at a known moment what the caller says,
then line noise until the call is over. The calls:

- "billing", 1.5 s into the menu prompt: the prompt stops (barge-in by voice)
  and the caller reaches the billing branch;
- "talk to an agent": the escape, a hand-off by REFER; baresip transfers
  itself to a stand-in agent phone owned by the test, whose answer completes
  the hand-off;
- mumbling (wordless speech-like noise): a no-match, not an option;
- silence: a no-input 4 s after the prompt ends, the retry, and then the
  escape after two failures in a row;
- a key (RFC 4733) in the same speech-enabled menu.

Every call is checked through its journey record, found by its SIP Call-ID.
"""

from __future__ import annotations

import hashlib
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .audio_match import RATE
from .conftest import HERE, need, start_server, stop_server
from .phrases import MicFile, mic_file, mumble, phrase
from .sipclient import COMPACT, Msg, parse_msg
from .softphones import Baresip, SoftphoneError

FLOWS = HERE / "flows" / "speech.yaml"
# When the caller starts talking, in seconds from the start of the call (the mic file's start).
LEAD = 1.5
# From the flow's speech settings (defaults): silence after the prompt that is a no-input.
NO_SPEECH_TIMEOUT = 4.0
# Generous: the calls run at once, on a shared 2-core machine.
CALL_TIMEOUT = 90.0


# --- a stand-in for the agents' phones ------------------------------------------------------

class Agent:
    """A person's phone on 127.0.0.1 that answers every call at once (the hand-off target).

    baresip carries out the IVR's REFER by calling here; the 200 OK it gets
    makes it report success to the IVR (NOTIFY 200), which completes the
    hand-off. Requests are answered statelessly (a retransmission gets the
    same answer); the INVITEs are kept for the test."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        # Where the callers' audio goes; never read (the kernel drops what does not fit).
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.invites: list[Msg] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="agent-phone", daemon=True)

    @property
    def uri(self) -> str:
        return f"sip:agents@127.0.0.1:{self.port}"

    def start(self) -> Agent:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        self.rtp.close()

    def invites_from(self, sip_port: int) -> list[Msg]:
        """The INVITEs sent by the phone listening on `sip_port` (its From names it)."""
        with self._lock:
            return [m for m in self.invites
                    if (f := re.search(r"@127\.0\.0\.1:(\d+)", m.get("From") or "")) and int(f[1]) == sip_port]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                msg = parse_msg(data)
            except (ValueError, IndexError):
                continue
            if not msg.method or msg.method == "ACK":
                continue
            if msg.method == "INVITE":
                with self._lock:
                    if not any(m.get("Call-ID") == msg.get("Call-ID") for m in self.invites):
                        self.invites.append(msg)
            self.sock.sendto(self._answer(msg), addr)

    def _answer(self, req: Msg) -> bytes:
        tag = hashlib.sha1((req.get("Call-ID") or "").encode()).hexdigest()[:8]
        lines = ["SIP/2.0 200 OK"]
        for name, value in req.headers:
            full = COMPACT.get(name.lower(), name.lower())
            if full == "to" and ";tag=" not in value:
                value += f";tag={tag}"
            if full in ("via", "from", "to", "call-id", "cseq"):
                lines.append(f"{name}: {value}")
        lines.append(f"Contact: <sip:agents@127.0.0.1:{self.port}>")
        body = ""
        if req.method == "INVITE":
            rtp = self.rtp.getsockname()[1]
            body = ("v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                    f"m=audio {rtp} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


# --- the calls ------------------------------------------------------------------------------

@dataclass
class Placed:
    """One baresip call and what came of it."""

    name: str
    mic: MicFile
    sip_port: int = 0
    call_id: str = ""
    closed: dict | None = None  # baresip's CALL_CLOSED event for the IVR leg
    seconds: float = 0.0
    error: BaseException | None = None
    journey: dict = field(default_factory=dict)
    agent_invites: list[Msg] = field(default_factory=list)

    def check(self) -> dict:
        """The journey, or the reason the call could not be placed as planned."""
        if self.error is not None:
            raise AssertionError(f"call {self.name!r} failed: {self.error}") from self.error
        assert self.journey, f"call {self.name!r}: no journey for Call-ID {self.call_id}"
        return self.journey


def press_3_once_something_is_heard(phone: Baresip) -> None:
    """Press 3 a second into the menu prompt (by what the phone has heard, not by a sleep)."""
    end = time.monotonic() + 30
    while len(phone.heard()) < 2 * RATE * 1.0:
        if time.monotonic() > end:
            raise SoftphoneError(f"heard only {len(phone.heard()) / 2 / RATE:.2f} s of the menu")
        time.sleep(0.05)
    phone.send_digits("3")


def place_call(name: str, mic: MicFile, workdir: Path, uri: str, agent: Agent,
               action: Callable[[Baresip], None] | None) -> Placed:
    """Dial, act, and wait until the IVR ends the call (or the phone gives up)."""
    placed = Placed(name, mic)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with Baresip(workdir, mic.path) as phone:
            placed.sip_port = phone.sip_port
            established = phone.dial(uri, timeout=30)
            t0 = time.monotonic()
            placed.call_id = established["id"]
            if action is not None:
                action(phone)
            placed.closed = phone.wait_for(
                lambda m: m.get("event") and m.get("type") == "CALL_CLOSED" and m.get("id") == placed.call_id,
                CALL_TIMEOUT, "CALL_CLOSED of the IVR call")
            placed.seconds = time.monotonic() - t0
            placed.agent_invites = agent.invites_from(phone.sip_port)
    except Exception as exc:  # reported by the test that owns this call
        placed.error = exc
    return placed


def find_journey(server, call_id: str, timeout: float = 30.0) -> dict:
    """The journey of one call, once the server has written it (it appends when the call is over)."""
    end = time.monotonic() + timeout
    while True:
        try:
            journeys = server.journeys()
        except ValueError:  # caught the server half-way through writing a line
            journeys = []
        for j in journeys:
            if j["call_id"] == call_id:
                return j
        if time.monotonic() > end:
            raise AssertionError(f"no journey for {call_id}\n{server.log.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> Iterator[dict[str, Placed]]:
    """All the module's calls, placed at once against one server; keyed by scenario."""
    for program in ("baresip", "espeak-ng", "sox"):
        need(program)
    tmp = tmp_path_factory.mktemp("speech")
    (tmp / "server").mkdir()
    mics = {
        "billing": mic_file(tmp / "billing.wav", phrase("billing", tmp), lead=LEAD, seed=1),
        "agent": mic_file(tmp / "agent.wav", phrase("talk to an agent", tmp), lead=LEAD, seed=2),
        "mumble": mic_file(tmp / "mumble.wav", mumble(2.0), lead=LEAD, seed=3),
        "silence": mic_file(tmp / "silence.wav", None, seed=4),
        "dtmf": mic_file(tmp / "dtmf.wav", None, seed=5),
    }
    actions = {"dtmf": press_3_once_something_is_heard}
    agent = Agent().start()
    server = start_server(tmp / "server", FLOWS, "--speech-engine", "pocketsphinx", "--agents", agent.uri)
    try:
        uri = f"sip:ivr@127.0.0.1:{server.sip_port}"
        with ThreadPoolExecutor(max_workers=len(mics)) as pool:
            futures = {name: pool.submit(place_call, name, mic, tmp / name, uri, agent, actions.get(name))
                       for name, mic in mics.items()}
            placed = {name: f.result() for name, f in futures.items()}
        for p in placed.values():
            if p.error is None:
                try:
                    p.journey = find_journey(server, p.call_id)
                except AssertionError as exc:
                    p.error = exc
            menu = next((x for x in p.journey.get("prompts", []) if x["node"] == "main_menu"), {})
            print(f"{p.name}: {p.seconds:.1f} s, path {p.journey.get('path')}, inputs "
                  f"{[(i['via'], i['value'], i['result'], i['t']) for i in p.journey.get('inputs', [])]}, "
                  f"menu prompt played {menu.get('played_s')} s (interrupted {menu.get('interrupted')}), "
                  f"speech onset {p.mic.onset:.2f} s; {p.error or ''}")
        yield placed
    finally:
        stop_server(server)
        agent.close()


# --- checks shared by the tests -------------------------------------------------------------

def menu_prompt(journey: dict) -> dict:
    return next(p for p in journey["prompts"] if p["node"] == "main_menu")


def ended_by_the_ivr(placed: Placed, journey: dict, outcome: str) -> None:
    """The IVR ended the call itself (BYE to the phone), with no error on either side."""
    assert journey["outcome"] == outcome, journey
    assert journey["errors"] == [], journey["errors"]
    assert not any(n.get("what") == "hangup" and n.get("by") == "caller" for n in journey["notes"]), journey["notes"]
    # baresip reports a BYE from the far end as "Connection reset by peer".
    assert placed.closed is not None and "reset" in placed.closed.get("param", "").lower(), placed.closed


def handed_to_the_agent(placed: Placed, journey: dict, reason: str) -> None:
    """The hand-off went through: the REFER was carried out and the agent's phone answered."""
    ended_by_the_ivr(placed, journey, "handoff")
    assert journey["path"][-1] == "agent", journey["path"]
    assert journey["handoff"]["queue"] == "general" and journey["handoff"]["reason"] == reason, journey["handoff"]
    assert placed.agent_invites, "baresip never called the agent: the REFER was not carried out"
    # The REFER's Refer-To carries the summary as URI headers; baresip 1.0.0 keeps them in the
    # Request-URI of its INVITE rather than turning them into header fields.
    invite = placed.agent_invites[0]
    seen = invite.first + "\n" + "\n".join(f"{n}={v}" for n, v in invite.headers)
    assert "X-IVR-Queue=general" in seen and f"X-IVR-Reason={reason}" in seen, invite.first


# --- the tests ------------------------------------------------------------------------------

def test_saying_billing_over_the_prompt_barges_in_and_picks_billing(calls):
    placed = calls["billing"]
    journey = placed.check()
    assert journey["path"] == ["main_menu", "billing"], journey
    (answer,) = journey["inputs"]
    assert (answer["node"], answer["via"], answer["value"], answer["result"]) == \
        ("main_menu", "speech", "billing", "option"), answer
    assert journey["intent"] == "billing"
    # Barge-in: the caller spoke at `onset` (mic time, which starts with the call), so the prompt
    # stopped about a tenth of a second later (the VAD's start), not when it ran out.
    prompt, onset = menu_prompt(journey), placed.mic.onset
    assert prompt["interrupted"] is True, prompt
    stopped_at = prompt["t"] + prompt["played_s"]
    assert onset - 0.3 <= stopped_at, (prompt, onset)  # not before the caller said anything
    assert prompt["played_s"] < onset + 1.0, (prompt, onset)
    # The answer came after the caller finished, once the end silence had passed.
    assert answer["t"] >= placed.mic.end, (answer, placed.mic)
    billing = next(p for p in journey["prompts"] if p["node"] == "billing")
    assert billing["interrupted"] is False, billing
    ended_by_the_ivr(placed, journey, "hangup")


def test_talk_to_an_agent_escapes_to_a_person(calls):
    placed = calls["agent"]
    journey = placed.check()
    assert journey["path"] == ["main_menu", "agent"], journey
    (answer,) = journey["inputs"]
    assert (answer["node"], answer["via"], answer["result"]) == ("main_menu", "speech", "escape"), answer
    # The whole request is one of the default escape phrases, so it is heard as said.
    assert answer["value"] == "talk to an agent", answer
    assert menu_prompt(journey)["interrupted"] is True
    visit = journey["visits"][-1]
    assert (visit["node"], visit["via"]) == ("agent", "escape"), visit
    handed_to_the_agent(placed, journey, "escape")


def test_mumbling_is_a_no_match_not_an_option(calls):
    placed = calls["mumble"]
    journey = placed.check()
    first = journey["inputs"][0]
    assert (first["node"], first["via"], first["result"]) == ("main_menu", "speech", "no-match"), journey["inputs"]
    assert first["value"] == "", first
    # The caller heard the apology and the menu again; then silence, a second failure in a
    # row, and the escape after failures puts the caller through to a person.
    assert [i["result"] for i in journey["inputs"]] == ["no-match", "no-input"], journey["inputs"]
    assert any(n.get("what") == "escape-after-failures" for n in journey["notes"]), journey["notes"]
    handed_to_the_agent(placed, journey, "failures")


def test_silence_is_a_no_input_after_the_speech_timeout_then_retried(calls):
    placed = calls["silence"]
    journey = placed.check()
    inputs = journey["inputs"]
    assert [(i["node"], i["via"], i["value"], i["result"]) for i in inputs] == \
        [("main_menu", "timeout", "", "no-input")] * 2, inputs
    # The first no-input: the whole prompt played (nobody spoke over it), then 4 s of silence.
    prompt = menu_prompt(journey)
    assert prompt["interrupted"] is False, prompt
    waited = inputs[0]["t"] - (prompt["t"] + prompt["played_s"])
    assert NO_SPEECH_TIMEOUT - 0.3 <= waited <= NO_SPEECH_TIMEOUT + 2.0, (waited, prompt, inputs[0])
    # The retry: the apology, then the reprompt, and the menu listens again.
    texts = [p["text"] for p in journey["prompts"]]
    assert texts[1:3] == ["I didn't hear you.", "Billing, technical support or sales?"], texts
    reprompt = journey["prompts"][2]
    waited = inputs[1]["t"] - (reprompt["t"] + reprompt["played_s"])
    assert NO_SPEECH_TIMEOUT - 0.3 <= waited <= NO_SPEECH_TIMEOUT + 2.0, (waited, reprompt, inputs[1])
    # Two failures in a row: the escape after failures puts the caller through.
    assert any(n.get("what") == "escape-after-failures" for n in journey["notes"]), journey["notes"]
    assert texts[3] == "Putting you through.", texts
    handed_to_the_agent(placed, journey, "failures")


def test_a_key_still_works_in_the_speech_menu(calls):
    placed = calls["dtmf"]
    journey = placed.check()
    assert journey["path"] == ["main_menu", "sales"], journey
    (answer,) = journey["inputs"]
    assert (answer["node"], answer["via"], answer["value"], answer["result"], answer["reason"]) == \
        ("main_menu", "dtmf", "3", "option", "menu-key"), answer
    assert menu_prompt(journey)["interrupted"] is True  # the key stopped the prompt
    ended_by_the_ivr(placed, journey, "hangup")
    assert math.isnan(placed.mic.onset)  # the caller said nothing: line noise only
