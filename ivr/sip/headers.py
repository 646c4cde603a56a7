"""Parsed forms of the headers the SIP edge reads: name-addr, Via, CSeq.

Each is a dataclass with `parse(text)` (SipParseError on bad input) and
`serialize()` / `str()`. Values come unfolded from the message layer, so
LWS here is only spaces and tabs.

Header parameters keep their raw value text (a quoted-string keeps its
quotes), so what was received serializes back unchanged; names are
lower-cased because they compare case-insensitively (RFC 3261 7.3.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SipParseError
from .lex import WSP, is_token, match_quoted, quote
from .uri import GenericUri, SipUri, format_host, parse_port, parse_uri, split_hostport

__all__ = [
    "DEFAULT_PORTS", "MAGIC_COOKIE", "RELIABLE_TRANSPORTS", "CSeq", "GenericUri", "NameAddr",
    "SipParseError", "SipUri", "Via", "format_params", "parse_params", "parse_uri",
    "response_address",
]

# gen-value = token / host / quoted-string; host adds [ ] : for IPv6 references.
_GEN_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+")
_QUOTED_VALUE = re.compile(r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"')
_DISPLAY_TOKENS = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")
_WS = re.compile(r"[ \t]")
_WS_RUN = re.compile(r"[ \t]+")

MAGIC_COOKIE = "z9hG4bK"
RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})
DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "SCTP": 5060, "TLS": 5061, "TLS-SCTP": 5061,
                 "WS": 80, "WSS": 443}


def parse_params(text: str) -> dict[str, str | None]:
    """Header parameters: `*( SEMI token [ EQUAL gen-value ] )`.

    `text` is what follows the header's main value, e.g. " ; tag = 1a;lr".
    Returns {lower-cased name: raw value, or None without "="}. Empty and
    repeated parameters are refused (RFC 3261 7.3.1: a name appears once).
    """
    s = text.strip(WSP)
    if not s:
        return {}
    if s[0] != ";":
        raise SipParseError(400, "Bad parameters")
    if '"' not in s:
        # Fast path, no quoted-string: every ";" separates parameters.
        params: dict[str, str | None] = {}
        for part in s[1:].split(";"):
            name, eq, raw = part.partition("=")
            _add_param(params, name, raw if eq else None)
        return params
    return _parse_quoted_params(s)


def _add_param(params: dict[str, str | None], name: str, raw: str | None) -> None:
    name = name.strip(WSP)
    if not is_token(name):
        raise SipParseError(400, "Empty parameter" if not name else "Bad parameter name")
    value = None
    if raw is not None:
        value = raw.strip(WSP)
        if not (_GEN_VALUE.fullmatch(value) or _QUOTED_VALUE.fullmatch(value)):
            raise SipParseError(400, "Bad parameter value")
    key = name.lower()
    if key in params:
        raise SipParseError(400, "Duplicate parameter")
    params[key] = value


def _parse_quoted_params(s: str) -> dict[str, str | None]:
    """The general case: a quoted-string value may hold ";" (and "=")."""
    params: dict[str, str | None] = {}
    pos = 1
    n = len(s)
    while True:
        semi = s.find(";", pos)
        quote_at = s.find('"', pos)
        if quote_at >= 0 and (semi < 0 or quote_at < semi):
            eq = s.find("=", pos, quote_at)
            if eq < 0 or s[eq + 1 : quote_at].strip(WSP):
                raise SipParseError(400, "Bad parameter")
            _, end = match_quoted(s, quote_at)
            semi = s.find(";", end)
            if s[end : n if semi < 0 else semi].strip(WSP):
                raise SipParseError(400, "Bad parameter")
            _add_param(params, s[pos:eq], s[quote_at:end])
        else:
            name, eq_sign, raw = (s[pos:] if semi < 0 else s[pos:semi]).partition("=")
            _add_param(params, name, raw if eq_sign else None)
        if semi < 0:
            return params
        pos = semi + 1


def format_params(params: dict[str, str | None]) -> str:
    """";name=value;flag" from a parameter dict (values written as stored)."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass
class NameAddr:
    """`[display-name] <uri> *(;param)` or a bare addr-spec (From, To, Contact, Route ...).

    `display_name` is unquoted and unescaped (None when absent, "" for `""`);
    `params` are the header parameters (`tag`, `expires`, `q` ...), not the
    URI's. Serialization always quotes the display name and brackets the URI.
    """

    uri: SipUri | GenericUri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        s = text.strip(WSP)
        if not s:
            raise SipParseError(400, "Empty address")
        display: str | None = None
        if s[0] == '"':
            display, end = match_quoted(s, 0)
            lt = end
            while lt < len(s) and s[lt] in WSP:
                lt += 1
            if lt >= len(s) or s[lt] != "<":
                raise SipParseError(400, "Display name without <URI>")
        else:
            lt = s.find("<")
            if lt < 0:
                return cls._parse_addr_spec(s)
            if lt > 0:
                # Unquoted display-name: tokens separated by LWS (RFC 4475 baddn).
                display = s[:lt].strip(WSP)
                if _DISPLAY_TOKENS.fullmatch(display) is None:
                    raise SipParseError(400, "Bad display name")
        gt = s.find(">", lt)
        if gt < 0:
            raise SipParseError(400, "Missing >")
        uri_text = s[lt + 1 : gt]
        if not uri_text or _WS.search(uri_text):
            # RFC 4475 badaspec: no LWS inside the angle brackets.
            raise SipParseError(400, "Bad URI in <>")
        return cls(parse_uri(uri_text), display, parse_params(s[gt + 1 :]))

    @classmethod
    def _parse_addr_spec(cls, s: str) -> NameAddr:
        uri_text, semi, rest = s.partition(";")
        uri_text = uri_text.rstrip(WSP)
        if "?" in uri_text or "," in uri_text or _WS.search(uri_text):
            # RFC 3261 20.10: such a URI must be in <> (RFC 4475 regbadct).
            raise SipParseError(400, "URI must be in <>")
        return cls(parse_uri(uri_text), None, parse_params(semi + rest))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def serialize(self) -> str:
        name = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{name}<{self.uri}>{format_params(self.params)}"

    __str__ = serialize


@dataclass
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=...;rport;received=...`.

    `transport` is upper-cased; `params` keeps `rport` as None when it has no
    value yet (RFC 3581: the client asks, the server fills it in).
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        # sent-protocol = name SLASH version SLASH transport, with LWS allowed
        # around the slashes (RFC 4475 wsinv).
        pieces = text.split("/", 2)
        if len(pieces) != 3:
            raise SipParseError(400, "Bad Via")
        name, version = pieces[0].strip(WSP), pieces[1].strip(WSP)
        after = _WS_RUN.split(pieces[2].lstrip(WSP), 1)
        transport = after[0]
        rest = after[1] if len(after) == 2 else ""
        if not (is_token(name) and is_token(version) and is_token(transport)) or not rest:
            raise SipParseError(400, "Bad Via")
        sent_by, semi, param_text = rest.partition(";")
        sent_by = sent_by.rstrip(WSP)
        if ":" in sent_by and not sent_by.startswith("["):
            host_part, _, port_part = sent_by.partition(":")
            sent_by = f"{host_part.rstrip(WSP)}:{port_part.lstrip(WSP)}"
        if _WS.search(sent_by):
            raise SipParseError(400, "Bad Via sent-by")
        host, port = split_hostport(sent_by)
        params = parse_params(semi + param_text) if semi else {}
        _check_via_params(params)
        return cls(transport.upper(), host, port, params, f"{name.upper()}/{version}")

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def is_rfc3261_branch(self) -> bool:
        """True when the branch carries the magic cookie and an identifier after it.

        A bare "z9hG4bK" (RFC 4475 badbranch) is False: the transaction layer
        then falls back to RFC 2543 matching, as that RFC allows.
        """
        b = self.branch
        return b is not None and b.startswith(MAGIC_COOKIE) and len(b) > len(MAGIC_COOKIE)

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def has_rport(self) -> bool:
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        return None if value is None else int(value)

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def sent_by(self) -> str:
        host = format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    def stamped(self, source: tuple) -> Via:
        """This Via as a server records it (RFC 3261 18.2.1, RFC 3581 4).

        Adds `received` when the packet came from another address than
        sent-by names, and fills an empty `rport` with the source port (which
        also requires `received`).
        """
        src_host, src_port = source[0], source[1]
        params = dict(self.params)
        if self.has_rport and params["rport"] is None:
            params["rport"] = str(src_port)
            params["received"] = src_host
        elif self.host != src_host:
            params["received"] = src_host
        return Via(self.transport, self.host, self.port, params, self.protocol)

    def serialize(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"

    __str__ = serialize


def _check_via_params(params: dict[str, str | None]) -> None:
    """Values RFC 3261 and RFC 3581 constrain: ttl, rport, received, maddr, branch."""
    ttl = params.get("ttl")
    if "ttl" in params and not (ttl and len(ttl) <= 3 and ttl.isdigit() and int(ttl) <= 255):
        raise SipParseError(400, "Bad Via ttl")
    rport = params.get("rport")
    if rport is not None:
        parse_port(rport)
    received = params.get("received")
    if "received" in params and not received:
        raise SipParseError(400, "Bad Via received")
    if "branch" in params and not params["branch"]:
        raise SipParseError(400, "Bad Via branch")


def response_address(via: Via, source: tuple) -> tuple[str, int]:
    """Where a response to a request with this top Via goes (RFC 3261 18.2.2, RFC 3581).

    `source` is the (host, port) the request came from. Over a reliable
    transport the answer is that same connection, named by `source`. Over
    UDP: maddr if present (port from sent-by, default 5060); with rport, the
    source address and port (or the filled-in rport and received); otherwise
    the received address (the source, which differs from sent-by exactly
    when received would be added) and the sent-by port.
    """
    src_host, src_port = source[0], source[1]
    transport = via.transport
    default = DEFAULT_PORTS.get(transport, 5060)
    if transport in RELIABLE_TRANSPORTS:
        return src_host, src_port
    maddr = via.maddr
    if maddr:
        return maddr.strip("[]"), via.port or default
    received = via.received or src_host
    if via.has_rport:
        rport = via.params["rport"]
        return received, (int(rport) if rport else src_port)
    return received, via.port or default


@dataclass
class CSeq:
    """`CSeq: 1 INVITE`: a 32-bit sequence number and the request's method."""

    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2:
            raise SipParseError(400, "Bad CSeq")
        number, method = parts
        # RFC 3261 8.1.1.5: a 32-bit unsigned integer (RFC 4475 scalar02, scalarlg).
        # The length cap keeps int() cheap on a hostile run of digits.
        if not (len(number) <= 32 and number.isascii() and number.isdigit()):
            raise SipParseError(400, "Bad CSeq number")
        value = int(number)
        if value > 0xFFFFFFFF:
            raise SipParseError(400, "Bad CSeq number")
        if not is_token(method):
            raise SipParseError(400, "Bad CSeq method")
        return cls(value, method)

    def serialize(self) -> str:
        return f"{self.number} {self.method}"

    __str__ = serialize
