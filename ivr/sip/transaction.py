"""SIP transactions (RFC 3261 section 17): retransmissions and their absorption.

Server side: a retransmitted request gets the last response again; a final
non-2xx answer to an INVITE is repeated over UDP until the ACK comes. Client
side (BYE, REFER, NOTIFY, CANCEL we send): requests are repeated over UDP until
a final response, and time out after 64*T1. INVITEs we send (outgoing calls)
have a client transaction of their own, `InviteClientTx`, which also hands on
provisional responses and every 2xx. All timers are on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import SipParseError
from .header_list import header_key
from .headers import Via, response_address
from .lex import split_commas
from .message import SipRequest, SipResponse
from .transport import SipTransport, Source

T1, T2, T4 = 0.5, 4.0, 5.0
MAGIC = "z9hG4bK"
_counter = itertools.count(1)


def new_branch() -> str:
    return f"{MAGIC}{secrets.token_hex(6)}{next(_counter):x}"


def new_tag() -> str:
    return secrets.token_hex(5)


def is_ip(host: str) -> bool:
    """True for an IPv4 or IPv6 literal (a name would need a DNS lookup)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def stamp_via(req: SipRequest, source: tuple) -> None:
    """Record where `req` came from in its top Via: `received`, and the `rport` value
    when asked (RFC 3261 18.2.1, RFC 3581 4), so responses copy it back to the peer."""
    for i, (name, value) in enumerate(req.headers):
        if header_key(name) != "via":
            continue
        parts = split_commas(value)
        try:
            parts[0] = Via.parse(parts[0]).stamped(source).serialize()
        except (SipParseError, IndexError):
            return  # validation answers a broken Via
        req.headers[i] = (name, ", ".join(parts))
        return


def reply_address(req: SipRequest, source: Source) -> Source | tuple[str, int]:
    """Where responses to `req` go: its connection, or per its top Via over UDP.

    A Via may name a host (maddr, a sent-by name) to send to; we only ever
    answer an IP literal. Resolving a name would block the event loop on DNS and
    would let one forged request point our answers at any third party, so such
    answers go back to where the request came from instead.
    """
    if source.transport != "UDP":
        return source
    try:
        dest = response_address(req.top_via, source.addr)
    except (SipParseError, ValueError):
        return source.addr
    return dest if is_ip(dest[0]) else (source.addr[0], dest[1])


def tx_key(req: SipRequest) -> tuple:
    """RFC 3261 17.2.3 matching: branch + sent-by + method (an ACK matches its INVITE)."""
    via = req.top_via
    method = "INVITE" if req.method == "ACK" else req.method
    branch = via.params.get("branch") or ""
    if branch.startswith(MAGIC):
        return (branch, via.host, via.port, method)
    # RFC 2543 peers: no magic cookie, fall back to the dialog identifiers.
    return ("2543", req.call_id, req.cseq.number, method, req.from_addr.tag, via.host, via.port)


@dataclass
class ServerTx:
    """One request we are answering."""

    key: tuple
    request: SipRequest
    source: Source
    last: bytes | None = None
    final: int = 0
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None


class Transactions:
    """Server and client transactions of one SIP transport."""

    def __init__(self, transport: SipTransport, t1: float = T1) -> None:
        self.transport = transport
        self.t1 = t1  # the round-trip estimate our client transactions pace themselves by
        self.server: dict[tuple, ServerTx] = {}
        # Client transactions by (branch, method): each takes the responses that match it.
        self.client: dict[tuple[str, str], Callable[[SipResponse], None]] = {}

    # ---- server side -------------------------------------------------------------
    def absorb(self, req: SipRequest, source: Source) -> bool:
        """True when `req` belongs to a transaction already being answered
        (a retransmission, or the ACK of a non-2xx final answer)."""
        try:
            key = tx_key(req)
        except SipParseError:
            return False
        tx = self.server.get(key)
        if tx is None:
            return False
        if req.method == "ACK":
            if tx.final >= 300:
                tx.acked.set()
                return True
            return False  # the ACK of a 2xx is end to end: the dialog takes it
        if tx.last is not None:
            self._send(tx, tx.last)
        return True

    def begin(self, req: SipRequest, source: Source) -> ServerTx:
        tx = ServerTx(tx_key(req), req, source)
        self.server[tx.key] = tx
        return tx

    def respond(self, tx: ServerTx, resp: SipResponse) -> None:
        """Send a response in `tx`, and keep the transaction as long as RFC 3261 says."""
        data = resp.serialize()
        tx.last = data
        self._send(tx, data)
        if resp.status < 200:
            return
        tx.final = resp.status
        loop = asyncio.get_running_loop()
        reliable = tx.source.transport != "UDP"
        if tx.request.method == "INVITE" and resp.status >= 300:
            if not reliable:
                loop.create_task(self._repeat_until_ack(tx, data))
            else:
                loop.call_later(64 * T1, self._forget, tx.key)
        else:
            # Keep answering retransmissions for a while (Timer J), then forget.
            loop.call_later(0 if reliable else 64 * T1, self._forget, tx.key)

    async def _repeat_until_ack(self, tx: ServerTx, data: bytes) -> None:
        interval = T1
        deadline = asyncio.get_running_loop().time() + 64 * T1
        try:
            while not tx.acked.is_set():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tx.acked.wait(), min(interval, left))
                if not tx.acked.is_set():
                    self._send(tx, data)
                interval = min(interval * 2, T2)
            if tx.acked.is_set():
                await asyncio.sleep(T4)  # Timer I: absorb ACK retransmissions
        finally:
            self._forget(tx.key)

    def _forget(self, key: tuple) -> None:
        self.server.pop(key, None)

    def _send(self, tx: ServerTx, data: bytes) -> None:
        self.transport.send(data, reply_address(tx.request, tx.source))

    # ---- client side -------------------------------------------------------------------
    async def request(self, req: SipRequest, dest: Source | tuple[str, int],
                      timeout: float | None = None) -> SipResponse:
        """Send a non-INVITE `req` (its top Via must carry a fresh branch); the final
        response, or TimeoutError after `timeout` (64*T1 by default)."""
        branch = req.top_via.params.get("branch") or ""
        key = (branch, req.method)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()

        def deliver(resp: SipResponse) -> None:
            if resp.status >= 200 and not fut.done():
                fut.set_result(resp)

        self.client[key] = deliver
        data = req.serialize()
        reliable = isinstance(dest, Source) and dest.transport != "UDP"
        interval = self.t1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (64 * self.t1 if timeout is None else timeout)
        try:
            self.transport.send(data, dest)
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(f"no final response to {req.method}")
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), left if reliable else min(interval, left))
                except TimeoutError:
                    if reliable:
                        raise
                    self.transport.send(data, dest)
                    interval = min(interval * 2, T2)
        finally:
            self.client.pop(key, None)

    def response(self, resp: SipResponse) -> bool:
        """Give a response to the client transaction waiting for it; False if none is."""
        try:
            via = resp.top_via
            key = (via.params.get("branch") or "", resp.cseq.method)
        except SipParseError:
            return False
        deliver = self.client.get(key)
        if deliver is None:
            return False
        deliver(resp)
        return True


class InviteClientTx:
    """An INVITE we sent, over UDP (RFC 3261 17.1.1, with the Accepted state of RFC 6026).

    The INVITE is repeated at T1, 2*T1, 4*T1 ... (Timer A) until any response
    arrives; with none at all by 64*T1 (Timer B) `responses` yields None. The
    transaction user reads `responses`: provisional answers, then the first
    final one. A non-2xx final answer is ACKed here (same branch), and that ACK
    is sent again for each retransmission of it. After a 2xx the transaction
    stays 64*T1 to pass the 2xx retransmissions (and 2xx from other forks) on,
    since their ACK is the dialog's business, not ours: to `on_2xx` once the
    transaction user has set it, to `responses` until then.
    """

    def __init__(self, txs: Transactions, req: SipRequest, dest: tuple[str, int]) -> None:
        self.txs = txs
        self.request = req
        self.dest = dest
        self.key = (req.top_via.branch or "", "INVITE")
        self.state = "calling"  # calling, proceeding, accepted, completed, terminated
        self.responses: asyncio.Queue[SipResponse | None] = asyncio.Queue()
        self.on_2xx: Callable[[SipResponse], None] | None = None
        self.ack: bytes | None = None  # our ACK of a non-2xx final answer
        self.cancel_sent = False  # set by the transaction user: one CANCEL per INVITE
        self._data = req.serialize()
        self._interval = txs.t1
        self._timers: list[asyncio.TimerHandle] = []

    def start(self) -> None:
        """Send the INVITE and start Timers A and B."""
        self.txs.client[self.key] = self.receive
        self.txs.transport.send(self._data, self.dest)
        loop = asyncio.get_running_loop()
        self._timers = [loop.call_later(self._interval, self._timer_a),
                        loop.call_later(64 * self.txs.t1, self._timer_b)]

    def _timer_a(self) -> None:
        if self.state != "calling":
            return
        self.txs.transport.send(self._data, self.dest)
        self._interval *= 2  # no T2 cap for INVITE (RFC 3261 17.1.1.2)
        self._timers.append(asyncio.get_running_loop().call_later(self._interval, self._timer_a))

    def _timer_b(self) -> None:
        if self.state == "calling":
            self.terminate()
            self.responses.put_nowait(None)

    def receive(self, resp: SipResponse) -> None:
        """A response that matched this transaction (by branch and CSeq method)."""
        status, state = resp.status, self.state
        if status < 200:
            if state in ("calling", "proceeding"):
                self._stop_timers()
                self.state = "proceeding"
                self.responses.put_nowait(resp)
        elif status < 300:
            if state in ("calling", "proceeding"):
                self._enter("accepted")
            if self.state == "accepted":
                if self.on_2xx is not None:
                    self.on_2xx(resp)
                else:
                    self.responses.put_nowait(resp)
        elif state in ("calling", "proceeding"):
            self.ack = ack_for_final(self.request, resp).serialize()
            self.txs.transport.send(self.ack, self.dest)
            self._enter("completed")  # Timer D: absorb the retransmissions of the final answer
            self.responses.put_nowait(resp)
        elif state == "completed" and self.ack is not None:
            self.txs.transport.send(self.ack, self.dest)

    def cancel_request(self) -> SipRequest:
        """The CANCEL of this INVITE (RFC 3261 9.1): same branch and CSeq number."""
        return _copy_of_invite(self.request, "CANCEL", self.request.get("To") or "")

    def terminate(self) -> None:
        """Stop every timer and leave the client table."""
        self.state = "terminated"
        self._stop_timers()
        if self.txs.client.get(self.key) == self.receive:
            del self.txs.client[self.key]

    def _enter(self, state: str) -> None:
        self._stop_timers()
        self.state = state
        self._timers = [asyncio.get_running_loop().call_later(64 * self.txs.t1, self.terminate)]

    def _stop_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []


def ack_for_final(invite: SipRequest, resp: SipResponse) -> SipRequest:
    """The ACK of a non-2xx final answer (RFC 3261 17.1.1.3): the INVITE's branch,
    Request-URI and CSeq number, the To of the response (with its tag)."""
    return _copy_of_invite(invite, "ACK", resp.get("To") or invite.get("To") or "")


def _copy_of_invite(invite: SipRequest, method: str, to: str) -> SipRequest:
    headers = [("Via", invite.get_all("Via")[0]), ("Max-Forwards", "70")]
    headers += [("Route", r) for r in invite.get_all("Route")]
    headers += [("From", invite.get("From") or ""), ("To", to), ("Call-ID", invite.call_id or ""),
                ("CSeq", f"{invite.cseq.number} {method}")]
    req = SipRequest(method, invite.uri, headers=headers)
    req.set_body(b"", None)
    return req
