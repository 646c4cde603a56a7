"""The STUN and TURN servers of browser calls, and the TURN credentials made for each call.

The servers an operator names (`--ice-server`) are used by both ends of a
browser call: the page is told them at the start of each call (the `ice`
message), and this process's own peer connection uses them too. A TURN server
wants credentials: time-limited ones made per call from a secret shared with
the TURN server (the TURN REST API form, coturn's `use-auth-secret` /
`static-auth-secret`), or one static user and password. STUN URLs never carry
credentials. Nothing here needs aiortc until a peer connection is configured,
so `ivr serve` checks these settings before the media libraries load.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

TURN_TTL = 3600  # seconds a time-limited TURN credential is valid



def check_ice_server(url: str) -> str:
    """`url` if it is a STUN or TURN URL aiortc can use; raises ValueError otherwise."""
    from aiortc.rtcicetransport import (
        parse_stun_turn_uri,  # here: `ivr serve` parses its flags before aiortc is needed
    )

    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a stun:, turn: or turns: URL ({exc})") from None
    if not parsed.get("host"):
        raise ValueError(f"{url!r} names no host")
    return url


@dataclass(frozen=True)
class IceServer:
    """One entry of a peer connection's iceServers: URLs and, for TURN, the credentials."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = field(default=None, repr=False)  # never in a log line

    def to_json(self) -> dict[str, Any]:
        """The entry as a browser's RTCPeerConnection takes it (no credentials for STUN)."""
        doc: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            doc["username"] = self.username
            doc["credential"] = self.credential or ""
        return doc

    def to_aiortc(self):
        """The entry for this process's own (aiortc) peer connection."""
        from aiortc import RTCIceServer

        return RTCIceServer(urls=list(self.urls), username=self.username, credential=self.credential)


def is_turn(url: str) -> bool:
    """Whether `url` names a TURN server (turn: or turns:), the ones that take credentials."""
    return url.lower().startswith(("turn:", "turns:"))


def turn_username(name: str, ttl: int, now: float) -> str:
    """A time-limited TURN user name: `<unix expiry>:<name>`."""
    return f"{int(now) + ttl}:{name}"


def turn_credential(secret: str, username: str) -> str:
    """The TURN REST API password of `username`: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class IceConfig:
    """The STUN/TURN servers of browser calls and how TURN credentials are made.

    Raises ValueError, saying what to change, for a turn: URL without credentials,
    for both a secret and a static user, or for half of a static pair."""

    urls: tuple[str, ...] = ()
    secret: str | None = field(default=None, repr=False)  # shared with the TURN server
    user: str | None = None  # a static TURN user...
    password: str | None = field(default=None, repr=False)  # ...and its password
    ttl: int = TURN_TTL

    def __post_init__(self) -> None:
        object.__setattr__(self, "urls", tuple(check_ice_server(u) for u in self.urls))
        if self.secret and self.user:
            raise ValueError("give either a TURN secret (--turn-secret or $IVR_TURN_SECRET) for time-limited "
                             "credentials or a static --turn-user with --turn-password, not both")
        if self.user and not self.password:
            raise ValueError(f"--turn-user {self.user} needs a password (--turn-password or $IVR_TURN_PASSWORD)")
        if self.password and not self.user:
            raise ValueError("--turn-password needs --turn-user")
        if self.ttl <= 0:
            raise ValueError(f"--turn-ttl must be a positive number of seconds, not {self.ttl}")
        if self.turn_urls and not (self.secret or self.user):
            raise ValueError(f"{self.turn_urls[0]} needs TURN credentials: --turn-secret SECRET (or "
                             f"$IVR_TURN_SECRET, shared with the TURN server) or --turn-user USER with "
                             f"--turn-password (or $IVR_TURN_PASSWORD)")

    @property
    def stun_urls(self) -> tuple[str, ...]:
        return tuple(u for u in self.urls if not is_turn(u))

    @property
    def turn_urls(self) -> tuple[str, ...]:
        return tuple(u for u in self.urls if is_turn(u))

    def servers(self, name: str = "ivr", now: float | None = None) -> list[IceServer]:
        """The servers with fresh credentials: time-limited ones are for `name` (a call id, or
        "ivr" for this process) and valid for `ttl` seconds from `now`."""
        out: list[IceServer] = []
        if self.stun_urls:
            out.append(IceServer(self.stun_urls))
        if self.turn_urls:
            if self.secret:
                username = turn_username(name, self.ttl, time.time() if now is None else now)
                out.append(IceServer(self.turn_urls, username, turn_credential(self.secret, username)))
            else:
                out.append(IceServer(self.turn_urls, self.user, self.password))
        return out

    def summary(self) -> str:
        """One line for the start-up banner (no secret in it)."""
        parts = [f"{len(self.stun_urls)} STUN"] if self.stun_urls else []
        if self.turn_urls:
            how = "time-limited credentials" if self.secret else "static credentials"
            parts.append(f"{len(self.turn_urls)} TURN ({how})")
        line = "ICE: " + (", ".join(parts) if parts else "no STUN or TURN server (host candidates only)")
        if (self.secret or self.user) and not self.turn_urls:
            line += "; TURN credentials given but no turn: URL, so unused"
        return line
