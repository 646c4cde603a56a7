"""SIP requests and responses as data: parse from bytes, serialize back.

Pure data, no I/O: the UDP transport calls `parse(datagram)`, the TCP one
feeds a `StreamParser` (ivr/sip/stream.py), and both get `SipRequest` /
`SipResponse` or a `SipParseError` carrying the status to answer with.

Headers are an ordered list of (name, value) pairs exactly as received,
original names and all, one pair per header line; folded lines are unfolded
(RFC 3261 7.3.1) and values trimmed. Lookups are case-insensitive and know
the compact forms; `get_all` splits comma-separated lists for the headers
defined as lists, and leaves unknown headers whole (RFC 4475 wsinv).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import SipParseError
from .header_list import COMPACT_FORMS, LIST_HEADERS, HeaderAccess, header_key
from .headers import NameAddr
from .lex import is_token
from .uri import GenericUri, SipUri, parse_uri

__all__ = [
    "COMPACT_FORMS", "LIST_HEADERS", "REASONS", "STREAM_LIMITS", "UDP_LIMITS", "Limits",
    "SipMessage", "SipParseError", "SipRequest", "SipResponse", "header_key", "is_keepalive",
    "make_response", "parse", "parse_head",
]

_VERSION = re.compile(r"SIP/[0-9]{1,4}\.[0-9]{1,4}", re.IGNORECASE)
_BAD_REASON = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]").search
_GOOD_NAMES: set[str] = set()  # names already checked to be tokens (bounded cache)
_LENGTH_NAMES = frozenset({"Content-Length", "l"})
_CACHE_MAX = 4096


@dataclass(frozen=True)
class Limits:
    """Bounds that make hostile input fail fast instead of eating memory or time."""

    max_message: int = 65_535       # whole message: a UDP datagram cannot be larger
    max_header_bytes: int = 32_768  # start line and headers
    max_headers: int = 128          # header lines
    max_line: int = 8_192           # one physical line
    max_body: int = 65_535          # stream transports: largest Content-Length accepted


UDP_LIMITS = Limits()
STREAM_LIMITS = Limits(max_message=262_144, max_body=196_608)


@dataclass
class SipRequest(HeaderAccess):
    """A request: `method`, the Request-URI as text, headers in order, body bytes."""

    method: str
    uri: str
    version: str = "SIP/2.0"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    _ruri: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def parsed_uri(self) -> SipUri | GenericUri:
        """The Request-URI parsed (cached while `uri` is unchanged)."""
        text = str(self.uri)
        cached = self._ruri
        if cached is None or cached[0] != text:
            cached = (text, parse_uri(text))
            self._ruri = cached
        return cached[1]

    def serialize(self) -> bytes:
        """The message as bytes for the wire, headers exactly as stored."""
        return self._serialize(f"{self.method} {self.uri} {self.version}")

    __bytes__ = serialize


@dataclass
class SipResponse(HeaderAccess):
    """A response: status code, reason phrase (may be empty), headers, body bytes."""

    status: int
    reason: str = ""
    version: str = "SIP/2.0"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def serialize(self) -> bytes:
        """The message as bytes for the wire, headers exactly as stored."""
        return self._serialize(f"{self.version} {self.status} {self.reason}")

    __bytes__ = serialize


SipMessage = SipRequest | SipResponse


def is_keepalive(data: bytes) -> bool:
    """True for a CRLF keep-alive (RFC 5626 ping "\\r\\n\\r\\n" or pong "\\r\\n")."""
    return bool(data) and not data.strip(b"\r\n")


def parse(data: bytes, *, limits: Limits = UDP_LIMITS) -> SipRequest | SipResponse:
    """Parse one datagram (RFC 3261 18.3 framing).

    The body is what Content-Length says; octets after it are discarded
    (RFC 4475 dblreq); without Content-Length it is the rest of the datagram.
    A Content-Length past the end of the datagram is an error (400 for a
    request; a response is simply to be dropped). Raises only SipParseError.
    """
    try:
        return _parse_datagram(data, limits)
    except SipParseError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        # Defence in depth: a server must answer garbage with a 400, never crash.
        raise SipParseError(400, "Malformed message") from exc


def _parse_datagram(data: bytes, limits: Limits) -> SipRequest | SipResponse:
    n = len(data)
    if n > limits.max_message:
        raise SipParseError(513, "Message Too Large")
    start = 0
    while data.startswith(b"\r\n", start):  # stray CRLFs before the start line
        start += 2
    if start >= n:
        raise SipParseError(400, "Empty message")
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        body_start = end + 4
    elif data.endswith(b"\r\n"):
        # No empty line after the headers: the datagram ends the message, so
        # read it as having no body rather than refuse it.
        end, body_start = n - 2, n
    else:
        raise SipParseError(400, "Incomplete message")
    msg, length = parse_head(data[start:end], limits)
    rest = data[body_start:]
    if length is not None:
        if length > len(rest):
            msg.body = rest
            raise SipParseError(400, "Content-Length larger than body", msg)
        rest = rest[:length]
    msg.body = rest
    return msg


def parse_head(head: bytes, limits: Limits) -> tuple[SipRequest | SipResponse, int | None]:
    """Parse a start line and headers (the bytes before the empty line).

    Returns the message with an empty body and its Content-Length (None when
    absent). Shared by the datagram and stream parsers.
    """
    if len(head) > limits.max_header_bytes:
        raise SipParseError(513, "Message Too Large")
    text = head.decode("utf-8", "surrogateescape")
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf:
        raise SipParseError(400, "Bare CR or LF")
    lines = text.split("\r\n")
    if len(lines) > limits.max_headers + 1:
        raise SipParseError(513, "Too many headers")
    max_line = limits.max_line
    first = lines[0]
    if len(first) > max_line:
        raise SipParseError(513, "Start line too long")
    # The start line first: garbage is refused before any header is looked at.
    headers: list[tuple[str, str]] = []  # filled below, shared with the message
    if first[:4].upper() == "SIP/":
        msg: SipRequest | SipResponse = _parse_status_line(first, headers)
    else:
        msg = _parse_request_line(first, headers)
    lengths: list[int] = []  # indexes of Content-Length lines
    for line in lines[1:]:
        if len(line) > max_line:
            raise SipParseError(513, "Header line too long")
        if line[:1] in (" ", "\t"):
            # A continuation line: the fold is one SP (RFC 3261 7.3.1).
            if not headers:
                raise SipParseError(400, "Continuation before any header")
            name, value = headers[-1]
            more = line.strip(" \t")
            headers[-1] = (name, f"{value} {more}" if value and more else value or more)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(400, "Malformed header line")
        name = name.rstrip(" \t")
        if name not in _GOOD_NAMES:
            if not is_token(name):
                raise SipParseError(400, "Bad header name")
            if len(_GOOD_NAMES) < _CACHE_MAX:
                _GOOD_NAMES.add(name)
        if name in _LENGTH_NAMES or header_key(name) == "content-length":
            lengths.append(len(headers))
        headers.append((name, value.strip(" \t")))
    return msg, _content_length([headers[i][1] for i in lengths], msg)


def _check_version(version: str) -> None:
    if version.upper() == "SIP/2.0":
        return
    if _VERSION.fullmatch(version):
        raise SipParseError(505, "Version Not Supported")
    raise SipParseError(400, "Bad SIP version")


def _parse_request_line(line: str, headers: list[tuple[str, str]]) -> SipRequest:
    # Request-Line = Method SP Request-URI SP SIP-Version: exactly two single
    # spaces (RFC 4475 lwsstart, trws, lwsruri).
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(400, "Malformed Request-Line")
    method, uri, version = parts
    _check_version(version)
    if not is_token(method):
        raise SipParseError(400, "Bad method")
    try:
        ruri = parse_uri(uri)
    except SipParseError:
        raise SipParseError(400, "Bad Request-URI") from None
    req = SipRequest(method, uri, version, headers)
    req._ruri = (uri, ruri)
    return req


def _parse_status_line(line: str, headers: list[tuple[str, str]]) -> SipResponse:
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise SipParseError(400, "Malformed Status-Line")
    version, code = parts[0], parts[1]
    reason = parts[2] if len(parts) == 3 else ""
    _check_version(version)
    # Status-Code = 3DIGIT, 100-699 (RFC 4475 bigcode).
    if not (len(code) == 3 and code.isascii() and code.isdigit() and "1" <= code[0] <= "6"):
        raise SipParseError(400, "Bad status code")
    if _BAD_REASON(reason):
        raise SipParseError(400, "Bad reason phrase")
    return SipResponse(int(code), reason, version, headers)


def _content_length(values: list[str], msg: SipRequest | SipResponse) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        # Two lengths cannot both frame the body (RFC 4475 mcl01).
        raise SipParseError(400, "Multiple Content-Length", msg)
    value = values[0]
    if not (0 < len(value) <= 10 and value.isascii() and value.isdigit()):
        raise SipParseError(400, "Bad Content-Length", msg)  # RFC 4475 ncl
    return int(value)


# Reason phrases for make_response (RFC 3261 21 and the extensions in use).
REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 421: "Extension Required", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    to_tag: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> SipResponse:
    """A response to `request` built per RFC 3261 8.2.6.

    Copies every Via (same order), From, Call-ID and CSeq; copies To and adds
    `;tag=to_tag` unless it already has a tag; copies Timestamp into a 100
    and Record-Route into 101-299 (RFC 12.1.1: what establishes a dialog
    must carry the route set back). Ends with `Content-Length: 0`; use
    `set_body` to attach one. Works on a request that failed validation
    (it copies what is there), so a 400 can still be answered.
    """
    headers: list[tuple[str, str]] = []
    for name, value in request.headers:
        key = header_key(name)
        if key == "via":
            headers.append(("Via", value))
    for canonical in ("From", "To", "Call-ID", "CSeq"):
        value = request.get(canonical)
        if value is None:
            continue
        if canonical == "To" and to_tag is not None:
            value = _with_tag(value, to_tag)
        headers.append((canonical, value))
    if status == 100:
        stamp = request.get("Timestamp")
        if stamp is not None:
            headers.append(("Timestamp", stamp))
    if 100 < status < 300:
        headers += [("Record-Route", v) for n, v in request.headers
                    if header_key(n) == "record-route"]
    response = SipResponse(status, REASONS.get(status, "") if reason is None else reason,
                           headers=headers)
    for name, value in extra_headers:
        response.add(name, value)
    if not response.has("Content-Length"):
        response.headers.append(("Content-Length", "0"))
    return response


def _with_tag(to_value: str, tag: str) -> str:
    try:
        if NameAddr.parse(to_value).tag is not None:
            return to_value
    except SipParseError:
        return to_value  # a malformed To is echoed as it came (for the 400)
    return f"{to_value};tag={tag}"
