"""The softphone's signalling messages: what is accepted, what is refused, what is sent."""

from __future__ import annotations

import json

import pytest

from ivr.webrtc import protocol
from ivr.webrtc.protocol import Candidate, HangupRequest, Offer, ProtocolError, channel_key, parse

CAND = "candidate:1 1 UDP 2122260223 127.0.0.1 50000 typ host"


def test_the_three_client_messages():
    assert parse('{"type": "offer", "sdp": "v=0\\r\\n"}') == Offer("v=0\r\n")
    assert parse(json.dumps({"type": "candidate", "candidate": CAND, "sdpMid": "0", "sdpMLineIndex": 0})) \
        == Candidate(CAND, "0", 0)
    assert parse('{"type": "hangup"}') == HangupRequest()


def test_an_empty_or_null_candidate_is_the_end_of_candidates():
    assert parse('{"type": "candidate", "candidate": ""}') == Candidate(None)
    assert parse('{"type": "candidate", "candidate": null, "sdpMid": "0"}') == Candidate(None)
    assert parse('{"type": "candidate"}') == Candidate(None)


def test_a_candidate_naming_no_media_section_goes_to_the_first():
    assert parse(json.dumps({"type": "candidate", "candidate": CAND})) == Candidate(CAND, None, 0)
    assert parse(json.dumps({"type": "candidate", "candidate": CAND, "sdpMid": "audio"})) \
        == Candidate(CAND, "audio", None)


def test_unknown_fields_are_ignored():
    assert parse('{"type": "hangup", "why": "bored"}') == HangupRequest()


@pytest.mark.parametrize("text, why", [
    ("not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('"offer"', "JSON object"),
    ("{}", "no type"),
    ('{"type": 5}', "no type"),
    ('{"type": "bye"}', "unknown message type 'bye'"),
    ('{"type": "offer"}', "sdp must be"),
    ('{"type": "offer", "sdp": "  "}', "sdp must be"),
    ('{"type": "offer", "sdp": {"v": 0}}', "sdp must be"),
    ('{"type": "candidate", "candidate": 7}', "candidate must be"),
    ('{"type": "candidate", "candidate": "1 1 UDP 1 127.0.0.1 5 typ host"}', "must start with"),
    ('{"type": "candidate", "candidate": "candidate:x", "sdpMid": 0}', "sdpMid must be"),
    ('{"type": "candidate", "candidate": "candidate:x", "sdpMLineIndex": "0"}', "sdpMLineIndex"),
    ('{"type": "candidate", "candidate": "candidate:x", "sdpMLineIndex": true}', "sdpMLineIndex"),
    ('{"type": "candidate", "candidate": "candidate:x", "sdpMLineIndex": -1}', "sdpMLineIndex"),
])
def test_bad_messages_are_refused_with_a_reason(text, why):
    with pytest.raises(ProtocolError, match=why):
        parse(text)


def test_binary_and_oversized_messages_are_refused():
    with pytest.raises(ProtocolError, match="JSON text"):
        parse(b'{"type": "hangup"}')
    with pytest.raises(ProtocolError, match="too large"):
        parse(json.dumps({"type": "offer", "sdp": "x" * protocol.MAX_MESSAGE}))


def test_a_dtmf_channel_message_is_one_key():
    assert [channel_key(k) for k in "0123456789*#ABCD"] == list("0123456789*#ABCD")
    for bad in ("", "12", "a", "E", " ", b"1", "٣"):
        assert channel_key(bad) is None


def test_server_messages():
    assert json.loads(protocol.answer("v=0")) == {"type": "answer", "sdp": "v=0"}
    assert json.loads(protocol.state("in-call")) == {"type": "state", "state": "in-call"}
    assert json.loads(protocol.state("ended", "hangup")) == {"type": "state", "state": "ended", "reason": "hangup"}
    assert json.loads(protocol.error("busy")) == {"type": "error", "message": "busy"}
    with pytest.raises(ValueError):
        protocol.state("ringing")


def test_journey_events_carry_their_data_even_values_json_has_no_type_for():
    import datetime as dt

    doc = json.loads(protocol.event("input", {"value": "0", "at": dt.date(2026, 11, 23), "n": None}))
    assert doc == {"type": "event", "event": "input", "data": {"value": "0", "at": "2026-11-23", "n": None}}
