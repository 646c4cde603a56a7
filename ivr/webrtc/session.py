"""One softphone call from socket to socket: signalling, the peer connection, the flow.

The session reads the client's messages in order: the offer (answered once
aiortc has gathered its candidates, so the answer carries them), trickled
candidates, a hangup. When the peer connection connects it says "in-call" and
runs the flow on a WebRtcCall, sending the journey's events to the page as
they happen. Whoever ends the call (the page's hangup, the socket closing,
ICE failing, the flow hanging up, the server stopping) goes through `end`,
which runs once: "ended" is sent, the peer connection is closed and freed,
the socket closed. The session is over when the flow has finished too (its
journey written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from aiortc import RTCPeerConnection, RTCSessionDescription

from . import protocol
from .call import WebRtcCall
from .ice import remote_candidate
from .inbound import Inbound
from .protocol import Candidate, HangupRequest, Offer, ProtocolError
from .track import OutgoingTrack

if TYPE_CHECKING:
    from .server import WebRtcServer

log = logging.getLogger("ivr.webrtc")

OFFER_TIMEOUT = 15.0  # a socket that sends no offer in this long is closed
CONNECT_TIMEOUT = 30.0  # from the answer until the media must be connected
FLOW_END_TIMEOUT = 15.0  # after the call ends, how long the flow may take to finish its journey
CLOSE_TIMEOUT = 5.0  # for closing the peer connection and flushing the socket
OUTBOX = 500  # messages queued for a slow page before journey events are dropped


class Session:
    """One WebSocket, one peer connection, one call."""

    def __init__(self, server: WebRtcServer, ws: web.WebSocketResponse, caller: str) -> None:
        self.server = server
        self.ws = ws
        self.call_id = "webrtc-" + secrets.token_hex(8)
        self.caller = caller
        self.pc: RTCPeerConnection | None = None
        self.track = OutgoingTrack(server.clock)
        self.inbound = Inbound(self._key)
        self.call = WebRtcCall(self.call_id, caller, prompts=server.prompts, track=self.track,
                               inbound=self.inbound, clock=server.clock, music=server.music,
                               end=self._flow_hangup, transferer=server.transferer, count=server.count)
        self.outcome = "abandoned"  # for ivr_webrtc_calls_total (server.OUTCOMES)
        self.reason: str | None = None
        self.connected = False
        self.flow: asyncio.Task | None = None
        self.dropped = 0  # events a slow page did not get
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer: asyncio.Task | None = None
        self._ending: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._errored = False

    # ---- the socket ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the socket until the call is over and its flow has finished."""
        self._writer = asyncio.ensure_future(self._write())
        reason = "closed"
        try:
            # First, before anything else: the STUN/TURN servers the page's peer connection is to use.
            self.send(protocol.ice([s.to_json() for s in self.server.ice_servers(self.call_id)]))
            offer = await self._first()
            await self._answer(offer)
            reason = await self._read()
        except _Closed:
            reason = "closed"
        except ProtocolError as exc:
            self._refuse(str(exc))
            reason = "error"
        except TimeoutError:
            self._refuse("no offer")
            reason = "error"
        except Exception:  # a fault of ours (or of aiortc's) ends this call, not the server
            log.exception("%s: signalling failed", self.call_id)
            self._refuse("server error")
            self.outcome = "error"
            reason = "error"
        finally:
            await self.end(reason)
            await self._wait_flow()

    def _refuse(self, message: str) -> None:
        # An error is the last word: the page shows it when the socket closes.
        if not self.connected:
            self.outcome = "bad-request"
        self._errored = True
        self.send(protocol.error(message))

    async def _first(self) -> Offer:
        msg = await asyncio.wait_for(self.ws.receive(), OFFER_TIMEOUT)
        if msg.type != WSMsgType.TEXT:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                raise _Closed
            raise ProtocolError("messages are JSON text")
        first = protocol.parse(msg.data)
        if not isinstance(first, Offer):
            raise ProtocolError("the first message must be the offer")
        return first

    async def _read(self) -> str:
        """Candidates and hangup, until the page hangs up or the socket closes: why it ended."""
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                raise ProtocolError("messages are JSON text")
            m = protocol.parse(msg.data)
            if isinstance(m, HangupRequest):
                return "hangup"
            if isinstance(m, Offer):
                raise ProtocolError("only one offer per call")
            await self._candidate(m)
        return "closed"

    def send(self, text: str) -> None:
        """Queue one message for the page (journey events are dropped for a page far behind)."""
        if self._outbox.qsize() >= OUTBOX and text.startswith('{"type":"event"'):
            self.dropped += 1
            return
        self._outbox.put_nowait(text)

    async def _write(self) -> None:
        # One writer keeps messages in order; a synchronous observer only queues.
        while (text := await self._outbox.get()) is not None:
            if self.ws.closed:
                continue
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("%s: send failed: %s", self.call_id, exc)

    # ---- offer and answer --------------------------------------------------------------------
    async def _answer(self, offer: Offer) -> None:
        pc = self.pc = RTCPeerConnection(self.server.rtc_configuration())
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except Exception as exc:  # aiortc raises many kinds on a malformed offer
            raise ProtocolError(f"bad offer: {exc}") from None
        audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise ProtocolError("the offer has no audio")
        # The first audio section carries the call both ways; anything else is not used.
        audio[0].direction = "sendrecv"
        pc.addTrack(self.track)
        for t in pc.getTransceivers():
            if t is not audio[0]:
                t.direction = "inactive"
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            raise ProtocolError(f"cannot answer this offer: {exc}") from None
        self.send(protocol.answer(pc.localDescription.sdp))
        self.send(protocol.state("connecting"))
        self._timer = asyncio.get_running_loop().call_later(CONNECT_TIMEOUT, self._spawn_end, "no media", "no-media")

    async def _candidate(self, msg: Candidate) -> None:
        if self.pc is None:
            return  # the call is over
        try:
            cand = remote_candidate(msg)
        except ValueError as exc:
            log.info("%s: candidate ignored: %s", self.call_id, exc)  # one bad line need not end the call
            return
        try:
            await self.pc.addIceCandidate(cand)
        except ValueError as exc:
            log.info("%s: candidate ignored: %s", self.call_id, exc)

    # ---- aiortc's events -------------------------------------------------------------------------
    def _on_track(self, track) -> None:
        if track.kind == "audio":
            self.inbound.start(track)

    def _on_datachannel(self, channel) -> None:
        if channel.label != "dtmf":
            return

        @channel.on("message")
        def on_message(message) -> None:
            key = protocol.channel_key(message)
            if key is None:
                log.info("%s: not a key on the dtmf channel: %r", self.call_id, str(message)[:20])
                return
            self._key(key, "datachannel")

    def _key(self, digit: str, via: str) -> None:
        self.call.dtmf(digit, via)

    def _on_state(self) -> None:
        state = self.pc.connectionState if self.pc is not None else "closed"
        if state == "connected" and not self.connected and self._ending is None:
            self.connected = True
            self.outcome = "answered"
            if self._timer is not None:
                self._timer.cancel()
            self.send(protocol.state("in-call"))
            self.flow = asyncio.ensure_future(self._run_flow())
        elif state in ("failed", "closed") and self._ending is None:
            self._spawn_end("media failed" if state == "failed" else "media closed",
                            "answered" if self.connected else "no-media")

    async def _run_flow(self) -> None:
        try:
            await self.server.on_call(self.call, False, observers=[self._observe])
        except Exception:
            log.exception("%s: the flow failed", self.call_id)
        if self.call.bridge is not None:
            self.send(protocol.state("in-call", "with an agent"))
            await self.call.bridge.wait()  # handed off: the call goes on until a side hangs up
        if self._ending is None:
            # The flow ended without hanging up (it cannot, but a call must never stay open).
            await self.end("flow ended")

    def _observe(self, event: str, data: dict[str, Any]) -> None:
        self.send(protocol.event(event, data))

    # ---- the end ---------------------------------------------------------------------------------
    def _spawn_end(self, reason: str, outcome: str | None = None) -> None:
        if self._ending is not None:
            return
        if outcome is not None:
            self.outcome = outcome
        self._spawn(self.end(reason))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flow_hangup(self, reason: str) -> None:
        await self.end(reason, by_flow=True)

    async def end(self, reason: str, by_flow: bool = False) -> None:
        """End the call (once, whoever asks): tell the page, free the media, close the socket."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._close(reason, by_flow))
        await asyncio.shield(self._ending)

    async def _close(self, reason: str, by_flow: bool) -> None:
        self.reason = reason
        if self._timer is not None:
            self._timer.cancel()
        if not by_flow:
            self.call.remote_hangup(reason)
        if self.call.bridge is not None and not self.call.bridge.done.done():
            # The caller left a bridged call: the agent's BYE goes out while the media is freed.
            self._spawn(self.call.bridge.end("caller", reason))
        if not self._errored:
            self.send(protocol.state("ended", reason))
        self.track.stop()
        await self.inbound.close()
        pc, self.pc = self.pc, None
        if pc is not None:
            try:
                await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)
            except Exception as exc:  # closing must go on whatever aiortc raises
                log.warning("%s: closing the peer connection: %r", self.call_id, exc)
            # Our handlers tie the connection to this session in a reference cycle; cut it,
            # so its codecs (and their FFmpeg threads) are freed now, not at the next full GC.
            pc.remove_all_listeners()
        self._outbox.put_nowait(None)
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._writer), CLOSE_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), CLOSE_TIMEOUT)

    async def _wait_flow(self) -> None:
        if self._tasks:  # a bridged agent's BYE, say: bounded by its transaction's timeout
            await asyncio.wait(set(self._tasks), timeout=FLOW_END_TIMEOUT + 20)
        if self.flow is None:
            return
        done, _ = await asyncio.wait({self.flow}, timeout=FLOW_END_TIMEOUT)
        if not done:
            log.warning("%s: the flow did not finish after the call ended; cancelled", self.call_id)
            self.flow.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.flow


class _Closed(ProtocolError):
    """The socket closed before the offer: nothing to answer, nobody to tell."""
