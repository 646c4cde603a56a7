"""The message layer: framing, header access, limits, responses, streams, real peers, fuzzing."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.sip.errors import SipParseError
from ivr.sip.headers import CSeq, NameAddr, Via, response_address
from ivr.sip.message import (
    Limits,
    SipRequest,
    SipResponse,
    is_keepalive,
    make_response,
    parse,
)
from ivr.sip.stream import StreamParser
from ivr.sip.uri import SipUri, parse_uri
from ivr.sip.validate import validate_request, validate_response

CRLF = "\r\n"


def msg(*lines: str, body: str = "") -> bytes:
    """A message from header lines; Content-Length is added unless a line has one."""
    head = list(lines)
    if not any(line.lower().startswith(("content-length", "l:")) for line in head[1:]):
        head.append(f"Content-Length: {len(body.encode())}")
    return (CRLF.join(head) + CRLF + CRLF + body).encode()


BASIC = (
    "OPTIONS sip:ivr@127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-1;rport",
    "From: <sip:t@127.0.0.1>;tag=a1",
    "To: <sip:ivr@127.0.0.1>",
    "Call-ID: c1@127.0.0.1",
    "CSeq: 1 OPTIONS",
    "Max-Forwards: 70",
)


def request(*extra: str, body: str = "") -> SipRequest:
    m = parse(msg(*BASIC, *extra, body=body))
    assert isinstance(m, SipRequest)
    return m


# --- parsing and header access ----------------------------------------------------


def test_request_and_response_basics() -> None:
    req = request()
    assert (req.method, req.uri, req.version) == ("OPTIONS", "sip:ivr@127.0.0.1", "SIP/2.0")
    assert req.headers[0] == ("Via", "SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-1;rport")
    assert req.parsed_uri == SipUri(user="ivr", host="127.0.0.1")
    resp = parse(msg("SIP/2.0 486 Busy Here", *BASIC[1:]))
    assert isinstance(resp, SipResponse) and (resp.status, resp.reason) == (486, "Busy Here")
    assert bytes(resp) == resp.serialize()
    validate_request(req)
    validate_response(resp)


def test_case_insensitive_and_compact_names() -> None:
    m = parse(msg("INVITE sip:a@b SIP/2.0", "v: SIP/2.0/UDP h;branch=z9hG4bKx",
                  "f: <sip:x@y>;tag=1", "t: <sip:a@b>", "i: abc", "CSEQ: 2 INVITE",
                  "k: timer", "m: <sip:x@h>", "c: application/sdp", "s: hi"))
    assert m.get("Via") == m.get("VIA") == "SIP/2.0/UDP h;branch=z9hG4bKx"
    assert m.call_id == "abc" and m.get("call-id") == "abc" and m.get("I") == "abc"
    assert m.get("Supported") == "timer" and m.get("Contact") == "<sip:x@h>"
    assert m.get("Content-Type") == "application/sdp" and m.get("Subject") == "hi"
    assert m.get("Content-Length") == "0" and m.get("l") == "0"
    assert m.get("X-Missing") is None and m.get("X-Missing", "d") == "d"
    validate_request(m)


def test_get_all_splits_lists_only() -> None:
    m = request('Contact: "Doe, J" <sip:j@h>, <sip:k@h;x=1,2>', "Contact: sip:l@h",
                "Allow: INVITE,ACK , BYE", "Date: Sat, 13 Nov 2010 23:29:00 GMT",
                "X-Custom: a, b", "X-Custom: c")
    assert m.get_all("Contact") == ['"Doe, J" <sip:j@h>', "<sip:k@h;x=1,2>", "sip:l@h"]
    assert m.get("m") == '"Doe, J" <sip:j@h>'
    assert m.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert m.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert m.get_all("X-Custom") == ["a, b", "c"]
    assert [str(v) for v in m.vias] == ["SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-1;rport"]


def test_empty_header_values_are_accepted() -> None:
    # baresip sends an empty Supported; "s :" (empty Subject) is in RFC 4475 wsinv.
    m = request("Supported:", "Subject :", "Allow:   ")
    assert m.has("Supported") and m.get("Supported") is None and m.get_all("Supported") == []
    assert m.get("Subject") == "" and m.get("Allow") is None
    assert ("Supported", "") in m.headers
    assert b"\r\nSupported:\r\n" in m.serialize()
    validate_request(m)
    assert parse(m.serialize()) == m


def test_folded_headers_are_unfolded() -> None:
    m = request("Subject: one  \r\n   two\r\n\tthree", "X-Empty:\r\n  later")
    assert m.get("Subject") == "one two three"
    assert m.get("X-Empty") == "later"
    with pytest.raises(SipParseError):
        parse(b"OPTIONS sip:a@b SIP/2.0\r\n continued: x\r\n\r\n")


def test_editing_headers() -> None:
    m = request("Route: <sip:p1;lr>", "X-A: 1", "X-a: 2")
    m.set("x-a", "3")
    assert m.get_all("X-A") == ["3"] and m.headers.index(("x-a", "3")) == 7
    m.add("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKp", first=True)
    assert m.headers[0] == ("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKp")
    m.add("Record-Route", "<sip:p;lr>")
    assert m.headers[-1] == ("Record-Route", "<sip:p;lr>")
    assert m.remove("x-a") == 1 and m.remove("X-A") == 0 and not m.has("X-A")
    m.set("Brand-New", "v")
    assert m.headers[-1] == ("Brand-New", "v")
    m.set_body(b"v=0\r\n", "application/sdp")
    assert (m.get("Content-Length"), m.get("Content-Type")) == ("5", "application/sdp")
    assert parse(m.serialize()) == m
    for bad_name, bad_value in (("Bad Name", "x"), ("X", "a\r\nInjected: 1"), ("X", "a\nb")):
        with pytest.raises(ValueError):
            m.add(bad_name, bad_value)
    m.headers.append(("X", "a\r\nInjected: 1"))
    with pytest.raises(ValueError):
        m.serialize()


# --- framing, Content-Length and limits -------------------------------------------------


def test_datagram_content_length() -> None:
    body = "v=0\r\n"
    data = msg(*BASIC, body=body)
    assert parse(data).body == body.encode()
    assert parse(data + b"trailing junk").body == body.encode()  # RFC 3261 18.3: discarded
    short = data[:-2]
    with pytest.raises(SipParseError) as info:
        parse(short)
    assert info.value.status == 400 and isinstance(info.value.message, SipRequest)
    no_length = (CRLF.join(BASIC) + CRLF + CRLF + "rest of datagram").encode()
    assert parse(no_length).body == b"rest of datagram"


@pytest.mark.parametrize("length", ["five", "-1", "1 2", "", "99999999999", "０"])
def test_bad_content_length(length: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse(msg(*BASIC, f"Content-Length: {length}"))
    assert info.value.status == 400


def test_start_lines() -> None:
    for line, status in (("INVITE sip:a@b SIP/3.0", 505), ("SIP/3.0 200 OK", 505),
                         ("INVITE sip:a@b HTTP/1.1", 400), ("INVITE  sip:a@b SIP/2.0", 400),
                         ("INVITE sip:a@b SIP/2.0 ", 400), ("INVITE sip:a@b", 400),
                         ("INV<ITE sip:a@b SIP/2.0", 400), ("INVITE <sip:a@b> SIP/2.0", 400),
                         ("SIP/2.0 2000 OK", 400), ("SIP/2.0 099 x", 400), ("SIP/2.0 700 x", 400),
                         ("SIP/2.0 2O0 OK", 400), ("SIP/2.0 200 O\x01K", 400), ("", 400),
                         ("GET / HTTP/1.1", 400)):
        with pytest.raises(SipParseError) as info:
            parse(msg(line, *BASIC[1:]))
        assert info.value.status == status, line
    assert parse(msg("SIP/2.0 180", *BASIC[1:])).reason == ""  # liberal: no SP after the code
    assert parse(msg("sip/2.0 200 OK", *BASIC[1:])).version == "sip/2.0"


def test_line_endings_and_keepalives() -> None:
    with pytest.raises(SipParseError):
        parse(msg(*BASIC).replace(b"\r\nTo:", b"\nTo:"))
    with pytest.raises(SipParseError):
        parse(msg(*BASIC).replace(b"\r\nTo:", b"\rTo:"))
    with pytest.raises(SipParseError):
        parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x")  # neither end of headers nor of a line
    # A datagram that ends right after the last header line has no body.
    assert parse(CRLF.join(BASIC).encode() + b"\r\n").body == b""
    assert parse(b"\r\n\r\n" + msg(*BASIC)).method == "OPTIONS"  # type: ignore[union-attr]
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n") and not is_keepalive(b"")
    assert not is_keepalive(msg(*BASIC))
    with pytest.raises(SipParseError):
        parse(b"\r\n\r\n")


def test_limits_refuse_hostile_input_quickly() -> None:
    with pytest.raises(SipParseError) as info:
        parse(b"x" * 70_000)
    assert info.value.status == 513
    many = [f"X-H{i}: v" for i in range(200)]
    with pytest.raises(SipParseError) as info:
        parse(msg(*BASIC, *many))
    assert info.value.status == 513
    with pytest.raises(SipParseError) as info:
        parse(msg(*BASIC, "X-Long: " + "a" * 9000))
    assert info.value.status == 513
    small = Limits(max_message=400, max_header_bytes=300, max_headers=10, max_line=80)
    with pytest.raises(SipParseError):
        parse(msg(*BASIC, "X-A: 1", "X-B: 2", "X-C: 3", "X-D: 4"), limits=small)


# --- responses ---------------------------------------------------------------------------


def test_make_response_copies_per_rfc3261_8_2_6() -> None:
    req = request("Via: SIP/2.0/UDP second;branch=z9hG4bK2", "Record-Route: <sip:p1;lr>",
                  "Record-Route: <sip:p2;lr>", "Timestamp: 54")
    ok = make_response(req, 200, to_tag="t9", extra_headers=[("Contact", "<sip:ivr@h>")])
    assert (ok.status, ok.reason) == (200, "OK")
    assert ok.get_all("Via") == ["SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-1;rport",
                                 "SIP/2.0/UDP second;branch=z9hG4bK2"]
    assert ok.to_addr.tag == "t9" and ok.from_addr.tag == "a1"
    assert ok.get("Call-ID") == "c1@127.0.0.1" and ok.get("CSeq") == "1 OPTIONS"
    assert ok.get_all("Record-Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert ok.get("Contact") == "<sip:ivr@h>" and ok.get("Content-Length") == "0"
    assert not ok.has("Timestamp") and not ok.has("Max-Forwards")
    trying = make_response(req, 100)
    assert trying.reason == "Trying" and trying.get("Timestamp") == "54"
    assert trying.to_addr.tag is None and not trying.has("Record-Route")
    busy = make_response(req, 486, "Busy Now", to_tag="t9")
    assert busy.reason == "Busy Now" and not busy.has("Record-Route")
    assert make_response(req, 299).reason == ""
    validate_response(ok)
    assert parse(ok.serialize()) == ok
    in_dialog = request().__class__("BYE", "sip:a@b", headers=list(req.headers))
    in_dialog.set("To", "<sip:ivr@127.0.0.1>;tag=old")
    assert make_response(in_dialog, 200, to_tag="new").to_addr.tag == "old"
    ok.set_body(b"v=0\r\n", "application/sdp")
    assert ok.get("Content-Length") == "5" and parse(ok.serialize()).body == b"v=0\r\n"


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(("drop", "add", "reason"), [
    ("Call-ID", (), "Missing Call-ID"),
    ("Via", (), "Missing Via"),
    (None, ("CSeq: 1 INVITE",), "Multiple CSeq"),
    ("CSeq", ("CSeq: 1 INVITE",), "CSeq method mismatch"),
    ("Max-Forwards", ("Max-Forwards: 256",), "Bad Max-Forwards"),
    ("Call-ID", ("Call-ID: a b",), "Bad Call-ID"),
    (None, ("Contact: *",), "Bad Contact: Bad URI"),
    ("From", ("From: <sip:t@127.0.0.1",), "Bad From: Missing >"),
])
def test_validate_request_reasons(drop: str | None, add: tuple[str, ...], reason: str) -> None:
    lines = [line for line in BASIC if drop is None or not line.startswith(drop + ":")]
    req = parse(msg(*lines, *add))
    assert isinstance(req, SipRequest)
    with pytest.raises(SipParseError) as info:
        validate_request(req)
    assert (info.value.status, info.value.reason) == (400, reason)
    assert info.value.message is req


def test_validate_accepts_optional_and_wildcard() -> None:
    no_mf = [line for line in BASIC if not line.startswith("Max-Forwards")]
    validate_request(parse(msg(*no_mf)))  # type: ignore[arg-type]
    register = [line.replace("OPTIONS", "REGISTER") for line in BASIC]
    validate_request(parse(msg(*register, "Contact: *", "Expires: 0")))  # type: ignore[arg-type]


# --- stream framing ----------------------------------------------------------------------------


def test_stream_parser_frames_messages_and_keepalives() -> None:
    one = msg(*BASIC, body="hello")
    two = msg("SIP/2.0 200 OK", *BASIC[1:])
    wire = b"\r\n\r\n" + one + b"\r\n\r\n\r\n\r\n" + two + one
    parser = StreamParser()
    got = []
    for byte in wire:  # worst case: one byte per recv()
        parser.feed(bytes([byte]))
        got += list(parser)
    assert [type(m).__name__ for m in got] == ["SipRequest", "SipResponse", "SipRequest"]
    assert got[0].body == b"hello" and got[0] == parse(one) and got[2] == parse(one)
    assert parser.pop_keepalives() == 3 and parser.pop_keepalives() == 0
    assert parser.buffered == 0
    parser.feed(one + one[:10])
    assert len(list(parser)) == 1 and parser.buffered == 10


def test_stream_parser_errors_are_final() -> None:
    parser = StreamParser()
    parser.feed((CRLF.join(BASIC) + CRLF + CRLF).encode())  # no Content-Length on a stream
    with pytest.raises(SipParseError) as info:
        list(parser)
    assert info.value.reason == "Missing Content-Length"
    assert isinstance(info.value.message, SipRequest)
    with pytest.raises(SipParseError):
        parser.feed(msg(*BASIC))
    with pytest.raises(SipParseError):
        next(parser)

    endless = StreamParser(Limits(max_header_bytes=1000, max_message=4000, max_body=1000))
    with pytest.raises(SipParseError) as info:
        for _ in range(20):
            endless.feed(b"X-Header: " + b"a" * 90 + b"\r\n")
            list(endless)
    assert info.value.status == 513
    big = StreamParser(Limits(max_body=100))
    big.feed(msg(*BASIC, "Content-Length: 101"))
    with pytest.raises(SipParseError) as info:
        list(big)
    assert info.value.status == 413


# --- real peers --------------------------------------------------------------------------------

SDP_SIPP = ("v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
            "t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
SDP_BARESIP = ("v=0\r\no=- 2829130457 2829130458 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
               "t=0 0\r\na=tool:baresip 1.0.0\r\nm=audio 10400 RTP/AVP 0 101\r\n"
               "b=AS:64\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
               "a=fmtp:101 0-15\r\na=sendrecv\r\na=label:1\r\na=rtcp-rsize\r\n"
               "a=ssrc:1907553512 cname:b6bd4bd4-3c4e-4a1f-8f4d-09b1b5c25a67\r\n")
SDP_LINPHONE = ("v=0\r\no=linphone 3457 1208 IN IP4 127.0.0.1\r\ns=Talk\r\nc=IN IP4 127.0.0.1\r\n"
                "t=0 0\r\na=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL "
                "voip-metrics\r\na=record:off\r\nm=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100"
                "\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:97 "
                "speex/16000\r\na=fmtp:97 vbr=on\r\na=rtpmap:98 speex/8000\r\na=fmtp:98 vbr=on\r\n"
                "a=fmtp:18 annexb=yes\r\na=rtpmap:101 telephone-event/48000\r\na=rtpmap:99 "
                "telephone-event/16000\r\na=rtpmap:100 telephone-event/8000\r\na=rtcp:7079\r\n"
                "a=rtcp-fb:* trr-int 1000\r\na=rtcp-fb:* ccm tmmbr\r\n")
SDP_PYVOIP = ("v=0\r\no=pyVoIP 2131466218 2131466220 IN IP4 127.0.0.1\r\ns=pyVoIP 1.6.8\r\n"
              "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 10058 RTP/AVP 0 101\r\n"
              "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
              "a=ptime:20\r\na=maxptime:150\r\na=sendrecv\r\n")


def _with_body(lines: list[str], body: str, length_line: str = "Content-Length: {}") -> bytes:
    lines = [line.replace("{len}", length_line.format(len(body.encode()))) for line in lines]
    return (CRLF.join(lines) + CRLF + CRLF + body).encode()


PEERS: dict[str, bytes] = {
    # SIPp 3.6 `-sn uac`: the built-in scenario; [len] is written right-aligned in 5 columns.
    "sipp": _with_body([
        "INVITE sip:service@127.0.0.1:5080 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-41417-1-0",
        "From: sipp <sip:sipp@127.0.0.1:5071>;tag=41417SIPpTag001",
        "To: service <sip:service@127.0.0.1:5080>",
        "Call-ID: 1-41417@127.0.0.1",
        "CSeq: 1 INVITE",
        "Contact: sip:sipp@127.0.0.1:5071",
        "Max-Forwards: 70",
        "Subject: Performance Test",
        "Content-Type: application/sdp",
        "{len}",
    ], SDP_SIPP, "Content-Length: {:5d}"),
    # baresip 1.0.0: note the empty Supported header.
    "baresip": _with_body([
        "INVITE sip:ivr@127.0.0.1:5080 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK93f1c0a8e7d2b4c6;rport",
        "Contact: <sip:tester-0x55d1c2a3b4c0@127.0.0.1:5090>",
        "Max-Forwards: 70",
        "To: <sip:ivr@127.0.0.1:5080>",
        "From: <sip:tester@127.0.0.1:5090>;tag=d2e1f5a8b3c4e6f7",
        "Call-ID: 6c1b9e2d4f7a8c3e",
        "CSeq: 28390 INVITE",
        "User-Agent: baresip v1.0.0 (x86_64/linux)",
        "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER",
        "Supported:",
        "Content-Type: application/sdp",
        "{len}",
    ], SDP_BARESIP),
    # linphonec 5.1 (belle-sip): quoted Contact feature tag, '~' in tags, long SDP.
    "linphone": _with_body([
        "INVITE sip:ivr@127.0.0.1:5080 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK.Wd2SxHgNm;rport",
        "From: <sip:linphone@127.0.0.1>;tag=8~dK3hM2c",
        "To: sip:ivr@127.0.0.1:5080",
        "CSeq: 20 INVITE",
        "Call-ID: 5~Kn9ZQvRb",
        "Max-Forwards: 70",
        "Supported: replaces, outbound, gruu, path, record-aware",
        "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, "
        "PRACK, UPDATE",
        "Content-Type: application/sdp",
        "{len}",
        'Contact: <sip:linphone@127.0.0.1:5062;transport=udp>;expires=3600;'
        '+org.linphone.specs="conference/1.0,ephemeral/1.1,groupchat/1.1,lime"',
        "User-Agent: Linphone Desktop/5.1.65 (Debian GNU/Linux 12) LinphoneSDK/5.1.65",
    ], SDP_LINPHONE),
    # Kamailio 5.6 relaying SIPp's INVITE: its own Via on top, Record-Route, received/rport.
    "kamailio": _with_body([
        "INVITE sip:ivr@127.0.0.1:5080 SIP/2.0",
        "Record-Route: <sip:127.0.0.1;lr>",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK0d4c.5e0a3a3f8b0a9c2c6f1b7e5d4a3c2b1a.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5071;received=127.0.0.1;rport=5071;branch=z9hG4bK-41417-1-0",
        "From: sipp <sip:sipp@127.0.0.1:5071>;tag=41417SIPpTag001",
        "To: ivr <sip:ivr@127.0.0.1:5060>",
        "Call-ID: 1-41417@127.0.0.1",
        "CSeq: 1 INVITE",
        "Contact: sip:sipp@127.0.0.1:5071",
        "Max-Forwards: 69",
        "Subject: Performance Test",
        "Content-Type: application/sdp",
        "{len}",
    ], SDP_SIPP),
    # pyVoIP 1.6.8 calling through Kamailio (it sends everything to its registrar).
    "pyvoip": _with_body([
        "INVITE sip:ivr@127.0.0.1:5080 SIP/2.0",
        "Record-Route: <sip:127.0.0.1;lr>",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa8f1.9e3c0b2d7f4a6e8c1d5b3a9f7e2c4d6b.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5062;rport=5062;branch=z9hG4bK8a5e4c2f6b1d4e0a9c7f3b2e1",
        "Max-Forwards: 69",
        "Contact: <sip:pyvoip@127.0.0.1:5062>",
        "To: <sip:ivr@127.0.0.1>",
        "From: <sip:pyvoip@127.0.0.1>;tag=5b2f8a1c",
        "Call-ID: 3f9a1c7e5b2d8f4a6c0e1b3d5f7a9c2e@127.0.0.1:5062",
        "CSeq: 1 INVITE",
        "Allow: INVITE, ACK, BYE, CANCEL",
        "Content-Type: application/sdp",
        "User-Agent: pyVoIP 1.6.8",
        "{len}",
    ], SDP_PYVOIP),
}


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_real_peer_invites_parse(peer: str) -> None:
    data = PEERS[peer]
    req = parse(data)
    assert isinstance(req, SipRequest) and req.method == "INVITE"
    validate_request(req)
    assert req.body.startswith(b"v=0\r\n") and req.get("Content-Type") == "application/sdp"
    assert req.from_addr.tag and req.to_addr.tag is None
    assert parse(req.serialize()) == req
    stream = StreamParser()
    stream.feed(data.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP") * 2)
    assert len(list(stream)) == 2
    ok = make_response(req, 200, to_tag="ivr1", extra_headers=[("Contact", "<sip:ivr@127.0.0.1>")])
    validate_response(ok)
    assert ok.get_all("Via") == req.get_all("Via")


def test_peer_details() -> None:
    baresip = parse(PEERS["baresip"])
    assert baresip.has("Supported") and baresip.get_all("Supported") == []
    assert response_address(baresip.top_via, ("127.0.0.1", 5090)) == ("127.0.0.1", 5090)
    sipp = parse(PEERS["sipp"])
    assert sipp.get("Content-Length") == str(len(sipp.body))  # "  129" is trimmed
    assert sipp.from_addr.display_name == "sipp"
    linphone = parse(PEERS["linphone"])
    contact = NameAddr.parse(linphone.get("Contact") or "")
    assert contact.params["+org.linphone.specs"].startswith('"conference/1.0,')  # type: ignore[union-attr]
    assert len(linphone.get_all("Allow")) == 12
    kamailio = parse(PEERS["kamailio"])
    vias = kamailio.vias
    assert [v.port for v in vias] == [5060, 5071] and vias[1].rport == 5071
    assert kamailio.get_all("Record-Route") == ["<sip:127.0.0.1;lr>"]
    assert response_address(vias[0], ("127.0.0.1", 5060)) == ("127.0.0.1", 5060)
    ok = make_response(kamailio, 180, to_tag="x")  # type: ignore[arg-type]
    assert ok.get_all("Record-Route") == ["<sip:127.0.0.1;lr>"]
    pyvoip = parse(PEERS["pyvoip"])
    assert pyvoip.call_id.endswith("@127.0.0.1:5062")  # type: ignore[union-attr]
    assert pyvoip.get("User-Agent") == "pyVoIP 1.6.8"


# --- never anything but SipParseError ----------------------------------------------------------

_SEEDS = [PEERS[p] for p in sorted(PEERS)] + [
    p.read_bytes() for p in sorted((Path(__file__).resolve().parents[2] / "sip" / "torture")
                                   .glob("*/*.dat"))
]
_ALPHABET = b'\r\n :;,<>"\\@%=?&/[].-\x00\xff\tSIP/2.0aZ9'


def _mutate(seed: bytes, rnd: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rnd.randint(1, 6)):
        i = rnd.randrange(len(data) + 1)
        op = rnd.randrange(5)
        if op == 0 and data:
            data[min(i, len(data) - 1)] = rnd.choice(_ALPHABET)
        elif op == 1:
            data[i:i] = bytes([rnd.choice(_ALPHABET)]) * rnd.randint(1, 3)
        elif op == 2:
            del data[i : i + rnd.randint(1, 12)]
        elif op == 3:
            del data[i:]
        else:
            j = rnd.randrange(len(data) + 1)
            data[i:i] = data[j : j + rnd.randint(1, 40)]
    return bytes(data)


def _exercise(data: bytes) -> None:
    """Everything a server does with untrusted bytes; only SipParseError may escape."""
    try:
        message = parse(data)
        if isinstance(message, SipRequest):
            validate_request(message)
        else:
            validate_response(message)
    except SipParseError:
        return
    assert parse(message.serialize()) == message
    for _, value in message.headers:
        for parser in (NameAddr.parse, Via.parse, CSeq.parse, parse_uri):
            with contextlib.suppress(SipParseError):
                parser(value)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    _exercise(data)
    _exercise(b"INVITE sip:a@b SIP/2.0\r\n" + data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SEEDS), st.randoms(use_true_random=False))
def test_mutated_messages_raise_only_sip_parse_error(seed: bytes, rnd: random.Random) -> None:
    _exercise(_mutate(seed, rnd))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_SEEDS), st.randoms(use_true_random=False))
def test_stream_parser_on_mutated_streams(seed: bytes, rnd: random.Random) -> None:
    parser = StreamParser()
    wire = _mutate(seed, rnd) + seed
    try:
        pos = 0
        while pos < len(wire):
            step = rnd.randint(1, 64)
            parser.feed(wire[pos : pos + step])
            pos += step
            for m in parser:
                assert isinstance(m, (SipRequest, SipResponse))
    except SipParseError:
        pass


_names = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
                 min_size=1, max_size=12).filter(lambda n: n.lower() not in ("l", "content-length"))
_values = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30).map(
    lambda v: v.strip(" \t"))


@st.composite
def sip_messages(draw: st.DrawFn) -> SipRequest | SipResponse:
    headers = draw(st.lists(st.tuples(_names, _values), max_size=12))
    body = draw(st.binary(max_size=200))
    headers.insert(draw(st.integers(0, len(headers))), ("Content-Length", str(len(body))))
    if draw(st.booleans()):
        method = draw(_names)
        uri = str(draw(st.sampled_from(["sip:ivr@127.0.0.1:5080", "sips:[::1]", "tel:+4412",
                                        "urn:service:sos", "sip:a%20b@h;lr?x=y"])))
        return SipRequest(method, uri, "SIP/2.0", headers, body)
    reason = draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cc",)), max_size=20))
    return SipResponse(draw(st.integers(100, 699)), reason, "SIP/2.0", headers, body)


@settings(max_examples=300, deadline=None)
@given(sip_messages())
def test_parse_serialize_round_trip(message: SipRequest | SipResponse) -> None:
    assert parse(message.serialize()) == message
    stream = StreamParser()
    stream.feed(message.serialize())
    assert list(stream) == [message]
