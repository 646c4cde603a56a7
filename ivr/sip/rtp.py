"""RTP packets (RFC 3550) and telephone-events (RFC 4733): wire formats and DTMF logic.

Pure and I/O-free: the RTP session that owns a socket parses with
`RtpPacket.parse`, hands telephone-event packets to a `DtmfReceiver`, and
sends what a `DtmfSender` produces.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

__all__ = [
    "DTMF_EVENTS",
    "DtmfEvent",
    "DtmfPress",
    "DtmfReceiver",
    "DtmfSender",
    "RtpError",
    "RtpExtension",
    "RtpPacket",
    "is_rtcp",
]

RTP_VERSION = 2
_HEADER = struct.Struct("!BBHII")
_U32 = 0xFFFFFFFF

DTMF_EVENTS = "0123456789*#ABCD"
"""RFC 4733 event codes 0-15, in order: the keypad's sixteen keys."""


class RtpError(ValueError):
    """A packet that is not valid RTP, or fields that cannot be put on the wire."""


def is_rtcp(data: bytes) -> bool:
    """True if a datagram on a muxed port is RTCP (RFC 5761: packet types 192-223)."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


@dataclass(frozen=True)
class RtpExtension:
    """The one header extension RFC 3550 allows: a 16-bit profile tag and 32-bit words."""

    profile: int
    data: bytes = b""


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet. `padding` counts the padding bytes, including the final count byte."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Decode a datagram; raise RtpError if it is not well-formed RTP version 2."""
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise RtpError(f"too short for an RTP header: {len(data)} bytes")
        first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {first >> 6}, expected 2")
        end = len(data)
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0:
                raise RtpError("padding bit set but the padding count is zero")
            if padding > len(data) - _HEADER.size:
                raise RtpError(f"padding of {padding} bytes is longer than the packet")
            end -= padding
        pos = _HEADER.size + 4 * (first & 0x0F)
        if pos > end:
            raise RtpError("CSRC list runs past the end of the packet")
        csrc = struct.unpack_from(f"!{first & 0x0F}I", data, _HEADER.size)
        extension = None
        if first & 0x10:
            if pos + 4 > end:
                raise RtpError("header extension runs past the end of the packet")
            profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if pos + 4 * words > end:
                raise RtpError("header extension runs past the end of the packet")
            extension = RtpExtension(profile, data[pos : pos + 4 * words])
            pos += 4 * words
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=data[pos:end],
            marker=bool(second & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        """Encode for the wire; raise RtpError if a field is out of range."""
        _check(0 <= self.payload_type <= 127, "payload type must be 0-127")
        _check(0 <= self.sequence_number <= 0xFFFF, "sequence number must be 16 bits")
        _check(0 <= self.timestamp <= _U32 and 0 <= self.ssrc <= _U32, "timestamp/SSRC: 32 bits")
        _check(len(self.csrc) <= 15, "at most 15 CSRCs")
        _check(all(0 <= c <= _U32 for c in self.csrc), "CSRCs must be 32 bits")
        _check(0 <= self.padding <= 255, "padding must be 0-255 bytes")
        first = (RTP_VERSION << 6) | len(self.csrc)
        first |= 0x20 if self.padding else 0
        first |= 0x10 if self.extension is not None else 0
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [
            _HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension is not None:
            ext = self.extension
            _check(0 <= ext.profile <= 0xFFFF, "extension profile must be 16 bits")
            _check(len(ext.data) % 4 == 0, "extension data must be whole 32-bit words")
            _check(len(ext.data) // 4 <= 0xFFFF, "extension data too long")
            parts.append(struct.pack("!HH", ext.profile, len(ext.data) // 4) + ext.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)

    __bytes__ = serialize


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RtpError(message)


# --- RFC 4733 telephone-event ----------------------------------------------------------------


@dataclass(frozen=True)
class DtmfEvent:
    """The 4-byte telephone-event payload: event code, end bit, volume (-dBm0), duration.

    `duration` is in timestamp units (1/8000 s for 8 kHz audio) since the event began.
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @property
    def digit(self) -> str | None:
        """The key for events 0-15, or None (flash and the other RFC 4733 events)."""
        return DTMF_EVENTS[self.event] if self.event < len(DTMF_EVENTS) else None

    @classmethod
    def for_digit(cls, digit: str, **fields) -> DtmfEvent:
        """The event for a keypad key ("0"-"9", "*", "#", "A"-"D", case-insensitive)."""
        code = DTMF_EVENTS.find(digit.upper()) if len(digit) == 1 else -1
        if code < 0:
            raise RtpError(f"not a DTMF key: {digit!r}")
        return cls(code, **fields)

    @classmethod
    def parse(cls, payload: bytes) -> DtmfEvent:
        """Decode the first event of a payload (further 4-byte blocks are redundancy)."""
        if len(payload) < 4:
            raise RtpError(f"telephone-event payload needs 4 bytes, got {len(payload)}")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        # The R bit (0x40) is reserved: receivers ignore it.
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        _check(0 <= self.event <= 255, "event code must be 0-255")
        _check(0 <= self.volume <= 63, "volume must be 0-63 (-dBm0)")
        _check(0 <= self.duration <= 0xFFFF, "duration must be 16 bits")
        return struct.pack(
            "!BBH", self.event, (0x80 if self.end else 0) | self.volume, self.duration
        )

    __bytes__ = serialize


@dataclass(frozen=True)
class DtmfPress:
    """One key press, reported once however many packets carried it."""

    digit: str
    timestamp: int  # the RTP timestamp of the event's start: what identifies it
    ssrc: int
    duration: int  # as far as known when reported, in timestamp units


@dataclass
class DtmfReceiver:
    """Turns the packets of RFC 4733 events into one `DtmfPress` per key press.

    A press arrives as a start packet (marker set), updates with growing
    durations, and usually three copies of the end packet; any of them may be
    lost or repeated, and some senders (SIPp's captures among them) repeat the
    end packet with the same sequence number. All packets of one event share
    its RTP timestamp, so the press is reported the first time an (SSRC,
    timestamp, event) is seen, from whichever packet arrives first - an end
    packet alone will do - and never again. A new press of the same key has a
    new timestamp. Only the segments of an event longer than the 16-bit
    duration field (RFC 4733 2.5.2.3, over 8 s at 8 kHz) continue a press.
    """

    payload_type: int | None = None  # if set, packets of other payload types are ignored
    memory: int = 32  # how many recent events to remember for de-duplication
    _seen: deque = field(default_factory=deque, init=False, repr=False)
    _last: tuple[int, int, int, bool] | None = field(default=None, init=False, repr=False)

    def feed(self, packet: RtpPacket) -> DtmfPress | None:
        """Take one packet; return a press the first time its event is seen, else None."""
        if self.payload_type is not None and packet.payload_type != self.payload_type:
            return None
        try:
            event = DtmfEvent.parse(packet.payload)
        except RtpError:
            return None  # a damaged event packet must not end the call
        key = (packet.ssrc, packet.timestamp, event.event)
        if key in self._seen:
            if event.end and self._last is not None and self._last[:3] == key:
                self._last = (*key, True)
            return None
        continuing = self._continues_long_event(packet, event)
        self._seen.append(key)
        while len(self._seen) > self.memory:
            self._seen.popleft()
        self._last = (*key, event.end)
        if continuing or event.digit is None:
            return None
        return DtmfPress(event.digit, packet.timestamp, packet.ssrc, event.duration)

    def _continues_long_event(self, packet: RtpPacket, event: DtmfEvent) -> bool:
        # A segment of an overlong event starts exactly 0xFFFF after the previous one,
        # has no marker, and follows a segment that did not end.
        if self._last is None or packet.marker:
            return False
        ssrc, timestamp, code, ended = self._last
        return (
            not ended
            and ssrc == packet.ssrc
            and code == event.event
            and (packet.timestamp - timestamp) & _U32 == 0xFFFF
        )


@dataclass
class DtmfSender:
    """Builds the packets of one key press, as a phone sends them (RFC 4733 2.5.1).

    The start packet carries the marker; updates follow every `interval_ms`
    with the duration so far; the end packet goes out `end_repeats` times with
    the final duration (a press of one interval or less is only end packets,
    the first with the marker). All share the timestamp of the press's start.
    Sequence numbers continue the stream's own from `sequence_number`; the
    audio after the press carries on from `sequence_number + len(packets)`.
    """

    ssrc: int
    payload_type: int = 101
    clock_rate: int = 8000
    interval_ms: int = 20
    volume: int = 10
    end_repeats: int = 3

    def packets(
        self, digit: str, timestamp: int, sequence_number: int, duration_ms: int = 100
    ) -> list[RtpPacket]:
        """The packets for one press, to be sent `interval_ms` apart, in order."""
        step = self.clock_rate * self.interval_ms // 1000
        total = min(self.clock_rate * duration_ms // 1000, 0xFFFF)
        if total <= 0:
            raise RtpError("a key press must last at least one timestamp unit")
        # Updates report the duration so far; the end packets carry the final one.
        durations = range(step, total, step)
        events = [DtmfEvent.for_digit(digit, volume=self.volume, duration=d) for d in durations]
        end = DtmfEvent.for_digit(digit, end=True, volume=self.volume, duration=total)
        events += [end] * self.end_repeats
        return [
            RtpPacket(
                payload_type=self.payload_type,
                sequence_number=(sequence_number + i) & 0xFFFF,
                timestamp=timestamp & _U32,
                ssrc=self.ssrc,
                payload=event.serialize(),
                marker=i == 0,
            )
            for i, event in enumerate(events)
        ]
