"""The offer/answer model (RFC 3264) for our G.711 audio, on the SDP model of sdp.py.

`answer()` picks one audio stream and one codec from an offer or raises
`NoCommonCodec` (the SIP layer answers 488); `offer()` makes our own offer and
`negotiated_from_answer()` reads what the answer to it settles. Each returns or
carries a `Negotiated`: what the two sides agreed for the one audio stream.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .sdp import (
    _DIGITS,
    DIRECTIONS,
    Attribute,
    Connection,
    MediaDescription,
    NoCommonCodec,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
)

__all__ = [
    "Negotiated",
    "answer",
    "negotiated_from_answer",
    "offer",
]

# The answerer's direction for each of the offerer's (RFC 3264 6.1).
_REVERSE = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
_STATIC = {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1)}  # RFC 3551: no rtpmap needed
_RTP_PROTOS = ("RTP/AVP", "RTP/AVPF")  # plain RTP; SRTP and DTLS profiles are refused
_CLOCK = 8000
_DTMF_EVENTS = frozenset(range(16))


@dataclass(frozen=True)
class Negotiated:
    """What the two sides agreed for the one audio stream.

    `direction` is the far end's, from its side, as its SDP says it (with the old
    c=0.0.0.0 hold read as "do not send to me"): "recvonly" means it only listens,
    so we send and do not expect media. `local_direction` is the mirror image,
    the one in our SDP; `sends` and `receives` say what the RTP session should do.
    """

    codec: str  # "PCMU" or "PCMA"
    payload_type: int
    dtmf_payload_type: int | None  # telephone-event at 8 kHz, or None: use in-band detection
    remote_addr: tuple[str, int]  # where to send RTP; a host name is left to the caller
    direction: str  # the far end's: "sendrecv", "sendonly", "recvonly" or "inactive"
    remote_ptime: int | None = None  # the packet time the far end asked to receive, ms
    clock_rate: int = _CLOCK

    @property
    def local_direction(self) -> str:
        return _REVERSE[self.direction]

    @property
    def sends(self) -> bool:
        """We send RTP: the far end receives."""
        return self.direction in ("sendrecv", "recvonly")

    @property
    def receives(self) -> bool:
        """We should get RTP: the far end sends."""
        return self.direction in ("sendrecv", "sendonly")

    @property
    def on_hold(self) -> bool:
        """The far end asked not to be sent media (sendonly/inactive or c=0.0.0.0)."""
        return not self.sends


def _events(fmtp: str | None) -> set[int]:
    """The event codes an fmtp such as "0-15,66" lists; RFC 4733's default is 0-15."""
    if fmtp is None:
        return set(_DTMF_EVENTS)
    events: set[int] = set()
    for item in fmtp.replace(" ", "").split(","):
        low, dash, high = item.partition("-")
        if not _DIGITS.fullmatch(low) or (dash and not _DIGITS.fullmatch(high)):
            return set(_DTMF_EVENTS)  # unreadable parameters: assume the default
        lo, hi = int(low), int(high) if dash else int(low)
        events.update(range(lo, min(hi, 255) + 1))
    return events


def _ranges(events: set[int]) -> str:
    out, ordered = [], sorted(events)
    start = prev = ordered[0]
    for e in [*ordered[1:], None]:
        if e is not None and e == prev + 1:
            prev = e
            continue
        out.append(f"{start}-{prev}" if prev != start else str(start))
        if e is not None:
            start = prev = e
    return ",".join(out)


def _codec_of(pt: int, maps: dict[int, RtpMap]) -> tuple[str, int, int] | None:
    if pt in maps:
        m = maps[pt]
        return m.encoding.upper(), m.clock_rate, m.channels
    return _STATIC.get(pt)


def _pick(media: MediaDescription, supported: tuple[str, ...]) -> tuple[str, int] | None:
    """The first format, in the offerer's order of preference, that we can take."""
    maps = media.rtpmaps()
    wanted = {name.upper() for name in supported}
    for pt in media.payload_types():
        codec = _codec_of(pt, maps)
        if codec and codec[0] in wanted and codec[1:] == (_CLOCK, 1):
            return codec[0], pt
    return None


def _telephone_event(media: MediaDescription) -> tuple[int, set[int]] | None:
    maps = media.rtpmaps()
    for pt in media.payload_types():
        m = maps.get(pt)
        if m and m.encoding.lower() == "telephone-event" and m.clock_rate == _CLOCK:
            events = _events(media.fmtp(pt)) & _DTMF_EVENTS
            if events:
                return pt, events
    return None


def _usable(media: MediaDescription) -> bool:
    return media.media == "audio" and media.port != 0 and media.proto.upper() in _RTP_PROTOS


def _direction(sdp: SessionDescription, media: MediaDescription, conn: Connection) -> str:
    """The far end's direction for a stream, with the old c=0.0.0.0 hold folded in."""
    theirs = media.direction or sdp.direction or "sendrecv"
    if conn.is_hold:  # "do not send to me", whatever the attribute says
        theirs = {"sendrecv": "sendonly", "recvonly": "inactive"}.get(theirs, theirs)
    return theirs


def _negotiated(
    sdp: SessionDescription, media: MediaDescription, picked: tuple[str, int], events
) -> Negotiated:
    """The agreement for one stream, once its codec is chosen; checks its address."""
    conn = media.connection or sdp.connection
    if conn is None:
        raise SdpError("no c= line for the audio stream")
    return Negotiated(
        codec=picked[0],
        payload_type=picked[1],
        dtmf_payload_type=events[0] if events else None,
        remote_addr=(conn.checked_host(), media.port),
        direction=_direction(sdp, media, conn),
        remote_ptime=media.ptime or sdp.ptime,
    )


def _audio_section(
    port: int, proto: str, neg: Negotiated, events: tuple[int, set[int]] | None, ptime: int
) -> MediaDescription:
    """Our m= section for the accepted stream: the codec, then telephone-event if agreed."""
    codec, pt = neg.codec, neg.payload_type
    formats = [str(pt)] + ([str(events[0])] if events else [])
    attrs: list[Attribute] = [("rtpmap", f"{pt} {codec}/{_CLOCK}")]
    if events:
        attrs.append(("rtpmap", f"{events[0]} telephone-event/{_CLOCK}"))
        attrs.append(("fmtp", f"{events[0]} {_ranges(events[1])}"))
    attrs += [("ptime", str(ptime)), (neg.local_direction, None)]
    return MediaDescription("audio", port, proto, formats, attributes=attrs)


def _session(
    local_ip: str, session_id: int | None, session_version: int, username: str
) -> SessionDescription:
    sid = session_id if session_id is not None else secrets.randbelow(2**62)
    conn = Connection.for_ip(local_ip)
    origin = Origin(username, sid, session_version, "IN", conn.addrtype, local_ip)
    return SessionDescription(origin=origin, connection=conn)


def answer(
    offer: SessionDescription | str | bytes,
    local_ip: str,
    local_port: int,
    supported: tuple[str, ...] = ("PCMU", "PCMA"),
    dtmf: bool = True,
    *,
    ptime: int = 20,
    session_id: int | None = None,
    session_version: int = 0,
    username: str = "ivr",
) -> tuple[SessionDescription, Negotiated]:
    """Answer an offer as the server side: take the first audio stream we can, with the
    offerer's most preferred codec among `supported`, plus telephone-event if offered.

    Other streams are refused with port 0, as RFC 3264 asks (same number and order of
    m= lines). Raises SdpError for an unreadable offer, NoCommonCodec when nothing fits.
    """
    sdp = offer if isinstance(offer, SessionDescription) else SessionDescription.parse(offer)
    result = _session(local_ip, session_id, session_version, username)
    negotiated: Negotiated | None = None
    for media in sdp.media:
        picked = _pick(media, supported) if negotiated is None and _usable(media) else None
        if picked is None:
            refused = MediaDescription(media.media, 0, media.proto, list(media.formats) or ["0"])
            result.media.append(refused)
            continue
        events = _telephone_event(media) if dtmf else None
        negotiated = _negotiated(sdp, media, picked, events)
        result.media.append(_audio_section(local_port, media.proto, negotiated, events, ptime))
    if negotiated is None:
        raise NoCommonCodec(f"no audio stream with any of {', '.join(supported)}")
    return result, negotiated


def offer(
    local_ip: str,
    local_port: int,
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    dtmf_payload_type: int | None = 101,
    *,
    ptime: int = 20,
    direction: str = "sendrecv",
    session_id: int | None = None,
    session_version: int = 0,
    username: str = "ivr",
) -> SessionDescription:
    """Our own offer (outgoing calls, re-INVITE for hold): one audio stream, codecs in order
    of preference, telephone-event 0-15 unless `dtmf_payload_type` is None.

    For a re-INVITE pass the same session_id and session_version + 1.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}")
    static = {name: pt for pt, (name, _, _) in _STATIC.items()}
    unknown = [name for name in codecs if name.upper() not in static]
    if unknown or not codecs:
        raise ValueError(f"codecs must be among {sorted(static)}, got {codecs}")
    sdp = _session(local_ip, session_id, session_version, username)
    formats: list[str] = []
    attrs: list[Attribute] = []
    for name in codecs:
        pt = static[name.upper()]
        formats.append(str(pt))
        attrs.append(("rtpmap", f"{pt} {name.upper()}/{_CLOCK}"))
    if dtmf_payload_type is not None:
        pt = dtmf_payload_type
        formats.append(str(pt))
        attrs += [("rtpmap", f"{pt} telephone-event/{_CLOCK}"), ("fmtp", f"{pt} 0-15")]
    attrs += [("ptime", str(ptime)), (direction, None)]
    sdp.media.append(MediaDescription("audio", local_port, "RTP/AVP", formats, attributes=attrs))
    return sdp


def negotiated_from_answer(
    our_offer: SessionDescription, their_answer: SessionDescription | str | bytes
) -> Negotiated:
    """What an answer to our offer settles: the first codec of theirs that we offered."""
    sdp = their_answer
    if not isinstance(sdp, SessionDescription):
        sdp = SessionDescription.parse(sdp)
    if len(sdp.media) != len(our_offer.media):
        raise SdpError("the answer must have as many m= lines as the offer")
    for ours, media in zip(our_offer.media, sdp.media, strict=True):
        if not _usable(media) or ours.port == 0:
            continue
        offered = [_codec_of(pt, ours.rtpmaps()) for pt in ours.payload_types()]
        names = tuple(c[0] for c in offered if c and c[0] in ("PCMU", "PCMA"))
        picked = _pick(media, names)
        if picked is None:
            continue
        events = _telephone_event(media)
        if events and events[0] not in ours.payload_types():
            events = None  # they must echo our payload type (RFC 3264 6.1)
        return _negotiated(sdp, media, picked, events)
    raise NoCommonCodec("the answer accepts none of our audio codecs")
