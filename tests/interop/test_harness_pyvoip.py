"""`ivr test --driver pyvoip`: the repository's journeys placed by pyVoIP phones, for real.

A pyVoIP phone reaches the IVR only through its registrar, so the line is
pyVoIP -> Kamailio -> `ivr serve` (flows.yaml, hours fixed open), which
registered itself at Kamailio as sip:ivr. The journeys run as calls at once
(load mode, one call per journey), which also keeps this file quick:

- every open-hours journey passes: prompts recognised from the audio, keys
  (RFC 4733 from pyVoIP's own RTP stream, SIP INFO, and tones on a call
  offered without telephone-event) taken by the IVR,
  speech heard by its recogniser, hold music, the voicemail beep, and the
  hand-off's REFER with its queue, reason and context;
- a call outlasts 32 s: the ACK the driver sends in place of pyVoIP's broken
  one reaches the IVR through Kamailio, so the IVR does not hang up for want
  of it;
- what pyVoIP cannot do (headers on its INVITE) fails the journey saying so,
  and a number nobody registered fails with Kamailio's 404.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from . import test_harness as th
from .conftest import need, start_server, stop_server
from .kamailio import pyvoip, registered, run_kamailio

TOKEN = "pyvoip-harness-token"

LONG_CALL = """\
journey: a pyVoIP call outlasts 32 s on hold
tags: [open-hours, long]
caller: "+441632960009"
language: en-GB
steps:
  - expect_prompt: {text: "For billing and payments, press 1 or say billing.", id: main_menu, within: 20s}
  - press: "1"
  - expect_prompt: "Please enter your 8 digit account number, followed by the hash key."
  - press: "11223344#"
  - expect_prompt: "Thanks. To pay a bill, press 1 or say pay."
  - press: "2"
  - expect_prompt: "All our billing advisers are busy. Please hold, or press 1 and we will call you back."
  # 30 s into the hold, so well past the 32 s an IVR waits for the ACK of its 200 OK
  - expect_prompt: {text: "Thank you for waiting. You can press 1 at any time for a callback.", within: 40s}
  - press: "1"
  - expect_prompt: "We'll ring you back as soon as an adviser is free."
  - hangup
"""


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    """Kamailio, and `ivr serve` on flows.yaml (always open) registered there: (kamailio, server)."""
    pyvoip()  # skip where pyVoIP cannot load
    need("espeak-ng")
    tmp = tmp_path_factory.mktemp("pyvoip-harness")
    with run_kamailio(tmp / "kamailio") as k:
        flow = th.flow_variant(tmp, "open")
        server = start_server(tmp, flow, "--register", f"sip:ivr@127.0.0.1:{k.port}", "--api-token", TOKEN,
                              "--speech-engine", "pocketsphinx")
        try:
            registered(server)
            yield k, server
        finally:
            stop_server(server)


def _pyvoip_test(k, out: Path, *args: str, user: str = "ivr", timeout: float = 300) -> tuple[str, dict]:
    """`ivr test --driver pyvoip` dialling `user` through Kamailio: its output, and its JSON results."""
    # "localhost": pyVoIP writes its registrar's name without the port; the test config takes it as its own.
    proc = th.ivr_test(*args, "--driver", "pyvoip", "--target", f"sip:{user}@127.0.0.1:{k.port}",
                       "--registrar", f"localhost:{k.port}", "--json", str(out), timeout=timeout)
    print(proc.stdout[-4000:], proc.stderr[-3000:], file=sys.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout, json.loads(out.read_text())


def test_the_repository_journeys_pass_with_pyvoip_phones_through_kamailio(line, tmp_path):
    k, server = line
    (tmp_path / "long.yaml").write_text(LONG_CALL)
    (tmp_path / "tones.yaml").write_text(th.TONES.replace("language:", 'caller: "+441632960077"\ntags: [open-hours]\nlanguage:'))
    tones_before = th.tones_heard(server)
    stdout, doc = _pyvoip_test(k, tmp_path / "results.json", "journeys", str(tmp_path / "long.yaml"),
                               str(tmp_path / "tones.yaml"), "-k", "open-hours",
                               "--events", f"http://127.0.0.1:{server.http_port}", "--api-token", TOKEN,
                               "--load", "6", "--rate", "6")
    results = {r["name"]: r for r in doc["journeys"]}
    assert len(results) == 6 and all(r["driver"] == "pyvoip" for r in results.values()), results.keys()
    assert all(r["passed"] for r in results.values()), stdout
    assert "6 journeys: 6 passed, 0 failed" in stdout
    steps = [s for r in results.values() for s in r["steps"]]
    # Prompts from the audio pyVoIP's RTP socket received, and confirmed by the engine's events.
    prompts = [s for s in steps if s["kind"] == "expect_prompt"]
    assert prompts and all(s["evidence"]["via"] == "audio" for s in prompts), prompts
    assert any(s["evidence"].get("event") for s in prompts)

    escape = results["key 0 reaches a person"]
    [handoff] = [s for s in escape["steps"] if s["kind"] == "expect_handoff"]
    ev = handoff["evidence"]
    assert ev["via"] == "refer" and ev["headers"]["X-IVR-Queue"] == "general"
    assert ev["headers"]["X-IVR-Reason"] == "escape" and ev["context"]["caller"] == "+441632960001"
    assert escape["steps"][-1]["kind"] == "expect_hangup" and escape["steps"][-1]["status"] == "passed"
    assert "pressed 0 (rfc4733)" in [s["detail"] for s in escape["steps"]]  # from pyVoIP's own RTP stream
    pay = results["pay a bill with the account number"]
    assert "pressed 1 (info)" in [s["detail"] for s in pay["steps"]]
    assert "12345678" in json.dumps(pay["steps"])  # the account number went to the agents
    assert any(s["kind"] == "expect_hold_music" for s in steps)
    assert any(s["kind"] == "expect_voicemail" and s["status"] == "passed" for s in steps)

    # The IVR's own records: every key and the spoken word reached it.
    calls = {j["caller"]: j for j in server.wait_journeys(6)}
    inputs = {caller: [(i["via"], i["value"]) for i in j["inputs"]] for caller, j in calls.items()}
    assert inputs["+441632960001"] == [("dtmf", "0")]
    assert inputs["+441632960002"] == [("dtmf", "1"), ("dtmf", "12345678"), ("dtmf", "1")]  # the last by INFO
    assert ("speech", "appointment") in inputs["+441632960004"]
    # Offered without telephone-event, the key went as a tone in pyVoIP's audio, and the IVR heard it so.
    assert inputs["+441632960077"] == [("dtmf", "0")] and th.tones_heard(server) == tones_before + 1
    assert "pressed 0 (inband)" in [s["detail"] for s in results["key 0 as a tone on a call without telephone-event"]["steps"]]
    assert calls["+441632960001"]["outcome"] == "handoff" and calls["+441632960002"]["outcome"] == "handoff"
    assert all(j["dialled"] == "ivr" for j in calls.values())
    log = k.log_text()
    assert re.search(rf"REQ INFO sip:ivr@127\.0\.0\.1:{server.sip_port}\b", log)  # on the dialog, via Kamailio
    assert "RPL 202 Accepted for REFER" in log and "RPL 200 OK for NOTIFY" in log

    # Past 32 s, and the ACK went through Kamailio to the IVR's contact: no hang-up for want of it.
    long = results["a pyVoIP call outlasts 32 s on hold"]
    waited = next(s for s in long["steps"] if "Thank you for waiting" in s["label"])
    assert waited["evidence"]["at_s"] > 33, waited
    assert re.search(rf"REQ ACK sip:ivr@127\.0\.0\.1:{server.sip_port}\b", log)
    assert "no ACK" not in server.log.read_text()


def test_what_pyvoip_cannot_do_fails_saying_so(line, tmp_path):
    k, _server = line
    (tmp_path / "headers.yaml").write_text(
        "journey: a call with a header\nheaders: {X-Test-Run: \"42\"}\nsteps:\n  - expect_hangup\n")
    (tmp_path / "nobody.yaml").write_text("journey: a number nobody registered\nsteps:\n  - expect_hangup\n")
    stdout, doc = _pyvoip_test(k, tmp_path / "r.json", str(tmp_path / "headers.yaml"), str(tmp_path / "nobody.yaml"),
                               user="nobody", timeout=60)
    results = {r["name"]: r for r in doc["journeys"]}
    headers, nobody = results["a call with a header"], results["a number nobody registered"]
    assert not headers["passed"] and not nobody["passed"]
    assert "the pyvoip driver cannot add headers to its INVITE (X-Test-Run)" in headers["error"], headers
    assert "FAIL a call with a header: the pyvoip driver cannot add headers" in stdout
    # Kamailio's 404 (no binding for sip:nobody) reached the harness; pyVoIP alone would hang on.
    assert nobody["error"] == "the call was not answered: 404 Not Found", nobody


def test_without_pyvoip_the_driver_says_how_to_install_it(monkeypatch):
    from ivr.harness.line import DriverCannot
    from ivr.harness.pyvoip_phone import load_pyvoip

    monkeypatch.setitem(sys.modules, "pyVoIP.VoIP", None)  # as if it were not installed
    with pytest.raises(DriverCannot, match=r"needs pyVoIP 1\.6\.8 .*pip install 'ivr-engine\[test\]'"):
        load_pyvoip()
