"""The pyVoIP caller driver: each call is placed by a pyVoIP 1.6.8 phone, through its registrar.

pyVoIP sends every request to the server it registered with, so a call goes
phone -> registrar (a proxy such as Kamailio) -> the IVR registered there. One
`VoIPPhone` per call registers as the journey's caller and dials the target's
user part. pyVoIP is thread-based and blocking: its blocking calls run in daemon
threads with a bound on each wait, and what its threads see comes back to the
loop with `call_soon_threadsafe`. Where it falls short the driver adds what a
phone needs, with subclasses and wrappers of ours (pyVoIP's files are untouched):

- its ACK of the 2xx is wrong (a fresh random To tag, the To URI as target, no
  Route), so a proxy drops it and the IVR ends the call after 32 s without ACK:
  the driver sends a correct ACK in its stead, built on the dialog of the 2xx;
- it cannot parse REFER (nor INFO, NOTIFY, OPTIONS): a filter in front of its
  SIP socket answers REFER with 202, records the transfer, and NOTIFYs 200 so
  the IVR finishes its hand-off; other requests it cannot take get 501;
- it has no way to send keys: RFC 4733 events replace its outgoing audio
  packets (same socket, SSRC and sequence numbers), and SIP INFO goes on the
  dialog from a socket of the driver's, through the registrar's Record-Route;
- its RTP socket is bound when the offer goes out (pyVoIP binds it at the answer,
  after the IVR's first packets); heard audio is the G.711 payload it received,
  decoded to PCM16 with its arrival time (pyVoIP's `read_audio` is 8-bit and
  makes up silence when nothing arrived).

It cannot add headers to its INVITE. The registrar must take the name in `--registrar`
as its own domain on any port: pyVoIP writes it without its port (sip:ivr@HOST).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import select
import socket
import threading
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..audio.g711 import PCMA, PCMU
from ..sip.dialog import Dialog, uac_dialog
from ..sip.errors import SipParseError
from ..sip.headers import response_address
from ..sip.message import SipRequest, SipResponse, make_response, parse
from ..sip.rtp import DtmfSender, RtpPacket
from ..sip.transaction import Transactions, new_tag
from ..sip.transport import SipTransport
from ..sip.uri import SipUri, split_hostport
from .line import CallFailed, DriverCannot, Line, Transfer

log = logging.getLogger("ivr.harness")

REGISTER_S = 5.0  # pyVoIP's own wait for each answer to its REGISTER
SIP_READ_S = 5.0  # its blocking reads of the SIP socket (the INVITE's first answer) end after this
STOP_S = 10.0  # at most this long to hang up, un-register and end a phone's threads
REQUEST_S = 8.0  # our INFO and NOTIFY wait this long for their final answer
CODECS = {"PCMU": PCMU, "PCMA": PCMA}


def load_pyvoip():
    """pyVoIP's VoIP and RTP modules; DriverCannot saying how to get them when it cannot load."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # audioop's, on 3.11 and 3.12
            import pyVoIP.VoIP as voip  # before pyVoIP.SIP: the package imports circularly
            from pyVoIP import RTP
    except ModuleNotFoundError as exc:
        raise DriverCannot(f"the pyvoip driver needs pyVoIP 1.6.8 ({exc}): pip install 'ivr-engine[test]' "
                           "or pip install pyVoIP==1.6.8") from exc
    return voip, RTP


def _post(loop: asyncio.AbstractEventLoop, fn, *args) -> None:
    """Run `fn(*args)` on the loop, from any thread (dropped once the loop has closed)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def _settle(fut: asyncio.Future, result: Any = None, exc: BaseException | None = None) -> None:
    if not fut.done():
        fut.set_exception(exc) if exc is not None else fut.set_result(result)


async def _in_thread(fn, *args, timeout: float):
    """`fn(*args)` in a daemon thread of its own: its result, or TimeoutError after `timeout`.

    Not the loop's executor: a pyVoIP call stuck on a socket would keep the process
    from exiting (asyncio.run waits for the executor's threads)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task as it is
            _post(loop, _settle, fut, None, exc)
        else:
            _post(loop, _settle, fut, result)

    threading.Thread(target=run, name=f"pyvoip {getattr(fn, '__name__', 'call')}", daemon=True).start()
    return await asyncio.wait_for(fut, timeout)


def _pcm_to_pyvoip(pcm: bytes) -> bytes:
    """8 kHz PCM16 as pyVoIP's write_audio wants it: 8-bit unsigned linear."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int16)
    return ((samples >> 8) + 128).astype(np.uint8).tobytes()


@dataclass
class _Press:
    """One RFC 4733 key press on its way out, a packet per audio packet it replaces."""

    sender: DtmfSender
    digit: str
    ms: int
    done: Any  # called (in pyVoIP's sending thread) after the last packet
    packets: list[RtpPacket] | None = None
    sent: int = 0


class _RtpOut:
    """Stands in for a pyVoIP RTP client's send socket: while a key is pressed, each 20 ms
    audio packet is replaced by the press's next RFC 4733 packet, keeping the stream's
    SSRC and sequence numbers, its timestamp where the press started."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._press: _Press | None = None

    def press(self, press: _Press | None) -> None:
        with self._lock:
            self._press = press

    def sendto(self, data: bytes, addr) -> int:
        done = None
        with self._lock:
            p = self._press
            if p is not None and len(data) >= 12:
                seq, ts = int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:8], "big")
                if p.packets is None:
                    p.packets = p.sender.packets(p.digit, ts, seq, p.ms)
                data = replace(p.packets[p.sent], sequence_number=seq).serialize()
                p.sent += 1
                if p.sent == len(p.packets):
                    self._press, done = None, p.done
        try:
            return self._sock.sendto(data, addr)
        finally:
            if done is not None:
                done()

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _SipTap:
    """Stands in for pyVoIP's SIP socket: every datagram passes the driver first, which
    takes what pyVoIP cannot handle. Blocking reads (pyVoIP waits for the INVITE's
    first answer with no limit) end with TimeoutError after SIP_READ_S."""

    def __init__(self, sock: socket.socket, line: PyvoipLine) -> None:
        self._sock = sock
        self._line = line

    def recv(self, size: int) -> bytes:
        while True:
            blocking = self._sock.gettimeout() is None
            if blocking:
                ready, _, _ = select.select([self._sock], [], [], SIP_READ_S)
                if not ready:
                    raise TimeoutError("no SIP message from the registrar")
            else:
                self._line.reading()  # pyVoIP's receive loop runs (it starts 1 s after start())
            data, addr = self._sock.recvfrom(size)
            if not self._line.on_sip(data, addr):
                return data
            if blocking and self._line.refused is not None:
                raise CallFailed(*self._line.refused)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


@functools.cache
def _classes():
    """pyVoIP's phone, call and RTP client with the driver's additions (made on first use,
    so pyVoIP is imported only by those who pick this driver)."""
    voip, rtp = load_pyvoip()

    class RtpClient(rtp.RTPClient):
        line: PyvoipLine

        def start(self) -> None:
            # RTPClient.start, on the socket bound when the offer went out: pyVoIP binds its
            # own only once the 2xx is read, so the IVR's first packets met a closed port.
            self.sin = self.line.rtp_socket
            self.sin.setblocking(False)
            self.sout = _RtpOut(self.sin)
            for work, name in ((self.recv, "RTP Receiver"), (self.trans, "RTP Transmitter")):
                thread = threading.Timer(0, work)
                thread.name = name
                thread.start()

        def parse_packet(self, packet: bytes) -> None:
            self.line.rtp_in(packet, self.assoc)
            super().parse_packet(packet)

    class Call(voip.VoIPCall):
        line: PyvoipLine

        def create_rtp_clients(self, codecs, ip, port, request, baseport) -> None:
            for i, conn in enumerate(request.body["c"]):
                client = RtpClient(codecs, ip, port, conn["address"], baseport + i, self.sendmode,
                                   dtmf=self.dtmf_callback)
                client.line = self.line
                self.RTPClients.append(client)

        def dtmf_callback(self, code: str) -> None:
            super().dtmf_callback(code)
            self.line.key(code)

        def bye(self) -> None:
            super().bye()
            self.line.bye()

    class Phone(voip.VoIPPhone):
        def __init__(self, *args, line: PyvoipLine, **kwargs) -> None:
            self.line = line
            super().__init__(*args, **kwargs)
            self.sip.register_timeout = REGISTER_S
            self.sip.default_expires = 3600  # one phone per call: no re-REGISTER races the call

        def start(self) -> None:
            super().start()
            self.sip.s = _SipTap(self.sip.s, self.line)  # before its receive loop starts (1 s)

        def call(self, number: str, telephone_event: bool = True):
            # VoIPPhone.call, with our call class, filed with its line before any answer is read.
            port = self.request_port()
            medias = {port: {0: rtp.PayloadType.PCMU}}
            if telephone_event:  # pyVoIP always offers it; a journey may dial without
                medias[port][101] = rtp.PayloadType.EVENT
            request, call_id, sess_id = self.sip.invite(number, medias, rtp.TransmitType.SENDRECV)
            call = Call(self, voip.CallState.DIALING, request, sess_id, self.myIP, ms=medias, sendmode=self.sendmode)
            call.line = self.line
            self.calls[call_id] = call
            return call

        def _callback_RESP_OK(self, response) -> None:  # noqa: N802 - pyVoIP's name
            if response.headers["CSeq"]["method"] != "INVITE":
                return  # pyVoIP would "ACK" the 200 to its BYE
            call = self.calls.get(response.headers["Call-ID"])
            if call is None:
                return  # answered before pyVoIP filed the call: the IVR sends its 2xx again
            call.answered(response)
            self.line.answered(response.raw, call)  # and the ACK pyVoIP gets wrong

    return voip, rtp, Phone


class PyvoipLine(Line):
    """One call placed by a pyVoIP phone, from the INVITE on. Methods marked (thread) run in
    pyVoIP's threads and hand what they saw to the loop; the rest run on the loop."""

    driver = "pyvoip"

    def __init__(self, owner: PyvoipPhone, registrar: tuple[str, int], number: str) -> None:
        super().__init__(answered_at=0.0, setup_s=0.0)  # both set at the answer
        self.owner, self.registrar, self.number = owner, registrar, number
        self.loop = asyncio.get_running_loop()
        self.phone = self.call = self.rtp = None  # its pyVoIP phone, call and first RTP client: Any
        self.rtp_socket: socket.socket | None = None
        self.event_pt: int | None = None
        self.dialog: Dialog | None = None  # from the 2xx: our INFO, NOTIFY and ACK go on it
        self.answer: asyncio.Future = self.loop.create_future()  # set with the answer's loop time
        self.receiving, self.receiving_seen = asyncio.Event(), False
        self.refused: tuple[int, str] | None = None
        self.last_seq: int | None = None
        self.refers: set[int] = set()
        self._closed, self._stopped = False, None

    @property
    def call_id(self) -> str:
        return self.call.call_id

    @property
    def ended(self) -> bool:
        return self._closed or self.hung_up.is_set()

    def answered_now(self, dialled_at: float) -> None:
        """The IVR answered: time the line from here; RFC 4733 if its answer has telephone-event."""
        self.answered_at = self.answer.result()
        self.setup_s = self.answered_at - dialled_at
        self.rtp = self.call.RTPClients[0]
        self.event_pt = next((pt for pt, kind in self.rtp.assoc.items() if str(kind) == "telephone-event"), None)
        self.key_methods = ("rfc4733", "info", "inband") if self.event_pt is not None else ("info", "inband")

    # ---- pyVoIP's threads ----------------------------------------------------------------------
    def reading(self) -> None:
        """(thread) pyVoIP's SIP receive loop is running."""
        if not self.receiving_seen:
            self.receiving_seen = True
            _post(self.loop, self.receiving.set)

    def on_sip(self, data: bytes, addr) -> bool:
        """(thread) Take a datagram pyVoIP cannot handle; False passes it on to pyVoIP."""
        try:
            msg = parse(data)
        except SipParseError:
            return False
        try:
            if isinstance(msg, SipResponse):
                return self._response(msg)
            if msg.method in ("INVITE", "ACK", "BYE", "CANCEL"):
                return False  # the requests pyVoIP knows
            if msg.method == "REFER":
                self._refer(msg, addr)
            else:  # what pyVoIP would drop, leaving the IVR to resend it for 32 s
                self._reply(msg, addr, 200) if msg.method == "OPTIONS" else self._reply(msg, addr, 501, new_tag())
        except Exception as exc:  # anything raised here would end pyVoIP's receive thread
            log.warning("pyvoip driver: %s %s: %s", getattr(msg, "method", "response"), type(exc).__name__, exc)
        return True

    def _response(self, resp: SipResponse) -> bool:
        method = resp.cseq.method
        if method == "REGISTER" or method == "INVITE" and resp.status in (100, 180, 200):
            return False  # what pyVoIP waits for; the rest it would only print a TODO about
        if method != "INVITE" or resp.status < 300:
            return True
        # pyVoIP handles only 404 and 503 (and ACKs them with a made-up To tag): we ACK every
        # failure as RFC 3261 17.1.1.3 says, and tell the caller.
        headers = [("Via", resp.top_via.serialize()), ("Max-Forwards", "70"), ("From", resp.get("From") or ""),
                   ("To", resp.get("To") or ""), ("Call-ID", resp.call_id or ""),
                   ("CSeq", f"{resp.cseq.number} ACK"), ("Content-Length", "0")]
        ack = SipRequest("ACK", f"sip:{self.number}@{self.phone.sip.server}", headers=headers)
        self.phone.sip.out.sendto(ack.serialize(), self.registrar)
        self.refused = (resp.status, resp.reason)
        _post(self.loop, _settle, self.answer, None, CallFailed(resp.status, resp.reason))
        return True

    def _reply(self, req: SipRequest, addr, status: int, to_tag: str | None = None) -> None:
        resp = make_response(req, status, to_tag=to_tag)
        self.phone.sip.out.sendto(resp.serialize(), response_address(req.top_via, addr))

    def _refer(self, req: SipRequest, addr) -> None:
        d = self.dialog
        refer_to = req.get("Refer-To") or ""
        ours = d is not None and req.call_id == d.call_id and req.to_addr.tag == d.local_tag
        self._reply(req, addr, 202 if ours and refer_to else 400 if ours else 481)
        if not ours or not refer_to or req.cseq.number in self.refers:
            return  # refused, or a retransmission (the 202 went again; the transfer is recorded)
        self.refers.add(req.cseq.number)
        _post(self.loop, self._transferred, refer_to, list(req.headers))

    def answered(self, raw: bytes, call) -> None:
        """(thread) The 2xx of our INVITE arrived (again): ACK it properly."""
        resp = parse(raw)
        if self.dialog is None:
            sip = self.phone.sip
            contact = f"<sip:{sip.username}@{sip.myIP}:{sip.myPort}>"
            self.dialog = uac_dialog(parse(call.request.raw), resp, self.registrar, contact)
            # Our own requests (INFO, NOTIFY) go from the driver's socket; their answers come back there.
            self.dialog.via_host, self.dialog.via_port = self.owner.transport.host, self.owner.transport.port
            _post(self.loop, _settle, self.answer, self.loop.time())
        ack = self.dialog.request("ACK", cseq=resp.cseq.number)
        self.phone.sip.out.sendto(ack.serialize(), self.dialog.destination())

    def rtp_in(self, packet: bytes, assoc: dict) -> None:
        """(thread) One RTP packet reached pyVoIP's socket."""
        try:
            pkt = RtpPacket.parse(packet)
            codec = CODECS.get(str(assoc.get(pkt.payload_type)))
            if codec is None:
                return
            if self.last_seq is not None and not 0 < (pkt.sequence_number - self.last_seq) & 0xFFFF < 0x8000:
                return  # late or repeated
            self.last_seq = pkt.sequence_number
            _post(self.loop, self.add_audio, codec.decode(pkt.payload), self.loop.time())
        except Exception as exc:  # RtpError, or anything else that would end pyVoIP's RTP thread
            log.debug("pyvoip driver: RTP packet dropped: %s", exc)

    def key(self, digit: str) -> None:
        """(thread) pyVoIP heard an RFC 4733 key from the IVR."""
        _post(self.loop, lambda: (self.keys.append((digit, self.now())), self.poke()))

    def bye(self) -> None:
        """(thread) The IVR hung up."""
        _post(self.loop, self._bye_came)

    # ---- the loop --------------------------------------------------------------------------------
    def _bye_came(self) -> None:
        self.ended_by_ivr("bye")
        _settle(self.answer, None, CallFailed(487, "the call ended before it was answered"))

    def _transferred(self, refer_to: str, headers: list[tuple[str, str]]) -> None:
        self.add_transfer(Transfer.from_refer(refer_to, headers, self.now()))
        task = asyncio.ensure_future(self._notify())
        self.owner.tasks.add(task)
        task.add_done_callback(self.owner.tasks.discard)

    async def _notify(self) -> None:
        # The transferee reached the target: the IVR may now leave the call.
        extra = [("Event", "refer"), ("Subscription-State", "terminated;reason=noresource")]
        with contextlib.suppress(TimeoutError):
            await self.request("NOTIFY", extra, b"SIP/2.0 200 OK\r\n", "message/sipfrag")

    async def request(self, method: str, extra: list[tuple[str, str]], body: bytes,
                      content_type: str) -> SipResponse:
        """An in-dialog request of ours, through the registrar's Record-Route: its final answer."""
        assert self.dialog is not None
        req = self.dialog.request(method, extra, body, content_type)
        # pyVoIP numbers its BYE from its INVITE's CSeq: keep it above ours (RFC 3261 12.2.1.1).
        self.call.request.headers["CSeq"]["check"] = str(self.dialog.local_cseq)
        return await self.owner.tx.request(req, self.dialog.destination(), timeout=REQUEST_S)

    def cancel(self) -> None:
        """CANCEL our INVITE (rung too long): same Via, From, To, Call-ID and CSeq number."""
        invite = parse(self.call.request.raw)
        headers = [("Via", invite.top_via.serialize()), ("Max-Forwards", "70")]
        headers += [(h, invite.get(h) or "") for h in ("From", "To", "Call-ID")]
        headers += [("CSeq", f"{invite.cseq.number} CANCEL"), ("Content-Length", "0")]
        self.phone.sip.out.sendto(SipRequest("CANCEL", invite.uri, headers=headers).serialize(), self.registrar)

    # ---- what the caller does ----------------------------------------------------------------
    async def send_key(self, digit: str, method: str, duration: float) -> None:
        await (self._rfc4733(digit, duration) if method == "rfc4733" else self._info(digit, duration))

    async def _rfc4733(self, digit: str, duration: float) -> None:
        done, out = self.loop.create_future(), self.rtp.sout
        sender = DtmfSender(ssrc=self.rtp.outSSRC, payload_type=self.event_pt)
        out.press(_Press(sender, digit, int(duration * 1000), lambda: _post(self.loop, _settle, done)))
        try:
            # pyVoIP's sender paces the packets (one per 20 ms); the press ends with its 3 end packets.
            await asyncio.wait_for(done, duration + 2.0)
        except TimeoutError:
            out.press(None)  # its sender stopped (the call ended): nothing more to send

    async def _info(self, digit: str, duration: float) -> None:
        from .runner import StepFailed

        body = f"Signal={digit}\r\nDuration={int(duration * 1000)}\r\n".encode()
        try:
            resp = await self.request("INFO", [], body, "application/dtmf-relay")
        except TimeoutError:
            raise StepFailed("no answer to the INFO") from None
        if resp.status >= 300:
            raise StepFailed(f"the IVR refused the INFO: {resp.status} {resp.reason}")
        await asyncio.sleep(duration)

    async def play(self, pcm: bytes) -> None:
        if self.ended or not pcm:
            return
        data = _pcm_to_pyvoip(pcm)
        end = self.rtp.outOffset + len(data)  # pyVoIP's offset of our last byte in its send buffer
        self.call.write_audio(data)
        queued = (end - self._sent()) / 8000
        deadline = self.loop.time() + queued + 2.0
        await asyncio.sleep(max(0.0, queued - 0.1))
        # Its sender takes 160 bytes per packet: wait until it has taken ours.
        while not self.ended and self._sent() < end and self.loop.time() < deadline:
            await asyncio.sleep(0.02)

    def _sent(self) -> int:
        return self.rtp.pmout.offset + self.rtp.pmout.buffer.tell()

    async def hangup(self) -> None:
        if not self.ended:
            self._closed = True
            with contextlib.suppress(Exception):  # pyVoIP's BYE (it has no Route: the registrar relays it)
                await _in_thread(self.call.hangup, timeout=STOP_S)
        await self.close()

    async def close(self) -> None:
        """Stop the phone: un-REGISTER, end its threads (once, bounded)."""
        self._closed = True
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self.owner.stop(self))
        await asyncio.shield(self._stopped)


class PyvoipPhone:
    """Places each call with a pyVoIP phone of its own, registered at `registrar`
    ("host:port"; the target's host:port when None)."""

    driver = "pyvoip"

    def __init__(self, host: str = "127.0.0.1", registrar: str | None = None, user: str = "tester") -> None:
        self.host = host
        self.registrar = registrar
        self.user = user  # the caller when a journey names none
        self.transport = SipTransport(self._message, lambda data, exc, source: None)
        self.tx = Transactions(self.transport)
        self.lines: set[PyvoipLine] = set()
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        _classes()  # fail now, saying how to install pyVoIP, rather than at the first call
        await self.transport.start(self.host, 0, tcp=False)

    async def close(self) -> None:
        for line in list(self.lines):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(line.hangup(), STOP_S + 5)
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.transport.close()

    def _message(self, msg, source) -> None:
        if isinstance(msg, SipResponse):
            self.tx.response(msg)  # answers to our INFO and NOTIFY; nobody sends us requests here

    def route(self, target: str) -> tuple[str, str, int]:
        """(number to dial, registrar host, registrar port) for `target`; ValueError if unusable."""
        try:
            uri = SipUri.parse(target)
            host, port = split_hostport(self.registrar) if self.registrar else (uri.host, uri.port)
        except SipParseError as exc:
            raise ValueError(f"not a SIP URI or host:port: {exc.reason}") from None
        if uri.scheme != "sip" or not uri.user or not host:
            raise ValueError("the pyvoip driver dials sip:USER@HOST[:PORT] (USER is the number it dials)")
        return uri.user, host, port or 5060

    async def call(self, target: str, *, caller: str | None = None, headers: dict[str, str] | None = None,
                   ring_timeout: float = 30.0, telephone_event: bool = True) -> PyvoipLine:
        """Register a pyVoIP phone as `caller` and dial `target` through the registrar;
        CallFailed when it is not answered, DriverCannot for headers (pyVoIP writes its own)."""
        if headers:
            raise DriverCannot(f"the pyvoip driver cannot add headers to its INVITE ({', '.join(headers)}): "
                               "pyVoIP writes its own")
        number, host, port = self.route(target)
        user = (caller or self.user).removeprefix("sip:").removeprefix("tel:").split("@")[0]
        phone_class = _classes()[2]
        try:  # pyVoIP resolves the name at every send; our own sends use the address found once
            found = await asyncio.get_running_loop().getaddrinfo(host, port, family=socket.AF_INET,
                                                                 type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise ValueError(f"cannot find the registrar {host}: {exc}") from None
        line = PyvoipLine(self, found[0][4][:2], number)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # pyVoIP binds its SIP port itself,
            s.bind((self.host, 0))  # and writes it into its messages: it must be told one, not 0
            sip_port = s.getsockname()[1]
        line.rtp_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        line.rtp_socket.bind((self.host, 0))
        rtp_port = line.rtp_socket.getsockname()[1]
        line.phone = phone_class(host, port, user, "", line=line, myIP=self.host, sipPort=sip_port,
                                 rtpPortLow=rtp_port, rtpPortHigh=rtp_port)
        self.lines.add(line)
        try:
            await self._dial(line, ring_timeout, telephone_event)
        except (CallFailed, ValueError, asyncio.CancelledError):
            await line.close()
            raise
        except Exception as exc:  # pyVoIP's own failures: the runner expects CallFailed
            await line.close()
            raise CallFailed(500, f"pyVoIP failed: {type(exc).__name__}: {exc}") from exc
        return line

    async def _dial(self, line: PyvoipLine, ring_timeout: float, telephone_event: bool) -> None:
        phone = line.phone
        try:
            await _in_thread(phone.start, timeout=2 * REGISTER_S + 2)
            if phone.get_status().name != "REGISTERED":
                raise CallFailed(503, f"pyVoIP could not register as {phone.username} at {phone.server}:{phone.port}")
        except TimeoutError:
            raise CallFailed(503, f"pyVoIP could not register at {phone.server}:{phone.port} (no answer)") from None
        # pyVoIP reads SIP 1 s after start(): an answer before that would wait, and the
        # start of the IVR's first prompt would reach an RTP port not yet open.
        await asyncio.wait_for(line.receiving.wait(), 3.0)
        dialled_at = line.loop.time()
        try:
            line.call = await _in_thread(phone.call, line.number, telephone_event, timeout=SIP_READ_S + 2)
        except TimeoutError:
            raise CallFailed(408, "no answer from the registrar to the INVITE") from None
        try:
            await asyncio.wait_for(asyncio.shield(line.answer), ring_timeout)
        except TimeoutError:
            line.cancel()
            raise CallFailed(408, f"not answered within {ring_timeout:g} s") from None
        line.answered_now(dialled_at)

    async def stop(self, line: PyvoipLine) -> None:
        """pyVoIP's stop (BYE if still up, un-REGISTER, close its sockets), bounded."""
        self.lines.discard(line)
        if line.answer.done() and not line.answer.cancelled():
            line.answer.exception()  # a refusal was raised from pyVoIP's INVITE already: seen
        if line.phone is not None:
            with contextlib.suppress(Exception):
                await _in_thread(line.phone.stop, timeout=STOP_S)
        line.rtp_socket.close()  # pyVoIP closed it if the call was answered; else it is ours to
