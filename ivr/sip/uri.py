"""URIs as SIP carries them: sip:, sips: and tel: parsed, anything else kept opaque.

`SipUri` holds the components unescaped (`%40` reads as "@", `%00` as NUL)
and escapes again on serialization, so `SipUri.parse(str(u)) == u`. Other
schemes (RFC 4475 `unkscm`, `novelsc`, `unksm2`) must still parse: they
become a `GenericUri`, and the application answers 416 if it cares.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from .errors import SipParseError

_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# user = 1*(unreserved / escaped / user-unreserved), user-unreserved = & = + $ , ; ? /
_USER_SAFE = _UNRESERVED + r"&=+$,;?/"
# password = *(unreserved / escaped / & = + $ ,)
_PASSWORD_SAFE = _UNRESERVED + r"&=+$,"
# paramchar = param-unreserved / unreserved / escaped, param-unreserved = [ ] / : & + $
_PARAM_SAFE = _UNRESERVED + r"\[\]/:&+$"
# hname / hvalue = *(hnv-unreserved / unreserved / escaped), hnv-unreserved = [ ] / ? : + $
_HEADER_SAFE = _UNRESERVED + r"\[\]/?:+$"

_BAD_USER = re.compile(f"[^{_USER_SAFE}%]").search
_BAD_PASSWORD = re.compile(f"[^{_PASSWORD_SAFE}%]").search
_BAD_PARAM = re.compile(f"[^{_PARAM_SAFE}%]").search
_BAD_HEADER = re.compile(f"[^{_HEADER_SAFE}%]").search
_ESCAPE_USER = re.compile(f"[^{_USER_SAFE}]")
_ESCAPE_PASSWORD = re.compile(f"[^{_PASSWORD_SAFE}]")
_ESCAPE_PARAM = re.compile(f"[^{_PARAM_SAFE}]")
_ESCAPE_HEADER = re.compile(f"[^{_HEADER_SAFE}]")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})").search

_BAD_HOSTNAME = re.compile(r"[^A-Za-z0-9\-.]").search
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# Everything RFC 3986 allows in a URI, plus "%" for escapes.
_BAD_URI_CHAR = re.compile(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]").search
# telephone-subscriber: digits, visual separators, * # and hex for local numbers.
_BAD_TEL = re.compile(r"[^0-9A-Fa-f*#+\-.()]").search

SIP_SCHEMES = frozenset({"sip", "sips", "tel"})


def unescape(text: str) -> str:
    """Replace %HH escapes; refuse a "%" that does not start one."""
    if "%" not in text:
        return text
    if _BAD_PERCENT(text):
        raise SipParseError(400, "Bad escape in URI")
    # Bytes that are not UTF-8 survive as surrogates and escape back unchanged.
    return unquote_to_bytes(text).decode("utf-8", "surrogateescape")


def _escaper(pattern: re.Pattern[str]):
    def escape(text: str) -> str:
        if pattern.search(text) is None:
            return text
        return pattern.sub(
            lambda m: "".join(f"%{b:02X}" for b in m.group(0).encode("utf-8", "surrogateescape")),
            text,
        )

    return escape


escape_user = _escaper(_ESCAPE_USER)
escape_password = _escaper(_ESCAPE_PASSWORD)
escape_param = _escaper(_ESCAPE_PARAM)
escape_header = _escaper(_ESCAPE_HEADER)


def parse_host(text: str) -> str:
    """Validate a host (hostname, IPv4 or [IPv6]); returns it without brackets."""
    if not text or len(text) > 255:
        raise SipParseError(400, "Bad host")
    if text[0] == "[":
        if text[-1] != "]":
            raise SipParseError(400, "Bad IPv6 reference")
        inner = text[1:-1]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise SipParseError(400, "Bad IPv6 reference") from None
        return inner
    if _BAD_HOSTNAME(text) or text[0] in ".-" or ".." in text:
        raise SipParseError(400, "Bad host")
    return text


def parse_port(text: str) -> int:
    """A port: 1*DIGIT, at most 65535."""
    if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()):
        raise SipParseError(400, "Bad port")
    port = int(text)
    if port > 65535:
        raise SipParseError(400, "Bad port")
    return port


def split_hostport(text: str) -> tuple[str, int | None]:
    """"host", "host:port", "[v6]" or "[v6]:port" -> (host without brackets, port)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise SipParseError(400, "Bad IPv6 reference")
        host, rest = text[: close + 1], text[close + 1 :]
        if not rest:
            return parse_host(host), None
        if rest[0] != ":":
            raise SipParseError(400, "Bad host")
        return parse_host(host), parse_port(rest[1:])
    host, colon, port = text.partition(":")
    return parse_host(host), (parse_port(port) if colon else None)


def format_host(host: str) -> str:
    """The host as written in a URI or Via: IPv6 addresses get their brackets back."""
    return f"[{host}]" if ":" in host else host


def _parse_uri_params(text: str) -> dict[str, str | None]:
    """';'-separated uri-parameters (text starts after the first ';')."""
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not name or _BAD_PARAM(name) or (eq and (not value or _BAD_PARAM(value))):
            raise SipParseError(400, "Bad URI parameter")
        key = unescape(name).lower()
        if key in params:
            raise SipParseError(400, "Duplicate URI parameter")
        params[key] = unescape(value) if eq else None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(
        f";{escape_param(k)}" if v is None else f";{escape_param(k)}={escape_param(v)}"
        for k, v in params.items()
    )


@dataclass
class SipUri:
    """A sip:, sips: or tel: URI (RFC 3261 19.1, RFC 3966), components unescaped.

    For tel: the number is in `user` and `host` is empty. `params` are the
    uri-parameters (names lower-cased, as they compare case-insensitively;
    None for a parameter without value, like `lr`), `headers` the ?h=v part.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a sip:, sips: or tel: URI; SipParseError if it is malformed."""
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or not rest:
            raise SipParseError(400, "Bad URI")
        if scheme == "tel":
            return cls._parse_tel(rest)
        if scheme not in ("sip", "sips"):
            raise SipParseError(400, "Not a SIP URI")
        user = password = None
        # "@" can appear nowhere but after the userinfo (escaped everywhere else),
        # while "?" and ";" may appear inside the user part: find "@" first.
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user, colon, pw = userinfo.partition(":")
            if not user or _BAD_USER(user) or (colon and _BAD_PASSWORD(pw)):
                raise SipParseError(400, "Bad URI user part")
            user = unescape(user)
            password = unescape(pw) if colon else None
        headers: dict[str, str] = {}
        hostpart, q, header_text = rest.partition("?")
        if q:
            for pair in header_text.split("&"):
                name, eq, value = pair.partition("=")
                if not name or not eq or _BAD_HEADER(name) or _BAD_HEADER(value):
                    raise SipParseError(400, "Bad URI header")
                headers[unescape(name)] = unescape(value)
        hostport, semi, param_text = hostpart.partition(";")
        host, port = split_hostport(hostport)
        params = _parse_uri_params(param_text) if semi else {}
        return cls(scheme, user, password, host, port, params, headers)

    @classmethod
    def _parse_tel(cls, rest: str) -> SipUri:
        number, semi, param_text = rest.partition(";")
        if not number or _BAD_TEL(number):
            raise SipParseError(400, "Bad tel URI")
        params = _parse_uri_params(param_text) if semi else {}
        return cls("tel", number, None, "", None, params, {})

    @property
    def hostport(self) -> str:
        """host[:port] as written in a URI."""
        host = format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    def param(self, name: str, default: str | None = None) -> str | None:
        """A uri-parameter's value by case-insensitive name (None when valueless)."""
        return self.params.get(name.lower(), default)

    def serialize(self) -> str:
        """The URI text, escaping whatever each component cannot carry raw."""
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{_format_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(escape_user(self.user))
            if self.password is not None:
                out += [":", escape_password(self.password)]
            out.append("@")
        out.append(self.hostport)
        out.append(_format_params(self.params))
        if self.headers:
            out.append("?")
            out.append("&".join(f"{escape_header(k)}={escape_header(v)}" for k, v in self.headers.items()))
        return "".join(out)

    __str__ = serialize


@dataclass
class GenericUri:
    """A URI of a scheme SIP does not interpret (http:, isbn:, urn: ...), kept as text."""

    scheme: str
    opaque: str

    @classmethod
    def parse(cls, text: str) -> GenericUri:
        scheme, colon, rest = text.partition(":")
        if not colon or not rest or _SCHEME.fullmatch(scheme) is None or _BAD_URI_CHAR(rest):
            raise SipParseError(400, "Bad URI")
        if _BAD_PERCENT(rest):
            raise SipParseError(400, "Bad escape in URI")
        return cls(scheme.lower(), rest)

    def serialize(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    __str__ = serialize


def parse_uri(text: str) -> SipUri | GenericUri:
    """A SipUri for sip:, sips: and tel:, a GenericUri for any other scheme."""
    scheme = text.partition(":")[0].lower()
    if scheme in SIP_SCHEMES:
        return SipUri.parse(text)
    return GenericUri.parse(text)
