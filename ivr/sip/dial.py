"""Outgoing calls: the server side as the caller (UAC) of an INVITE, for callback workers.

`Dialer.dial()` opens an RTP session, sends an INVITE with our offer through an
`InviteClientTx` (retransmissions, Timer B, the ACK of a failure), lets it ring
for at most `ring_timeout` before a CANCEL, and on a 2xx sets up the dialog from
our side, ACKs the 2xx (and each retransmission of it), reads the SDP answer and
hands back a `SipCall` registered in `server.calls`, so the peer's BYE, INFO,
NOTIFY and re-INVITE reach it like those of a call we answered. The caller of
`dial()` owns the call and ends it with `hangup()`; the server releases the
call's RTP session when either side has hung up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..audio.dtmf_detect import InbandDtmfDetector
from ..audio.g711 import codec_by_name
from .call import SipCall
from .dialog import Dialog, contact_for, uac_dialog
from .errors import SipParseError
from .header_list import header_key
from .headers import NameAddr, Via
from .invite import ALLOW
from .lex import is_token
from .media import RtpSession
from .message import SipRequest, SipResponse
from .offer_answer import negotiated_from_answer, offer
from .sdp import NoCommonCodec, SdpError, SessionDescription
from .transaction import InviteClientTx, is_ip, new_branch, new_tag
from .transport import Source
from .uri import SipUri, parse_uri

if TYPE_CHECKING:
    from .ua import SipServer

log = logging.getLogger("ivr.sip.dial")

DTMF_PT = 101
RESOLVE_S = 5.0  # a name lookup that takes longer than this fails the dial
BUSY = frozenset({486, 600, 603})
NO_ANSWER = frozenset({408, 480, 487})
# Headers dial() writes itself: a caller's copy would contradict them.
OWN_HEADERS = frozenset({"via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "route",
                         "content-length", "content-type"})


@dataclass
class DialResult:
    """How a dial ended: the call when answered, else the final status (or ours) and why.

    `outcome` is what the counter `ivr_sip_dial_total{result=...}` records:
    answered, busy, no-answer or failed.
    """

    call: SipCall | None
    status: int
    reason: str
    outcome: str = "failed"

    @property
    def answered(self) -> bool:
        return self.call is not None


class _Acks:
    """The ACKs of every 2xx to one INVITE (RFC 3261 13.2.2.4). `confirm` makes the
    call's dialog out of the first; after that a retransmission gets its ACK again,
    and a 2xx that sets up another dialog (another fork, or any once the call is no
    longer wanted) is ACKed and hung up at once."""

    def __init__(self, server: SipServer, invite: SipRequest, dest: tuple[str, int], contact: str) -> None:
        self.server = server
        self.invite = invite
        self.dest = dest
        self.contact = contact
        self.sent: dict[str | None, tuple[bytes, Source | tuple[str, int]]] = {}  # To tag -> ACK, where

    def confirm(self, resp: SipResponse) -> Dialog:
        dialog = uac_dialog(self.invite, resp, self.dest, self.contact)
        # End to end: a new branch, sent to the remote target (or the first route).
        ack = dialog.request("ACK", cseq=self.invite.cseq.number).serialize()
        where = dialog.destination()
        self.sent[dialog.remote_tag] = (ack, where)
        self.server.transport.send(ack, where)
        return dialog

    def __call__(self, resp: SipResponse) -> None:
        try:
            tag = resp.to_addr.tag
        except SipParseError:
            return
        if tag in self.sent:
            ack, where = self.sent[tag]
            self.server.transport.send(ack, where)
            return
        dialog = self.confirm(resp)
        log.info("call %s: hanging up an answer we do not want (tag %s)", dialog.call_id, tag)
        self.server.spawn(_bye(self.server, dialog))


class Dialer:
    """The outgoing calls of a SipServer: places them and releases them when they end."""

    def __init__(self, server: SipServer) -> None:
        self.server = server
        self.placed: dict[str, SipCall] = {}  # by Call-ID, until hung up by either side

    async def dial(self, uri: str, *, caller_id: str | None = None, ring_timeout: float = 30.0,
                   headers: dict[str, str] | None = None, telephone_event: bool = True) -> DialResult:
        """Call `uri` (sip: over UDP); see SipServer.dial."""
        s = self.server
        target = _target(uri)
        extra = _extra_headers(headers or {})
        if s.transport.udp is None:
            raise RuntimeError("start the SIP server before dialling")
        if s.draining:
            return self._result(None, 503, "Draining", "failed")
        try:
            dest = await self._resolve(target)
        except (OSError, TimeoutError) as exc:
            return self._result(None, 503, f"Cannot resolve {target.host}: {exc}"[:120], "failed")
        host = self._local_host(dest)
        dtmf_pt = DTMF_PT if telephone_event else None
        rtp = RtpSession(s.clock, codec_by_name("PCMU"), ("", 0), dtmf_pt=dtmf_pt, on_dtmf=lambda d, via: None)
        rtp.sending = False  # nothing goes out before the answer, early media or not
        call: SipCall | None = None
        tx: InviteClientTx | None = None
        try:
            try:
                _, port = await rtp.open(s.settings.host if not _wildcard(s.settings.host) else host,
                                         s.settings.rtp_ports)
            except OSError as exc:
                return self._result(None, 503, f"No RTP port: {exc}"[:120], "failed")
            session_id = secrets.randbelow(2 ** 31)
            our_offer = offer(host, port, ("PCMU", "PCMA"), dtmf_pt, session_id=session_id)
            invite = _invite(target, host, s.transport.port, s.settings.user, caller_id, our_offer, extra)
            contact = invite.get("Contact") or ""
            acks = _Acks(s, invite, dest, contact)
            tx = InviteClientTx(s.tx, invite, dest)
            tx.start()
            final, cancelled, early = await self._final(tx, rtp, our_offer, ring_timeout)
            if final is None:
                if cancelled:
                    return self._result(None, 408, "No final answer after CANCEL", "no-answer")
                return self._result(None, 408, "No response (Timer B)", "failed")
            if final.status >= 300:
                return self._result(None, final.status, final.reason, _outcome(final.status))
            result = self._answered(tx, acks, final, early, rtp, our_offer, target)
            call = result.call
            return result
        except BaseException:
            if tx is not None and call is None and tx.state in ("calling", "proceeding"):
                # The dial was cancelled while ringing: leave nothing ringing or answered behind.
                tx.on_2xx = acks
                s.spawn(self._abandon(tx))
            raise
        finally:
            if call is None:
                rtp.close()

    async def _final(self, tx: InviteClientTx, rtp: RtpSession, our_offer: SessionDescription,
                     ring_timeout: float) -> tuple[SipResponse | None, bool, bytes]:
        """The final answer to our INVITE (None when there was none), whether we CANCELled it,
        and the last SDP of a provisional answer (early media)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ring_timeout
        cancelled = False
        early = b""
        while True:
            now = loop.time()
            if not cancelled and now >= deadline and tx.state == "proceeding":
                # A CANCEL only after a provisional answer (RFC 3261 9.1); the 487 should follow it.
                cancelled = True
                self.server.spawn(self._cancel(tx))
                deadline = now + 64 * self.server.tx.t1
            # Before any answer, past the deadline, Timer B bounds the wait instead.
            left = None if not cancelled and now >= deadline and tx.state == "calling" else deadline - now
            try:
                resp = (tx.responses.get_nowait() if not tx.responses.empty()
                        else await asyncio.wait_for(tx.responses.get(), left))
            except TimeoutError:
                if cancelled:
                    tx.terminate()
                    return None, True, early
                continue
            if resp is None:
                return None, cancelled, early
            if resp.status >= 200:
                return resp, cancelled, early
            if _is_sdp(resp):
                early = resp.body
                with contextlib.suppress(SdpError, NoCommonCodec, KeyError, ValueError):
                    neg = negotiated_from_answer(our_offer, resp.body.decode("utf-8", "replace"))
                    rtp.set_remote(neg.remote_addr, codec_by_name(neg.codec), neg.dtmf_payload_type)

    def _answered(self, tx: InviteClientTx, acks: _Acks, final: SipResponse, early: bytes, rtp: RtpSession,
                  our_offer: SessionDescription, target: SipUri) -> DialResult:
        """The 2xx: dialog, ACK, SDP answer, the SipCall. No await in here, so no retransmitted
        2xx can slip between the first one and the handler that ACKs the rest."""
        s = self.server
        dialog = acks.confirm(final)
        tx.on_2xx = acks
        while not tx.responses.empty():  # 2xx retransmissions queued before we got here
            resp = tx.responses.get_nowait()
            if resp is not None and 200 <= resp.status < 300:
                acks(resp)
        body = final.body if _is_sdp(final) else early
        try:
            neg = negotiated_from_answer(our_offer, body.decode("utf-8", "replace"))
            codec = codec_by_name(neg.codec)
        except (SdpError, NoCommonCodec, KeyError, ValueError) as exc:
            s.note_error(f"call {dialog.call_id}: unusable SDP answer: {exc}")
            s.spawn(_bye(s, dialog))
            return self._result(None, 488, f"Unusable SDP answer: {exc}"[:120], "failed")
        rtp.set_remote(neg.remote_addr, codec, neg.dtmf_payload_type)
        rtp.sending = neg.sends
        if s.settings.inband_dtmf or neg.dtmf_payload_type is None:
            rtp.inband = InbandDtmfDetector()
        caller = _user(NameAddr.parse(tx.request.get("From") or "").uri)
        call = SipCall(s, dialog, rtp, s.prompts, caller=caller, dialled=target.user or "")
        call.sdp_origin = [our_offer.origin.session_id, 0]
        rtp.on_dtmf = call.dtmf
        s.calls[dialog.call_id] = call
        self.placed[dialog.call_id] = call
        return self._result(call, final.status, final.reason, "answered")

    async def _cancel(self, tx: InviteClientTx) -> None:
        """CANCEL, as a transaction of its own; the INVITE's 487 is what counts."""
        if tx.cancel_sent:
            return
        tx.cancel_sent = True
        try:
            resp = await self.server.tx.request(tx.cancel_request(), tx.dest)
            log.debug("CANCEL of %s: %s %s", tx.request.call_id, resp.status, resp.reason)
        except TimeoutError:
            log.info("CANCEL of %s: no answer", tx.request.call_id)

    async def _abandon(self, tx: InviteClientTx) -> None:
        """End an INVITE nobody waits for any more: CANCEL it as soon as that is allowed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2 * 64 * self.server.tx.t1):
                while tx.state == "calling":
                    if await tx.responses.get() is None:
                        return
                if tx.state == "proceeding":
                    await self._cancel(tx)

    def release(self, call: SipCall) -> None:
        """Forget a call we placed once it has ended, and close its RTP session."""
        if self.placed.get(call.call_id) is not call:
            return
        del self.placed[call.call_id]
        if self.server.calls.get(call.call_id) is call:
            del self.server.calls[call.call_id]
        self.server.count("ivr_rtp_foreign_packets_total", call.rtp.ignored)
        call.rtp.close()

    def _result(self, call: SipCall | None, status: int, reason: str, outcome: str) -> DialResult:
        self.server.count("ivr_sip_dial_total", result=outcome)
        return DialResult(call, status, reason, outcome)

    async def _resolve(self, target: SipUri) -> tuple[str, int]:
        """Where the INVITE goes: maddr or host, by A/AAAA lookup off the loop (no SRV/NAPTR)."""
        host = (target.params.get("maddr") or target.host).strip("[]")
        port = target.port or 5060
        if is_ip(host):
            return host, port
        family = socket.AF_INET6 if ":" in self.server.transport.host else socket.AF_INET
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM),
                                       RESOLVE_S)
        if not infos:
            raise OSError("no address")
        addr = infos[0][4]
        return addr[0], addr[1]

    def _local_host(self, dest: tuple[str, int]) -> str:
        """The address we put in Via, Contact and SDP."""
        settings = self.server.settings
        if settings.public_host:
            return settings.public_host
        if not _wildcard(settings.host):
            return settings.host
        # Listening everywhere: the address the kernel would send from (a UDP connect sends nothing).
        with socket.socket(socket.AF_INET6 if ":" in dest[0] else socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(dest)
            return sock.getsockname()[0]


async def _bye(server: SipServer, dialog: Dialog) -> None:
    with contextlib.suppress(TimeoutError):
        await server.tx.request(dialog.request("BYE"), dialog.destination())


def _invite(target: SipUri, host: str, port: int, user: str, caller_id: str | None,
            our_offer: SessionDescription, extra: list[tuple[str, str]]) -> SipRequest:
    """A new INVITE with our offer: fresh Call-ID, From tag, CSeq and branch."""
    ruri = SipUri(target.scheme, target.user, None, target.host, target.port, dict(target.params)).serialize()
    local = _from_address(caller_id, host, user)
    local.params["tag"] = new_tag()
    via = Via("UDP", host, port, {"branch": new_branch(), "rport": None})
    headers = [
        ("Via", via.serialize()), ("Max-Forwards", "70"), ("From", local.serialize()), ("To", f"<{ruri}>"),
        ("Call-ID", f"{secrets.token_hex(12)}@{_bare(host)}"), ("CSeq", f"{secrets.randbelow(2 ** 20) + 1} INVITE"),
        ("Contact", contact_for(host, port, "UDP", user)),
        ("Allow", ALLOW),
        *extra,
    ]
    req = SipRequest("INVITE", ruri, headers=headers)
    req.set_body(our_offer.serialize().encode(), "application/sdp")
    return req


def _from_address(caller_id: str | None, host: str, user: str) -> NameAddr:
    """Our From: the caller id as a SIP/tel URI or name-addr, or a number/user at our host."""
    if caller_id is None or not caller_id.strip():
        return NameAddr(SipUri("sip", user, None, host))
    text = caller_id.strip()
    try:
        if "<" in text or text.lower().startswith(("sip:", "sips:", "tel:")):
            na = NameAddr.parse(text)
            na.params.pop("tag", None)
            if not isinstance(na.uri, SipUri):
                raise ValueError(f"caller_id must be a sip: or tel: URI, got {caller_id!r}")
            return na
        return NameAddr(SipUri("sip", text, None, host))
    except SipParseError as exc:
        raise ValueError(f"bad caller_id {caller_id!r}: {exc}") from None


def _target(uri: str) -> SipUri:
    """The URI to call, checked: sip: with a host, over UDP."""
    try:
        target = parse_uri(uri.strip())
    except SipParseError as exc:
        raise ValueError(f"bad SIP URI {uri!r}: {exc}") from None
    if not isinstance(target, SipUri) or target.scheme != "sip" or not target.host:
        raise ValueError(f"can only dial sip: URIs with a host, got {uri!r}")
    if (target.params.get("transport") or "udp").lower() != "udp":
        raise ValueError(f"outgoing calls go over UDP only, got {uri!r}")
    return target


def _extra_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    out = []
    for name, value in headers.items():
        if not is_token(name) or "\r" in value or "\n" in value:
            raise ValueError(f"bad header {name!r}")
        if header_key(name) in OWN_HEADERS:
            raise ValueError(f"{name} is written by dial() itself")
        out.append((name, value))
    return out


def _outcome(status: int) -> str:
    if 200 <= status < 300:
        return "answered"
    if status in BUSY:
        return "busy"
    return "no-answer" if status in NO_ANSWER else "failed"


def _is_sdp(resp: SipResponse) -> bool:
    ctype = (resp.get("Content-Type") or "").split(";")[0].strip().lower()
    return bool(resp.body) and ctype == "application/sdp"


def _user(uri) -> str:
    return getattr(uri, "user", None) or ""


def _wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _bare(host: str) -> str:
    return host.strip("[]")
