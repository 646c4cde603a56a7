"""A SIP dialog as the answering side sees it (RFC 3261 section 12), and the
in-dialog requests we send on it (BYE, REFER, re-INVITE)."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from .errors import SipParseError
from .headers import NameAddr, Via
from .message import SipRequest
from .transaction import new_branch
from .transport import Source
from .uri import SipUri, format_host, parse_uri


@dataclass
class Dialog:
    """The state both ends share: ids, tags, sequence numbers, where to send."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str  # To of the INVITE, without its tag
    remote_uri: str  # From of the INVITE, without its tag
    remote_target: str  # the peer's Contact URI
    route_set: list[str]  # Record-Route values, in order (we are the UAS)
    source: Source  # where the INVITE came from (and the TCP connection, if any)
    contact: str  # our Contact header value
    via_host: str
    via_port: int
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(2 ** 20) + 1)
    remote_cseq: int = 0
    confirmed: bool = False  # the ACK of our 2xx arrived

    @property
    def key(self) -> tuple[str, str]:
        return (self.call_id, self.local_tag)

    def request(self, method: str, extra: list[tuple[str, str]] | None = None, body: bytes = b"",
                content_type: str | None = None) -> SipRequest:
        """A new in-dialog request from us to the peer."""
        self.local_cseq += 1
        transport = "TCP" if self.source.transport == "TCP" else "UDP"
        via = Via(transport, self.via_host, self.via_port, {"branch": new_branch(), "rport": None})
        headers = [("Via", via.serialize()), ("Max-Forwards", "70")]
        headers += [("Route", r) for r in self.route_set]
        headers += [
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", self.remote_uri + (f";tag={self.remote_tag}" if self.remote_tag else "")),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_cseq} {method}"),
            ("Contact", self.contact),
        ]
        headers += list(extra or [])
        req = SipRequest(method, self.remote_target, headers=headers)
        req.set_body(body, content_type)
        return req

    def destination(self) -> Source | tuple[str, int]:
        """Where in-dialog requests go: the peer's connection, the first route, or its Contact.

        Only an IP literal is used as it stands. We resolve no names: a DNS lookup
        would stall the event loop (every call on it), so a peer that names a host
        is reached where its INVITE came from, which is also what a peer behind
        NAT needs.
        """
        if self.source.conn is not None and not self.source.conn.is_closing():
            return self.source
        target = self.route_set[0] if self.route_set else f"<{self.remote_target}>"
        try:
            uri = NameAddr.parse(target).uri
            if isinstance(uri, SipUri):
                host = (uri.params.get("maddr") or uri.host).strip("[]")
                if _is_ip(host):
                    return (host, uri.port or 5060)
        except (SipParseError, ValueError):
            pass
        return self.source.addr


def without_tag(value: str) -> str:
    """A From/To value with its tag removed (kept as written otherwise)."""
    try:
        na = NameAddr.parse(value)
    except SipParseError:
        return value
    na.params.pop("tag", None)
    return na.serialize()


def contact_for(host: str, port: int, transport: str, user: str = "ivr") -> str:
    uri = f"sip:{user}@{format_host(host)}:{port}"
    if transport == "TCP":
        uri += ";transport=tcp"
    return f"<{uri}>"


def remote_target_of(req: SipRequest) -> str:
    """The Contact URI of a request (its From URI when there is no Contact)."""
    contact = req.get("Contact")
    try:
        if contact:
            return NameAddr.parse(contact.split(",")[0]).uri.serialize()
        return req.from_addr.uri.serialize()
    except SipParseError:
        return str(parse_uri(req.uri).serialize()) if req.uri else ""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
