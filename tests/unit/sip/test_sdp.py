"""SDP parse/serialize and offer/answer, on offers captured from real peers on loopback
(SIPp 3.6.1, baresip 1.0.0, linphonec 5.1.65, pyVoIP 1.6.8 relayed by Kamailio 5.6.3),
hand-made edge cases, and arbitrary input that must only ever raise SdpError."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.sip.offer_answer import Negotiated, answer, negotiated_from_answer, offer
from ivr.sip.sdp import (
    Connection,
    MediaDescription,
    NoCommonCodec,
    RtpMap,
    SdpError,
    SessionDescription,
)

# --- offers captured from real peers (INVITE bodies, byte for byte) ----------------------------

# `sipp -sn uac`: the built-in scenario.
SIPP_UAC = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
# shared/peers/sipp_uac_dtmf.xml: A-law and telephone-event 101.
SIPP_DTMF = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 16000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
)
# baresip 1.0.0 (baresip-core), default codecs, dialling through ctrl_tcp.
BARESIP = (
    "v=0\r\no=- 1964263274 612759825 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\na=tool:baresip 1.0.0\r\nm=audio 43090 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\na=sendrecv\r\na=label:1\r\na=rtcp-rsize\r\n"
    "a=ssrc:2949161978 cname:sip:tester@127.0.0.1:15990\r\na=minptime:20\r\na=ptime:20\r\n"
)
# linphonec 5.1.65 with its default codecs: opus first, telephone-event at three rates,
# and the host's IPv6 address (fd00::2 here).
LINPHONE = (
    "v=0\r\no=linphone 1406 1257 IN IP6 fd00::2\r\ns=Talk\r\nc=IN IP6 fd00::2\r\nt=0 0\r\n"
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n"
    "m=audio 43200 RTP/AVP 96 97 98 0 8 18 99 100 101\r\na=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 useinbandfec=1\r\na=rtpmap:97 speex/16000\r\na=fmtp:97 vbr=on\r\n"
    "a=rtpmap:98 speex/8000\r\na=fmtp:98 vbr=on\r\na=fmtp:18 annexb=yes\r\n"
    "a=rtpmap:99 telephone-event/48000\r\na=rtpmap:100 telephone-event/16000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=rtcp-fb:* trr-int 5000\r\na=rtcp-fb:* ccm tmmbr\r\n"
)
# linphonec 5.1.65 with only PCMU and PCMA enabled: telephone-event gets a dynamic type.
LINPHONE_G711 = (
    "v=0\r\no=linphone 2590 785 IN IP6 fd00::2\r\ns=Talk\r\nc=IN IP6 fd00::2\r\nt=0 0\r\n"
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n"
    "m=audio 43200 RTP/AVP 0 8 96\r\na=rtpmap:96 telephone-event/8000\r\n"
    "a=rtcp-fb:* trr-int 5000\r\na=rtcp-fb:* ccm tmmbr\r\n"
)
# pyVoIP 1.6.8's INVITE body (its gen_invite with PCMU, PCMA, telephone-event), as
# Kamailio 5.6.3 with shared/peers/kamailio.cfg relayed it: the proxy leaves bodies alone.
PYVOIP_VIA_KAMAILIO = (
    "v=0\r\no=pyVoIP 1234 1236 IN IP4 127.0.0.1\r\ns=pyVoIP 1.6.8\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 16010 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=maxptime:150\r\n"
    "a=sendrecv\r\n"
)

CAPTURED = {
    "sipp-uac": (SIPP_UAC, ("PCMU", 0, None, ("127.0.0.1", 6000), None)),
    "sipp-dtmf": (SIPP_DTMF, ("PCMA", 8, 101, ("127.0.0.1", 16000), None)),
    "baresip": (BARESIP, ("PCMU", 0, 101, ("127.0.0.1", 43090), 20)),
    "linphone": (LINPHONE, ("PCMU", 0, 101, ("fd00::2", 43200), None)),
    "linphone-g711": (LINPHONE_G711, ("PCMU", 0, 96, ("fd00::2", 43200), None)),
    "pyvoip-kamailio": (PYVOIP_VIA_KAMAILIO, ("PCMU", 0, 101, ("127.0.0.1", 16010), 20)),
}


def sdp(*lines: str) -> str:
    return "\r\n".join(lines) + "\r\n"


def simple(*media_lines: str, session: tuple[str, ...] = ("c=IN IP4 127.0.0.1",)) -> str:
    head = ("v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", *session, "t=0 0")
    return sdp(*head, *media_lines)


# --- captured offers ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CAPTURED))
def test_captured_offer_round_trips_exactly(name):
    text = CAPTURED[name][0]
    parsed = SessionDescription.parse(text)
    assert parsed.serialize() == text
    assert SessionDescription.parse(text.encode()) == parsed


@pytest.mark.parametrize("name", list(CAPTURED))
def test_captured_offer_is_answered(name):
    text, (codec, pt, dtmf_pt, remote, ptime) = CAPTURED[name]
    ans, neg = answer(text, "127.0.0.1", 20000, session_id=42)
    assert neg == Negotiated(codec, pt, dtmf_pt, remote, "sendrecv", ptime)
    assert neg.sends and neg.receives and not neg.on_hold
    # The answer is itself good SDP with one audio line: our codec, then telephone-event.
    again = SessionDescription.parse(ans.serialize())
    (m,) = again.media
    assert (m.media, m.port, m.proto) == ("audio", 20000, "RTP/AVP")
    assert m.formats == [str(pt)] + ([str(dtmf_pt)] if dtmf_pt is not None else [])
    assert m.rtpmaps()[pt] == RtpMap(pt, codec, 8000)
    assert m.direction == "sendrecv" and m.ptime == 20
    if dtmf_pt is not None:
        assert m.rtpmaps()[dtmf_pt].encoding == "telephone-event"
        assert m.fmtp(dtmf_pt) == "0-15"
    assert again.connection == Connection("127.0.0.1", "IP4")
    assert (again.origin.username, again.origin.session_id) == ("ivr", 42)


def test_answer_text_for_sipp():
    ans, _ = answer(SIPP_DTMF, "127.0.0.1", 30000, session_id=7, session_version=1)
    assert ans.serialize() == sdp(
        "v=0",
        "o=ivr 7 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 30000 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    )
    assert str(ans) == ans.serialize() and bytes(ans) == ans.serialize().encode()


# --- codec choice ------------------------------------------------------------------------------


def test_offerers_order_of_preference_wins():
    assert answer(BARESIP, "127.0.0.1", 1)[1].codec == "PCMU"  # offers 0 8
    reordered = simple("m=audio 4000 RTP/AVP 8 0")
    assert answer(reordered, "127.0.0.1", 1, supported=("PCMU", "PCMA"))[1].codec == "PCMA"
    assert answer(BARESIP, "127.0.0.1", 1, supported=("PCMA",))[1].codec == "PCMA"


def test_no_common_codec():
    with pytest.raises(NoCommonCodec):
        answer(BARESIP, "127.0.0.1", 1, supported=("G722",))
    opus_only = simple("m=audio 4000 RTP/AVP 96", "a=rtpmap:96 opus/48000/2")
    with pytest.raises(NoCommonCodec):
        answer(opus_only, "127.0.0.1", 1)
    with pytest.raises(NoCommonCodec):
        answer(simple(), "127.0.0.1", 1)  # no media at all


def test_static_types_without_rtpmap_and_dynamic_g711():
    neg = answer(simple("m=audio 4000 RTP/AVP 18 8"), "127.0.0.1", 1)[1]
    assert (neg.codec, neg.payload_type) == ("PCMA", 8)
    dyn = simple("m=audio 4000 RTP/AVP 97", "a=rtpmap:97 pcmu/8000")
    _, neg = answer(dyn, "127.0.0.1", 1)
    assert (neg.codec, neg.payload_type) == ("PCMU", 97)
    # A G.711 name at the wrong rate or with two channels is not G.711 as we speak it.
    odd = simple("m=audio 4000 RTP/AVP 97 98", "a=rtpmap:97 PCMU/16000", "a=rtpmap:98 PCMA/8000/2")
    with pytest.raises(NoCommonCodec):
        answer(odd, "127.0.0.1", 1)


# --- telephone-event ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmtp, expected",
    [
        (None, "0-15"),  # RFC 4733: no fmtp means 0-15
        ("0-16", "0-15"),  # Asterisk and others add flash (16): we answer what we take
        ("0-11", "0-11"),
        ("0-9,11", "0-9,11"),
        ("0-15,66,70", "0-15"),
        ("nonsense", "0-15"),
    ],
)
def test_telephone_event_events(fmtp, expected):
    lines = ["m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000"]
    if fmtp is not None:
        lines.append(f"a=fmtp:101 {fmtp}")
    ans, neg = answer(simple(*lines), "127.0.0.1", 1)
    assert neg.dtmf_payload_type == 101
    assert ans.media[0].fmtp(101) == expected


def test_telephone_event_only_at_the_codec_rate_and_when_wanted():
    only_48k = simple("m=audio 4000 RTP/AVP 0 99", "a=rtpmap:99 telephone-event/48000")
    assert answer(only_48k, "127.0.0.1", 1)[1].dtmf_payload_type is None
    flash_only = simple("m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000",
                        "a=fmtp:101 16")  # fmt: skip
    assert answer(flash_only, "127.0.0.1", 1)[1].dtmf_payload_type is None
    ans, neg = answer(BARESIP, "127.0.0.1", 1, dtmf=False)
    assert neg.dtmf_payload_type is None and ans.media[0].formats == ["0"]
    assert answer(LINPHONE, "127.0.0.1", 1)[1].dtmf_payload_type == 101  # not 99 (48 kHz)


# --- direction and hold ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attr, ours, sends, receives",
    [
        ("a=sendrecv", "sendrecv", True, True),
        ("a=sendonly", "recvonly", False, True),  # they put us on hold (music from them)
        ("a=recvonly", "sendonly", True, False),
        ("a=inactive", "inactive", False, False),
    ],
)
def test_direction(attr, ours, sends, receives):
    ans, neg = answer(simple("m=audio 4000 RTP/AVP 0", attr), "127.0.0.1", 1)
    assert ans.media[0].direction == ours
    assert neg.direction == attr[2:] and neg.local_direction == ours
    assert (neg.sends, neg.receives, neg.on_hold) == (sends, receives, not sends)


def test_session_level_direction_and_media_override():
    held = simple("m=audio 4000 RTP/AVP 0", session=("c=IN IP4 127.0.0.1", "a=sendonly"))
    assert answer(held, "127.0.0.1", 1)[1].direction == "sendonly"
    override = simple("m=audio 4000 RTP/AVP 0", "a=sendrecv", session=("c=IN IP4 127.0.0.1", "a=sendonly"))  # fmt: skip
    assert answer(override, "127.0.0.1", 1)[1].direction == "sendrecv"


@pytest.mark.parametrize("attr, ours", [("", "recvonly"), ("a=sendonly", "recvonly"), ("a=recvonly", "inactive")])
def test_old_style_hold_with_zero_address(attr, ours):
    lines = ["m=audio 4000 RTP/AVP 0"] + ([attr] if attr else [])
    ans, neg = answer(simple(*lines, session=("c=IN IP4 0.0.0.0",)), "127.0.0.1", 1)
    assert neg.remote_addr == ("0.0.0.0", 4000)
    assert neg.on_hold and not neg.sends
    assert ans.media[0].direction == ours
    assert ans.connection == Connection("127.0.0.1", "IP4")  # our own address stays real


# --- addresses, ptime ------------------------------------------------------------------------


def test_media_level_connection_beats_session_level():
    text = simple(
        "m=audio 4000 RTP/AVP 0",
        "c=IN IP4 127.0.0.2",
        session=("c=IN IP4 127.0.0.1",),
    )
    assert answer(text, "127.0.0.1", 1)[1].remote_addr == ("127.0.0.2", 4000)
    only_media = simple("m=audio 4000 RTP/AVP 0", "c=IN IP4 127.0.0.3", session=())
    assert answer(only_media, "127.0.0.1", 1)[1].remote_addr == ("127.0.0.3", 4000)
    with pytest.raises(SdpError):
        answer(simple("m=audio 4000 RTP/AVP 0", session=()), "127.0.0.1", 1)


def test_ipv6_both_ways():
    text = simple("m=audio 4000 RTP/AVP 0", session=("c=IN IP6 ::1",))
    ans, neg = answer(text, "::1", 5000)
    assert neg.remote_addr == ("::1", 4000)
    assert ans.connection == Connection("::1", "IP6")
    assert ans.origin.addrtype == "IP6" and "c=IN IP6 ::1\r\n" in ans.serialize()


def test_host_name_is_passed_on():
    text = simple("m=audio 4000 RTP/AVP 0", session=("c=IN IP4 media.example.net",))
    assert answer(text, "127.0.0.1", 1)[1].remote_addr == ("media.example.net", 4000)


@pytest.mark.parametrize(
    "conn",
    ["c=IN IP4 ::1", "c=IN IP6 127.0.0.1", "c=IN IP4 999.1.1.1", "c=IN IP7 127.0.0.1",
     "c=ATM NSAP 47.0005", "c=IN IP4 bad_host!"],
)  # fmt: skip
def test_bad_connection_for_the_audio_stream(conn):
    with pytest.raises(SdpError):
        answer(simple("m=audio 4000 RTP/AVP 0", session=(conn,)), "127.0.0.1", 1)


def test_ptime_media_then_session():
    assert answer(simple("m=audio 4000 RTP/AVP 0", "a=ptime:30"), "127.0.0.1", 1)[1].remote_ptime == 30
    session = simple("m=audio 4000 RTP/AVP 0", session=("c=IN IP4 127.0.0.1", "a=ptime:40"))
    assert answer(session, "127.0.0.1", 1)[1].remote_ptime == 40
    for junk in ("a=ptime:abc", "a=ptime:nan", "a=ptime:1e999", "a=ptime:0"):
        assert answer(simple("m=audio 4000 RTP/AVP 0", junk), "127.0.0.1", 1)[1].remote_ptime is None
    assert answer(simple("m=audio 4000 RTP/AVP 0", "a=ptime:20.0"), "127.0.0.1", 1)[1].remote_ptime == 20


# --- several m= lines --------------------------------------------------------------------------


def test_one_audio_stream_taken_others_refused_in_place():
    text = simple(
        "m=video 5000 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
        "m=audio 6000 RTP/SAVP 0",  # SRTP: we do not do it
        "m=audio 0 RTP/AVP 0",  # already disabled
        "m=audio 7000 RTP/AVP 8",
        "m=audio 8000 RTP/AVP 0",  # a second usable audio stream: we take one
        "m=application 9 TCP/BFCP *",
    )
    ans, neg = answer(text, "127.0.0.1", 20000)
    assert neg.remote_addr == ("127.0.0.1", 7000) and neg.codec == "PCMA"
    ports = [(m.media, m.port, m.proto, m.formats) for m in ans.media]
    assert ports == [
        ("video", 0, "RTP/AVP", ["96"]),
        ("audio", 0, "RTP/SAVP", ["0"]),
        ("audio", 0, "RTP/AVP", ["0"]),
        ("audio", 20000, "RTP/AVP", ["8"]),
        ("audio", 0, "RTP/AVP", ["0"]),
        ("application", 0, "TCP/BFCP", ["*"]),
    ]
    assert SessionDescription.parse(ans.serialize()) == ans


def test_avpf_is_answered_in_kind():
    ans, _ = answer(simple("m=audio 4000 RTP/AVPF 0"), "127.0.0.1", 1)
    assert ans.media[0].proto == "RTP/AVPF"


def test_only_unusable_streams():
    with pytest.raises(NoCommonCodec):
        answer(simple("m=audio 0 RTP/AVP 0", "m=video 5000 RTP/AVP 31"), "127.0.0.1", 1)


# --- liberal where harmless --------------------------------------------------------------------


def test_liberal_reading():
    text = "v=0\no=- 1 1 IN IP4 127.0.0.1\nc=IN IP4 127.0.0.1\nm=audio 4000 RTP/AVP 0 \na=sendrecv \n\n\n"
    parsed = SessionDescription.parse(text)  # LF only, no s= or t=, trailing blanks
    assert parsed.session_name == "-" and parsed.times == [(0, 0)]
    assert parsed.media[0].direction == "sendrecv"
    kept = simple("m=audio 4000 RTP/AVP 0", "x=experimental", "a=X-custom:1 2 3", "a=flag")
    parsed = SessionDescription.parse(kept)
    assert ("x", "experimental") in parsed.media[0].other
    assert parsed.media[0].attribute("X-custom") == "1 2 3" and parsed.media[0].has("flag")
    assert SessionDescription.parse(parsed.serialize()) == parsed


def test_session_level_extras_round_trip():
    text = sdp(
        "v=0", "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5", "s=SDP Seminar",
        "i=A Seminar on the session description protocol", "u=http://www.example.com/seminars/sdp.pdf",
        "e=j.doe@example.com (Jane Doe)", "c=IN IP4 224.2.17.12/127", "b=CT:128",
        "t=2873397496 2873404696", "r=7d 1h 0 25h", "a=recvonly",
        "m=audio 49170 RTP/AVP 0", "i=audio", "b=AS:64", "k=prompt",
        "m=video 51372/2 RTP/AVP 99", "a=rtpmap:99 h263-1998/90000",
    )  # fmt: skip
    parsed = SessionDescription.parse(text)  # RFC 4566's own example, and a few more
    assert parsed.serialize() == text
    assert parsed.connection.host == "224.2.17.12"
    assert parsed.media[1].port_count == 2
    assert parsed.times == [(2873397496, 2873404696)]


# --- malformed ---------------------------------------------------------------------------------

GOOD_HEAD = ("v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "\r\n\r\n",
        "hello",
        "v=1\r\no=- 1 1 IN IP4 127.0.0.1\r\n",
        "o=- 1 1 IN IP4 127.0.0.1\r\nv=0\r\n",
        sdp("v=0", "s=-", "t=0 0"),  # no o=
        sdp("v=0", "o=- 1 IN IP4 127.0.0.1"),  # o= with 5 fields
        sdp("v=0", "o=- x 1 IN IP4 127.0.0.1"),
        sdp("v=0", "o=- \u0663 1 IN IP4 127.0.0.1"),  # a non-ASCII digit
        sdp("v=0", "o=- 1_0 1 IN IP4 127.0.0.1"),
        sdp(*GOOD_HEAD, "m=audio abc RTP/AVP 0"),
        sdp(*GOOD_HEAD, "m=audio 70000 RTP/AVP 0"),
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP"),  # no formats
        sdp(*GOOD_HEAD, "m=audio 4000/x RTP/AVP 0"),
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU"),
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0", "a=rtpmap:x PCMU/8000"),
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0", "a=rtpmap:200 PCMU/8000"),
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/fast"),
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0", "a="),
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0", "a=:value"),
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0", "s=in the media"),
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0", "c=IN IP4 1.2.3.4", "c=IN IP4 1.2.3.5"),
        sdp(*GOOD_HEAD, "c=IN IP4 127.0.0.1"),  # second session c=
        sdp(*GOOD_HEAD, "v=0"),
        sdp(*GOOD_HEAD, "c=IN IP4"),
        sdp(*GOOD_HEAD, "t=0"),
        sdp(*GOOD_HEAD, "no equals sign"),
        sdp(*GOOD_HEAD, "A=upper case type"),
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0", "a=sendrecv\rx"),  # bare CR
        sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0\x00"),
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=\xff\xfe\r\n",  # not UTF-8
    ],
)
def test_malformed_raises_sdp_error(body):
    with pytest.raises(SdpError):
        SessionDescription.parse(body)
    with pytest.raises(SdpError):
        answer(body, "127.0.0.1", 1)


def test_non_numeric_rtp_formats_are_malformed():
    with pytest.raises(SdpError):
        answer(simple("m=audio 4000 RTP/AVP 0 abc"), "127.0.0.1", 1)
    with pytest.raises(SdpError):
        answer(simple("m=audio 4000 RTP/AVP 300"), "127.0.0.1", 1)


def test_sdp_error_is_a_value_error_and_not_no_common_codec():
    assert issubclass(SdpError, ValueError)
    assert not issubclass(NoCommonCodec, SdpError) and not issubclass(SdpError, NoCommonCodec)
    with pytest.raises(SdpError):
        SessionDescription.parse(12345)  # type: ignore[arg-type]


# --- our own offers ----------------------------------------------------------------------------


def test_offer_and_its_answer():
    ours = offer("127.0.0.1", 30000, session_id=9)
    assert ours.serialize() == sdp(
        "v=0", "o=ivr 9 0 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
        "m=audio 30000 RTP/AVP 0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv",
    )  # fmt: skip
    # Another server-side instance of ours answers it; we read that answer back.
    their_answer, their_view = answer(ours.serialize(), "127.0.0.2", 40000, supported=("PCMA", "PCMU"))
    assert their_view.codec == "PCMU"  # our order of preference wins on their side too
    neg = negotiated_from_answer(ours, their_answer.serialize())
    assert neg == Negotiated("PCMU", 0, 101, ("127.0.0.2", 40000), "sendrecv", 20)


def test_offer_options_and_reinvite_for_hold():
    first = offer("::1", 30000, codecs=("pcma",), dtmf_payload_type=None, session_id=5)
    assert first.media[0].formats == ["8"] and first.connection.addrtype == "IP6"
    hold = offer("::1", 30000, direction="sendonly", session_id=5, session_version=1)
    assert (hold.origin.session_id, hold.origin.session_version) == (5, 1)
    assert hold.media[0].direction == "sendonly"
    held_answer = sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000",
                      "a=recvonly")  # fmt: skip
    neg = negotiated_from_answer(hold, held_answer)
    assert neg.direction == "recvonly" and neg.local_direction == "sendonly"
    assert neg.sends and not neg.receives
    with pytest.raises(ValueError):
        offer("127.0.0.1", 1, codecs=("G722",))
    with pytest.raises(ValueError):
        offer("127.0.0.1", 1, direction="both")
    assert offer("127.0.0.1", 1).origin.session_id != offer("127.0.0.1", 1).origin.session_id


def test_answers_that_do_not_fit_our_offer():
    ours = offer("127.0.0.1", 30000, codecs=("PCMU",), session_id=1)
    with pytest.raises(SdpError):
        negotiated_from_answer(ours, sdp(*GOOD_HEAD))  # m= lines missing
    with pytest.raises(NoCommonCodec):
        negotiated_from_answer(ours, sdp(*GOOD_HEAD, "m=audio 0 RTP/AVP 0"))
    with pytest.raises(NoCommonCodec):
        negotiated_from_answer(ours, sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 8"))  # not offered
    wrong_dtmf = sdp(*GOOD_HEAD, "m=audio 4000 RTP/AVP 0 96", "a=rtpmap:96 telephone-event/8000")
    assert negotiated_from_answer(ours, wrong_dtmf).dtmf_payload_type is None


# --- never anything but SdpError ---------------------------------------------------------------

FRAGMENTS = [
    "v=0", "v=1", "o=- 1 1 IN IP4 127.0.0.1", "o=- 1 1 IN IP6 ::1", "o=x", "s=-", "s=", "t=0 0",
    "t=1", "c=IN IP4 127.0.0.1", "c=IN IP6 ::1", "c=IN IP4 0.0.0.0", "c=IN IP4 ::1", "c=IN X y",
    "c=", "m=audio 4000 RTP/AVP 0 8 101", "m=audio 0 RTP/AVP 0", "m=video 5000 RTP/AVP 96",
    "m=audio 4000 RTP/SAVP 0", "m=audio 4000 RTP/AVP x", "m=audio 99999 RTP/AVP 0", "m=audio",
    "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=rtpmap:96 opus/48000/2",
    "a=rtpmap:", "a=rtpmap:0 /8000", "a=fmtp:101 0-15", "a=fmtp:101 0-99999999999", "a=fmtp:101 -",
    "a=fmtp:", "a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv", "a=ptime:20", "a=ptime:x",
    "a=ptime:1e999", "a=", "b=AS:64", "k=clear:x", "i=info", "x=y", "z=", "=", "", " ", "v", "\x00",
]  # fmt: skip


def _check_only_sdp_errors(body) -> None:
    try:
        parsed = SessionDescription.parse(body)
    except SdpError:
        return
    text = parsed.serialize()
    assert SessionDescription.parse(text).serialize() == text  # a fixed point after one pass
    try:
        ans, neg = answer(parsed, "127.0.0.1", 20000)
    except (SdpError, NoCommonCodec):
        return
    assert len(ans.media) == len(parsed.media)
    assert SessionDescription.parse(ans.serialize()) == ans
    assert neg.codec in ("PCMU", "PCMA")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=14), st.sampled_from(["\r\n", "\n"]))
def test_line_soup_only_raises_sdp_error(lines, eol):
    _check_only_sdp_errors(eol.join(["v=0", *lines]) + eol)


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_any_text_only_raises_sdp_error(text):
    _check_only_sdp_errors(text)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_only_raise_sdp_error(data):
    _check_only_sdp_errors(data)


@settings(max_examples=200)
@given(st.sampled_from([c[0] for c in CAPTURED.values()]), st.data())
def test_mutated_captures_only_raise_sdp_error(text, data):
    pos = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 8))
    insert = data.draw(st.text(max_size=6))
    _check_only_sdp_errors(text[:pos] + insert + text[pos + cut :])


def test_media_description_helpers():
    m = MediaDescription("audio", 4000, "RTP/AVP", ["0", "101"])
    m.attributes += [("rtpmap", "101 telephone-event/8000"), ("fmtp", "101 0-15"), ("fmtp", "0")]
    assert m.fmtp(101) == "0-15" and m.fmtp(0) == "" and m.fmtp(8) is None
    assert m.payload_types() == [0, 101]
    assert m.attribute("nothing") is None and m.direction is None
