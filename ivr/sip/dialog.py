"""A SIP dialog (RFC 3261 section 12) as we see it, whether we answered the call
or placed it, and the in-dialog requests we send on it (BYE, REFER, re-INVITE).

Everything is kept from our side: `local_*` is us, `remote_*` the peer, and the
route set is in the order our requests carry it. So one `request()` serves both
kinds of call, and a request from the peer always names our `local_tag` in its To.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from .errors import SipParseError
from .headers import NameAddr, Via
from .message import SipRequest, SipResponse
from .transaction import new_branch
from .transport import Source
from .uri import SipUri, format_host, parse_uri


@dataclass
class Dialog:
    """The state both ends share: ids, tags, sequence numbers, where to send."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str  # our address without its tag: the To of an INVITE we answered, the From of one we sent
    remote_uri: str  # the peer's, likewise: the From of its INVITE, the To of ours
    remote_target: str  # the peer's Contact URI
    route_set: list[str]  # Route values in the order we send them (Record-Route reversed when we called)
    source: Source  # where the INVITE came from or went to (and the TCP connection, if any)
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
                content_type: str | None = None, cseq: int | None = None) -> SipRequest:
        """A new in-dialog request from us to the peer; `cseq` reuses a number
        (the ACK of a 2xx carries its INVITE's) instead of taking the next one."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        transport = "TCP" if self.source.transport == "TCP" else "UDP"
        via = Via(transport, self.via_host, self.via_port, {"branch": new_branch(), "rport": None})
        headers = [("Via", via.serialize()), ("Max-Forwards", "70")]
        headers += [("Route", r) for r in self.route_set]
        headers += [
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", self.remote_uri + (f";tag={self.remote_tag}" if self.remote_tag else "")),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
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


def uac_dialog(invite: SipRequest, resp: SipResponse, dest: tuple[str, int], contact: str) -> Dialog:
    """The dialog a 2xx to an INVITE we sent sets up (RFC 3261 12.1.2): the peer's tag
    from the 2xx's To, its Contact as the remote target, its Record-Route reversed."""
    via = invite.top_via
    return Dialog(
        call_id=invite.call_id or "", local_tag=invite.from_addr.tag or "", remote_tag=resp.to_addr.tag,
        local_uri=without_tag(invite.get("From") or ""), remote_uri=without_tag(invite.get("To") or ""),
        remote_target=_contact_uri(resp) or invite.uri, route_set=resp.get_all("Record-Route")[::-1],
        source=Source("UDP", dest), contact=contact, via_host=via.host, via_port=via.port or 5060,
        # -1: no request from the peer yet, so any CSeq of its first one (even 0) is in order.
        local_cseq=invite.cseq.number, remote_cseq=-1, confirmed=True)


def _contact_uri(msg: SipRequest | SipResponse) -> str | None:
    try:
        contact = msg.get("Contact")
        return NameAddr.parse(contact).uri.serialize() if contact else None
    except SipParseError:
        return None


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
