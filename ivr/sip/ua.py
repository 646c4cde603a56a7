"""The SIP user agent of the server side: answers calls from any peer.

Requests are dispatched by method through a table. INVITE, ACK and CANCEL
live in invite.py (admission, offer/answer, ringing, the 2xx until its ACK,
re-INVITE); this module checks every request before it is dispatched, handles
the in-dialog methods (BYE, INFO, NOTIFY), OPTIONS, and sends our own requests
(BYE, REFER, and through dial.py the INVITE of an outgoing call). Every
malformed request gets a 4xx, or is dropped when it cannot be answered, and
the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..audio.clock import MediaClock
from ..audio.prompts import PromptCache
from .call import SipCall
from .dial import Dialer, DialResult
from .errors import SipParseError
from .invite import ALLOW, Invites
from .message import SipRequest, SipResponse, make_response
from .transaction import ServerTx, Transactions, is_ip, new_tag, reply_address, stamp_via
from .transport import SipTransport, Source
from .validate import validate_request

log = logging.getLogger("ivr.sip")

INFO_DIGITS = set("0123456789*#ABCDabcd")
# Methods we know of but do not accept: 405 with Allow. Anything else is 501 (RFC 3261 8.2.1).
KNOWN_METHODS = frozenset({"REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "UPDATE", "PRACK", "REFER"})
SUPPORTED: frozenset[str] = frozenset()  # option tags we implement; a Require of anything else gets 420


@dataclass
class Admission:
    """Capacity: above `soft` new calls take the flow's overflow path, above `hard` they get 503.

    `admit` reserves a place at once (before anything is awaited) and the call
    gives it back with `release` when it ends, however it ends.
    """

    hard: int = 1000
    soft: int | None = None
    active: int = 0
    refused: int = 0
    overflowed: int = 0
    retry_after: int = 5  # seconds a refused caller is asked to wait
    # Whether the flow has an overflow path; without one the soft limit refuses like the hard one.
    can_overflow: Callable[[], bool] = field(default=lambda: True)

    def admit(self) -> str | None:
        """'ok' or 'overflow' with a place taken, or None when the call must be refused."""
        over_soft = self.soft is not None and self.active >= self.soft
        if self.active >= self.hard or (over_soft and not self.can_overflow()):
            self.refused += 1
            return None
        self.active += 1
        if over_soft:
            self.overflowed += 1
            return "overflow"
        return "ok"

    def release(self) -> None:
        self.active = max(0, self.active - 1)


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


def _no_count(name: str, by: float = 1.0, **labels: str) -> None:
    """The default statistics sink: counts go nowhere."""


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
        self.invites = Invites(self)
        self.dialer = Dialer(self)
        self.tasks: set[asyncio.Task] = set()
        self.draining = False
        self.errors = 0
        # Counters for /metrics, `count(name, by, **labels)`; the app plugs its Metrics.inc in.
        self.count: Callable[..., None] = _no_count
        self.handlers: dict[str, Callable[[SipRequest, Source], None]] = {
            "INVITE": self.invites.on_invite, "ACK": self.invites.on_ack, "CANCEL": self.invites.on_cancel,
            "BYE": self._bye, "OPTIONS": self._options, "INFO": self._info, "NOTIFY": self._notify,
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
        stamp_via(msg, source.addr)
        if self.tx.absorb(msg, source):
            return
        try:
            validate_request(msg)
        except SipParseError as exc:
            self.errors += 1
            if msg.method != "ACK":  # an ACK is never answered
                self.reply(msg, source, exc.status, exc.reason)
            return
        handler = self.handlers.get(msg.method)
        if handler is None:
            status = 405 if msg.method in KNOWN_METHODS else 501
            self.reply(msg, source, status, None, [("Allow", ALLOW)])
            return
        if msg.method not in ("ACK", "CANCEL"):
            unsupported = _unsupported(msg)
            if unsupported:
                self.reply(msg, source, 420, None, [("Unsupported", ", ".join(unsupported))])
                return
        handler(msg, source)

    def _on_bad_message(self, data: bytes, exc: SipParseError, source: Source) -> None:
        """Answer an unparsable request when it names enough to be answered; drop the rest."""
        self.errors += 1
        # The parser hands back the request when it read its headers (a bad Content-Length ...);
        # otherwise we salvage what a response needs from the raw bytes.
        req = exc.message if isinstance(exc.message, SipRequest) else _salvage_request(data)
        if req is None or req.method == "ACK" or not req.has("Via"):
            return  # nowhere to answer, or an ACK (never answered, even a broken one)
        stamp_via(req, source.addr)
        resp = make_response(req, exc.status if 400 <= exc.status < 600 else 400, exc.reason)
        with contextlib.suppress(ValueError):  # a header we could not echo safely: drop instead
            self.transport.send(resp.serialize(), reply_address(req, source))

    def reply(self, req: SipRequest, source: Source, status: int, reason: str | None = None,
              extra: list[tuple[str, str]] | None = None, tx: ServerTx | None = None) -> None:
        """Answer `req` in its own (new or given) server transaction."""
        if tx is None:
            try:
                tx = self.tx.begin(req, source)
            except SipParseError:
                return
        self.tx.respond(tx, make_response(req, status, reason, to_tag=new_tag() if status >= 300 else None,
                                          extra_headers=extra or []))

    def in_dialog(self, req: SipRequest, source: Source, tx: ServerTx | None = None) -> SipCall | None:
        """The call a mid-dialog request belongs to; None (and answered) when there is none
        or its CSeq is not above the last one (RFC 3261 12.2.2: 481, 500)."""
        call = self.calls.get(req.call_id or "")
        if call is None or req.to_addr.tag != call.dialog.local_tag:
            self.reply(req, source, 481, None, tx=tx)
            return None
        cseq = req.cseq.number
        if cseq <= call.dialog.remote_cseq:
            self.reply(req, source, 500, "CSeq Out of Order", [("Retry-After", "1")], tx=tx)
            return None
        call.dialog.remote_cseq = cseq
        return call

    # ---- in-dialog methods and OPTIONS ---------------------------------------------------------
    def _bye(self, req: SipRequest, source: Source) -> None:
        call = self.in_dialog(req, source)
        if call is None:
            return
        self.reply(req, source, 200, None)
        call.remote_hangup("caller")
        self.dialer.release(call)  # a call we placed ends here; one we answered ends with its flow

    def _options(self, req: SipRequest, source: Source) -> None:
        self.reply(req, source, 200, None, [("Allow", ALLOW), ("Accept", "application/sdp")])

    def _info(self, req: SipRequest, source: Source) -> None:
        call = self.in_dialog(req, source)
        if call is None:
            return
        digit = _info_digit(req)
        if digit is None:
            self.reply(req, source, 415, "Unsupported INFO body",
                       [("Accept", "application/dtmf-relay, application/dtmf")])
            return
        self.reply(req, source, 200, None)
        call.dtmf(digit, "info")

    def _notify(self, req: SipRequest, source: Source) -> None:
        call = self.in_dialog(req, source)
        if call is None:
            return
        self.reply(req, source, 200, None)
        body = req.body.decode("utf-8", "replace").strip()
        if body.startswith("SIP/2.0"):
            parts = body.split(None, 2)
            with contextlib.suppress(IndexError, ValueError):
                call.transfer_progress(int(parts[1]), parts[2].splitlines()[0] if len(parts) > 2 else "")

    # ---- requests we send -----------------------------------------------------------------------
    async def bye(self, call: SipCall) -> None:
        req = call.dialog.request("BYE")
        try:
            await self.tx.request(req, call.dialog.destination())
        except TimeoutError:
            log.info("call %s: no answer to our BYE", call.call_id)
        finally:
            self.dialer.release(call)

    async def dial(self, uri: str, *, caller_id: str | None = None, ring_timeout: float = 30.0,
                   headers: dict[str, str] | None = None, telephone_event: bool = True) -> DialResult:
        """Place a call to `uri` ("sip:+441632960001@127.0.0.1:5080", over UDP).

        `caller_id` is our From (a sip:/tel: URI, a name-addr, or a number put at our
        host; sip:ivr@our-host by default); `headers` are added to the INVITE. It rings
        for at most `ring_timeout` seconds and is then CANCELled. Returns a DialResult:
        the SipCall when answered (registered with the server; hang it up when done),
        else the final status: 486 busy, 487 after our CANCEL, 408 when nothing came
        back at all, 503 for our own failures (no address, no RTP port, draining).
        Raises ValueError for a URI, caller id or header we cannot send. Without
        `telephone_event` the offer has no RFC 4733 keys, so keys go as tones.
        """
        return await self.dialer.dial(uri, caller_id=caller_id, ring_timeout=ring_timeout, headers=headers,
                                      telephone_event=telephone_event)

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
    def spawn(self, coro) -> None:
        """Run `coro` as a task the server keeps a reference to until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def local_host(self, req: SipRequest) -> str:
        """The address we advertise in Contact and SDP for this request."""
        if self.settings.public_host:
            return self.settings.public_host
        if self.settings.host not in ("0.0.0.0", "::", ""):
            return self.settings.host
        try:
            host = req.parsed_uri.host.strip("[]")
            if is_ip(host):
                return host
        except (SipParseError, AttributeError):
            pass
        return "127.0.0.1"


def _unsupported(req: SipRequest) -> list[str]:
    """Option tags in Require that we do not implement (answered with 420, RFC 3261 8.2.2.3)."""
    tags = [t.strip() for t in req.get_all("Require") if t.strip()]
    return [t for t in tags if t.lower() not in SUPPORTED]


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
    text = data[:8192].decode("utf-8", "replace")
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
        if sep and key and len(value) < 1024 and "\r" not in value:
            headers.append((key, value.strip()))
    if not any(n == "Via" for n, _ in headers):
        return None
    return SipRequest(first[0], first[1], headers=headers)
