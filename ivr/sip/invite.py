"""INVITE handling of the server side: admission, offer/answer, ringing, the 2xx
until its ACK, CANCEL, and re-INVITEs (hold, unhold, codec change).

Kept apart from ua.py because an INVITE is the only request with a life of its
own: it may ring for a while (and be cancelled meanwhile), its 2xx is repeated
by the user agent rather than the transaction (RFC 3261 13.3.1.4), and it opens
the RTP session the call runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..audio.g711 import codec_by_name
from .call import SipCall
from .dialog import Dialog, contact_for, remote_target_of, without_tag
from .errors import SipParseError
from .headers import NameAddr
from .media import RtpSession
from .message import SipRequest, make_response
from .offer_answer import answer, offer
from .sdp import NoCommonCodec, SdpError, SessionDescription
from .transaction import T1, T2, ServerTx, new_tag, reply_address
from .transport import Source

if TYPE_CHECKING:
    from .ua import SipServer

log = logging.getLogger("ivr.sip")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY, REFER"


@dataclass
class Unanswered:
    """A new INVITE we have not yet answered with a final response (it may be cancelled)."""

    tx: ServerTx
    request: SipRequest
    tag: str  # our To tag, the same on the 180, the 200 and a 487
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class Invites:
    """The INVITE, ACK and CANCEL handlers of a SipServer."""

    def __init__(self, server: SipServer) -> None:
        self.server = server
        self.unanswered: dict[str, Unanswered] = {}  # by Call-ID
        self.awaiting_ack: dict[str, tuple[int, asyncio.Event]] = {}  # Call-ID -> (CSeq of our 2xx, ACKed)

    # ---- INVITE ------------------------------------------------------------------------
    def on_invite(self, req: SipRequest, source: Source) -> None:
        s = self.server
        tx = s.tx.begin(req, source)
        call_id = req.call_id or ""
        if req.to_addr.tag is not None:
            call = s.in_dialog(req, source, tx)
            if call is not None:
                self._reinvite(call, req, tx)
            return
        if call_id in s.calls or call_id in self.unanswered:
            # A new branch of a call we already have (a fork looping back): refuse it.
            s.tx.respond(tx, make_response(req, 482, to_tag=new_tag()))
            return
        s.tx.respond(tx, make_response(req, 100))
        if s.draining:
            s.tx.respond(tx, make_response(req, 503, "Draining", to_tag=new_tag(),
                                           extra_headers=[("Retry-After", "30")]))
            return
        # The place is taken now, before any await: a burst of INVITEs read in one
        # go must not all see the same count and overshoot the capacity together.
        decision = s.admission.admit()
        if decision is None:
            s.tx.respond(tx, make_response(req, 503, "Over Capacity", to_tag=new_tag(),
                                           extra_headers=[("Retry-After", str(s.admission.retry_after))]))
            return
        pending = Unanswered(tx, req, new_tag())
        self.unanswered[call_id] = pending
        s.spawn(self._answer(pending, source, overflow=decision == "overflow"))

    async def _answer(self, pending: Unanswered, source: Source, overflow: bool) -> None:
        s = self.server
        req, tx = pending.request, pending.tx
        call_id = req.call_id or ""
        rtp: RtpSession | None = None
        call: SipCall | None = None
        try:
            host = s.local_host(req)
            try:
                offered = SessionDescription.parse(req.body.decode("utf-8", "replace")) if req.body else None
                if offered is None:
                    s.tx.respond(tx, make_response(req, 488, "SDP Offer Required", to_tag=pending.tag))
                    return
                session_id = secrets.randbelow(2 ** 31)
                _, neg = answer(offered, host, 9, session_id=session_id)  # negotiate before binding a port
            except NoCommonCodec:
                s.tx.respond(tx, make_response(req, 488, to_tag=pending.tag,
                                               extra_headers=[("Warning", '304 ivr "PCMU, PCMA only"')]))
                return
            except SdpError as exc:
                s.note_error(f"call {call_id}: bad SDP: {exc}")
                s.tx.respond(tx, make_response(req, 400, _reason(f"Bad SDP: {exc}"), to_tag=pending.tag))
                return
            rtp = RtpSession(s.clock, codec_by_name(neg.codec), neg.remote_addr, dtmf_pt=neg.dtmf_payload_type,
                             on_dtmf=lambda d, via: None,
                             inband=s.settings.inband_dtmf or neg.dtmf_payload_type is None)
            bind = s.settings.host if s.settings.host not in ("0.0.0.0", "::") else host
            _, port = await rtp.open(bind, s.settings.rtp_ports)
            sdp, neg = answer(offered, host, port, session_id=session_id)
            rtp.sending = neg.sends
            dialog = Dialog(
                call_id=call_id, local_tag=pending.tag, remote_tag=req.from_addr.tag,
                local_uri=without_tag(req.get("To") or ""), remote_uri=without_tag(req.get("From") or ""),
                remote_target=remote_target_of(req), route_set=req.get_all("Record-Route"), source=source,
                contact=contact_for(host, s.transport.port, source.transport, s.settings.user),
                via_host=host, via_port=s.transport.port, remote_cseq=req.cseq.number)
            call = SipCall(s, dialog, rtp, s.prompts, caller=_user_of(req.get("From")), dialled=_dialled(req))
            call.sdp_origin = [session_id, 0]
            rtp.on_dtmf = call.dtmf
            call.reply_to = reply_address(req, source)
            s.calls[call_id] = call
            if pending.cancelled.is_set():
                return
            if s.settings.ring_s > 0:
                s.tx.respond(tx, make_response(req, 180, to_tag=pending.tag,
                                               extra_headers=[("Contact", dialog.contact)]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pending.cancelled.wait(), s.settings.ring_s)
            if pending.cancelled.is_set():
                return  # the CANCEL handler sent the 487
            ok = make_response(req, 200, to_tag=pending.tag,
                               extra_headers=[("Contact", dialog.contact), ("Allow", ALLOW)])
            ok.set_body(sdp.serialize().encode(), "application/sdp")
            self.unanswered.pop(call_id, None)
            s.tx.respond(tx, ok)
            self._expect_ack(call, ok.serialize(), req.cseq.number)
            await s.on_call(call, overflow)
        except Exception:
            log.exception("call %s failed", call_id)
            s.errors += 1
            if tx.final == 0:  # never leave a caller without an answer
                s.tx.respond(tx, make_response(req, 500, "Server Internal Error", to_tag=pending.tag))
        finally:
            self.unanswered.pop(call_id, None)
            self.awaiting_ack.pop(call_id, None)
            if s.calls.get(call_id) is call:
                s.calls.pop(call_id, None)
            if rtp is not None:
                s.count("ivr_rtp_foreign_packets_total", rtp.ignored)
                rtp.close()
            s.admission.release()

    def _expect_ack(self, call: SipCall, data: bytes, cseq: int) -> None:
        """Wait for the ACK of the 2xx we just sent, repeating the 2xx meanwhile."""
        acked = asyncio.Event()
        previous = self.awaiting_ack.get(call.call_id)
        if previous is not None:
            previous[1].set()  # a new offer from the peer proves it had our earlier 2xx
        self.awaiting_ack[call.call_id] = (cseq, acked)
        self.server.spawn(self._repeat_2xx(call, data, acked))

    async def _repeat_2xx(self, call: SipCall, data: bytes, acked: asyncio.Event) -> None:
        """Send our 2xx again at T1, 2*T1 ... T2 until its ACK; give up (and hang up) after 64*T1."""
        s = self.server
        interval, waited = T1, 0.0
        while not acked.is_set() and waited < 64 * T1 and not call.ended:
            try:
                await asyncio.wait_for(acked.wait(), interval)
                return
            except TimeoutError:
                waited += interval
                if call.dialog.source.transport == "UDP" and not acked.is_set():
                    s.transport.send(data, call.reply_to)
                interval = min(interval * 2, T2)
        if not acked.is_set() and not call.ended:
            log.warning("call %s: no ACK for our 200 OK; hanging up", call.call_id)
            call.remote_hangup("no-ack")
            await s.bye(call)

    # ---- re-INVITE ------------------------------------------------------------------------
    def _reinvite(self, call: SipCall, req: SipRequest, tx: ServerTx) -> None:
        """A new offer on a running call: hold (sendonly/inactive), unhold, a codec or address change."""
        s = self.server
        session_id, version = call.sdp_origin
        host, port = call.dialog.via_host, call.rtp.local[1]
        try:
            if req.body:
                offered = SessionDescription.parse(req.body.decode("utf-8", "replace"))
                sdp, neg = answer(offered, host, port, session_id=session_id, session_version=version + 1)
                call.rtp.set_remote(neg.remote_addr, codec_by_name(neg.codec), neg.dtmf_payload_type)
                # Put on hold by the peer (sendonly/inactive): we stop sending until it takes us back.
                call.rtp.sending = neg.sends
            else:
                # An offer-less re-INVITE (a session refresh): we offer what runs now; the
                # answer comes in the ACK and changes nothing we rely on.
                sdp = offer(host, port, (call.rtp.codec.name,), call.rtp.dtmf_pt or 101,
                            session_id=session_id, session_version=version + 1)
        except NoCommonCodec:
            s.tx.respond(tx, make_response(req, 488))  # the session goes on as it was (RFC 3261 14.2)
            return
        except SdpError as exc:
            s.tx.respond(tx, make_response(req, 400, _reason(f"Bad SDP: {exc}")))
            return
        call.sdp_origin = [session_id, version + 1]
        ok = make_response(req, 200, extra_headers=[("Contact", call.dialog.contact), ("Allow", ALLOW)])
        ok.set_body(sdp.serialize().encode(), "application/sdp")
        s.tx.respond(tx, ok)
        self._expect_ack(call, ok.serialize(), req.cseq.number)

    # ---- ACK and CANCEL ---------------------------------------------------------------------
    def on_ack(self, req: SipRequest, source: Source) -> None:
        call_id = req.call_id or ""
        waiting = self.awaiting_ack.get(call_id)
        if waiting is None or waiting[0] != req.cseq.number:
            return  # a late or stray ACK: nothing waits for it
        waiting[1].set()
        del self.awaiting_ack[call_id]
        call = self.server.calls.get(call_id)
        if call is not None:
            call.dialog.confirmed = True

    def on_cancel(self, req: SipRequest, source: Source) -> None:
        s = self.server
        call_id = req.call_id or ""
        pending = self.unanswered.get(call_id)
        if pending is None or not _same_transaction(req, pending.request):
            # Already answered (the CANCEL has no effect, RFC 3261 9.2) or never seen.
            known = call_id in s.calls
            s.reply(req, source, 200 if known else 481)
            return
        s.reply(req, source, 200)
        del self.unanswered[call_id]
        pending.cancelled.set()
        s.tx.respond(pending.tx, make_response(pending.request, 487, to_tag=pending.tag))
        call = s.calls.get(call_id)
        if call is not None:
            call.remote_hangup("cancel")


def _same_transaction(cancel: SipRequest, invite: SipRequest) -> bool:
    """A CANCEL matches the INVITE it cancels: same top Via (branch, sent-by) and CSeq number."""
    try:
        a, b = cancel.top_via, invite.top_via
        return (a.branch, a.host, a.port, cancel.cseq.number) == (b.branch, b.host, b.port, invite.cseq.number)
    except SipParseError:
        return False


def _reason(text: str) -> str:
    """A reason phrase from free text: one line, printable, short."""
    return "".join(c if c.isprintable() else " " for c in text)[:80]


def _user_of(value: str | None) -> str:
    try:
        na = NameAddr.parse(value or "")
        return getattr(na.uri, "user", None) or ""
    except SipParseError:
        return ""


def _dialled(req: SipRequest) -> str:
    try:
        return getattr(req.parsed_uri, "user", None) or _user_of(req.get("To"))
    except SipParseError:
        return _user_of(req.get("To"))
