"""Outgoing calls (SipServer.dial) against a scripted callee on a real UDP socket on
127.0.0.1: the INVITE client transaction (retransmissions, Timer B, the ACK of a
failure, CANCEL on ring timeout), the ACK of a 2xx and of its retransmissions, and
the UAC dialog's in-dialog requests both ways."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from ivr.audio.clock import MediaClock
from ivr.audio.prompts import PromptCache
from ivr.engine.call import Dtmf, Hangup
from ivr.sip.message import SipRequest, SipResponse, make_response, parse
from ivr.sip.sdp import SessionDescription
from ivr.sip.transaction import MAGIC
from ivr.sip.ua import SipServer, SipSettings

T1 = 0.05  # the server's round-trip estimate here: Timer B is 3.2 s instead of 32


class Callee(asyncio.DatagramProtocol):
    """The far end as the test scripts it: keeps every message it receives."""

    def __init__(self) -> None:
        self.got: list[tuple[SipRequest | SipResponse, tuple]] = []
        self.taken = 0  # messages before this index have been handed to the test
        self.arrived = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.got.append((parse(data), addr))
        self.arrived.set()

    @property
    def port(self) -> int:
        return self.transport.get_extra_info("sockname")[1]

    @property
    def contact(self) -> str:
        return f"sip:callee@127.0.0.1:{self.port}"

    async def recv(self, method: str | None = None, timeout: float = 3.0) -> SipRequest | SipResponse:
        """The next message (the next request of `method` when given), in arrival order."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for i in range(self.taken, len(self.got)):
                msg = self.got[i][0]
                if method is None or getattr(msg, "method", None) == method:
                    self.taken = i + 1
                    return msg
            self.arrived.clear()
            left = end - loop.time()
            if left <= 0:
                raise AssertionError(f"no {method or 'message'} within {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)

    def requests(self, method: str) -> list[SipRequest]:
        return [m for m, _ in self.got if getattr(m, "method", None) == method]

    def send(self, msg: SipRequest | SipResponse, port: int) -> None:
        self.transport.sendto(msg.serialize(), ("127.0.0.1", port))


class RtpSink(asyncio.DatagramProtocol):
    """The callee's RTP port: counts packets by payload type."""

    def __init__(self) -> None:
        self.types: list[int] = []

    def datagram_received(self, data: bytes, addr) -> None:
        self.types.append(data[1] & 0x7F)


def _answer_sdp(port: int, codec_pt: int = 8) -> bytes:
    name = {0: "PCMU", 8: "PCMA"}[codec_pt]
    return (f"v=0\r\no=callee 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {codec_pt} 101\r\na=rtpmap:{codec_pt} {name}/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n").encode()


def _ok(invite: SipRequest, tag: str, contact: str, sdp: bytes, record_route: list[str] = ()) -> SipResponse:
    resp = make_response(invite, 200, to_tag=tag, extra_headers=[("Contact", f"<{contact}>")]
                         + [("Record-Route", r) for r in record_route])
    resp.set_body(sdp, "application/sdp")
    return resp


def _run(scenario, timeout: float = 15.0) -> None:
    async def main():
        server = SipServer(SipSettings(host="127.0.0.1", port=0), on_call=None, prompts=PromptCache(None),
                           clock=MediaClock())
        server.tx.t1 = T1
        counts: list[tuple[str, dict]] = []
        server.count = lambda name, by=1.0, **labels: counts.append((name, labels))
        await server.start()
        loop = asyncio.get_running_loop()
        transport, callee = await loop.create_datagram_endpoint(Callee, local_addr=("127.0.0.1", 0))
        try:
            await asyncio.wait_for(scenario(server, callee, counts), timeout)
        finally:
            transport.close()
            await server.close()
            server.prompts.close()
    asyncio.run(main())


def _outcomes(counts) -> list[str]:
    return [labels["result"] for name, labels in counts if name == "ivr_sip_dial_total"]


async def _answered(server, callee, rtp_port: int, record_route: list[str] = ()):
    """Dial the callee and answer with 100, 180, 200; the result, the INVITE, the 200 and the ACK."""
    task = asyncio.ensure_future(server.dial(f"sip:+441632960001@127.0.0.1:{callee.port}",
                                             caller_id="+441632960000", ring_timeout=5))
    invite = await callee.recv("INVITE")
    callee.send(make_response(invite, 100), server.address[1])
    callee.send(make_response(invite, 180, to_tag="cal1"), server.address[1])
    ok = _ok(invite, "cal1", callee.contact, _answer_sdp(rtp_port), record_route)
    callee.send(ok, server.address[1])
    result = await task
    ack = await callee.recv("ACK")
    return result, invite, ok, ack


# ---- answered -------------------------------------------------------------------------------------
def test_answered_call_acks_end_to_end_and_hangs_up_on_the_uac_dialog():
    async def scenario(server, callee, counts):
        loop = asyncio.get_running_loop()
        rtp_t, sink = await loop.create_datagram_endpoint(RtpSink, local_addr=("127.0.0.1", 0))
        rtp_port = rtp_t.get_extra_info("sockname")[1]
        try:
            # As the callee's proxies record them: the one nearest us (the callee here) last.
            rr = [f"<sip:127.0.0.1:{callee.port + 1};lr>", f"<sip:127.0.0.1:{callee.port};lr>"]
            result, invite, ok, ack = await _answered(server, callee, rtp_port, rr)
            # The INVITE: a fresh transaction and an offer of PCMU, PCMA and telephone-event.
            via = invite.top_via
            assert via.branch.startswith(MAGIC) and via.has_rport and via.port == server.address[1]
            assert invite.uri == f"sip:+441632960001@127.0.0.1:{callee.port}"
            assert invite.from_addr.tag and invite.to_addr.tag is None
            assert invite.from_addr.uri.user == "+441632960000" and invite.get("Max-Forwards") == "70"
            assert invite.cseq.method == "INVITE" and invite.get("Contact")
            offer = SessionDescription.parse(invite.body.decode())
            (audio,) = offer.media
            assert audio.payload_types() == [0, 8, 101] and audio.direction == "sendrecv"
            # The ACK of the 2xx: end to end, a new branch, the INVITE's CSeq number, to the Contact.
            assert ack.uri == callee.contact and ack.cseq.number == invite.cseq.number
            assert ack.cseq.method == "ACK" and ack.top_via.branch != via.branch
            assert ack.to_addr.tag == "cal1" and ack.from_addr.tag == invite.from_addr.tag
            assert ack.get_all("Route") == rr[::-1]
            # The call: registered, with the codec and event type of the answer.
            assert result.answered and result.status == 200 and result.outcome == "answered"
            call = result.call
            assert call.caller == "+441632960000" and call.dialled == "+441632960001"
            assert server.calls[call.call_id] is call
            assert call.rtp.codec.name == "PCMA" and call.rtp.dtmf_pt == 101
            await asyncio.sleep(0.2)
            assert sink.types and set(sink.types) == {8}  # silence flows, in the answer's codec
            # An INFO from the callee finds the call: its To names our tag, its From the callee's.
            info = SipRequest("INFO", call.dialog.contact.strip("<>"), headers=[
                ("Via", f"SIP/2.0/UDP 127.0.0.1:{callee.port};branch={MAGIC}info1"),
                ("From", "<sip:+441632960001@127.0.0.1>;tag=cal1"), ("To", invite.get("From")),
                ("Call-ID", invite.call_id), ("CSeq", "1 INFO")])
            info.set_body(b"Signal=5\r\nDuration=100\r\n", "application/dtmf-relay")
            callee.send(info, server.address[1])
            assert (await callee.recv()).status == 200
            assert await asyncio.wait_for(call.next_event(), 2) == Dtmf("5", "info")
            # Our BYE: From is us, To is the callee with its tag, to the callee's Contact.
            hangup = asyncio.ensure_future(call.hangup())
            bye = await callee.recv("BYE")
            assert bye.uri == callee.contact and bye.get_all("Route") == rr[::-1]
            assert bye.from_addr.tag == invite.from_addr.tag and bye.to_addr.tag == "cal1"
            assert bye.from_addr.uri.user == "+441632960000" and bye.to_addr.uri.user == "+441632960001"
            assert bye.call_id == invite.call_id and bye.cseq.number > invite.cseq.number
            callee.send(make_response(bye, 200), server.address[1])
            await asyncio.wait_for(hangup, 2)
            assert call.call_id not in server.calls and call.call_id not in server.dialer.placed
            assert _outcomes(counts) == ["answered"]
        finally:
            rtp_t.close()
    _run(scenario)


def test_every_retransmitted_2xx_gets_the_same_ack_and_another_fork_is_hung_up():
    async def scenario(server, callee, counts):
        result, invite, ok, ack = await _answered(server, callee, 40000)
        for _ in range(2):  # our ACK "was lost": the callee repeats its 200
            callee.send(ok, server.address[1])
            again = await callee.recv("ACK")
            assert again.serialize() == ack.serialize()
        # A 200 from another fork sets up a dialog we do not want: ACKed, then BYE.
        other = _ok(invite, "fork2", callee.contact, _answer_sdp(40002))
        callee.send(other, server.address[1])
        fork_ack = await callee.recv("ACK")
        assert fork_ack.to_addr.tag == "fork2" and fork_ack.cseq.number == invite.cseq.number
        bye = await callee.recv("BYE")
        assert bye.to_addr.tag == "fork2"
        callee.send(make_response(bye, 200), server.address[1])
        assert result.call.call_id in server.calls and not result.call.ended  # the first answer stays
    _run(scenario)


def test_bye_from_the_callee_ends_the_call_we_placed():
    async def scenario(server, callee, counts):
        result, invite, ok, ack = await _answered(server, callee, 40000)
        call = result.call
        bye = SipRequest("BYE", call.dialog.contact.strip("<>"), headers=[
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{callee.port};branch={MAGIC}bye1"),
            ("From", ok.get("To")), ("To", invite.get("From")), ("Call-ID", invite.call_id), ("CSeq", "7 BYE")])
        bye.set_body(b"")
        callee.send(bye, server.address[1])
        assert (await callee.recv()).status == 200
        assert isinstance(await asyncio.wait_for(call.next_event(), 2), Hangup)
        assert call.ended and call.call_id not in server.calls and call.rtp.transport.is_closing()
        await call.hangup()  # nothing more to send
        assert not callee.requests("BYE")
    _run(scenario)


# ---- not answered ---------------------------------------------------------------------------------
def test_busy_is_acked_in_the_invite_transaction():
    async def scenario(server, callee, counts):
        task = asyncio.ensure_future(server.dial(f"sip:200@localhost:{callee.port}"))  # a name: resolved
        invite = await callee.recv("INVITE")
        assert invite.uri == f"sip:200@localhost:{callee.port}"
        callee.send(make_response(invite, 100), server.address[1])
        busy = make_response(invite, 486, to_tag="busy1")
        callee.send(busy, server.address[1])
        result = await task
        assert not result.answered and (result.status, result.reason, result.outcome) == (486, "Busy Here", "busy")
        ack = await callee.recv("ACK")
        assert ack.top_via.branch == invite.top_via.branch and ack.uri == invite.uri
        assert ack.cseq.number == invite.cseq.number and ack.cseq.method == "ACK"
        assert ack.to_addr.tag == "busy1" and ack.from_addr.tag == invite.from_addr.tag
        assert invite.from_addr.uri.user == "ivr"  # no caller id: sip:ivr@our-host
        callee.send(busy, server.address[1])  # a retransmission of the 486 gets the ACK again
        assert (await callee.recv("ACK")).serialize() == ack.serialize()
        assert len(callee.requests("INVITE")) == 1 and not server.calls
        assert _outcomes(counts) == ["busy"]
    _run(scenario)


def test_ring_timeout_cancels_and_acks_the_487():
    async def scenario(server, callee, counts):
        loop = asyncio.get_running_loop()
        start = loop.time()
        task = asyncio.ensure_future(server.dial(f"sip:300@127.0.0.1:{callee.port}", ring_timeout=0.5))
        invite = await callee.recv("INVITE")
        await asyncio.sleep(2.5 * T1)  # no answer yet: the INVITE comes again (Timer A)
        assert len(callee.requests("INVITE")) >= 2
        callee.send(make_response(invite, 180, to_tag="ring1"), server.address[1])
        await asyncio.sleep(4 * T1)
        ringing = len(callee.requests("INVITE"))
        cancel = await callee.recv("CANCEL")
        assert 0.45 <= loop.time() - start <= 1.5
        assert len(callee.requests("INVITE")) == ringing  # no retransmission once it rang
        assert cancel.top_via.branch == invite.top_via.branch and cancel.uri == invite.uri
        assert cancel.cseq.number == invite.cseq.number and cancel.cseq.method == "CANCEL"
        assert cancel.get("To") == invite.get("To") and cancel.get("From") == invite.get("From")
        callee.send(make_response(cancel, 200, to_tag="ring1"), server.address[1])
        callee.send(make_response(invite, 487, to_tag="ring1"), server.address[1])
        result = await task
        assert (result.status, result.outcome, result.call) == (487, "no-answer", None)
        ack = await callee.recv("ACK")
        assert ack.top_via.branch == invite.top_via.branch and ack.to_addr.tag == "ring1"
        assert _outcomes(counts) == ["no-answer"]
    _run(scenario)


def test_no_response_at_all_ends_with_timer_b():
    async def scenario(server, callee, counts):
        loop = asyncio.get_running_loop()
        start = loop.time()
        result = await server.dial(f"sip:400@127.0.0.1:{callee.port}")
        took = loop.time() - start
        assert (result.status, result.outcome, result.call) == (408, "failed", None)
        assert 64 * T1 - 0.05 <= took <= 64 * T1 + 1.0
        invites = callee.requests("INVITE")
        # Sent at 0, T1, 3, 7, 15, 31 and 63*T1 (doubling, no T2 cap), then Timer B at 64*T1.
        assert len(invites) == 7 and len({i.serialize() for i in invites}) == 1
        assert not server.tx.client and not callee.requests("CANCEL")
    _run(scenario)


def test_a_cancelled_dial_cancels_its_invite():
    async def scenario(server, callee, counts):
        task = asyncio.ensure_future(server.dial(f"sip:500@127.0.0.1:{callee.port}"))
        invite = await callee.recv("INVITE")
        callee.send(make_response(invite, 180, to_tag="r1"), server.address[1])
        await asyncio.sleep(T1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancel = await callee.recv("CANCEL")
        assert cancel.top_via.branch == invite.top_via.branch
        # The callee answered meanwhile: that answer is ACKed and hung up.
        callee.send(make_response(cancel, 200, to_tag="r1"), server.address[1])
        callee.send(_ok(invite, "r1", callee.contact, _answer_sdp(40000)), server.address[1])
        assert (await callee.recv("ACK")).to_addr.tag == "r1"
        bye = await callee.recv("BYE")
        callee.send(make_response(bye, 200), server.address[1])
        assert not server.calls
    _run(scenario)


def test_an_answer_without_usable_sdp_is_hung_up():
    async def scenario(server, callee, counts):
        task = asyncio.ensure_future(server.dial(f"sip:600@127.0.0.1:{callee.port}"))
        invite = await callee.recv("INVITE")
        bad = _answer_sdp(40000).replace(b"RTP/AVP 8 101", b"RTP/AVP 18").replace(b"PCMA", b"G729")
        callee.send(_ok(invite, "g729", callee.contact, bad), server.address[1])
        result = await task
        assert (result.status, result.outcome, result.call) == (488, "failed", None)
        assert (await callee.recv("ACK")).to_addr.tag == "g729"
        assert (await callee.recv("BYE")).to_addr.tag == "g729"
    _run(scenario)


def test_what_cannot_be_dialled_is_refused_before_anything_is_sent():
    async def scenario(server, callee, counts):
        for uri in ("tel:+441632960001", "sips:x@127.0.0.1", "sip:x@127.0.0.1;transport=tcp", "not a uri"):
            with pytest.raises(ValueError):
                await server.dial(uri)
        with pytest.raises(ValueError):
            await server.dial(f"sip:x@127.0.0.1:{callee.port}", headers={"Call-ID": "mine"})
        with pytest.raises(ValueError):
            await server.dial(f"sip:x@127.0.0.1:{callee.port}", headers={"X-Campaign": "a\r\nVia: evil"})
        await asyncio.sleep(0.05)
        assert callee.got == []
    _run(scenario)


def test_tx_ack_and_cancel_copy_the_invite():
    """The ACK of a failure and the CANCEL carry only the INVITE's top Via, and its Route."""
    from ivr.sip.transaction import InviteClientTx, Transactions, ack_for_final

    invite = parse(b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx1;rport\r\n"
                   b"Route: <sip:127.0.0.1:5070;lr>\r\nFrom: <sip:ivr@127.0.0.1>;tag=f\r\nTo: <sip:a@127.0.0.1>\r\n"
                   b"Call-ID: c1\r\nCSeq: 9 INVITE\r\nContent-Length: 0\r\n\r\n")
    resp = make_response(invite, 404, to_tag="t")
    ack = ack_for_final(invite, resp)
    assert ack.get("Via") == "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx1;rport"
    assert ack.get_all("Route") == ["<sip:127.0.0.1:5070;lr>"] and ack.cseq.number == 9
    assert ack.to_addr.tag == "t" and ack.uri == invite.uri and ack.body == b""
    cancel = InviteClientTx(Transactions(None), invite, ("127.0.0.1", 5070)).cancel_request()
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri and cancel.get("Via") == ack.get("Via")
    assert cancel.get("To") == "<sip:a@127.0.0.1>" and cancel.cseq.number == 9 and cancel.cseq.method == "CANCEL"
    assert cancel.get_all("Route") == ack.get_all("Route") and cancel.get("From") == invite.get("From")
