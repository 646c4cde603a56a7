"""Kamailio in front of the IVR: the IVR registers itself as extension `ivr`, and
a pyVoIP phone registered as `caller` reaches it only through Kamailio's
location service (pyVoIP sends everything to its registrar)."""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr.sip.rtp import DtmfSender

from .conftest import HERE, Server, free_port, need, stop_server

FLOWS = HERE / "flows" / "menu.yaml"
KAMAILIO_CFG = HERE / "peers" / "kamailio.cfg"  # the loopback registrar, as written for port 5060


@dataclass
class Kamailio:
    """A running Kamailio and where its log goes."""

    proc: subprocess.Popen
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _config(port: int) -> str:
    """The loopback registrar config, moved from 5060 to `port`."""
    text = KAMAILIO_CFG.read_text()
    text = text.replace("listen=udp:127.0.0.1:5060", f"listen=udp:127.0.0.1:{port}")
    text = text.replace('alias="127.0.0.1:5060"', f'alias="127.0.0.1:{port}"')
    # pyVoIP writes its registrar's name without a port (sip:ivr@localhost). On 5060
    # that is Kamailio's own port; here it is not, so "localhost" is ours on any port.
    # (127.0.0.1 stays port-bound: the IVR's and the phone's contacts live there too.)
    text = text.replace('alias="localhost:5060"', 'alias="localhost"')
    # The modules' directory depends on the machine's architecture.
    modules = sorted(glob.glob("/usr/lib/*/kamailio/modules/tm.so") + glob.glob("/usr/lib*/kamailio/modules/tm.so"))
    if modules:
        text = re.sub(r'mpath="[^"]*"', f'mpath="{Path(modules[0]).parent}/"', text)
    # Short bindings are allowed, so a refresh shows within seconds.
    text = text.replace('modparam("registrar", "max_expires", 3600)',
                        'modparam("registrar", "max_expires", 3600)\nmodparam("registrar", "min_expires", 1)')
    assert f"listen=udp:127.0.0.1:{port}" in text and "min_expires" in text
    return text


def sip_probe(port: int, uri: str, timeout: float = 5.0) -> str:
    """Send OPTIONS for `uri` to 127.0.0.1:port; the final response's text ("" if none came)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
        msg = (f"OPTIONS {uri} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag={secrets.token_hex(4)}\r\n"
               f"To: <{uri}>\r\nCall-ID: {secrets.token_hex(8)}@probe\r\nCSeq: 1 OPTIONS\r\n"
               f"Content-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), ("127.0.0.1", port))
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                text = s.recv(65535).decode(errors="replace")
            except TimeoutError:
                break
            if not text.startswith("SIP/2.0 1"):  # skip provisional responses
                return text
    return ""


@pytest.fixture
def kamailio(tmp_path):
    """Kamailio on a free loopback port, from a checked copy of the peers' config.

    Ask for it before `serve`, so it outlives the IVR and sees its un-REGISTER.
    """
    # /usr/sbin is not on every user's PATH.
    exe = "/usr/sbin/kamailio" if os.access("/usr/sbin/kamailio", os.X_OK) else need("kamailio")
    port = free_port()
    run = tmp_path / "kamailio"
    run.mkdir()
    cfg = run / "kamailio.cfg"
    cfg.write_text(_config(port))
    check = subprocess.run([exe, "-f", str(cfg), "-c"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    log = run / "kamailio.log"
    # Absolute paths: Kamailio changes its working directory to "/".
    proc = subprocess.Popen([exe, "-f", str(cfg), "-DD", "-E", "-P", str(run / "kamailio.pid"), "-Y", str(run)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    k = Kamailio(proc, port, log)
    try:
        end = time.monotonic() + 15
        # The config answers OPTIONS for itself (no user part) with "200 Keepalive".
        while not sip_probe(port, f"sip:127.0.0.1:{port}", timeout=0.5).startswith("SIP/2.0 200"):
            if proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"kamailio did not start:\n{k.log_text()[-3000:]}")
        yield k
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the main process stops its children
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only Kamailio's processes
                proc.wait(5)


def _registered(server: Server, timeout: float = 10.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        reg = json.loads(server.http("/healthz")).get("registration") or {}
        if reg.get("registered") or time.monotonic() > end:
            assert reg.get("registered"), f"not registered: {reg}\n{server.log.read_text()[-3000:]}"
            return reg
        time.sleep(0.1)


def _pyvoip():
    """pyVoIP's modules, or skip: 1.6.8 needs audioop, which Python 3.13 removed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # audioop's, on 3.11 and 3.12
            import pyVoIP.VoIP as voip  # before pyVoIP.SIP: the package imports circularly
    except ModuleNotFoundError as exc:
        if exc.name == "audioop" or not os.environ.get("CI"):
            pytest.skip(f"pyVoIP is not usable here ({exc}); pip install -e '.[test]'")
        raise
    return voip


def test_ivr_registers_refreshes_and_unregisters(kamailio, serve):
    """The IVR's binding at Kamailio routes requests for sip:ivr to it, outlives
    its 2 s lifetime by refreshing, and is removed when the IVR shuts down."""
    k = kamailio
    server = serve(FLOWS, "--register", f"sip:ivr@127.0.0.1:{k.port}", "--register-expires", "2")
    reg = _registered(server)
    assert reg["aor"] == f"sip:ivr@127.0.0.1:{k.port}" and reg["state"] == "registered"
    assert reg["last_error"] is None and 0 < reg["expires_in"] <= 2
    # Kamailio has no static route to the IVR: this OPTIONS reaches it by the registration.
    answer = sip_probe(k.port, f"sip:ivr@127.0.0.1:{k.port}")
    assert answer.startswith("SIP/2.0 200 OK") and "Accept: application/sdp" in answer, answer
    assert f"location lookup: sip:ivr@127.0.0.1:{server.sip_port}" in k.log_text()
    # Over two lifetimes later it is still there: it was refreshed, at Kamailio too.
    time.sleep(4.5)
    reg = _registered(server, timeout=0)
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
    _registered(server)
    rtp_port = free_port()
    # "localhost", not 127.0.0.1: pyVoIP puts this name, portless, in its URIs (see _config).
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
