"""Browser callers: the `/softphone/ws` WebSocket of `ivr serve`, its limits, its live calls.

Each accepted socket becomes a Session (ivr/webrtc/session.py) that holds one
place under the cap until its call is over and its peer connection freed; the
registry of those sessions is what /metrics shows as `ivr_webrtc_calls`.
Before a session is made, the handshake's Origin is checked (403 for a
foreign page), then the token and the cap (an error message, then close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiortc import RTCConfiguration

from ..audio.prompts import PromptCache
from . import protocol
from .access import origin_allowed, token_ok
from .call import PCM16, Transferer
from .ice import TURN_TTL, IceConfig, IceServer, configuration, offer_hosts
from .session import Session

log = logging.getLogger("ivr.webrtc")

PATH = "/softphone/ws"
HEARTBEAT_S = 20.0  # pings find a browser that vanished without closing its socket
OUTCOMES = ("answered", "abandoned", "no-media", "bad-request", "error", "busy", "refused-token", "refused-origin")


@dataclass
class WebRtcSettings:
    """The limits and network settings of browser calls (flags of `ivr serve`)."""

    max_calls: int = 50
    origins: list[str] = field(default_factory=list)  # allowed besides the server's own origin
    token: str | None = None  # required as ?token= when set
    ice_servers: list[str] = field(default_factory=list)  # stun:/turn: URLs; none by default
    hosts: list[str] = field(default_factory=list)  # host addresses offered (empty: aioice's choice)
    # TURN credentials (ivr/webrtc/ice.py: IceConfig): a secret shared with the TURN server for
    # time-limited ones, or a static user and password.
    turn_secret: str | None = field(default=None, repr=False)
    turn_user: str | None = None
    turn_password: str | None = field(default=None, repr=False)
    turn_ttl: int = TURN_TTL


def _no_count(name: str, by: float = 1.0, **labels: str) -> None:
    """The default statistics sink: counts go nowhere."""


class WebRtcServer:
    """Accepts softphone sockets and runs each call through `on_call(call, overflow, observers=)`."""

    def __init__(self, settings: WebRtcSettings, on_call: Callable[..., Awaitable[None]], prompts: PromptCache,
                 clock, music_root: str, transferer: Transferer | None = None,
                 count: Callable[..., None] = _no_count) -> None:
        self.settings = settings
        self.on_call = on_call
        self.prompts = prompts
        self.clock = clock
        self.music_root = music_root
        self.transferer = transferer
        self.count = count
        self.live: set[Session] = set()
        self.draining = False
        # Raises ValueError for servers that cannot work (a turn: URL without credentials...).
        self.ice = IceConfig(tuple(settings.ice_servers), secret=settings.turn_secret, user=settings.turn_user,
                             password=settings.turn_password, ttl=settings.turn_ttl)
        # Made once unless its credentials are time-limited (then made fresh for each call).
        self._config = None if settings.turn_secret else configuration(self.ice.servers())
        if (settings.turn_secret or settings.turn_user) and not self.ice.turn_urls:
            log.warning("TURN credentials are given but no --ice-server names a turn: URL; they are not used")
        offer_hosts(settings.hosts)
        quiet = logging.getLogger("aioice")
        if quiet.level == logging.NOTSET:
            # aioice logs every candidate pair's every state at INFO: five lines a call.
            quiet.setLevel(logging.WARNING)

    def rtc_configuration(self) -> RTCConfiguration:
        """The configuration of each new peer connection: the same servers as the pages',
        with credentials of this process's own ("ivr")."""
        return self._config or configuration(self.ice.servers("ivr"))

    def ice_servers(self, call_id: str) -> list[IceServer]:
        """The servers a page is told for the call `call_id` (time-limited credentials name it)."""
        return self.ice.servers(call_id)

    async def music(self, music_class: str) -> tuple[bytes, ...]:
        """A music class as PCM frames, shared with every other caller on it."""
        return await self.prompts.music(str(Path(self.music_root) / music_class), PCM16)

    def add_routes(self, app: web.Application) -> None:
        """Serve the signalling socket on `app`."""
        app.router.add_get(PATH, self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One softphone socket, from handshake to the end of its call."""
        s = self.settings
        if not origin_allowed(request.headers.get("Origin"), request.host, s.origins):
            self._outcome("refused-origin")
            return web.Response(status=403, text="origin not allowed\n")
        ws = web.WebSocketResponse(max_msg_size=protocol.MAX_MESSAGE, heartbeat=HEARTBEAT_S, timeout=2.0)
        await ws.prepare(request)
        if not token_ok(request.query.get("token"), s.token):
            self._outcome("refused-token")
            return await _refuse(ws, "bad token")
        if self.draining or len(self.live) >= s.max_calls:
            # Taken before anything is awaited, so a burst of sockets cannot overshoot the cap.
            self._outcome("busy")
            return await _refuse(ws, "busy")
        session = Session(self, ws, caller=f"webrtc:{request.remote or 'unknown'}")
        self.live.add(session)
        try:
            await session.run()
        finally:
            self.live.discard(session)
            self._outcome(session.outcome)
            log.info("%s from %s ended: %s (%s)", session.call_id, session.caller, session.reason, session.outcome)
        return ws

    def _outcome(self, outcome: str) -> None:
        self.count("ivr_webrtc_calls_total", outcome=outcome)

    async def close(self, timeout: float = 10.0) -> None:
        """End every call (the server is stopping) and wait for them to be over."""
        self.draining = True
        sessions = list(self.live)
        for session in sessions:
            await session.end("server stopping")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.live and loop.time() < deadline:
            await asyncio.sleep(0.05)


async def _refuse(ws: web.WebSocketResponse, message: str) -> web.WebSocketResponse:
    with contextlib.suppress(ConnectionError, RuntimeError):  # the client may be gone already
        await ws.send_str(protocol.error(message))
    await ws.close()
    return ws
