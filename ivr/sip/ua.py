"""The SIP user agent of the server side: answers calls from any peer.

Requests are dispatched by method through a table. A new INVITE is admitted
(or refused with 503), its SDP answered (or refused with 488), an RTP session
opened, and the call answered; the flow then runs on a SipCall. The 2xx is
repeated until the ACK comes (RFC 3261 13.3.1.4). Every malformed request gets
a 4xx and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..audio.clock import MediaClock
from ..audio.g711 import codec_by_name
from ..audio.prompts import PromptCache
from .call import SipCall
from .dialog import Dialog, contact_for, remote_target_of, without_tag
from .errors import SipParseError
from .headers import NameAddr, response_address
from .media import RtpSession
from .message import SipRequest, SipResponse, make_response
from .sdp import NoCommonCodec, SdpError, SessionDescription, answer
from .transaction import T1, T2, Transactions, new_tag
from .transport import SipTransport, Source
from .validate import validate_request

log = logging.getLogger("ivr.sip")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY, REFER"
INFO_DIGITS = set("0123456789*#ABCDabcd")


@dataclass
class Admission:
    """Capacity: above `soft` new calls take the flow's overflow path, above `hard` they get 503."""

    hard: int = 1000
    soft: int | None = None
    active: int = 0
    refused: int = 0

    def decide(self) -> str:
        if self.active >= self.hard:
            self.refused += 1
            return "reject"
        if self.soft is not None and self.active >= self.soft:
            return "overflow"
        return "ok"


@dataclass
class SipSettings:
    """Where the server listens, what it advertises, and its limits."""

    host: str = "0.0.0.0"
    port: int = 5060
    public_host: str | None = None  # address put in Contact and SDP (default: where the peer reached us)
    rtp_ports: range = field(default_factory=lambda: range(10000, 20000))
    ring_s: float = 0.0  # ring this long before answering (0: answer at once)
    user: str = "ivr"
    inband_dtmf: bool = False  # also listen for tones when the peer negotiated telephone-event


CallHandler = Callable[[SipCall, bool], Awaitable[None]]


class SipServer:
    """Answers SIP calls and hands each to `on_call(call, overflow)`."""

    def __init__(self, settings: SipSettings, on_call: CallHandler, prompts: PromptCache, clock: MediaClock,
                 admission: Admission | None = None, music_root: str = "media/moh") -> None:
        self.settings = settings
        self.on_call = on_call
        self.prompts = prompts
        self.clock = clock
        self.admission = admission or Admission()
        self.music_root = music_root
        self.transport = SipTransport(self._on_message, self._on_bad_message)
        self.tx = Transactions(self.transport)
        self.calls: dict[str, SipCall] = {}  # by Call-ID
        self.pending: dict[str, asyncio.Event] = {}  # Call-ID -> ACK of our 2xx arrived
        self.invites: dict[str, tuple] = {}  # Call-ID -> (tx, request) while not yet answered
        self.tasks: set[asyncio.Task] = set()
        self.draining = False
        self.errors = 0
        self.handlers = {
            "INVITE": self._invite, "ACK": self._ack, "BYE": self._bye, "CANCEL": self._cancel,
            "OPTIONS": self._options, "INFO": self._info, "NOTIFY": self._notify,
        }

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        await self.transport.start(self.settings.host, self.settings.port)

    @property
    def address(self) -> tuple[str, int]:
        return self.transport.host, self.transport.port

    async def close(self) -> None:
        for call in list(self.calls.values()):
            call.rtp.close()
        await self.transport.close()

    def note_error(self, text: str) -> None:
        self.errors += 1
        log.warning("%s", text)

    async def music(self, music_class: str, codec) -> tuple[bytes, ...]:
        return await self.prompts.music(f"{self.music_root}/{music_class}", codec)

    # ---- dispatch -----------------------------------------------------------------------
    def _on_message(self, msg, source: Source) -> None:
        if isinstance(msg, SipResponse):
            self.tx.response(msg)  # responses to nothing we sent are dropped
            return
        if self.tx.absorb(msg, source):
            return
        try:
            validate_request(msg)
        except SipParseError as exc:
            self.errors += 1
            if msg.method != "ACK":
                self._reply_stateless(msg, source, exc.status, exc.reason)
            return
        handler = self.handlers.get(msg.method)
        if handler is None:
            self._reply_stateless(msg, source, 501 if msg.method not in ("REGISTER", "SUBSCRIBE", "PUBLISH",
                                                                         "MESSAGE", "UPDATE", "PRACK", "REFER")
                                  else 405, None, [("Allow", ALLOW)])
            return
        handler(msg, source)

    def _on_bad_message(self, data: bytes, exc: SipParseError, source: Source) -> None:
        """Answer an unparsable request when it names enough to be answered; drop the rest."""
        req = _salvage_request(data)
        if req is None or req.method == "ACK":  # an ACK is never answered, even a broken one
            return
        resp = make_response(req, exc.status if 400 <= exc.status < 600 else 400, exc.reason)
        self.transport.send(resp.serialize(), _response_dest(req, source))

    def _reply_stateless(self, req: SipRequest, source: Source, status: int, reason: str | None,
                         extra: list[tuple[str, str]] | None = None) -> None:
        try:
            tx = self.tx.begin(req, source)
        except SipParseError:
            return
        self.tx.respond(tx, make_response(req, status, reason, to_tag=new_tag() if status >= 300 else None,
                                          extra_headers=extra or []))

    # ---- INVITE ------------------------------------------------------------------------------
    def _invite(self, req: SipRequest, source: Source) -> None:
        tx = self.tx.begin(req, source)
        to = req.to_addr
        if to.tag is not None:
            call = self.calls.get(req.call_id or "")
            if call is None or call.dialog.local_tag != to.tag:
                self.tx.respond(tx, make_response(req, 481))
                return
            self._reinvite(call, req, tx)
            return
        if req.call_id in self.calls or req.call_id in self.invites:
            # A new branch for a call we know (a fork looping back): refuse it.
            self.tx.respond(tx, make_response(req, 482, to_tag=new_tag()))
            return
        self.tx.respond(tx, make_response(req, 100))
        if self.draining:
            self.tx.respond(tx, make_response(req, 503, "Draining", to_tag=new_tag(),
                                              extra_headers=[("Retry-After", "30")]))
            return
        decision = self.admission.decide()
        if decision == "reject":
            self.tx.respond(tx, make_response(req, 503, "Over Capacity", to_tag=new_tag(),
                                              extra_headers=[("Retry-After", "5")]))
            return
        self._spawn(self._answer(req, source, tx, overflow=decision == "overflow"))

    async def _answer(self, req: SipRequest, source: Source, tx, overflow: bool) -> None:
        call_id = req.call_id or ""
        host = self._local_host(req)
        try:
            offer = SessionDescription.parse(req.body.decode("utf-8", "replace")) if req.body else None
        except SdpError as exc:
            self.tx.respond(tx, make_response(req, 400, f"Bad SDP: {exc}"[:80], to_tag=new_tag()))
            return
        if offer is None:
            self.tx.respond(tx, make_response(req, 488, "SDP Offer Required", to_tag=new_tag()))
            return
        self.admission.active += 1
        rtp = None
        try:
            try:
                _, neg = answer(offer, host, 9)  # negotiate first: no port is bound for a call we refuse
            except NoCommonCodec:
                self.tx.respond(tx, make_response(req, 488, to_tag=new_tag(),
                                                  extra_headers=[("Warning", '304 ivr "PCMU, PCMA only"')]))
                self.admission.active -= 1
                return
            codec = codec_by_name(neg.codec)
            rtp = RtpSession(self.clock, codec, neg.remote_addr, dtmf_pt=neg.dtmf_payload_type,
                             on_dtmf=lambda d, via: None,
                             inband=self.settings.inband_dtmf or neg.dtmf_payload_type is None)
            _, port = await rtp.open(self.settings.host if self.settings.host not in ("0.0.0.0", "::") else host,
                                     self.settings.rtp_ports)
            sdp, neg = answer(offer, host, port)
            rtp.sending = neg.sends
            tag = new_tag()
            dialog = Dialog(
                call_id=call_id, local_tag=tag, remote_tag=req.from_addr.tag,
                local_uri=without_tag(req.get("To") or ""), remote_uri=without_tag(req.get("From") or ""),
                remote_target=remote_target_of(req), route_set=req.get_all("Record-Route"), source=source,
                contact=contact_for(host, self.transport.port, source.transport, self.settings.user),
                via_host=host, via_port=self.transport.port, remote_cseq=req.cseq.number)
            call = SipCall(self, dialog, rtp, self.prompts, caller=_user_of(req.get("From")),
                           dialled=_dialled(req))
            rtp.on_dtmf = call.dtmf
            call.reply_to = _response_dest(req, source)
            self.calls[call_id] = call
            self.invites[call_id] = (tx, req)
            extra = [("Contact", dialog.contact), ("Allow", ALLOW), ("Supported", "replaces")]
            if self.settings.ring_s > 0:
                self.tx.respond(tx, make_response(req, 180, to_tag=tag, extra_headers=[("Contact", dialog.contact)]))
                await asyncio.sleep(self.settings.ring_s)
                if call.ended:  # cancelled while ringing
                    return
            ok = make_response(req, 200, to_tag=tag, extra_headers=extra)
            ok.set_body(sdp.serialize().encode(), "application/sdp")
            self.invites.pop(call_id, None)
            self.tx.respond(tx, ok)
            acked = asyncio.Event()
            self.pending[call_id] = acked
            self._spawn(self._repeat_2xx(call, ok.serialize(), acked))
            await self.on_call(call, overflow)
        except Exception:
            log.exception("call %s failed", call_id)
            self.errors += 1
            if tx.final == 0:  # never leave a caller without an answer
                self.tx.respond(tx, make_response(req, 500, "Server Internal Error", to_tag=new_tag()))
        finally:
            call = self.calls.pop(call_id, None)
            self.invites.pop(call_id, None)
            self.pending.pop(call_id, None)
            if rtp is not None:
                rtp.close()
            self.admission.active -= 1

    async def _repeat_2xx(self, call: SipCall, data: bytes, acked: asyncio.Event) -> None:
        interval, waited = T1, 0.0
        while not acked.is_set() and waited < 64 * T1 and not call.ended:
            try:
                await asyncio.wait_for(acked.wait(), interval)
                return
            except TimeoutError:
                waited += interval
                if call.dialog.source.transport == "UDP":
                    self.transport.send(data, call.reply_to)
                interval = min(interval * 2, T2)
        if not acked.is_set() and not call.ended:
            log.warning("call %s: no ACK for our 200 OK; hanging up", call.call_id)
            call.remote_hangup("no-ack")
            await self.bye(call)

    def _reinvite(self, call: SipCall, req: SipRequest, tx) -> None:
        try:
            offer = SessionDescription.parse(req.body.decode("utf-8", "replace")) if req.body else None
            if offer is None:
                raise SdpError("re-INVITE without SDP")
            sdp, neg = answer(offer, call.dialog.via_host, call.rtp.local[1])
        except NoCommonCodec:
            self.tx.respond(tx, make_response(req, 488))
            return
        except SdpError as exc:
            self.tx.respond(tx, make_response(req, 400, f"Bad SDP: {exc}"[:80]))
            return
        call.rtp.set_remote(neg.remote_addr, codec_by_name(neg.codec), neg.dtmf_payload_type)
        # Put on hold by the peer (sendonly/inactive): we stop sending until it takes us back.
        call.rtp.sending = neg.sends
        ok = make_response(req, 200, extra_headers=[("Contact", call.dialog.contact)])
        ok.set_body(sdp.serialize().encode(), "application/sdp")
        self.tx.respond(tx, ok)
        acked = asyncio.Event()
        self.pending[call.call_id] = acked
        self._spawn(self._repeat_2xx(call, ok.serialize(), acked))

    # ---- other methods -----------------------------------------------------------------------
    def _ack(self, req: SipRequest, source: Source) -> None:
        acked = self.pending.get(req.call_id or "")
        if acked is not None:
            acked.set()
            call = self.calls.get(req.call_id or "")
            if call is not None:
                call.dialog.confirmed = True

    def _bye(self, req: SipRequest, source: Source) -> None:
        call = self._in_dialog(req, source)
        if call is None:
            return
        self._reply_stateless(req, source, 200, None)
        call.remote_hangup("caller")

    def _cancel(self, req: SipRequest, source: Source) -> None:
        pending = self.invites.get(req.call_id or "")
        if pending is None:
            self._reply_stateless(req, source, 481, None)
            return
        self._reply_stateless(req, source, 200, None)
        inv_tx, invite = pending
        call = self.calls.get(req.call_id or "")
        self.tx.respond(inv_tx, make_response(invite, 487, to_tag=call.dialog.local_tag if call else new_tag()))
        self.invites.pop(req.call_id or "", None)
        if call is not None:
            call.remote_hangup("cancel")

    def _options(self, req: SipRequest, source: Source) -> None:
        self._reply_stateless(req, source, 200, None, [("Allow", ALLOW), ("Accept", "application/sdp"),
                                                       ("Supported", "replaces")])

    def _info(self, req: SipRequest, source: Source) -> None:
        call = self._in_dialog(req, source)
        if call is None:
            return
        digit = _info_digit(req)
        if digit is None:
            self._reply_stateless(req, source, 415, "Unsupported INFO body")
            return
        self._reply_stateless(req, source, 200, None)
        call.dtmf(digit, "info")

    def _notify(self, req: SipRequest, source: Source) -> None:
        call = self._in_dialog(req, source)
        if call is None:
            return
        self._reply_stateless(req, source, 200, None)
        body = req.body.decode("utf-8", "replace").strip()
        if body.startswith("SIP/2.0"):
            parts = body.split(None, 2)
            with contextlib.suppress(IndexError, ValueError):
                call.transfer_progress(int(parts[1]), parts[2] if len(parts) > 2 else "")

    def _in_dialog(self, req: SipRequest, source: Source) -> SipCall | None:
        call = self.calls.get(req.call_id or "")
        if call is None or req.to_addr.tag != call.dialog.local_tag:
            self._reply_stateless(req, source, 481, None)
            return None
        cseq = req.cseq.number
        if cseq <= call.dialog.remote_cseq and req.method != "ACK":
            self._reply_stateless(req, source, 500, "CSeq Out of Order")
            return None
        call.dialog.remote_cseq = cseq
        return call

    # ---- requests we send -----------------------------------------------------------------------
    async def bye(self, call: SipCall) -> None:
        req = call.dialog.request("BYE")
        try:
            await self.tx.request(req, call.dialog.destination())
        except TimeoutError:
            log.info("call %s: no answer to our BYE", call.call_id)

    async def refer(self, call: SipCall, target: str, headers: dict[str, str], body: str | None) -> tuple[bool, str]:
        """Send REFER to `target` with the context headers; (accepted, detail)."""
        extra = [("Refer-To", f"<{target}>"), ("Referred-By", call.dialog.contact)]
        extra += [(k, v) for k, v in headers.items() if v]
        if body is not None:
            extra.append(("X-IVR-Context", body))
        req = call.dialog.request("REFER", extra)
        try:
            resp = await self.tx.request(req, call.dialog.destination())
        except TimeoutError:
            return False, "no answer to REFER"
        return 200 <= resp.status < 300, f"{resp.status} {resp.reason}"

    # ---- helpers -----------------------------------------------------------------------------------
    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _local_host(self, req: SipRequest) -> str:
        if self.settings.public_host:
            return self.settings.public_host
        if self.settings.host not in ("0.0.0.0", "::", ""):
            return self.settings.host
        try:
            host = req.parsed_uri.host.strip("[]")
            if host and host[0].isdigit() or ":" in host:
                return host
        except (SipParseError, AttributeError):
            pass
        return "127.0.0.1"


def _response_dest(req: SipRequest, source: Source):
    """Where responses to `req` go: its connection, or per its top Via (received/rport)."""
    if source.transport != "UDP":
        return source
    try:
        return response_address(req.top_via, source.addr)
    except SipParseError:
        return source.addr


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


def _info_digit(req: SipRequest) -> str | None:
    """The key in an INFO body: application/dtmf-relay (Signal=5) or application/dtmf (5)."""
    ctype = (req.get("Content-Type") or "").split(";")[0].strip().lower()
    text = req.body.decode("utf-8", "replace").strip()
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip().lower() == "signal":
                v = value.strip()
                return v.upper() if v in INFO_DIGITS else None
        return None
    if ctype == "application/dtmf" and text in INFO_DIGITS:
        return text.upper()
    return None


def _salvage_request(data: bytes) -> SipRequest | None:
    """Enough of a broken request (its first line and the headers a response copies)
    to answer it with an error; None for responses and garbage."""
    try:
        text = data[:8192].decode("utf-8", "replace")
    except Exception:  # pragma: no cover - decode with replace does not raise
        return None
    lines = text.replace("\r\n", "\n").split("\n")
    first = lines[0].split(" ")
    if len(first) != 3 or not first[2].upper().startswith("SIP/") or not first[0].isalpha():
        return None
    wanted = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
              "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}
    headers = []
    for line in lines[1:60]:
        if not line.strip():
            break
        name, sep, value = line.partition(":")
        key = wanted.get(name.strip().lower())
        if sep and key:
            headers.append((key, value.strip()))
    if not any(n == "Via" for n, _ in headers):
        return None
    return SipRequest(first[0], first[1], headers=headers)

