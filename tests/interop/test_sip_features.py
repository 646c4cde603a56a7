"""The SIP user agent against scripted peers: methods, transports, retransmission, Via routing.

Each test starts a real `ivr serve` on loopback and talks to it with the small
client in sipclient.py (or SIPp where its scenarios fit), then checks what the
server answered and the journey it recorded.
"""

from __future__ import annotations

import socket
import time

from .conftest import HERE
from .sipclient import Call, Peer, parse_rtp, sdp
from .test_sipp import _errors, run_sipp

FLOWS = HERE / "flows" / "menu.yaml"


def _bye_from_server(call: Call, timeout: float = 15.0) -> None:
    """Wait for the IVR to hang up, and answer its BYE."""
    bye = call.peer.recv(lambda m: m.method == "BYE" and call.call_id in (m.get("Call-ID") or ""), timeout)
    call.answer_request(bye)


def _count_rtp(call: Call, seconds: float) -> list[tuple[int, int, int, int]]:
    """RTP packets the server sent to this call's socket during `seconds`."""
    got = []
    end = time.monotonic() + seconds
    call.rtp.settimeout(0.05)
    while time.monotonic() < end:
        try:
            data = call.rtp.recv(2048)
        except TimeoutError:
            continue
        got.append(parse_rtp(data))
    return got


def _drain_rtp(call: Call) -> None:
    call.rtp.setblocking(False)
    try:
        while True:
            call.rtp.recv(2048)
    except BlockingIOError:
        pass
    finally:
        call.rtp.setblocking(True)


def test_options_is_answered_over_udp_and_tcp(serve):
    server = serve(FLOWS)
    for transport in ("UDP", "TCP"):
        peer = Peer(server.sip_port, transport)
        try:
            text, _ = peer.request("OPTIONS")
            peer.send(text)
            resp = peer.recv(lambda m: m.cseq_method == "OPTIONS")
            assert resp.status == 200, resp.first
            allow = {m.strip() for m in (resp.get("Allow") or "").split(",")}
            assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "NOTIFY"} <= allow
            assert "application/sdp" in (resp.get("Accept") or "")
        finally:
            peer.close()


def test_invite_rings_then_repeats_its_200_until_the_ack(serve):
    """100 and 180 first; then the 200 OK again at T1, 2*T1 ... while the ACK is withheld, and
    not after it (RFC 3261 13.3.1.4)."""
    server = serve(FLOWS, "--ring", "0.3")
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        call.send_invite()
        assert peer.recv(call.mine("INVITE", 100)).status == 100
        assert peer.recv(call.mine("INVITE", 180)).status == 180
        first = call.answered(ack=False)
        t0 = time.monotonic()
        repeats = []
        while len(repeats) < 2:  # copies due at 0.5 s and 1.5 s
            m = peer.recv(call.mine("INVITE", 200), timeout=1.5)
            repeats.append(time.monotonic() - t0)
            assert m.raw == first.raw  # the same response, byte for byte
        assert 0.3 < repeats[0] < 1.0 and 1.2 < repeats[1] < 2.2, repeats  # T1, then 2*T1 later
        call.ack()
        # The next copy was due 2 s after the last one: none comes once the ACK is in.
        assert peer.nothing(call.mine("INVITE", 200), 2.6)
        assert call.bye().status == 200
        (journey,) = server.wait_journeys(1)
        assert journey["outcome"] == "abandoned"
    finally:
        call.close()
        peer.close()


def test_cancel_while_ringing_gets_487(serve):
    server = serve(FLOWS, "--ring", "5")
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        call.send_invite()
        peer.recv(call.mine("INVITE", 180))
        text, _ = peer.request("CANCEL", call_id=call.call_id, cseq=1, from_tag=call.from_tag,
                               branch=call.invite_branch)
        peer.send(text)
        assert peer.recv(call.mine("CANCEL", 200)).status == 200
        final = call.final("INVITE")
        assert final.status == 487, final.first
        text, _ = peer.request("ACK", call_id=call.call_id, cseq=1, from_tag=call.from_tag, to_tag=final.to_tag,
                               branch=call.invite_branch)
        peer.send(text)
        # Never answered after all: the ringing time passes with no 200.
        assert peer.nothing(call.mine("INVITE", 200), 1.0)
        # A CANCEL for nothing we know: 481.
        text, _ = peer.request("CANCEL", call_id="unknown-call", cseq=1)
        peer.send(text)
        assert peer.recv(lambda m: m.cseq_method == "CANCEL" and "unknown-call" in (m.get("Call-ID") or "")
                         ).status == 481
        health = server.http("/healthz")
        assert '"active_calls": 0' in health
    finally:
        call.close()
        peer.close()


def test_info_dtmf_takes_the_branch(serve):
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        call.start()
        time.sleep(0.3)
        bad = None
        call.in_dialog("INFO", "hello", "text/plain")
        bad = call.final("INFO")
        assert bad.status == 415, bad.first
        assert call.info("2").status == 200
        _bye_from_server(call)
        (journey,) = server.wait_journeys(1)
        assert journey["path"] == ["main_menu", "goodbye"]
        assert journey["inputs"][0]["value"] == "2"
        assert 'ivr_sip_dtmf_received_total{via="info"} 1' in server.http("/metrics")
    finally:
        call.close()
        peer.close()


def test_reinvite_hold_stops_our_audio_and_unhold_resumes_it(serve):
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        call.start()
        assert len(_count_rtp(call, 0.5)) >= 20
        held = call.reinvite((0, 101), "sendonly")
        assert held.status == 200 and b"a=recvonly" in held.body, held.body
        time.sleep(0.1)
        _drain_rtp(call)
        assert _count_rtp(call, 0.6) == []
        back = call.reinvite((0, 101), "sendrecv")
        assert back.status == 200 and b"a=sendrecv" in back.body
        assert len(_count_rtp(call, 0.6)) >= 25
        # The answer keeps its session id and counts its version up (RFC 3264 8).
        origins = [r.body.decode().split("o=", 1)[1].split("\r\n")[0].split() for r in (held, back)]
        assert origins[0][1] == origins[1][1] and int(origins[1][2]) == int(origins[0][2]) + 1
        assert call.bye().status == 200
    finally:
        call.close()
        peer.close()


def test_reinvite_changes_the_codec_from_pcmu_to_pcma(serve):
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        call.start()
        assert {pt for pt, *_ in _count_rtp(call, 0.3)} == {0}
        resp = call.reinvite((8, 101), "sendrecv")
        assert resp.status == 200 and "m=audio" in resp.body.decode()
        m_line = [x for x in resp.body.decode().splitlines() if x.startswith("m=audio")][0]
        assert m_line.split()[3] == "8", m_line
        time.sleep(0.1)
        _drain_rtp(call)
        packets = _count_rtp(call, 0.4)
        assert packets and {pt for pt, *_ in packets} == {8}
        # Keys still count after the change.
        assert call.info("2").status == 200
        _bye_from_server(call)
        (journey,) = server.wait_journeys(1)
        assert journey["path"] == ["main_menu", "goodbye"]
    finally:
        call.close()
        peer.close()


def test_the_offerers_first_codec_is_taken(serve):
    """PCMA before PCMU in the offer: the answer and our RTP are PCMA, with telephone-event."""
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    call = Call(peer, codecs=(8, 0, 101))
    try:
        resp = call.start()
        body = resp.body.decode()
        m_line = [x for x in body.splitlines() if x.startswith("m=audio")][0]
        assert m_line.split()[3:] == ["8", "101"], m_line
        assert "a=rtpmap:101 telephone-event/8000" in body
        assert {pt for pt, *_ in _count_rtp(call, 0.3)} == {8}
        assert call.bye().status == 200
    finally:
        call.close()
        peer.close()


def test_refer_with_a_failing_notify_takes_the_failure_path(serve):
    """The transfer target was busy (NOTIFY carrying 486): the flow goes on to on_failure."""
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        call.start()
        call.info("1")
        refer = peer.recv(lambda m: m.method == "REFER", 10)
        assert "sip:billing@" in (refer.get("Refer-To") or "") or refer.get("Refer-To")
        assert refer.get("X-IVR-Queue") == "billing"
        call.answer_request(refer, 202, "Accepted")
        body = "SIP/2.0 486 Busy Here\r\n"
        call.in_dialog("NOTIFY", body, "message/sipfrag;version=2.0",
                       ["Event: refer", "Subscription-State: terminated;reason=noresource"])
        assert call.final("NOTIFY").status == 200
        _bye_from_server(call)
        (journey,) = server.wait_journeys(1)
        assert journey["path"] == ["main_menu", "billing", "goodbye"], journey["path"]
        assert journey["outcome"] == "hangup"
    finally:
        call.close()
        peer.close()


def test_refer_with_a_successful_notify_ends_our_leg(serve):
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        call.start()
        call.info("0")
        refer = peer.recv(lambda m: m.method == "REFER", 10)
        call.answer_request(refer, 202, "Accepted")
        call.in_dialog("NOTIFY", "SIP/2.0 100 Trying\r\n", "message/sipfrag;version=2.0",
                       ["Event: refer", "Subscription-State: active;expires=60"])
        assert call.final("NOTIFY").status == 200
        call.in_dialog("NOTIFY", "SIP/2.0 200 OK\r\n", "message/sipfrag;version=2.0",
                       ["Event: refer", "Subscription-State: terminated;reason=noresource"])
        assert call.final("NOTIFY").status == 200
        _bye_from_server(call)
        (journey,) = server.wait_journeys(1)
        assert journey["outcome"] == "handoff" and journey["handoff"]["reason"] == "escape"
    finally:
        call.close()
        peer.close()


def test_sipp_call_over_tcp(serve, tmp_path):
    """SIPp on one TCP connection (-t t1): the call, its BYE from the IVR, all on that connection."""
    server = serve(FLOWS)
    proc = run_sipp(tmp_path, "uac_dtmf_bye.xml", server.sip_port, digit="2", timeout=30, extra=("-t", "t1"))
    assert proc.returncode == 0, proc.stdout[-2000:] + _errors(tmp_path)
    (journey,) = server.wait_journeys(1)
    assert journey["path"] == ["main_menu", "goodbye"] and journey["outcome"] == "hangup"


def test_python_call_over_tcp(serve):
    server = serve(FLOWS)
    peer = Peer(server.sip_port, "TCP")
    call = Call(peer)
    try:
        resp = call.start()
        assert "transport=tcp" in (resp.get("Contact") or "")
        assert call.info("2").status == 200
        _bye_from_server(call)
        (journey,) = server.wait_journeys(1)
        assert journey["path"] == ["main_menu", "goodbye"]
    finally:
        call.close()
        peer.close()


def test_responses_follow_the_via(serve):
    """With rport the answer goes back to the source port (and says so in the Via);
    without it, to the port the Via names (RFC 3261 18.2.2, RFC 3581)."""
    server = serve(FLOWS)
    sender = Peer(server.sip_port)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.settimeout(2.0)
    other_port = other.getsockname()[1]
    try:
        text, _ = sender.request("OPTIONS", via_port=other_port, via_params=";rport")
        sender.send(text)
        resp = sender.recv(lambda m: m.cseq_method == "OPTIONS", 2.0)
        via = resp.get("Via") or ""
        assert f"rport={sender.port}" in via and "received=127.0.0.1" in via, via

        text, _ = sender.request("OPTIONS", via_port=other_port, via_params="")
        sender.send(text)
        data, _ = other.recvfrom(65535)
        assert data.startswith(b"SIP/2.0 200")
        assert sender.nothing(lambda m: m.cseq_method == "OPTIONS", 0.3)

        # A call whose INVITE names another port with rport: every copy of the 200 comes to the source.
        call = Call(sender)
        text, call.invite_branch = sender.request("INVITE", call_id=call.call_id, from_tag=call.from_tag,
                                                  via_port=other_port, body=sdp(call.rtp_port))
        sender.send(text)
        call.answered(ack=False)
        sender.recv(call.mine("INVITE", 200), 1.5)  # the first retransmission, to the source too
        call.ack()
        assert call.bye().status == 200
        call.close()
    finally:
        other.close()
        sender.close()
