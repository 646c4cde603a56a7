"""Kamailio in front of the IVR: the IVR registers itself as extension `ivr`, and
a pyVoIP phone registered as `caller` reaches it only through Kamailio's
location service (pyVoIP sends everything to its registrar)."""

from __future__ import annotations

import re
import threading
import time

import pytest

from ivr.sip.rtp import DtmfSender

from .conftest import HERE, Server, free_port, stop_server
from .kamailio import Kamailio, registered, run_kamailio, sip_probe
from .kamailio import pyvoip as _pyvoip

FLOWS = HERE / "flows" / "menu.yaml"


@pytest.fixture
def kamailio(tmp_path):
    """Kamailio on a free loopback port. Ask for it before `serve`, so it outlives the IVR."""
    with run_kamailio(tmp_path / "kamailio") as k:
        yield k


def test_ivr_registers_refreshes_and_unregisters(kamailio, serve):
    """The IVR's binding at Kamailio routes requests for sip:ivr to it, outlives
    its 2 s lifetime by refreshing, and is removed when the IVR shuts down."""
    k = kamailio
    server = serve(FLOWS, "--register", f"sip:ivr@127.0.0.1:{k.port}", "--register-expires", "2")
    reg = registered(server)
    assert reg["aor"] == f"sip:ivr@127.0.0.1:{k.port}" and reg["state"] == "registered"
    assert reg["last_error"] is None and 0 < reg["expires_in"] <= 2
    # Kamailio has no static route to the IVR: this OPTIONS reaches it by the registration.
    answer = sip_probe(k.port, f"sip:ivr@127.0.0.1:{k.port}")
    assert answer.startswith("SIP/2.0 200 OK") and "Accept: application/sdp" in answer, answer
    assert f"location lookup: sip:ivr@127.0.0.1:{server.sip_port}" in k.log_text()
    # Over two lifetimes later it is still there: it was refreshed, at Kamailio too.
    time.sleep(4.5)
    reg = registered(server, timeout=0)
    assert reg["failures"] == 0
    assert sip_probe(k.port, f"sip:ivr@127.0.0.1:{k.port}").startswith("SIP/2.0 200 OK")
    log = server.log.read_text()
    stop_server(server)
    assert "unregistered sip:ivr@" in server.log.read_text(), server.log.read_text()[-2000:]
    # Well within the binding's lifetime, so gone because it was removed, not because it lapsed.
    gone = sip_probe(k.port, f"sip:ivr@127.0.0.1:{k.port}")
    assert gone.startswith("SIP/2.0 404"), gone + log[-2000:]


def test_pyvoip_calls_the_ivr_through_kamailio_and_presses_2(kamailio, serve):
    """pyVoIP -> Kamailio -> (location lookup) -> IVR; key 2 says goodbye and the IVR hangs up."""
    voip = _pyvoip()
    k = kamailio
    server = serve(FLOWS, "--register", f"sip:ivr@127.0.0.1:{k.port}", "--register-expires", "60")
    registered(server)
    rtp_port = free_port()
    # "localhost", not 127.0.0.1: pyVoIP puts this name, portless, in its URIs (see kamailio.config).
    phone = voip.VoIPPhone("localhost", k.port, "caller", "", myIP="127.0.0.1", sipPort=free_port(),
                           rtpPortLow=rtp_port, rtpPortHigh=rtp_port)
    phone.sip.register_timeout = 5  # bounds its REGISTER and its un-REGISTER at stop()
    call = None
    try:
        phone.start()
        assert phone.get_status() == voip.PhoneStatus.REGISTERED, k.log_text()[-2000:]
        call = phone.call("ivr")
        _wait(lambda: call.state == voip.CallState.ANSWERED, 15, "the IVR never answered", k, server)
        assert f"location lookup: sip:ivr@127.0.0.1:{server.sip_port}" in k.log_text()
        time.sleep(1.0)  # into the menu prompt; the key barges in
        _press(call, "2")
        _wait(lambda: call.state == voip.CallState.ENDED, 15, "the phone never saw the call end", k, server)
    finally:
        _stop_phone(phone)
    (journey,) = server.wait_journeys(1)
    assert journey["channel"] == "sip"
    assert journey["outcome"] == "hangup"
    assert journey["path"] == ["main_menu", "goodbye"]
    assert [(i["via"], i["value"]) for i in journey["inputs"]] == [("dtmf", "2")]
    assert journey["caller"] == "caller" and journey["dialled"] == "ivr"
    # The IVR's BYE went to Kamailio (its Record-Route) and on to the phone.
    assert re.search(rf"REQ BYE sip:caller@127\.0\.0\.1:\d+ from 127\.0\.0\.1:{server.sip_port}\b", k.log_text())


def _press(call, digit: str) -> None:
    """One RFC 2833 key press on the call's own RTP socket and stream identity.

    pyVoIP 1.6.8 receives RFC 2833 events but has no way to send them.
    """
    rtp = call.RTPClients[0]
    packets = DtmfSender(ssrc=rtp.outSSRC).packets(digit, rtp.outTimestamp + 160 * 50, rtp.outSequence + 1000)
    for packet in packets:
        rtp.sout.sendto(packet.serialize(), (rtp.outIP, rtp.outPort))
        time.sleep(0.02)


def _wait(predicate, timeout: float, what: str, k: Kamailio, server: Server) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what}\n--- kamailio\n{k.log_text()[-2500:]}\n--- ivr\n"
                                 f"{server.log.read_text()[-2500:]}")
        time.sleep(0.05)


def _stop_phone(phone) -> None:
    """Stop pyVoIP (hang up, un-register, end its threads), bounded: it blocks on sockets."""
    t = threading.Thread(target=phone.stop, daemon=True)
    t.start()
    t.join(15)
