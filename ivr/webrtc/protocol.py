"""The softphone's signalling messages: JSON text over the WebSocket, checked on arrival.

Client to server: one `offer` first, then trickled `candidate`s and maybe a
`hangup`. Server to client: the `ice` servers first (once the socket is
accepted), then the `answer`, call `state`s, journey `event`s and an `error`
before the socket closes. Anything that is not one of these, well
formed, is a ProtocolError: the session answers with an error and closes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE = 64 * 1024  # the largest text message read (an SDP offer is a few kB)
KEYS = "0123456789*#ABCD"  # what the "dtmf" data channel may carry, one character a message
STATES = ("connecting", "in-call", "ended")


class ProtocolError(ValueError):
    """A message the signalling does not accept; its text goes back to the client."""


@dataclass(frozen=True)
class Offer:
    """The browser's SDP offer (audio, and the "dtmf" data channel)."""

    sdp: str


@dataclass(frozen=True)
class Candidate:
    """One trickled ICE candidate; `candidate` None is the end of candidates."""

    candidate: str | None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


@dataclass(frozen=True)
class HangupRequest:
    """The caller hung up on the page."""


Message = Offer | Candidate | HangupRequest


def parse(text: str | bytes) -> Message:
    """One client message, validated; raises ProtocolError."""
    if not isinstance(text, str):
        raise ProtocolError("messages are JSON text")
    if len(text) > MAX_MESSAGE:
        raise ProtocolError("message too large")
    try:
        doc = json.loads(text)
    except ValueError:
        raise ProtocolError("not JSON") from None
    if not isinstance(doc, dict):
        raise ProtocolError("a message is a JSON object")
    kind = doc.get("type")
    if kind == "offer":
        sdp = doc.get("sdp")
        if not isinstance(sdp, str) or not sdp.strip():
            raise ProtocolError("offer: sdp must be a non-empty string")
        return Offer(sdp)
    if kind == "candidate":
        return _candidate(doc)
    if kind == "hangup":
        return HangupRequest()
    raise ProtocolError(f"unknown message type {kind!r}" if isinstance(kind, str) else "message has no type")


def _candidate(doc: dict[str, Any]) -> Candidate:
    cand = doc.get("candidate")
    if cand is not None and not isinstance(cand, str):
        raise ProtocolError("candidate: candidate must be a string or null")
    mid = doc.get("sdpMid")
    if mid is not None and not isinstance(mid, str):
        raise ProtocolError("candidate: sdpMid must be a string or null")
    index = doc.get("sdpMLineIndex")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 64):
        raise ProtocolError("candidate: sdpMLineIndex must be a small non-negative integer or null")
    if not cand:
        return Candidate(None)  # "" or null: the browser has no more candidates
    if not cand.startswith("candidate:"):
        raise ProtocolError("candidate: must start with 'candidate:'")
    if mid is None and index is None:
        index = 0  # one bundled transport: the first media section carries every candidate
    return Candidate(cand, mid, index)


def channel_key(message: str | bytes) -> str | None:
    """The key a "dtmf" data channel message presses, or None when it is not one key."""
    if isinstance(message, str) and len(message) == 1 and message in KEYS:
        return message
    return None


def _dump(doc: dict[str, Any]) -> str:
    # default=str: journey data may hold values JSON has no type for (dates, paths).
    return json.dumps(doc, default=str, separators=(",", ":"))


def ice(servers: Sequence[dict[str, Any]]) -> str:
    """The STUN/TURN servers for the page's peer connection, the first message of an accepted
    socket: each `{"urls": [...]}`, TURN ones with `username` and `credential`. Maybe none."""
    return _dump({"type": "ice", "iceServers": list(servers)})


def answer(sdp: str) -> str:
    """The server's SDP answer (it carries our gathered candidates)."""
    return _dump({"type": "answer", "sdp": sdp})


def state(name: str, reason: str | None = None) -> str:
    """The call's state: connecting, in-call or ended (with why)."""
    if name not in STATES:
        raise ValueError(f"unknown state {name!r}")
    doc: dict[str, Any] = {"type": "state", "state": name}
    if reason:
        doc["reason"] = reason
    return _dump(doc)


def event(name: str, data: dict[str, Any]) -> str:
    """One journey event of the call, for the page's live view."""
    return _dump({"type": "event", "event": name, "data": data})


def error(message: str) -> str:
    """Why the server is closing the socket."""
    return _dump({"type": "error", "message": message})
