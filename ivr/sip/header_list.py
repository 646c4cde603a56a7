"""The ordered header list of a SIP message and its case-insensitive access.

A message keeps its headers as received: a list of (name, value) pairs, one
per header line, original spelling kept. `HeaderAccess` adds lookups that
ignore case and understand compact forms (`i` is Call-ID, `v` Via ...), and
edits that keep the order (a proxy-style `add(..., first=True)` for Via).
"""

from __future__ import annotations

from .errors import SipParseError
from .headers import CSeq, NameAddr, Via
from .lex import is_token, split_commas

# RFC 3261 7.3.3 and later RFCs' compact forms, to the full names' lower case.
COMPACT_FORMS = {
    "a": "accept-contact", "b": "referred-by", "c": "content-type", "d": "request-disposition",
    "e": "content-encoding", "f": "from", "i": "call-id", "j": "reject-contact",
    "k": "supported", "l": "content-length", "m": "contact", "n": "identity-info",
    "o": "event", "r": "refer-to", "s": "subject", "t": "to", "u": "allow-events",
    "v": "via", "x": "session-expires", "y": "identity",
}

# Headers whose grammar is a comma-separated list: get_all splits these only.
LIST_HEADERS = frozenset({
    "via", "contact", "route", "record-route", "path", "service-route", "allow", "supported",
    "require", "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
    "allow-events", "content-encoding", "content-language", "in-reply-to", "alert-info",
    "call-info", "error-info", "warning", "accept-contact", "reject-contact",
    "p-asserted-identity", "p-preferred-identity", "history-info", "reason",
    "security-client", "security-server", "security-verify", "p-associated-uri",
})

_KEYS: dict[str, str] = {}  # header name as written -> canonical key (bounded cache)
_CACHE_MAX = 4096


def header_key(name: str) -> str:
    """The canonical lookup key of a header name: lower case, compact forms expanded."""
    key = _KEYS.get(name)
    if key is None:
        low = name.lower()
        key = COMPACT_FORMS.get(low, low)
        if len(_KEYS) < _CACHE_MAX:
            _KEYS[name] = key
    return key


class HeaderAccess:
    """Header lookup and editing shared by requests and responses."""

    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (the first list element for list headers)."""
        key = header_key(name)
        split = key in LIST_HEADERS
        keys = _KEYS
        for n, v in self.headers:
            if (keys.get(n) or header_key(n)) == key:
                if not split:
                    return v
                parts = split_commas(v)
                if parts:
                    return parts[0]
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, in order; list headers split on their commas."""
        key = header_key(name)
        keys = _KEYS
        values = [v for n, v in self.headers if (keys.get(n) or header_key(n)) == key]
        if key not in LIST_HEADERS:
            return values
        out: list[str] = []
        for v in values:
            out.extend(split_commas(v))
        return out

    def has(self, name: str) -> bool:
        """True when at least one line of this header is present (even empty)."""
        key = header_key(name)
        keys = _KEYS
        return any((keys.get(n) or header_key(n)) == key for n, _ in self.headers)

    def index(self) -> dict[str, list[str]]:
        """Header values by canonical key (lines as received, lists not split), in one pass."""
        keys = _KEYS
        out: dict[str, list[str]] = {}
        for n, v in self.headers:
            key = keys.get(n) or header_key(n)
            if key in out:
                out[key].append(v)
            else:
                out[key] = [v]
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every line of this header by one, kept where the first was."""
        _check_header(name, value)
        key = header_key(name)
        kept: list[tuple[str, str]] = []
        placed = False
        for pair in self.headers:
            if header_key(pair[0]) == key:
                if not placed:
                    kept.append((name, value))
                    placed = True
            else:
                kept.append(pair)
        if not placed:
            kept.append((name, value))
        self.headers[:] = kept

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a header line: last, or with `first=True` above the others of its name."""
        _check_header(name, value)
        if first:
            key = header_key(name)
            for i, (n, _) in enumerate(self.headers):
                if header_key(n) == key:
                    self.headers.insert(i, (name, value))
                    return
        self.headers.append((name, value))

    def remove(self, name: str) -> int:
        """Remove every line of this header; returns how many there were."""
        key = header_key(name)
        before = len(self.headers)
        self.headers[:] = [p for p in self.headers if header_key(p[0]) != key]
        return before - len(self.headers)

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Set the body and keep Content-Length (and Content-Type if given) in step."""
        self.body = body
        self.set("Content-Length", str(len(body)))
        if content_type is not None:
            self.set("Content-Type", content_type)

    # Parsed views of the headers every transaction needs. Each parses on use
    # and raises SipParseError when the header is missing or malformed.

    @property
    def call_id(self) -> str | None:
        return self.get("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(_required(self, "CSeq"))

    @property
    def top_via(self) -> Via:
        return Via.parse(_required(self, "Via"))

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.get_all("Via")]

    @property
    def from_addr(self) -> NameAddr:
        return NameAddr.parse(_required(self, "From"))

    @property
    def to_addr(self) -> NameAddr:
        return NameAddr.parse(_required(self, "To"))

    def _serialize(self, start_line: str) -> bytes:
        lines = [start_line]
        lines += [f"{n}: {v}" if v else f"{n}:" for n, v in self.headers]
        head = "\r\n".join(lines)
        # Only the joins may put CR and LF there: anything more would inject headers.
        breaks = len(lines) - 1
        if head.count("\n") != breaks or head.count("\r") != breaks:
            raise ValueError("CR or LF inside a start line or header value")
        return (head + "\r\n\r\n").encode("utf-8", "surrogateescape") + self.body


def _required(msg: HeaderAccess, name: str) -> str:
    value = msg.get(name)
    if value is None:
        raise SipParseError(400, f"Missing {name}")
    return value


def _check_header(name: str, value: str) -> None:
    if not is_token(name):
        raise ValueError(f"not a header name: {name!r}")
    if "\r" in value or "\n" in value:
        raise ValueError("CR or LF in a header value")


