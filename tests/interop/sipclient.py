"""A small scripted SIP phone for interop tests, written independently of ivr/sip/.

SIPp is the reference peer, but some checks are clumsy in its XML: withholding
an ACK and counting the 200 retransmissions, sending from one port while the
Via names another, re-INVITEs that change direction or codec, RTP sent from a
third address. This client builds requests from plain text and parses answers
with a few lines of its own, so a bug in the server's parser cannot hide
behind the same bug in the test.
"""

from __future__ import annotations

import secrets
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length", "m": "contact",
           "c": "content-type"}
LOCAL = "127.0.0.1"


@dataclass
class Msg:
    """A received SIP message: a request (method set) or a response (status set)."""

    first: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    status: int = 0
    method: str = ""
    raw: bytes = b""

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.headers if COMPACT.get(n.lower(), n.lower()) == name]

    @property
    def cseq_method(self) -> str:
        return (self.get("CSeq") or " ").split()[-1]

    @property
    def to_tag(self) -> str | None:
        to = self.get("To") or ""
        return to.split(";tag=", 1)[1].split(";")[0] if ";tag=" in to else None


def parse_msg(data: bytes) -> Msg:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    msg = Msg(lines[0], headers, body, raw=data)
    parts = lines[0].split(" ", 2)
    if parts[0].startswith("SIP/"):
        msg.status = int(parts[1])
    else:
        msg.method = parts[0]
    return msg


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


class Peer:
    """One SIP endpoint: a UDP socket (or a TCP connection) and a mailbox of what arrived."""

    def __init__(self, server_port: int, transport: str = "UDP", server_host: str = LOCAL) -> None:
        self.server = (server_host, server_port)
        self.transport = transport
        if transport == "TCP":
            self.sock = socket.create_connection(self.server, timeout=5)
            self._stream = b""
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((LOCAL, 0))
        self.port = self.sock.getsockname()[1]
        self.backlog: list[Msg] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, data: str | bytes, dest: tuple[str, int] | None = None) -> None:
        raw = data.encode() if isinstance(data, str) else data
        if self.transport == "TCP":
            self.sock.sendall(raw)
        else:
            self.sock.sendto(raw, dest or self.server)

    def _read(self, timeout: float) -> Msg | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            if self.transport != "TCP":
                data, _ = self.sock.recvfrom(65535)
                return parse_msg(data)
            while True:
                head_end = self._stream.find(b"\r\n\r\n")
                if head_end >= 0:
                    msg = parse_msg(self._stream[:head_end + 4])
                    length = int(msg.get("Content-Length") or 0)
                    end = head_end + 4 + length
                    if len(self._stream) >= end:
                        msg = parse_msg(self._stream[:end])
                        self._stream = self._stream[end:]
                        return msg
                chunk = self.sock.recv(65535)
                if not chunk:
                    return None
                self._stream += chunk
        except (TimeoutError, BlockingIOError):
            return None

    def recv(self, want: Callable[[Msg], bool] = lambda m: True, timeout: float = 5.0) -> Msg:
        """The next message `want` accepts (others are kept for later); AssertionError on timeout."""
        for i, m in enumerate(self.backlog):
            if want(m):
                return self.backlog.pop(i)
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            m = self._read(left)
            if m is None:
                continue
            if want(m):
                return m
            self.backlog.append(m)
        raise AssertionError(f"nothing wanted arrived in {timeout}s; got {[x.first for x in self.backlog]}")

    def nothing(self, want: Callable[[Msg], bool], within: float) -> bool:
        """True if no message `want` accepts arrives within `within` seconds."""
        try:
            self.recv(want, within)
        except AssertionError:
            return True
        return False

    def request(self, method: str, *, call_id: str | None = None, cseq: int = 1, from_tag: str | None = None,
                to_tag: str | None = None, body: str = "", content_type: str | None = None,
                extra: list[str] | None = None, via_port: int | None = None, via_params: str = ";rport",
                uri: str | None = None, branch: str | None = None) -> tuple[str, str]:
        """The text of a request to the server; (text, branch)."""
        branch = branch or "z9hG4bK" + secrets.token_hex(6)
        call_id = call_id or secrets.token_hex(8)
        uri = uri or f"sip:ivr@{self.server[0]}:{self.server[1]}"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {LOCAL}:{via_port or self.port};branch={branch}{via_params}",
            "Max-Forwards: 70",
            f"From: <sip:+441632960042@{LOCAL}:{self.port}>;tag={from_tag or secrets.token_hex(4)}",
            f"To: <sip:ivr@{self.server[0]}:{self.server[1]}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:caller@{LOCAL}:{self.port}" + (";transport=tcp>" if self.transport == "TCP" else ">"),
            *(extra or []),
        ]
        if body:
            lines.append(f"Content-Type: {content_type or 'application/sdp'}")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body, branch


def sdp(rtp_port: int, codecs: tuple[int, ...] = (0, 101), direction: str = "sendrecv", version: int = 1,
        host: str = LOCAL) -> str:
    names = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000", 18: "G729/8000", 101: "telephone-event/8000"}
    lines = ["v=0", f"o=tester 4242 {version} IN IP4 {host}", "s=-", f"c=IN IP4 {host}", "t=0 0",
             f"m=audio {rtp_port} RTP/AVP {' '.join(map(str, codecs))}"]
    lines += [f"a=rtpmap:{pt} {names[pt]}" for pt in codecs]
    if 101 in codecs:
        lines.append("a=fmtp:101 0-15")
    lines.append(f"a={direction}")
    return "\r\n".join(lines) + "\r\n"


@dataclass
class Call:
    """One call from a Peer: INVITE, ACK, in-dialog requests, RTP both ways."""

    peer: Peer
    codecs: tuple[int, ...] = (0, 101)
    call_id: str = field(default_factory=lambda: secrets.token_hex(8) + "@tester")
    from_tag: str = field(default_factory=lambda: secrets.token_hex(4))
    cseq: int = 1
    to_tag: str | None = None
    rtp: socket.socket = field(init=False)
    remote_rtp: tuple[str, int] | None = None
    sdp_version: int = 1
    invite_branch: str = ""

    def __post_init__(self) -> None:
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((LOCAL, 0))

    @property
    def rtp_port(self) -> int:
        return self.rtp.getsockname()[1]

    def close(self) -> None:
        self.rtp.close()

    def mine(self, method: str | None = None, status: int | None = None) -> Callable[[Msg], bool]:
        """A filter for messages of this call (a response to `method`, or a request `method`)."""
        def want(m: Msg) -> bool:
            if self.call_id not in (m.get("Call-ID") or ""):
                return False
            if status is not None and m.status != status:
                return False
            if method is not None and status is not None:
                return m.cseq_method == method
            if method is not None:
                return m.method == method or (m.status > 0 and m.cseq_method == method)
            return True
        return want

    def send_invite(self, body: str | None = None) -> None:
        text, self.invite_branch = self.peer.request(
            "INVITE", call_id=self.call_id, cseq=self.cseq, from_tag=self.from_tag,
            body=sdp(self.rtp_port, self.codecs) if body is None else body)
        self.peer.send(text)

    def final(self, method: str = "INVITE", timeout: float = 10.0) -> Msg:
        """The next final response to `method` of this call."""
        return self.peer.recv(lambda m: self.mine(method)(m) and m.status >= 200 and m.cseq_method == method,
                              timeout)

    def answered(self, ack: bool = True) -> Msg:
        resp = self.final("INVITE")
        assert resp.status == 200, resp.first
        self.to_tag = resp.to_tag
        self.remote_rtp = media_address(resp.body)
        if ack:
            self.ack()
        return resp

    def start(self) -> Msg:
        self.send_invite()
        return self.answered()

    def ack(self) -> None:
        text, _ = self.peer.request("ACK", call_id=self.call_id, cseq=self.cseq, from_tag=self.from_tag,
                                    to_tag=self.to_tag)
        self.peer.send(text)

    def in_dialog(self, method: str, body: str = "", content_type: str | None = None,
                  extra: list[str] | None = None) -> None:
        self.cseq += 1
        text, _ = self.peer.request(method, call_id=self.call_id, cseq=self.cseq, from_tag=self.from_tag,
                                    to_tag=self.to_tag, body=body, content_type=content_type, extra=extra)
        self.peer.send(text)

    def reinvite(self, codecs: tuple[int, ...], direction: str) -> Msg:
        self.sdp_version += 1
        self.in_dialog("INVITE", sdp(self.rtp_port, codecs, direction, self.sdp_version))
        resp = self.final("INVITE")
        if resp.status == 200:
            self.remote_rtp = media_address(resp.body)
        self.ack_cseq(resp)
        return resp

    def ack_cseq(self, resp: Msg) -> None:
        """ACK a final response to a re-INVITE (same CSeq number)."""
        if resp.status >= 300:
            return  # the server's transaction takes the ACK of an error; not needed for the test
        text, _ = self.peer.request("ACK", call_id=self.call_id, cseq=self.cseq, from_tag=self.from_tag,
                                    to_tag=self.to_tag)
        self.peer.send(text)

    def info(self, digit: str) -> Msg:
        self.in_dialog("INFO", f"Signal={digit}\r\nDuration=160\r\n", "application/dtmf-relay")
        return self.final("INFO")

    def bye(self) -> Msg:
        self.in_dialog("BYE")
        return self.final("BYE")

    def answer_request(self, req: Msg, status: int = 200, reason: str = "OK") -> None:
        """Answer a request the server sent us (BYE, REFER)."""
        lines = [f"SIP/2.0 {status} {reason}"] + [f"{n}: {v}" for n, v in req.headers
                                                   if COMPACT.get(n.lower(), n.lower()) in
                                                   ("via", "from", "to", "call-id", "cseq")]
        self.peer.send("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n")

    # ---- RTP --------------------------------------------------------------------------
    def send_rtp(self, packets: list[bytes], sock: socket.socket | None = None, gap: float = 0.02) -> None:
        assert self.remote_rtp is not None
        for p in packets:
            (sock or self.rtp).sendto(p, self.remote_rtp)
            time.sleep(gap)


def media_address(body: bytes) -> tuple[str, int]:
    """The c= address and m=audio port of an SDP body."""
    host, port = LOCAL, 0
    for line in body.decode().splitlines():
        if line.startswith("c=IN IP4 "):
            host = line.split()[-1]
        if line.startswith("m=audio "):
            port = int(line.split()[1])
    return host, port


class Rtp:
    """Builds RTP packets of one stream (sequence numbers and timestamps advancing)."""

    def __init__(self) -> None:
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.ssrc = secrets.randbits(32)

    def packet(self, pt: int, payload: bytes, marker: bool = False, advance: bool = True) -> bytes:
        data = struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), self.seq, self.ts, self.ssrc) + payload
        self.seq = (self.seq + 1) & 0xFFFF
        if advance:
            self.ts = (self.ts + 160) & 0xFFFFFFFF
        return data

    def audio(self, n: int, pt: int = 0) -> list[bytes]:
        silence = bytes([0xFF if pt == 0 else 0xD5]) * 160
        return [self.packet(pt, silence) for _ in range(n)]

    def dtmf(self, digit: str, pt: int = 101, end_repeats: int = 3) -> list[bytes]:
        """One key as RFC 4733 events: a few progress packets, then the end packet repeated."""
        event = "0123456789*#ABCD".index(digit)
        packets = []
        for i in range(1, 6):
            packets.append(self.packet(pt, struct.pack("!BBH", event, 10, 160 * i), marker=i == 1, advance=False))
        for _ in range(end_repeats):
            packets.append(self.packet(pt, struct.pack("!BBH", event, 0x80 | 10, 160 * 6), advance=False))
        self.ts = (self.ts + 160 * 6) & 0xFFFFFFFF
        return packets


def parse_rtp(data: bytes) -> tuple[int, int, int, int]:
    """(payload type, sequence number, timestamp, payload length) of an RTP packet."""
    _, second, seq, ts, _ = struct.unpack("!BBHII", data[:12])
    return second & 0x7F, seq, ts, len(data) - 12
