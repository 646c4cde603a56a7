"""Who may open the softphone's WebSocket: the origin check and the optional token.

A browser sends its page's Origin with every WebSocket handshake and lets any
page open a socket to any host, so a page elsewhere could otherwise place
calls from its visitors' browsers. The Origin must be the server's own (the
request's Host) or one listed by the operator. Clients that are not browsers
send no Origin; they can send any header they like anyway, so for them the
token is the control.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_key(url: str) -> tuple[str, str, int] | None:
    """An origin URL as (scheme, host, port), default ports filled in; None when it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _host_key(host: str, default_port: int) -> tuple[str, int] | None:
    """A Host header as (host, port)."""
    try:
        parts = urlsplit("//" + host.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port or default_port


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str] = ()) -> bool:
    """Whether a handshake with this Origin header may go on.

    No Origin (not a browser): yes. Otherwise its host and port must be the
    request's Host (the scheme is not compared: behind a TLS proxy the page is
    https while the request reaching us is plain http), or the origin must be
    one of `allowed` (scheme, host and port all equal).
    """
    if origin is None:
        return True
    key = origin_key(origin)
    if key is None:
        return False  # "null" (a file or sandboxed page) or garbage
    if host:
        own = _host_key(host, DEFAULT_PORTS[key[0]])
        if own is not None and own == key[1:]:
            return True
    return any(origin_key(a) == key for a in allowed)


def token_ok(given: str | None, expected: str | None) -> bool:
    """Whether the socket's ?token= matches the configured token (always, when none is set)."""
    if not expected:
        return True
    if given is None:
        return False
    return secrets.compare_digest(given.encode(), expected.encode())
