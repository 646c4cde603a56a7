"""Framing SIP messages out of a byte stream (TCP, TLS) per RFC 3261 18.3.

    parser = StreamParser()
    parser.feed(data)              # whatever recv() returned
    for message in parser:         # every message now complete
        handle(message)
    if parser.pop_keepalives():    # RFC 5626: answer a CRLFCRLF ping with CRLF
        send(b"\\r\\n")

Content-Length is mandatory on streams: it is the only way to find where a
body ends. A framing error raises SipParseError, after which the stream
cannot be resynchronised: the connection must be closed (the parser keeps
raising the same error). Memory is bounded: headers that never end and
bodies over the limits are refused as soon as they show.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

from .errors import SipParseError
from .message import STREAM_LIMITS, Limits, SipRequest, SipResponse, parse_head


class StreamParser:
    """Turns a byte stream into complete SipRequest / SipResponse objects."""

    def __init__(self, limits: Limits = STREAM_LIMITS) -> None:
        self.limits = limits
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for the end of the headers
        self._pending: tuple[SipRequest | SipResponse, int, int] | None = None
        self._crlfs = 0  # CRLFs seen in a row between messages
        self._keepalives = 0
        self._error: SipParseError | None = None

    def feed(self, data: bytes) -> None:
        """Append received bytes; iterate the parser to take complete messages."""
        if self._error is not None:
            raise self._error
        self._buf += data
        # Bound what an undrained or hostile peer can make us hold.
        if len(self._buf) > 2 * self.limits.max_message:
            self._fail(SipParseError(513, "Message Too Large"))

    def __iter__(self) -> Iterator[SipRequest | SipResponse]:
        return self

    def __next__(self) -> SipRequest | SipResponse:
        if self._error is not None:
            raise self._error
        message = self._next()
        if message is None:
            raise StopIteration
        return message

    def pop_keepalives(self) -> int:
        """How many CRLFCRLF pings arrived since the last call (each wants a CRLF pong)."""
        count, self._keepalives = self._keepalives, 0
        return count

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet make a complete message."""
        return len(self._buf)

    def _fail(self, error: SipParseError) -> NoReturn:
        self._error = error
        self._buf.clear()
        raise error

    def _next(self) -> SipRequest | SipResponse | None:
        buf = self._buf
        if self._pending is None:
            self._skip_crlfs()
            if not buf:
                return None
            limits = self.limits
            end = buf.find(b"\r\n\r\n", max(self._scan - 3, 0))
            if end < 0:
                if len(buf) > limits.max_header_bytes:
                    self._fail(SipParseError(513, "Message Too Large"))
                self._scan = len(buf)
                return None
            try:
                message, length = parse_head(bytes(buf[:end]), limits)
            except SipParseError as exc:
                self._fail(exc)
            except (ValueError, TypeError, IndexError, KeyError, OverflowError):
                self._fail(SipParseError(400, "Malformed message"))
            if length is None:
                self._fail(SipParseError(400, "Missing Content-Length", message))
            if length > limits.max_body or end + 4 + length > limits.max_message:
                self._fail(SipParseError(413, "Request Entity Too Large", message))
            self._pending = (message, end + 4, length)
        message, body_start, length = self._pending
        if len(buf) < body_start + length:
            return None
        message.body = bytes(buf[body_start : body_start + length])
        del buf[: body_start + length]
        self._pending = None
        self._scan = 0
        return message

    def _skip_crlfs(self) -> None:
        """Drop CRLFs before a start line (RFC 3261 7.5), counting RFC 5626 pings."""
        buf = self._buf
        i = 0
        n = len(buf)
        while i + 1 < n and buf[i] == 13 and buf[i + 1] == 10:
            i += 2
            self._crlfs += 1
            if self._crlfs == 2:
                self._keepalives += 1
                self._crlfs = 0
        if i:
            del buf[:i]
            self._scan = 0
        if buf and buf[0] != 13:
            self._crlfs = 0
