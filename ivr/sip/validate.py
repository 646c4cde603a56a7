"""Checks a message must pass before a transaction sees it (RFC 3261 8.2, 8.1.3.3).

`parse` reads framing and the start line only, so it stays fast and a proxy
could forward what it does not understand. These functions parse the
headers every transaction and dialog relies on, and raise SipParseError(400)
with a reason fit for the 400's reason phrase ("Missing Call-ID", "CSeq
method mismatch", "Bad To: Unterminated quoted string" ...). The error's
`message` is the request, so `make_response` can answer it.
"""

from __future__ import annotations

from .errors import SipParseError
from .headers import CSeq, NameAddr, Via
from .lex import is_word, split_commas
from .message import SipRequest, SipResponse
from .uri import SipUri

_REQUIRED = (("to", "To"), ("from", "From"), ("call-id", "Call-ID"), ("cseq", "CSeq"),
             ("via", "Via"))
_SINGLE = (("to", "To"), ("from", "From"), ("call-id", "Call-ID"), ("cseq", "CSeq"),
           ("max-forwards", "Max-Forwards"), ("content-type", "Content-Type"))


def validate_request(req: SipRequest) -> None:
    """Raise SipParseError(400) unless `req` has sound To, From, Call-ID, CSeq and Via.

    Also checks: one of each single-valued header (RFC 4475 multi01), CSeq's
    method equals the request's (mismatch01/02), every Via and Contact parses
    (badinv01, regbadct), Max-Forwards is 0-255 when present, and the
    Request-URI carries no ?headers (escruri; RFC 3261 19.1.1 forbids them).
    An empty header such as `Supported:` is fine.
    """
    try:
        index = req.index()
        _check_common(index)
        cseq = CSeq.parse(index["cseq"][0])
        if cseq.method != req.method:
            raise SipParseError(400, "CSeq method mismatch")
        max_forwards = _first(index, "max-forwards")
        # 1*DIGIT, 0-255; leading zeros are fine (RFC 4475 wsinv has 0068).
        if max_forwards is not None and not (
            0 < len(max_forwards) <= 16 and max_forwards.isascii() and max_forwards.isdigit()
            and int(max_forwards) <= 255
        ):
            raise SipParseError(400, "Bad Max-Forwards")
        _check_contacts(req, index)
        ruri = req.parsed_uri
        if isinstance(ruri, SipUri) and ruri.headers:
            raise SipParseError(400, "Headers in Request-URI")
    except SipParseError as exc:
        raise SipParseError(exc.status, exc.reason, req) from None


def validate_response(resp: SipResponse) -> None:
    """Raise SipParseError unless `resp` has sound To, From, Call-ID, CSeq and Via.

    A response failing this is to be dropped (RFC 4475 scalarlg, bigcode).
    """
    try:
        index = resp.index()
        _check_common(index)
        CSeq.parse(index["cseq"][0])
    except SipParseError as exc:
        raise SipParseError(exc.status, exc.reason, resp) from None


def _first(index: dict[str, list[str]], key: str) -> str | None:
    values = index.get(key)
    return values[0] if values else None


def _check_common(index: dict[str, list[str]]) -> None:
    missing = [label for key, label in _REQUIRED if key not in index]
    if missing:
        raise SipParseError(400, "Missing " + ", ".join(missing))
    for key, label in _SINGLE:
        if len(index.get(key, ())) > 1:
            raise SipParseError(400, f"Multiple {label}")
    for key, label in (("from", "From"), ("to", "To")):
        try:
            NameAddr.parse(index[key][0])
        except SipParseError as exc:
            raise SipParseError(400, f"Bad {label}: {exc.reason}") from None
    word, at, host = index["call-id"][0].partition("@")
    if not is_word(word) or (at and not is_word(host)):
        raise SipParseError(400, "Bad Call-ID")
    vias = [v for line in index["via"] for v in split_commas(line)]
    if not vias:
        raise SipParseError(400, "Missing Via")
    for value in vias:
        try:
            Via.parse(value)
        except SipParseError as exc:
            raise SipParseError(400, f"Bad Via: {exc.reason}") from None


def _check_contacts(req: SipRequest, index: dict[str, list[str]]) -> None:
    contacts = [v for line in index.get("contact", ()) for v in split_commas(line)]
    if contacts == ["*"] and req.method == "REGISTER":
        return  # "Contact: *" removes all bindings (RFC 3261 10.2.2)
    for value in contacts:
        try:
            NameAddr.parse(value)
        except SipParseError as exc:
            raise SipParseError(400, f"Bad Contact: {exc.reason}") from None
