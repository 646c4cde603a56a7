"""SDP (RFC 4566): the data model of a session description, parsed and serialized.

`SessionDescription.parse` turns any input into either a description or an
`SdpError` (the SIP layer answers 400). Parsing is liberal where real peers
differ harmlessly (LF or CRLF, blank lines, a missing s= or t=, unknown line
types and attributes, which are kept) and strict where a mistake would send
media astray (numbers, ports, addresses, the order v/o/.../m).

The offer/answer model (RFC 3264) built on it is in offer_answer.py.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

__all__ = [
    "Connection",
    "MediaDescription",
    "NoCommonCodec",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_DIGITS = re.compile(r"[0-9]{1,20}")  # ASCII only: int() would also take "٣" or "1_0"
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


class SdpError(ValueError):
    """The body is not SDP we can read: the request gets 400 Bad Request."""


class NoCommonCodec(Exception):  # noqa: N818 - the name says what the caller answers (488)
    """The offer is readable but has no audio stream we can take: 488 Not Acceptable Here."""


def _int(text: str, what: str, maximum: int | None = None) -> int:
    if not _DIGITS.fullmatch(text):
        raise SdpError(f"{what} is not a number: {text!r}")
    value = int(text)
    if maximum is not None and value > maximum:
        raise SdpError(f"{what} out of range: {value}")
    return value


def _addrtype(ip: str) -> str:
    return "IP6" if ipaddress.ip_address(ip).version == 6 else "IP4"


# --- the model ---------------------------------------------------------------------------------


@dataclass
class Origin:
    """o=: who made the session and which version of it this is."""

    username: str = "-"
    session_id: int = 0
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    @classmethod
    def parse(cls, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6:
            raise SdpError(f"o= needs 6 fields: {value!r}")
        user, sid, version, nettype, addrtype, address = parts
        sid_n, version_n = _int(sid, "o= session id"), _int(version, "o= version")
        return cls(user, sid_n, version_n, nettype, addrtype, address)

    def serialize(self) -> str:
        return " ".join(
            (self.username, str(self.session_id), str(self.session_version))
            + (self.nettype, self.addrtype, self.address)
        )


@dataclass
class Connection:
    """c=: where media goes. `address` keeps any multicast /ttl suffix; `host` drops it."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    @classmethod
    def parse(cls, value: str) -> Connection:
        parts = value.split()
        if len(parts) != 3:
            raise SdpError(f"c= needs 3 fields: {value!r}")
        return cls(parts[2], parts[1], parts[0])

    @classmethod
    def for_ip(cls, ip: str) -> Connection:
        return cls(ip, _addrtype(ip))

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def is_hold(self) -> bool:
        """The RFC 2543 way to say "do not send to me" (RFC 3264 8.4 keeps it working)."""
        return self.host in ("0.0.0.0", "::")

    def checked_host(self) -> str:
        """The host, after checking it is an address of the stated type or a host name."""
        if self.nettype != "IN" or self.addrtype not in ("IP4", "IP6"):
            raise SdpError(f"unsupported connection type: {self.nettype} {self.addrtype}")
        host = self.host
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            # A host name is legal SDP; all-numeric labels must be a valid IPv4 address.
            if not _HOST.fullmatch(host) or host.replace(".", "").isdigit():
                raise SdpError(f"bad connection address: {host!r}") from None
            return host
        if (ip.version == 6) != (self.addrtype == "IP6"):
            raise SdpError(f"{self.addrtype} with address {host!r}")
        return host

    def serialize(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True)
class RtpMap:
    """a=rtpmap: a payload type's encoding name, clock rate and channel count."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        parts = value.split(None, 1)
        pieces = parts[1].strip().split("/") if len(parts) == 2 else []
        if not 2 <= len(pieces) <= 3 or not pieces[0]:
            raise SdpError(f"bad rtpmap: {value!r}")
        return cls(
            payload_type=_int(parts[0], "rtpmap payload type", 127),
            encoding=pieces[0],
            clock_rate=_int(pieces[1], "rtpmap clock rate"),
            channels=_int(pieces[2], "rtpmap channels") if len(pieces) == 3 else 1,
        )

    def serialize(self) -> str:
        tail = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


Attribute = tuple[str, str | None]  # a=name:value, or a=name for a flag


class _Attributes:
    """Lookups shared by the session and media levels."""

    attributes: list[Attribute]

    def attribute(self, name: str) -> str | None:
        """The value of the first a=name (None if absent or a flag)."""
        return next((v for n, v in self.attributes if n == name), None)

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.attributes)

    @property
    def direction(self) -> str | None:
        return next((n for n, _ in self.attributes if n in DIRECTIONS), None)

    @property
    def ptime(self) -> int | None:
        # A broken ptime is ignored rather than refused: it only tunes packet size.
        value = self.attribute("ptime")
        try:
            ms = round(float(value)) if value is not None else None
        except (ValueError, OverflowError):  # "abc", "nan", "1e999"
            return None
        return ms if ms and 0 < ms <= 1000 else None


@dataclass
class MediaDescription(_Attributes):
    """One m= section."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)  # i=, k= and unknown lines

    @classmethod
    def parse_m(cls, value: str) -> MediaDescription:
        parts = value.split()
        if len(parts) < 4:
            raise SdpError(f"m= needs media, port, proto and formats: {value!r}")
        port_text, _, count = parts[1].partition("/")
        return cls(
            media=parts[0],
            port=_int(port_text, "m= port", 65535),
            proto=parts[2],
            formats=parts[3:],
            port_count=_int(count, "m= port count") if count else None,
        )

    def rtpmaps(self) -> dict[int, RtpMap]:
        """a=rtpmap by payload type (each was checked when parsed)."""
        maps = (RtpMap.parse(v or "") for n, v in self.attributes if n == "rtpmap")
        return {m.payload_type: m for m in maps}

    def fmtp(self, payload_type: int) -> str | None:
        """The format parameters of one payload type, if given."""
        for name, value in self.attributes:
            parts = (value or "").split(None, 1)
            if name == "fmtp" and parts and parts[0] == str(payload_type):
                return parts[1].strip() if len(parts) == 2 else ""
        return None

    def payload_types(self) -> list[int]:
        """The formats as RTP payload types (only meaningful for RTP profiles)."""
        return [_int(f, "RTP payload type", 127) for f in self.formats]

    def serialize_lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        lines = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}"]
        lines += [f"i={v}" for t, v in self.other if t == "i"]
        if self.connection is not None:
            lines.append(f"c={self.connection.serialize()}")
        lines += [f"b={b}" for b in self.bandwidths]
        lines += [f"{t}={v}" for t, v in self.other if t != "i"]
        lines += [f"a={n}" if v is None else f"a={n}:{v}" for n, v in self.attributes]
        return lines


@dataclass
class SessionDescription(_Attributes):
    """A whole SDP body: session-level lines, then the media sections in order."""

    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    connection: Connection | None = None
    times: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])
    media: list[MediaDescription] = field(default_factory=list)
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)  # i u e p r z k and unknown
    version: int = 0

    @classmethod
    def parse(cls, body: str | bytes | bytearray) -> SessionDescription:
        """Read an SDP body; raise SdpError, and nothing else, if it is not valid."""
        if isinstance(body, (bytes, bytearray)):
            try:
                body = bytes(body).decode("utf-8")
            except UnicodeDecodeError as e:
                raise SdpError(f"SDP is not UTF-8: {e}") from None
        if not isinstance(body, str):
            raise SdpError("SDP must be text")
        if "\x00" in body:
            raise SdpError("NUL in SDP")
        lines = [line.removesuffix("\r") for line in body.split("\n")]
        lines = [line for line in lines if line.strip()]  # tolerate blank and trailing lines
        if not lines or lines[0].rstrip() != "v=0":
            raise SdpError("SDP must begin with v=0")
        sdp = cls(times=[])
        seen: set[str] = set()
        media: MediaDescription | None = None
        for number, line in enumerate(lines[1:], start=2):
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise SdpError(f"line {number} is not type=value: {line[:40]!r}")
            if "\r" in line:
                raise SdpError(f"line {number} holds a bare CR")
            kind, value = line[0], line[2:].rstrip(" \t")
            if kind == "m":
                media = MediaDescription.parse_m(value)
                sdp.media.append(media)
            elif media is not None:
                _media_line(media, kind, value, number)
            else:
                _session_line(sdp, kind, value, number, seen)
        if "o" not in seen:
            raise SdpError("SDP has no o= line")
        if not sdp.times:
            sdp.times = [(0, 0)]
        return sdp

    def serialize(self) -> str:
        """The body as CRLF-terminated lines in RFC 4566 order."""
        lines = [f"v={self.version}", f"o={self.origin.serialize()}", f"s={self.session_name}"]
        lines += [f"{t}={v}" for t, v in self.other if t in "iuep"]
        if self.connection is not None:
            lines.append(f"c={self.connection.serialize()}")
        lines += [f"b={b}" for b in self.bandwidths]
        lines += [f"t={start} {stop}" for start, stop in self.times]
        lines += [f"{t}={v}" for t, v in self.other if t not in "iuep"]
        lines += [f"a={n}" if v is None else f"a={n}:{v}" for n, v in self.attributes]
        for m in self.media:
            lines += m.serialize_lines()
        return "\r\n".join(lines) + "\r\n"

    __str__ = serialize

    def __bytes__(self) -> bytes:
        return self.serialize().encode("utf-8")


def _attribute(value: str, number: int) -> Attribute:
    name, colon, rest = value.partition(":")
    if not _TOKEN.fullmatch(name):
        raise SdpError(f"line {number}: bad attribute name {name!r}")
    if name == "rtpmap":
        RtpMap.parse(rest)  # checked here, so later lookups cannot fail
    return (name, rest if colon else None)


def _session_line(
    sdp: SessionDescription, kind: str, value: str, number: int, seen: set[str]
) -> None:
    if kind in "osc" and kind in seen:
        raise SdpError(f"line {number}: second {kind}= line")
    seen.add(kind)
    if kind == "o":
        sdp.origin = Origin.parse(value)
    elif kind == "s":
        sdp.session_name = value
    elif kind == "c":
        sdp.connection = Connection.parse(value)
    elif kind == "t":
        parts = value.split()
        if len(parts) != 2:
            raise SdpError(f"line {number}: t= needs start and stop")
        sdp.times.append((_int(parts[0], "t= start"), _int(parts[1], "t= stop")))
    elif kind == "b":
        sdp.bandwidths.append(value)
    elif kind == "a":
        sdp.attributes.append(_attribute(value, number))
    elif kind == "v":
        raise SdpError(f"line {number}: second v= line")
    else:
        sdp.other.append((kind, value))


def _media_line(media: MediaDescription, kind: str, value: str, number: int) -> None:
    if kind == "c":
        if media.connection is not None:
            raise SdpError(f"line {number}: second c= line in one media section")
        media.connection = Connection.parse(value)
    elif kind == "b":
        media.bandwidths.append(value)
    elif kind == "a":
        media.attributes.append(_attribute(value, number))
    elif kind in "vostrzuep":
        raise SdpError(f"line {number}: {kind}= belongs before the first m= line")
    else:
        media.other.append((kind, value))
