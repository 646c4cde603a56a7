"""One call's RTP: a UDP socket, the latched peer, DTMF in, paced audio out.

Outgoing audio is a stream on the process's media clock: each tick sends the
next frame of whatever plays (a prompt, music on hold) or silence, so the peer
always receives exactly 50 packets a second. Incoming packets are latched to
one source (symmetric RTP): the address the peer's SDP names is taken at its
first packet; another address (a peer behind NAT) only after a short run of
packets in sequence from it, so a stray packet cannot capture the call. Once
latched, packets from any other address are ignored, so a third party cannot
inject keys. We send to the latched source, or to the SDP's address until
then (never to a host name: resolving it would block the loop, so a peer that
names itself is answered where its packets come from). Audio payloads are decoded only when someone
listens (a recogniser, a recording, in-band DTMF detection).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable

from ..audio.clock import MediaClock
from ..audio.dtmf_detect import InbandDtmfDetector
from ..audio.feed import Feed, Source
from ..audio.frames import follow
from ..audio.g711 import G711Codec
from .rtp import DtmfReceiver, DtmfSender, RtpError, RtpPacket

log = logging.getLogger("ivr.rtp")
_HEADER = struct.Struct("!BBHII")
LEARN_PACKETS = 3  # packets in sequence from an address the SDP did not name before we latch to it


class RtpSession(asyncio.DatagramProtocol):
    """RTP for one call (G.711 with RFC 4733 telephone-events)."""

    def __init__(self, clock: MediaClock, codec: G711Codec, remote: tuple[str, int], *,
                 dtmf_pt: int | None, on_dtmf: Callable[[str, str], None], inband: bool = False) -> None:
        self.clock = clock
        self.codec = codec
        self.remote = remote  # as negotiated in SDP
        self.peer: tuple[str, int] | None = None  # latched source; we send there once known
        self.dtmf_pt = dtmf_pt
        self.on_dtmf = on_dtmf
        self.dtmf = DtmfReceiver(payload_type=dtmf_pt)
        self.inband = InbandDtmfDetector() if inband else None
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.marker = True
        self.source: Feed | None = None
        self.sending = True  # False while the peer has put us on hold (sendonly/inactive)
        self.silence = bytes([codec.silence]) * 160
        self.listeners: list[asyncio.Queue] = []
        self.sent = 0
        self.dropped = 0
        self._sock = None
        self.received = 0
        self.ignored = 0  # packets from addresses other than the latched one
        self._candidate: tuple[tuple[str, int], int, int, int] | None = None  # addr, ssrc, last seq, run
        # Key presses to send (RFC 4733): (payload, marker, timestamp, done) one per tick, in place of audio.
        self._keys: deque[tuple[bytes, bool, int, asyncio.Future | None]] = deque()

    # ---- lifecycle -------------------------------------------------------------------------
    async def open(self, host: str, ports: range | None = None) -> tuple[str, int]:
        """Bind a UDP port (even, from `ports` when given) and start sending."""
        loop = asyncio.get_running_loop()
        candidates = [p for p in (ports or ()) if p % 2 == 0] or [0]
        start = secrets.randbelow(len(candidates))
        last: OSError | None = None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for i in range(min(len(candidates), 200)):
            port = candidates[(start + i) % len(candidates)]
            # Our own socket object, so tick() can send on it directly.
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((host, port))
                self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
                break
            except OSError as exc:
                sock.close()
                last = exc
        else:
            raise OSError(f"no free RTP port: {last}")
        self._sock = sock
        name = sock.getsockname()
        self.local = (name[0], name[1])
        self.clock.add(self)
        return self.local

    def close(self) -> None:
        self.clock.remove(self)
        for _, _, _, done in self._keys:
            if done is not None and not done.done():
                done.set_result(False)
        self._keys.clear()
        if self.source is not None:
            self.source.finish(False)
        for q in self.listeners:
            q.put_nowait(None)
        if self.transport is not None:
            self.transport.close()

    def set_remote(self, remote: tuple[str, int], codec: G711Codec | None = None, dtmf_pt: int | None = None) -> None:
        """A re-INVITE moved the peer's media or changed the codec."""
        if remote != self.remote:
            self.remote = remote
            self.peer = None
            self._candidate = None
        if codec is not None and codec.name != self.codec.name:
            self.codec = codec
            self.silence = bytes([codec.silence]) * 160
        if dtmf_pt != self.dtmf_pt:
            self.dtmf_pt = dtmf_pt
            self.dtmf = DtmfReceiver(payload_type=dtmf_pt)

    # ---- sending (called by the media clock every 20 ms) ------------------------------------
    def send_dtmf(self, digit: str, duration_ms: int = 100) -> asyncio.Future:
        """Send one key press as RFC 4733 telephone-events (the peer's payload type), in place
        of audio from the next tick; the future resolves once its last packet went out.
        Presses queue behind each other. Raises ValueError without a negotiated event type."""
        if self.dtmf_pt is None:
            raise ValueError("the peer did not offer telephone-event: send the key in-band or by INFO")
        done = asyncio.get_running_loop().create_future()
        # The press's timestamp is that of its first packet, counted from the ticks queued before it.
        start = (self.ts + 160 * len(self._keys)) & 0xFFFFFFFF
        packets = DtmfSender(ssrc=self.ssrc, payload_type=self.dtmf_pt).packets(digit, start, 0, duration_ms)
        for i, p in enumerate(packets):
            self._keys.append((p.payload, p.marker, start, done if i == len(packets) - 1 else None))
        return done

    def _send_key(self, dest: tuple[str, int]) -> None:
        payload, marker, ts, done = self._keys.popleft()
        packet = _HEADER.pack(0x80, self.dtmf_pt | (0x80 if marker else 0), self.seq, ts, self.ssrc) + payload
        with contextlib.suppress(OSError):
            self._sock.sendto(packet, dest)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 160) & 0xFFFFFFFF
        self.marker = True  # the audio after a press starts a new talk spurt
        if done is not None and not done.done():
            done.set_result(True)

    def tick(self) -> None:
        if self._keys and self.sending and self.transport is not None and (self.peer or self.remote)[1]:
            self._send_key(self.peer or self.remote)
            return
        payload = None
        if self.source is not None:
            payload = self.source.next()
            if payload is None:
                self.source = None
        dest = self.peer or self.remote
        if (not self.sending or self.transport is None or not dest[1]
                or (self.peer is None and not _sendable(dest[0]))):
            # Nothing goes out (on hold, nowhere to send), but the media clock runs on: the
            # next packet's timestamp shows the gap, and its marker starts a new talk spurt.
            self.ts = (self.ts + 160) & 0xFFFFFFFF
            self.marker = True
            return
        pt = self.codec.payload_type | (0x80 if self.marker else 0)
        self.marker = False
        packet = _HEADER.pack(0x80, pt, self.seq, self.ts, self.ssrc) + (payload or self.silence)
        try:
            # Straight to the socket: this runs 50 times a second per call, and the
            # transport's own sendto adds checks we don't need for a datagram.
            self._sock.sendto(packet, dest)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1  # the kernel's buffer is full: a late packet is worse than a lost one
        except OSError:
            self.dropped += 1  # ICMP from a peer that went away; the call's end will follow
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 160) & 0xFFFFFFFF
        self.sent += 1

    def play(self, payloads: tuple[bytes, ...]) -> Source:
        """Start sending a prompt's `payloads` (replacing what plays); returns its Source."""
        src = Source(payloads)
        self.feed(src)
        return src

    def feed(self, source: Feed) -> None:
        """Send from `source` from the next tick on, replacing (and finishing) what plays."""
        if self.source is not None and self.source is not source:
            self.source.finish(False)
        self.source = source
        self.marker = True  # a new talk spurt

    def stop(self) -> None:
        if self.source is not None:
            self.source.finish(False)
            self.source = None

    # ---- receiving -------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return  # not RTP: it neither counts nor latches
        if not self._from_peer((addr[0], addr[1]), data):
            return
        self.received += 1
        pt = data[1] & 0x7F
        if pt == self.dtmf_pt and pt is not None:
            try:
                press = self.dtmf.feed(RtpPacket.parse(data))
            except RtpError:
                return
            if press is not None:
                self.on_dtmf(press.digit, "rfc4733")
            return
        if pt != self.codec.payload_type or not (self.listeners or self.inband):
            return
        try:
            payload = RtpPacket.parse(data).payload
        except RtpError:
            return
        pcm = self.codec.decode(payload)
        if self.inband is not None:
            for digit in self.inband.push(pcm):
                self.on_dtmf(digit, "inband")
        for q in self.listeners:
            if q.qsize() < 500:  # a stuck consumer must not grow memory without bound
                q.put_nowait(pcm)

    def _from_peer(self, addr: tuple[str, int], data: bytes) -> bool:
        """Whether a packet comes from the call's peer, latching to it when it is time."""
        if self.peer is not None:
            if addr == self.peer:
                return True
            self.ignored += 1
            return False
        if addr == self.remote:
            self.peer = addr
            return True
        ssrc = int.from_bytes(data[8:12], "big")
        seq = int.from_bytes(data[2:4], "big")
        c = self._candidate
        if c is not None and c[0] == addr and c[1] == ssrc and seq == (c[2] + 1) & 0xFFFF:
            run = c[3] + 1
        else:
            run = 1
        self._candidate = (addr, ssrc, seq, run)
        if run >= LEARN_PACKETS:
            self.peer = addr
            self._candidate = None
            return True
        return False

    def error_received(self, exc: Exception) -> None:
        log.debug("rtp error: %s", exc)

    def frames(self):
        """The caller's audio as PCM16 frames, for as long as the iterator is used."""
        return follow(self.listeners)


@functools.lru_cache(maxsize=4096)
def _sendable(host: str) -> bool:
    """An address we may send to before latching: an IP literal that is not a wildcard."""
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False
