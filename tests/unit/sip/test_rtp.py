"""RTP (RFC 3550) and telephone-events (RFC 4733): wire round trips, malformed input,
one key press per event however the packets arrive, and SIPp's captured RFC 2833 pcaps."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.sip.pcap import PcapError, UdpDatagram, read_pcap, read_pcap_file, write_pcap
from ivr.sip.rtp import (
    DtmfEvent,
    DtmfPress,
    DtmfReceiver,
    DtmfSender,
    RtpError,
    RtpExtension,
    RtpPacket,
    is_rtcp,
)

SIPP = Path("/usr/share/sip-tester")
SIPP_DTMF = {
    **{str(d): f"dtmf_2833_{d}.pcap" for d in range(10)},
    "*": "dtmf_2833_star.pcap",
    "#": "dtmf_2833_pound.pcap",
}
needs_sipp = pytest.mark.skipif(
    not (SIPP / "dtmf_2833_1.pcap").exists(),
    reason="SIPp's pcaps are missing: apt-get install -y sip-tester",
)

# The first packet of SIPp's dtmf_2833_1.pcap: marker, PT 101, event 1, volume 10, duration 0.
SIPP_START = bytes.fromhex("80e51f30000033e00e05384e010a0000")


# --- RtpPacket ----------------------------------------------------------------------------------


def test_parse_captured_packet():
    p = RtpPacket.parse(SIPP_START)
    assert (p.payload_type, p.marker, p.sequence_number) == (101, True, 0x1F30)
    assert (p.timestamp, p.ssrc, p.payload) == (0x33E0, 0x0E05384E, bytes.fromhex("010a0000"))
    assert p.csrc == () and p.extension is None and p.padding == 0
    assert p.serialize() == SIPP_START and bytes(p) == SIPP_START


def test_full_header_round_trip():
    p = RtpPacket(
        payload_type=0,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=0xDEADBEEF,
        payload=b"\xff" * 160,
        marker=True,
        csrc=(1, 2, 0xFFFFFFFF),
        extension=RtpExtension(0xBEDE, b"\x10\xaa\x00\x00"),
        padding=4,
    )
    wire = p.serialize()
    assert wire[0] == 0b1011_0011  # V=2, P, X, CC=3
    assert wire[1] == 0x80
    assert len(wire) == 12 + 12 + 4 + 4 + 160 + 4
    assert wire[-4:] == b"\x00\x00\x00\x04"
    assert RtpPacket.parse(wire) == p


def test_parse_accepts_memoryview_and_empty_payload():
    wire = RtpPacket(8, 1, 2, 3).serialize()
    assert RtpPacket.parse(memoryview(wire)).payload == b""


@pytest.mark.parametrize(
    "wire, why",
    [
        (b"", "short"),
        (b"\x80" * 11, "short"),
        (bytes([0x40]) + bytes(11), "version 1"),
        (bytes([0xC0]) + bytes(11), "version 3"),
        (bytes([0xA0]) + bytes(11) + b"\x00", "padding count zero"),
        (bytes([0xA0]) + bytes(11) + b"\x01\x02\x07", "padding longer than packet"),
        (bytes([0x82]) + bytes(11) + bytes(4), "CSRC list cut"),
        (bytes([0x90]) + bytes(11) + b"\xbe\xde", "extension header cut"),
        (bytes([0x90]) + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4), "extension data cut"),
        (bytes([0xB0]) + bytes(11) + b"\xbe\xde\x00\x01" + bytes(4)[:3] + b"\x02", "pad eats ext"),
    ],
)
def test_malformed_is_rejected(wire, why):
    with pytest.raises(RtpError):
        RtpPacket.parse(wire)


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_type": 128},
        {"payload_type": -1},
        {"sequence_number": 65536},
        {"timestamp": 1 << 32},
        {"ssrc": -1},
        {"csrc": tuple(range(16))},
        {"csrc": (1 << 32,)},
        {"padding": 256},
        {"extension": RtpExtension(0x1_0000)},
        {"extension": RtpExtension(1, b"abc")},
    ],
)
def test_out_of_range_fields_refuse_to_serialize(fields):
    base = {"payload_type": 0, "sequence_number": 0, "timestamp": 0, "ssrc": 0}
    with pytest.raises(RtpError):
        RtpPacket(**{**base, **fields}).serialize()


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension, st.integers(0, 0xFFFF), st.binary(max_size=16).map(lambda b: b + bytes(-len(b) % 4))
    ),
    padding=st.integers(0, 255),
)


@given(packets)
def test_round_trip_any_valid_packet(p):
    assert RtpPacket.parse(p.serialize()) == p


@given(st.binary(max_size=120))
def test_any_bytes_parse_or_raise_rtp_error(data):
    try:
        p = RtpPacket.parse(data)
    except RtpError:
        return
    # What parsed is consistent: it serialises back to the same packet.
    assert RtpPacket.parse(p.serialize()) == p


def test_is_rtcp():
    assert is_rtcp(bytes([0x81, 200]) + bytes(6))  # sender report
    assert is_rtcp(bytes([0x80, 201]) + bytes(6))  # receiver report
    assert not is_rtcp(SIPP_START)  # PT 101 with marker is 0xE5 = 229
    assert not is_rtcp(bytes([0x80, 0x00]))
    assert not is_rtcp(b"\x80")


# --- DtmfEvent ---------------------------------------------------------------------------------


def test_event_wire_format():
    e = DtmfEvent.parse(bytes.fromhex("018a08c0"))  # SIPp's end packet for '1'
    assert e == DtmfEvent(event=1, end=True, volume=10, duration=0x08C0)
    assert e.digit == "1"
    assert e.serialize() == bytes.fromhex("018a08c0")
    assert DtmfEvent.parse(bytes.fromhex("0bca0000")).end  # reserved bit ignored
    assert DtmfEvent.parse(bytes.fromhex("0bca0000")).volume == 10


def test_event_digits():
    assert [DtmfEvent(i).digit for i in range(16)] == list("0123456789*#ABCD")
    assert DtmfEvent(16).digit is None  # flash
    assert DtmfEvent.for_digit("#").event == 11
    assert DtmfEvent.for_digit("d").event == 15
    for bad in ("", "E", "12", "+"):
        with pytest.raises(RtpError):
            DtmfEvent.for_digit(bad)


def test_event_bad_payload_and_fields():
    with pytest.raises(RtpError):
        DtmfEvent.parse(b"\x01\x0a\x00")
    for bad in (DtmfEvent(256), DtmfEvent(1, volume=64), DtmfEvent(1, duration=0x10000)):
        with pytest.raises(RtpError):
            bad.serialize()


# --- DtmfSender --------------------------------------------------------------------------------


def test_sender_sequence():
    sender = DtmfSender(ssrc=0x1234, payload_type=101)
    pkts = sender.packets("5", timestamp=8000, sequence_number=65533, duration_ms=100)
    events = [DtmfEvent.parse(p.payload) for p in pkts]
    assert [p.marker for p in pkts] == [True] + [False] * 6
    assert [p.sequence_number for p in pkts] == [65533, 65534, 65535, 0, 1, 2, 3]
    assert {p.timestamp for p in pkts} == {8000}
    assert {p.payload_type for p in pkts} == {101}
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.digit for e in events} == {"5"}


def test_sender_short_and_overlong_presses():
    sender = DtmfSender(ssrc=1, end_repeats=3)
    short = sender.packets("1", 0, 0, duration_ms=20)
    assert [(p.marker, DtmfEvent.parse(p.payload).end) for p in short] == [(True, True)] + [
        (False, True)
    ] * 2
    long = sender.packets("1", 0, 0, duration_ms=10_000)
    assert DtmfEvent.parse(long[-1].payload).duration == 0xFFFF
    with pytest.raises(RtpError):
        sender.packets("1", 0, 0, duration_ms=0)
    with pytest.raises(RtpError):
        sender.packets("X", 0, 0)


# --- DtmfReceiver ------------------------------------------------------------------------------


def presses(receiver: DtmfReceiver, pkts) -> list[DtmfPress]:
    return [p for p in map(receiver.feed, pkts) if p is not None]


def digits(receiver: DtmfReceiver, pkts) -> str:
    return "".join(p.digit for p in presses(receiver, pkts))


SENDER = DtmfSender(ssrc=0xABCD)


def test_each_press_once():
    pkts = SENDER.packets("7", 1000, 10)
    got = presses(DtmfReceiver(), pkts)
    assert got == [DtmfPress("7", 1000, 0xABCD, 160)]


def test_duplicated_and_reordered_packets():
    pkts = SENDER.packets("3", 1000, 10) * 2
    random.Random(1).shuffle(pkts)
    assert digits(DtmfReceiver(), pkts) == "3"


def test_lost_start_and_updates_only_end_packets():
    pkts = [p for p in SENDER.packets("9", 5000, 1) if DtmfEvent.parse(p.payload).end]
    assert digits(DtmfReceiver(), pkts) == "9"
    assert digits(DtmfReceiver(), pkts[-1:]) == "9"


def test_repeated_key_has_a_new_timestamp():
    first = SENDER.packets("1", 1000, 0)
    second = SENDER.packets("1", 3000, len(first))
    assert digits(DtmfReceiver(), first + second) == "11"


def test_a_dialled_number():
    pkts, seq, ts = [], 0, 0
    for key in "0123456789*#ABCD":
        burst = SENDER.packets(key, ts, seq, duration_ms=60)
        pkts += burst
        seq += len(burst)
        ts += 1600
    assert digits(DtmfReceiver(), pkts) == "0123456789*#ABCD"


def test_sources_are_kept_apart():
    a = DtmfSender(ssrc=1).packets("4", 1000, 0)
    b = DtmfSender(ssrc=2).packets("4", 1000, 0)
    mixed = [p for pair in zip(a, b, strict=True) for p in pair]
    assert digits(DtmfReceiver(), mixed) == "44"


def test_payload_type_filter_and_garbage():
    rx = DtmfReceiver(payload_type=101)
    audio = RtpPacket(0, 1, 1000, 5, b"\x01\x0a\x00\xa0")  # PCMU that happens to look like an event
    assert rx.feed(audio) is None
    assert rx.feed(RtpPacket(101, 2, 1000, 5, b"\x01")) is None  # too short: ignored, no crash
    assert digits(rx, DtmfSender(ssrc=5).packets("2", 2000, 3)) == "2"


def test_non_digit_events_are_not_reported():
    flash = RtpPacket(101, 1, 1000, 5, DtmfEvent(16, end=True, duration=800).serialize())
    assert DtmfReceiver().feed(flash) is None


def test_overlong_event_segments_continue_one_press():
    # RFC 4733 2.5.2.3: past 0xFFFF the event restarts with timestamp + 0xFFFF, no marker.
    rx = DtmfReceiver()
    seg1 = RtpPacket(101, 1, 100, 9, DtmfEvent(5, duration=0xFFFF).serialize(), marker=True)
    seg2 = RtpPacket(101, 2, 100 + 0xFFFF, 9, DtmfEvent(5, duration=800).serialize())
    end = RtpPacket(101, 3, 100 + 0xFFFF, 9, DtmfEvent(5, end=True, duration=960).serialize())
    assert digits(rx, [seg1, seg2, end]) == "5"
    # ...but after that event ended, a new press (a new timestamp) counts again.
    again = RtpPacket(101, 4, 100 + 2 * 0xFFFF, 9, DtmfEvent(5).serialize(), marker=True)
    assert digits(rx, [again]) == "5"


def test_timestamp_wraps():
    pkts = SENDER.packets("8", 0xFFFFFF00, 0) + SENDER.packets("8", 0x00000100, 20)
    assert digits(DtmfReceiver(), pkts) == "88"


def test_memory_is_bounded():
    rx = DtmfReceiver(memory=4)
    for i in range(100):
        rx.feed(RtpPacket(101, i, i * 1000, 1, DtmfEvent(1, end=True).serialize()))
    assert len(rx._seen) == 4


# --- SIPp's captured RFC 2833 packets ----------------------------------------------------------


@needs_sipp
@pytest.mark.parametrize("digit", list(SIPP_DTMF))
def test_sipp_pcap_yields_its_one_digit(digit):
    datagrams = read_pcap_file(SIPP / SIPP_DTMF[digit])
    pkts = [RtpPacket.parse(d.payload) for d in datagrams]
    assert all(p.payload_type == 101 for p in pkts)
    # Captured bytes survive a parse/serialize round trip.
    assert [p.serialize() for p in pkts] == [d.payload for d in datagrams]
    got = presses(DtmfReceiver(payload_type=101), pkts)
    assert [p.digit for p in got] == [digit]
    # SIPp repeats the end packet with one sequence number; the receiver does not care.
    ends = [p for p in pkts if DtmfEvent.parse(p.payload).end]
    assert len(ends) == 3


@needs_sipp
def test_sipp_pcaps_back_to_back_and_without_their_start():
    rx = DtmfReceiver(payload_type=101)
    played = []
    for digit, name in SIPP_DTMF.items():
        pkts = [RtpPacket.parse(d.payload) for d in read_pcap_file(SIPP / name)]
        if digit in "13579":
            pkts = pkts[3:]  # start and first updates lost
        played += [p.digit for p in presses(rx, pkts)]
    assert "".join(played) == "".join(SIPP_DTMF)


@needs_sipp
def test_sipp_alaw_pcap_is_rtp():
    pkts = [RtpPacket.parse(d.payload) for d in read_pcap_file(SIPP / "g711a.pcap")]
    assert {p.payload_type for p in pkts} == {8}
    assert all(len(p.payload) == 240 for p in pkts)  # 30 ms packets
    seqs = [p.sequence_number for p in pkts]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    stamps = [p.timestamp for p in pkts]
    assert stamps == list(range(stamps[0], stamps[0] + 240 * len(stamps), 240))


# --- the pcap reader ---------------------------------------------------------------------------


def test_pcap_round_trip_v4_and_v6():
    grams = [
        UdpDatagram(1.5, ("127.0.0.1", 4000), ("127.0.0.1", 5000), SIPP_START),
        UdpDatagram(2.25, ("::1", 4002), ("::1", 5002), b"x" * 172),
    ]
    assert list(read_pcap(write_pcap(grams))) == grams


def test_pcap_link_layers_and_skips():
    def record(frame: bytes) -> bytes:
        return struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame

    def header(linktype: int) -> bytes:
        return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)

    raw = write_pcap([UdpDatagram(1.0, ("10.0.0.1", 1), ("10.0.0.2", 2), b"hello")])
    ip = raw[24 + 16 :]
    eth_vlan = bytes(12) + b"\x81\x00\x00\x05" + b"\x08\x00" + ip
    sll = bytes(14) + b"\x08\x00" + ip
    loop = struct.pack("<I", 2) + ip
    tcp = bytearray(ip)
    tcp[9] = 6
    for linktype, frame in ((1, eth_vlan), (113, sll), (0, loop)):
        (gram,) = read_pcap(header(linktype) + record(frame))
        assert gram.payload == b"hello" and gram.src == ("10.0.0.1", 1)
    assert list(read_pcap(header(101) + record(bytes(tcp)))) == []  # not UDP: skipped
    assert list(read_pcap(header(147) + record(ip))) == []  # unknown link type: skipped


def test_pcap_errors():
    with pytest.raises(PcapError):
        list(read_pcap(b"\x0a\x0d\x0d\x0a" + bytes(40)))  # pcapng
    good = write_pcap([UdpDatagram(0.0, ("127.0.0.1", 1), ("127.0.0.1", 2), b"abc")])
    with pytest.raises(PcapError):
        list(read_pcap(good[:-1]))
    with pytest.raises(PcapError):
        list(read_pcap(good + b"\x00" * 5))
