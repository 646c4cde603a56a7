"""SIP over UDP and TCP on one event loop.

Each datagram or framed TCP message is parsed and handed to the user agent
with where it came from. Garbage never reaches the user agent: a request we
cannot parse gets a 400 when it names enough to answer (a Via), else it is
dropped, as are unparsable responses and keep-alives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .errors import SipParseError
from .message import SipRequest, SipResponse, is_keepalive, parse
from .stream import StreamParser

log = logging.getLogger("ivr.sip")

Message = SipRequest | SipResponse
HEAD_KEPT = 8192  # bytes of a broken message kept to answer it (its start line and the headers a response copies)


@dataclass(frozen=True)
class Source:
    """Where a message came from and how to answer on the same path."""

    transport: str  # UDP or TCP
    addr: tuple[str, int]
    conn: asyncio.Transport | None = None  # the TCP connection, None for UDP


Handler = Callable[[Message, Source], None]
ErrorHandler = Callable[[bytes, SipParseError, Source], None]


class SipTransport:
    """A UDP socket and a TCP listener on the same address."""

    def __init__(self, on_message: Handler, on_error: ErrorHandler) -> None:
        self.on_message = on_message
        self.on_error = on_error
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.AbstractServer | None = None
        self.host = ""
        self.port = 0
        self.received = 0
        self.bad = 0

    async def start(self, host: str, port: int, tcp: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(host, port))
        sock = self.udp.get_extra_info("sockname")
        self.host, self.port = sock[0], sock[1]
        if tcp:
            self.tcp = await loop.create_server(lambda: _Tcp(self), host, self.port, reuse_address=True)

    def send(self, data: bytes, dest: Source | tuple[str, int]) -> None:
        """Send on the path the peer used (its TCP connection) or by UDP."""
        if isinstance(dest, Source):
            if dest.conn is not None and not dest.conn.is_closing():
                dest.conn.write(data)
                return
            dest = dest.addr
        if self.udp is not None:
            self.udp.sendto(data, dest)

    def deliver(self, data: bytes, source: Source) -> None:
        self.received += 1
        try:
            msg = parse(data)
        except SipParseError as exc:
            self.bad += 1
            self.on_error(data, exc, source)
            return
        try:
            self.on_message(msg, source)
        except Exception:  # a bug in handling one message must not stop the server
            log.exception("error handling %s from %s", getattr(msg, "method", "response"), source.addr)

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            await self.tcp.wait_closed()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr) -> None:
        if is_keepalive(data):
            return
        self.owner.deliver(data, Source("UDP", (addr[0], addr[1])))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable and friends
        log.debug("udp error: %s", exc)


class _Tcp(asyncio.Protocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.parser = StreamParser()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        self.head = b""  # the first bytes of the message in progress, to answer it if it breaks

    def data_received(self, data: bytes) -> None:
        src = Source("TCP", self.peer, self.transport)
        completed = 0
        try:
            self.parser.feed(data)
            for msg in self.parser:
                completed += 1
                self.owner.received += 1
                try:
                    self.owner.on_message(msg, src)
                except Exception:
                    log.exception("error handling a TCP message from %s", self.peer)
            if self.parser.pop_keepalives() and self.transport is not None:
                self.transport.write(b"\r\n")  # RFC 5626 pong
            self._keep_head(data, completed)
        except SipParseError as exc:
            # A broken stream can't be resynchronised: answer if we can, then close.
            self.owner.bad += 1
            start = data if completed else self.head + data
            self.owner.on_error(start[:HEAD_KEPT], exc, src)
            if self.transport is not None:
                self.transport.close()

    def _keep_head(self, data: bytes, completed: int) -> None:
        """Remember the start of the message still incomplete (its start line and first headers)."""
        pending = self.parser.buffered
        if pending == 0:
            self.head = b""
        elif completed or not self.head:
            self.head = data[max(len(data) - pending, 0):][:HEAD_KEPT]
        elif len(self.head) < HEAD_KEPT:
            self.head += data[:HEAD_KEPT - len(self.head)]
