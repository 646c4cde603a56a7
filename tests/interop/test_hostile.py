"""Malformed and hostile input against a real `ivr serve`, each in its own network namespace.

Every case sends something broken or unfriendly, checks the answer (the right
4xx/5xx, or silence where nothing can be answered), then checks the server
still serves: it answers OPTIONS, a normal call works, the process is alive.
The bodies (`case_*`) run in a loopback-only namespace through netns.py, since
some of them name foreign hosts in Via, Contact and SDP.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from .conftest import HERE, Server, start_server, stop_server
from .netns import isolated
from .sipclient import Call, Msg, Peer, Rtp, parse_msg, sdp

FLOWS = HERE / "flows" / "menu.yaml"
MODULE = "interop.test_hostile"


# ---- helpers (run inside the namespace) ---------------------------------------------------------
def _still_serving(server: Server) -> None:
    """OPTIONS answered, a whole call (INVITE, 200, ACK, BYE) works, the process lives."""
    assert server.proc.poll() is None, "the server died"
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        text, _ = peer.request("OPTIONS")
        peer.send(text)
        assert peer.recv(lambda m: m.cseq_method == "OPTIONS", 3).status == 200
        call.start()
        assert call.bye().status == 200
    finally:
        call.close()
        peer.close()
    assert server.proc.poll() is None, "the server died"


def _raw(peer: Peer, text: str, *, call_id: str = "hostile-1") -> str:
    """A request template made concrete: {via}, {port}, {call_id} filled in; a branch of its own
    (one transaction per message: a repeated branch would be answered as a retransmission)."""
    via = f"SIP/2.0/{peer.transport} 127.0.0.1:{peer.port};branch=z9hG4bK{call_id};rport"
    return text.replace("\n", "\r\n").format(via=via, port=peer.server[1], call_id=call_id)


def _answer(peer: Peer, call_id: str = "hostile-1", timeout: float = 3.0) -> Msg:
    return peer.recv(lambda m: m.status > 0 and call_id in (m.get("Call-ID") or ""), timeout)


OPTIONS = """OPTIONS sip:ivr@127.0.0.1:{port} SIP/2.0
Via: {via}
Max-Forwards: 70
From: <sip:bad@127.0.0.1>;tag=h1
To: <sip:ivr@127.0.0.1>
Call-ID: {call_id}
CSeq: 1 OPTIONS
"""


def _serve(tmp: Path, *extra: str) -> Server:
    return start_server(tmp, FLOWS, *extra)


# ---- the cases ------------------------------------------------------------------------------------
def case_garbage(tmp: Path) -> None:
    server = _serve(tmp)
    peer = Peer(server.sip_port)
    try:
        blobs = [os.urandom(n) for n in (1, 12, 300, 1400, 9000, 65000)]
        blobs += [b"\x00" * 200, b"\xff\xfe" * 100, b"SIP/2.0 200 OK\r\n\r\n", b"INVITE\r\n\r\n",
                  b"INVITE sip:x SIP/2.0\r\n", "INVITE sip:é SIP/2.0\r\n\r\n".encode(), b"\r\n\r\n", b"\r\n",
                  b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"SIP/2.0 999 What\r\nVia: SIP/2.0/UDP x\r\n\r\n"]
        for blob in blobs:
            peer.send(blob)
        assert peer.nothing(lambda m: True, 0.5)
        # A TCP stream of garbage is closed; the listener stays.
        with socket.create_connection(("127.0.0.1", server.sip_port), timeout=3) as conn:
            conn.sendall(os.urandom(40000) + b"\r\n\r\n")
            conn.settimeout(3)
            try:
                while conn.recv(65535):
                    pass
            except ConnectionResetError:
                pass
        _still_serving(server)
    finally:
        peer.close()
        stop_server(server)


def case_huge_headers(tmp: Path) -> None:
    server = _serve(tmp)
    peer = Peer(server.sip_port)
    try:
        big = _raw(peer, OPTIONS + "X-Big: " + "a" * 60000 + "\n\n")
        peer.send(big)
        assert _answer(peer).status == 513
        many = _raw(peer, OPTIONS + "".join(f"X-H{i}: {i}\n" for i in range(300)) + "\n", call_id="hostile-2")
        peer.send(many)
        assert _answer(peer, "hostile-2").status == 513
        # Over TCP: headers that never end are refused once past the limit, and the connection closed.
        tcp = Peer(server.sip_port, "TCP")
        try:
            tcp.send(_raw(tcp, OPTIONS, call_id="hostile-3") + "X-Never-Ends: " + "b" * 40000)
            assert _answer(tcp, "hostile-3").status == 513
            assert tcp.sock.recv(100) == b""  # closed
        finally:
            tcp.close()
        _still_serving(server)
    finally:
        peer.close()
        stop_server(server)


def case_bad_content_length(tmp: Path) -> None:
    server = _serve(tmp)
    peer = Peer(server.sip_port)
    try:
        for i, (value, body) in enumerate([("5000", "short body"), ("-1", ""), ("abc", ""), ("1, 2", "xx")]):
            peer.send(_raw(peer, OPTIONS + f"Content-Length: {value}\n\n{body}", call_id=f"cl-{i}"))
            resp = _answer(peer, f"cl-{i}")
            assert resp.status == 400, (value, resp.first)
        tcp = Peer(server.sip_port, "TCP")
        try:  # a body far over the limit on a stream: 413, and the stream is closed
            tcp.send(_raw(tcp, OPTIONS, call_id="cl-tcp") + "Content-Length: 99999999\r\n\r\n")
            assert _answer(tcp, "cl-tcp").status == 413
        finally:
            tcp.close()
        tcp = Peer(server.sip_port, "TCP")
        try:  # no Content-Length on a stream: nothing tells where the message ends
            tcp.send(_raw(tcp, OPTIONS, call_id="cl-none") + "\r\n")
            assert _answer(tcp, "cl-none").status == 400
        finally:
            tcp.close()
        _still_serving(server)
    finally:
        peer.close()
        stop_server(server)


def case_unknown_methods(tmp: Path) -> None:
    server = _serve(tmp)
    peer = Peer(server.sip_port)
    try:
        for i, (method, status) in enumerate([("FROBNICATE", 501), ("SUBSCRIBE", 405), ("REGISTER", 405),
                                              ("PUBLISH", 405), ("MESSAGE", 405)]):
            text = OPTIONS.replace("OPTIONS", method)
            peer.send(_raw(peer, text + "Content-Length: 0\n\n", call_id=f"m-{i}"))
            resp = _answer(peer, f"m-{i}")
            assert resp.status == status, (method, resp.first)
            assert "INVITE" in (resp.get("Allow") or "")
        # A Require we do not support: 420 naming it.
        peer.send(_raw(peer, OPTIONS + "Require: 100rel, foo\nContent-Length: 0\n\n", call_id="req"))
        resp = _answer(peer, "req")
        assert resp.status == 420 and "foo" in (resp.get("Unsupported") or "")
        _still_serving(server)
    finally:
        peer.close()
        stop_server(server)


def case_missing_headers(tmp: Path) -> None:
    server = _serve(tmp)
    peer = Peer(server.sip_port)
    try:
        for i, missing in enumerate(("Call-ID", "From", "To", "CSeq")):
            lines = _raw(peer, OPTIONS, call_id=f"mh-{i}").split("\r\n")
            kept = [x for x in lines if not x.startswith(missing + ":")]
            peer.send("\r\n".join(kept).rstrip("\r\n") + "\r\nContent-Length: 0\r\n\r\n")
            if missing == "Call-ID":
                resp = peer.recv(lambda m: m.status > 0 and m.get("Call-ID") is None, 3)
            else:
                resp = _answer(peer, f"mh-{i}")
            assert resp.status == 400 and missing in resp.first, (missing, resp.first)
        # No Via: there is nowhere to send an answer, so there is none.
        lines = _raw(peer, OPTIONS, call_id="mh-via").split("\r\n")
        peer.send("\r\n".join(x for x in lines if not x.startswith("Via:")).rstrip("\r\n") + "\r\n\r\n")
        assert peer.nothing(lambda m: "mh-via" in (m.get("Call-ID") or ""), 0.5)
        _still_serving(server)
    finally:
        peer.close()
        stop_server(server)


def case_wrong_cseq(tmp: Path) -> None:
    server = _serve(tmp)
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        for i, cseq in enumerate(("1 INVITE", "abc OPTIONS", "99999999999 OPTIONS", "1")):
            peer.send(_raw(peer, OPTIONS.replace("CSeq: 1 OPTIONS", f"CSeq: {cseq}") + "Content-Length: 0\n\n",
                           call_id=f"cs-{i}"))
            resp = _answer(peer, f"cs-{i}")
            assert resp.status == 400, (cseq, resp.first)
        # In a dialog, a CSeq not above the last one: 500 (RFC 3261 12.2.2), and the call goes on.
        call.start()
        call.cseq = 0
        call.in_dialog("INFO", "Signal=1\r\n", "application/dtmf-relay")  # CSeq 1 again
        assert call.final("INFO").status == 500
        call.cseq = 5
        assert call.info("2").status == 200
        bye = peer.recv(lambda m: m.method == "BYE", 15)
        call.answer_request(bye)
        (journey,) = server.wait_journeys(1)
        assert [i["value"] for i in journey["inputs"]] == ["2"]
        _still_serving(server)
    finally:
        call.close()
        peer.close()
        stop_server(server)


def case_bad_sdp(tmp: Path) -> None:
    server = _serve(tmp)
    peer = Peer(server.sip_port)
    try:
        bodies = ["this is not sdp at all\r\n", "v=0\r\nm=audio notaport RTP/AVP 0\r\n",
                  "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 300.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"]
        for body in bodies:
            call = Call(peer)
            call.send_invite(body)
            resp = call.final()
            assert resp.status == 400 and "SDP" in resp.first, resp.first
            _ack_error(peer, call, resp)
            call.close()
        # Nothing in common: G.729 only, or only video.
        for codecs_body in (sdp(40000, (18,)), sdp(40000, (0,)).replace("m=audio", "m=video")):
            call = Call(peer)
            call.send_invite(codecs_body)
            resp = call.final()
            assert resp.status == 488, resp.first
            _ack_error(peer, call, resp)
            call.close()
        # No offer at all.
        call = Call(peer)
        call.send_invite("")
        assert call.final().status == 488
        call.close()
        _still_serving(server)
    finally:
        peer.close()
        stop_server(server)


def _ack_error(peer: Peer, call: Call, resp: Msg) -> None:
    """The ACK of a non-2xx final answer: same branch as the INVITE."""
    text, _ = peer.request("ACK", call_id=call.call_id, cseq=1, from_tag=call.from_tag, to_tag=resp.to_tag,
                           branch=call.invite_branch)
    peer.send(text)


def case_foreign_addresses(tmp: Path) -> None:
    """Via, Contact and SDP naming other hosts: answers go where the rules say (never to a
    name that would need DNS), RTP aimed at a foreign address fails quietly, calls go on."""
    server = _serve(tmp)
    peer = Peer(server.sip_port)
    sent_by = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent_by.bind(("127.0.0.1", 0))
    sent_by.settimeout(3)
    try:
        # A Via naming a host: the answer goes to the address the request came from, at the Via's port.
        text = _raw(peer, OPTIONS + "Content-Length: 0\n\n", call_id="via-name").replace(
            f"127.0.0.1:{peer.port};branch=z9hG4bKvia-name;rport",
            f"host.invalid:{sent_by.getsockname()[1]};branch=z9hG4bKvia-name;maddr=relay.invalid")
        t0 = time.monotonic()
        peer.send(text)
        data, _ = sent_by.recvfrom(65535)
        assert parse_msg(data).status == 200 and "received=127.0.0.1" in (parse_msg(data).get("Via") or "")
        assert time.monotonic() - t0 < 1.0  # no name was looked up
        # A Via naming a foreign address without rport: the answer goes there (and nowhere, here).
        peer.send(_raw(peer, OPTIONS + "Content-Length: 0\n\n", call_id="via-foreign").replace(
            f"127.0.0.1:{peer.port};branch=z9hG4bKvia-foreign;rport", "198.51.100.7:5060;branch=z9hG4bKforeign"))
        assert peer.nothing(lambda m: "via-foreign" in (m.get("Call-ID") or ""), 0.3)
        # SDP with a foreign media address and a Contact naming a host: answered; our RTP to
        # 203.0.113.9 cannot leave this namespace; the BYE goes where the INVITE came from.
        for media_host in ("203.0.113.9", "media.invalid"):
            call = Call(peer)
            body = sdp(4000).replace("127.0.0.1", media_host)
            text, call.invite_branch = peer.request("INVITE", call_id=call.call_id, from_tag=call.from_tag,
                                                    body=body, extra=[])
            peer.send(text.replace(f"Contact: <sip:caller@127.0.0.1:{peer.port}>",
                                   "Contact: <sip:caller@contact.invalid:5060>"))
            call.answered()
            # Junk and RTP from nowhere on its RTP port: ignored.
            for junk in (os.urandom(5), os.urandom(400), Rtp().packet(0, b"\xff" * 160)):
                call.rtp.sendto(junk, call.remote_rtp)
            call.info("2")
            bye = peer.recv(lambda m, c=call: m.method == "BYE" and c.call_id in (m.get("Call-ID") or ""), 15)
            call.answer_request(bye)
            call.close()
        journeys = server.wait_journeys(2)
        assert all(j["path"] == ["main_menu", "goodbye"] for j in journeys)
        _still_serving(server)
    finally:
        sent_by.close()
        peer.close()
        stop_server(server)


def case_invite_flood(tmp: Path) -> None:
    """Forty INVITEs at once against a capacity of 3: three answered, the rest 503 with Retry-After."""
    server = _serve(tmp, "--capacity", "3")
    peer = Peer(server.sip_port)
    calls = [Call(peer) for _ in range(40)]
    try:
        for call in calls:
            call.send_invite()
        finals = {call.call_id: call.final(timeout=10) for call in calls}
        ok = [c for c in calls if finals[c.call_id].status == 200]
        refused = [c for c in calls if finals[c.call_id].status == 503]
        assert len(ok) == 3 and len(refused) == 37, sorted(m.status for m in finals.values())
        assert all(finals[c.call_id].get("Retry-After") for c in refused)
        for call in ok:
            call.to_tag = finals[call.call_id].to_tag
            call.ack()
        for call in refused:
            _ack_error(peer, call, finals[call.call_id])
        assert "ivr_calls_refused_capacity_total 37" in server.http("/metrics")
        for call in ok:
            assert call.bye().status == 200
        time.sleep(0.2)
        _still_serving(server)
    finally:
        for call in calls:
            call.close()
        peer.close()
        stop_server(server)


# ---- the tests (each body in its own namespace) -------------------------------------------------------
def test_garbage_is_dropped(tmp_path):
    isolated(f"{MODULE}:case_garbage", tmp_path)


def test_huge_headers_get_513(tmp_path):
    isolated(f"{MODULE}:case_huge_headers", tmp_path)


def test_bad_content_length_gets_400(tmp_path):
    isolated(f"{MODULE}:case_bad_content_length", tmp_path)


def test_unknown_methods_get_501_or_405(tmp_path):
    isolated(f"{MODULE}:case_unknown_methods", tmp_path)


def test_missing_headers_get_400(tmp_path):
    isolated(f"{MODULE}:case_missing_headers", tmp_path)


def test_wrong_cseq(tmp_path):
    isolated(f"{MODULE}:case_wrong_cseq", tmp_path)


def test_bad_sdp_gets_400_and_no_common_codec_488(tmp_path):
    isolated(f"{MODULE}:case_bad_sdp", tmp_path)


def test_foreign_addresses_in_via_contact_and_sdp(tmp_path):
    isolated(f"{MODULE}:case_foreign_addresses", tmp_path)


def test_invite_flood_beyond_capacity_gets_503(tmp_path):
    isolated(f"{MODULE}:case_invite_flood", tmp_path)
