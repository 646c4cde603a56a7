"""ICE settings for the peer connections: host addresses, STUN/TURN servers, remote candidates.

The STUN/TURN servers and their credentials are in `ice_servers.py` (free of
aiortc, so `ivr serve` checks them before the media libraries load).

aioice picks the host addresses it offers itself and always leaves 127.0.0.1
out, so a caller on the same machine (a test, a developer's browser) could
never connect. `offer_hosts` makes the addresses an operator names the ones
offered: it wraps aioice's host-address function for this process, at run
time, without touching the library's files. Without it aioice chooses, as
before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer
from aiortc.sdp import candidate_from_sdp

from .ice_servers import (  # noqa: F401 - these lived here first; importers keep working
    TURN_TTL,
    IceConfig,
    IceServer,
    check_ice_server,
    is_turn,
    turn_credential,
    turn_username,
)
from .protocol import Candidate

log = logging.getLogger("ivr.webrtc")

_hosts: tuple[str, ...] | None = None
_aioice_choice: Callable[[bool, bool], list[str]] | None = None


def offer_hosts(addresses: Sequence[str] | None) -> None:
    """Offer exactly these host addresses in every peer connection (None or empty: aioice's choice)."""
    global _hosts, _aioice_choice
    if _aioice_choice is None:
        _aioice_choice = aioice.ice.get_host_addresses
        # aioice looks the function up in its module at each gathering, so this takes effect.
        aioice.ice.get_host_addresses = _host_addresses
    _hosts = tuple(addresses) if addresses else None


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _hosts is None:
        assert _aioice_choice is not None
        return _aioice_choice(use_ipv4, use_ipv6)
    return [a for a in _hosts if (use_ipv6 if ":" in a else use_ipv4)]


def configuration(ice_servers: Sequence[str | IceServer]) -> RTCConfiguration:
    """A peer connection's configuration (URLs, or servers with their credentials). Always an
    explicit list: given none, aiortc would otherwise fall back to a public STUN server of its
    own choosing."""
    return RTCConfiguration(iceServers=[s.to_aiortc() if isinstance(s, IceServer) else RTCIceServer(urls=s)
                                        for s in ice_servers])


def remote_candidate(msg: Candidate) -> RTCIceCandidate | None:
    """The aiortc form of a trickled candidate; None for the end of candidates.

    Raises ValueError for a candidate line aiortc cannot read."""
    if msg.candidate is None:
        return None
    try:
        cand = candidate_from_sdp(msg.candidate.split(":", 1)[1])
    except (AssertionError, ValueError, IndexError):
        # aiortc checks the field count with an assert: any of these means a malformed line.
        raise ValueError(f"unreadable candidate {msg.candidate[:80]!r}") from None
    cand.sdpMid = msg.sdp_mid
    cand.sdpMLineIndex = msg.sdp_mline_index
    return cand
