"""The rules of the SIP edge that keep it safe and serving, tested without sockets:
RTP latching, admission, where answers and in-dialog requests go, CANCEL matching,
Require, INFO bodies, framing errors on TCP, and the metrics text."""

from __future__ import annotations

import asyncio
import struct

import pytest

from ivr.audio.clock import MediaClock
from ivr.audio.g711 import codec_by_name
from ivr.metrics import Metrics
from ivr.sip.dialog import Dialog
from ivr.sip.errors import SipParseError
from ivr.sip.invite import _same_transaction
from ivr.sip.media import LEARN_PACKETS, RtpSession
from ivr.sip.message import parse
from ivr.sip.transaction import reply_address, stamp_via
from ivr.sip.transport import HEAD_KEPT, Source, _Tcp
from ivr.sip.ua import Admission, _info_digit, _unsupported

PEER = ("192.0.2.10", 4000)  # the address the SDP names
NAT = ("198.51.100.20", 31000)  # where a peer behind NAT really sends from
INTRUDER = ("203.0.113.66", 5555)


def _packet(seq: int, pt: int = 0, ssrc: int = 0x1234, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 160, ssrc) + payload


def _dtmf(seq: int, digit: int, end: bool, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 101, seq, 1000, ssrc) + struct.pack("!BBH", digit, 0x80 if end else 0, 800)


def _session(remote=PEER) -> tuple[RtpSession, list[str]]:
    keys: list[str] = []
    rtp = RtpSession(MediaClock(), codec_by_name("PCMU"), remote, dtmf_pt=101,
                     on_dtmf=lambda d, via: keys.append(d))
    return rtp, keys


# ---- latching ------------------------------------------------------------------------------------
def test_the_sdp_address_latches_at_its_first_packet_and_shuts_out_the_rest():
    rtp, keys = _session()
    rtp.datagram_received(_packet(1), PEER)
    assert rtp.peer == PEER
    for i in range(10):
        rtp.datagram_received(_dtmf(100 + i, 1, end=i > 6, ssrc=99), INTRUDER)
    assert keys == [] and rtp.ignored == 10
    rtp.datagram_received(_dtmf(2, 5, end=True), PEER)
    assert keys == ["5"]


def test_another_address_latches_only_after_a_run_in_sequence():
    rtp, _ = _session()
    for seq in (10, 12, 14):  # not in sequence: never a run
        rtp.datagram_received(_packet(seq), NAT)
    assert rtp.peer is None
    for i in range(LEARN_PACKETS):
        rtp.datagram_received(_packet(20 + i), NAT)
    assert rtp.peer == NAT


def test_the_sdp_address_wins_over_a_run_not_yet_complete():
    rtp, _ = _session()
    for i in range(LEARN_PACKETS - 1):
        rtp.datagram_received(_packet(50 + i, ssrc=7), INTRUDER)
    rtp.datagram_received(_packet(1), PEER)
    assert rtp.peer == PEER


def test_junk_neither_counts_nor_latches():
    rtp, _ = _session()
    for junk in (b"", b"\x00" * 11, b"\x40" + b"\x00" * 30, b"hello world, not rtp at all"):
        rtp.datagram_received(junk, INTRUDER)
    assert rtp.peer is None and rtp.received == 0


def test_a_reinvite_to_a_new_address_latches_again():
    rtp, _ = _session()
    rtp.datagram_received(_packet(1), PEER)
    rtp.set_remote(NAT)
    assert rtp.peer is None
    rtp.datagram_received(_packet(2), NAT)
    assert rtp.peer == NAT


class _Sent:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple]] = []

    def sendto(self, data, addr) -> None:
        self.sent.append((data, addr))


def test_nothing_is_sent_to_a_host_name_or_a_wildcard_until_latched():
    for remote in (("media.example.com", 4000), ("0.0.0.0", 4000)):
        rtp, _ = _session(remote)
        rtp.transport = rtp._sock = out = _Sent()
        ts = rtp.ts
        rtp.tick()
        assert out.sent == [] and rtp.ts == (ts + 160) & 0xFFFFFFFF  # the clock still runs
        rtp.datagram_received(_packet(1), NAT)
        rtp.datagram_received(_packet(2), NAT)
        rtp.datagram_received(_packet(3), NAT)
        rtp.tick()
        assert [addr for _, addr in out.sent] == [NAT]
        assert out.sent[0][0][1] & 0x80  # the marker: first packet of a talk spurt


def test_on_hold_the_timestamp_keeps_time():
    rtp, _ = _session()
    rtp.transport = rtp._sock = out = _Sent()
    rtp.tick()
    rtp.sending = False
    for _ in range(5):
        rtp.tick()
    rtp.sending = True
    rtp.tick()
    (a, _), (b, _) = out.sent
    ts_a, ts_b = struct.unpack("!I", a[4:8])[0], struct.unpack("!I", b[4:8])[0]
    seq_a, seq_b = struct.unpack("!H", a[2:4])[0], struct.unpack("!H", b[2:4])[0]
    assert (ts_b - ts_a) & 0xFFFFFFFF == 6 * 160 and (seq_b - seq_a) & 0xFFFF == 1
    assert b[1] & 0x80


# ---- admission -----------------------------------------------------------------------------------
def test_admission_takes_places_at_once_and_gives_them_back():
    adm = Admission(hard=2)
    assert [adm.admit(), adm.admit(), adm.admit()] == ["ok", "ok", None]
    assert adm.active == 2 and adm.refused == 1
    adm.release()
    assert adm.admit() == "ok"


def test_soft_capacity_overflows_only_when_the_flow_has_somewhere_to_go():
    adm = Admission(hard=10, soft=1)
    assert [adm.admit(), adm.admit()] == ["ok", "overflow"] and adm.overflowed == 1
    closed = Admission(hard=10, soft=1, can_overflow=lambda: False)
    assert [closed.admit(), closed.admit()] == ["ok", None] and closed.refused == 1


# ---- where answers and requests go -----------------------------------------------------------------
def _request(via: str, extra: str = "") -> object:
    text = (f"OPTIONS sip:ivr@192.0.2.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@x>;tag=1\r\n"
            f"To: <sip:ivr@192.0.2.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n")
    return parse(text.encode())


UDP = Source("UDP", ("192.0.2.7", 40000))


def test_answers_follow_received_and_rport():
    req = _request("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKa;rport")
    stamp_via(req, UDP.addr)
    assert req.top_via.params["rport"] == "40000" and req.top_via.received == "192.0.2.7"
    assert reply_address(req, UDP) == ("192.0.2.7", 40000)
    plain = _request("SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKb")
    stamp_via(plain, UDP.addr)
    assert "received" not in plain.top_via.params
    assert reply_address(plain, UDP) == ("192.0.2.7", 5062)


def test_answers_never_go_to_a_name():
    for via in ("SIP/2.0/UDP phone.example.com:5070;branch=z9hG4bKc",
                "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKd;maddr=relay.example.com"):
        req = _request(via)
        stamp_via(req, UDP.addr)
        assert reply_address(req, UDP) == ("192.0.2.7", 5070)


def test_answers_on_tcp_use_the_connection():
    tcp = Source("TCP", ("192.0.2.7", 40001))
    assert reply_address(_request("SIP/2.0/TCP 198.51.100.1:5060;branch=z9hG4bKe"), tcp) is tcp


def _dialog(target: str, routes: list[str] | None = None) -> Dialog:
    return Dialog(call_id="c", local_tag="l", remote_tag="r", local_uri="<sip:ivr@x>", remote_uri="<sip:a@y>",
                  remote_target=target, route_set=routes or [], source=UDP, contact="<sip:ivr@x>",
                  via_host="192.0.2.1", via_port=5060)


def test_in_dialog_requests_go_to_an_address_never_a_name():
    assert _dialog("sip:a@198.51.100.3:5080").destination() == ("198.51.100.3", 5080)
    assert _dialog("sip:a@phone.example.com:5080").destination() == UDP.addr
    assert _dialog("sip:a@198.51.100.3", ["<sip:proxy.example.com;lr>"]).destination() == UDP.addr
    assert _dialog("sip:a@phone.example.com", ["<sip:198.51.100.9:5070;lr>"]).destination() == ("198.51.100.9", 5070)


# ---- CANCEL, Require, INFO ----------------------------------------------------------------------------
def test_a_cancel_matches_its_invite_by_via_and_cseq_number():
    def msg(method: str, branch: str, cseq: int):
        return parse((f"{method} sip:ivr@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch={branch}\r\n"
                      f"From: <sip:a@x>;tag=1\r\nTo: <sip:ivr@x>\r\nCall-ID: c\r\nCSeq: {cseq} {method}\r\n"
                      "Content-Length: 0\r\n\r\n").encode())
    invite = msg("INVITE", "z9hG4bK1", 1)
    assert _same_transaction(msg("CANCEL", "z9hG4bK1", 1), invite)
    assert not _same_transaction(msg("CANCEL", "z9hG4bK2", 1), invite)
    assert not _same_transaction(msg("CANCEL", "z9hG4bK1", 2), invite)


def test_require_of_anything_is_unsupported():
    assert _unsupported(_request("SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKf")) == []
    assert _unsupported(_request("SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKg", "Require: 100rel, timer\r\n")) == \
        ["100rel", "timer"]


def test_info_bodies():
    def info(ctype: str, body: str):
        return parse((f"INFO sip:ivr@x SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKh\r\n"
                      f"From: <sip:a@x>;tag=1\r\nTo: <sip:ivr@x>;tag=2\r\nCall-ID: c\r\nCSeq: 2 INFO\r\n"
                      f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    assert _info_digit(info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")) == "5"
    assert _info_digit(info("application/dtmf-relay", "Signal= #\r\n")) == "#"
    assert _info_digit(info("application/dtmf", "a")) == "A"
    assert _info_digit(info("application/dtmf-relay", "Signal=55\r\n")) is None
    assert _info_digit(info("text/plain", "5")) is None


# ---- TCP: a broken message is answered from its own first bytes ----------------------------------------
class _Conn:
    def __init__(self) -> None:
        self.closed = False
        self.written = b""

    def get_extra_info(self, name):
        return ("192.0.2.7", 40002)

    def write(self, data) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class _Owner:
    def __init__(self) -> None:
        self.received = self.bad = 0
        self.errors: list[tuple[bytes, SipParseError]] = []
        self.messages: list = []

    def on_message(self, msg, src) -> None:
        self.messages.append(msg)

    def on_error(self, data, exc, src) -> None:
        self.errors.append((data, exc))


def test_headers_that_never_end_are_answered_from_the_start_of_the_message():
    owner = _Owner()
    proto = _Tcp(owner)
    proto.connection_made(conn := _Conn())
    ok = (b"OPTIONS sip:ivr@x SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bKi\r\nFrom: <sip:a@x>;tag=1\r\n"
          b"To: <sip:ivr@x>\r\nCall-ID: ok\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    start = ok.replace(b"Call-ID: ok", b"Call-ID: broken").split(b"Content-Length")[0]
    proto.data_received(ok + start)  # one whole message, and the start of the next
    for _ in range(10):
        proto.data_received(b"X-Filler: " + b"y" * 5000 + b"\r\n")
        if owner.errors:
            break
    assert len(owner.messages) == 1
    (data, exc), = owner.errors
    assert exc.status == 513 and data.startswith(b"OPTIONS sip:ivr@x") and b"Call-ID: broken" in data
    assert len(data) <= HEAD_KEPT and conn.closed


# ---- metrics ----------------------------------------------------------------------------------------------
def test_metrics_list_described_counters_before_their_first_sample():
    m = Metrics()
    m.describe("ivr_speech_inputs_total", "speech inputs by result")
    m.gauge("ivr_sip_errors_total", lambda: 3, "errors", kind="counter")
    m.gauge("ivr_active_calls", lambda: 1, "calls")
    text = m.render()
    assert "# TYPE ivr_speech_inputs_total counter" in text
    assert "# TYPE ivr_sip_errors_total counter\nivr_sip_errors_total 3" in text
    assert "# TYPE ivr_active_calls gauge\nivr_active_calls 1" in text


# ---- sending keys (RFC 4733) -----------------------------------------------------------------------
class _Wire:
    """Stands in for the session's socket and transport: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, dest) -> None:
        self.sent.append(data)


def test_keys_sent_as_telephone_events_are_read_back_as_the_same_keys():
    async def run():
        tx, _ = _session()
        wire = _Wire()
        tx._sock = tx.transport = wire
        first, second = tx.send_dtmf("5"), tx.send_dtmf("#", duration_ms=60)
        ticks = 0
        while not second.done() and ticks < 100:
            tx.tick()
            ticks += 1
        rx, keys = _session()
        for data in wire.sent:
            rx.datagram_received(data, PEER)
        return first.result(), second.result(), keys, wire.sent, ticks

    first, second, keys, sent, ticks = asyncio.run(run())
    assert (first, second) == (True, True)
    assert keys == ["5", "#"]
    assert ticks == len(sent)  # one packet a tick, none of them audio
    assert all(p[1] & 0x7F == 101 for p in sent)
    assert sent[0][1] & 0x80  # the first packet of a press carries the marker
    # Each press keeps its own start timestamp; the second starts after the first's ticks.
    ts = [struct.unpack("!I", p[4:8])[0] for p in sent]
    n5 = ts.count(ts[0])
    assert len(set(ts)) == 2 and ts[n5] - ts[0] == 160 * n5
    seqs = [struct.unpack("!H", p[2:4])[0] for p in sent]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))


def test_without_a_negotiated_event_type_a_key_cannot_go_as_rfc4733():
    async def run():
        rtp = RtpSession(MediaClock(), codec_by_name("PCMU"), PEER, dtmf_pt=None, on_dtmf=lambda d, v: None)
        with pytest.raises(ValueError, match="telephone-event"):
            rtp.send_dtmf("1")
    asyncio.run(run())
