"""Registration of the IVR as an extension of a PBX or registrar (RFC 3261 section 10).

`Registration` keeps one binding alive: it sends REGISTER for the address of
record (To and From are the AOR, Contact is where the IVR answers) through the
SIP server's own transport and client transactions, so the registrar sees the
same address and port that calls will reach. Challenges (401 and 407) are
answered with HTTP Digest (RFC 2617, RFC 7616: MD5 and SHA-256, with and
without qop). The binding is refreshed at half of what the registrar granted,
failures are retried with exponential back-off, and `stop()` removes the
binding (Expires: 0) so the registrar stops routing calls to a process that
is going away. Everything runs on the event loop: one task, no threads.

Only UDP is spoken here, and the registrar is found by A/AAAA lookup of the
AOR's host (or of an explicit `registrar`); SRV and NAPTR are not consulted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

from .errors import SipParseError
from .headers import NameAddr, Via
from .lex import quote
from .message import SipRequest, SipResponse
from .transaction import new_branch, new_tag
from .uri import SipUri, format_host, parse_uri

log = logging.getLogger("ivr.sip.register")

# RFC 7616 algorithms, strongest first: when a registrar offers several
# challenges the client picks the best it supports (RFC 7616 section 3.7).
_HASHES = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
_PREFERENCE = ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")

# auth-param = token "=" ( token / quoted-string ), comma separated.
_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9!#$%&\'*+\-.^_`|~]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(?:,|$)')
_QUOTED_PAIR = re.compile(r"\\(.)")


class RegistrationError(Exception):
    """A REGISTER that did not end in a binding; `retry_after` when the registrar said when."""

    def __init__(self, text: str, retry_after: float | None = None) -> None:
        super().__init__(text)
        self.retry_after = retry_after


# ---- digest authentication ------------------------------------------------------------------
@dataclass
class Challenge:
    """One Digest challenge from a WWW-Authenticate or Proxy-Authenticate header."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()  # offered qop values; empty: RFC 2069 compatibility mode
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False  # a 407's challenge, answered in Proxy-Authorization
    nc: int = 0  # requests answered with this nonce so far (the nonce count)

    @classmethod
    def parse(cls, value: str, proxy: bool = False) -> Challenge:
        """Parse `Digest realm="...", nonce="...", ...`; ValueError if it is not usable Digest."""
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            raise ValueError(f"not a Digest challenge: {scheme!r}")
        params = parse_auth_params(rest)
        if "nonce" not in params or "realm" not in params:
            raise ValueError("Digest challenge without realm or nonce")
        algorithm = params.get("algorithm", "MD5")
        known = {a.upper(): a for a in _PREFERENCE}
        if algorithm.upper() not in known:
            raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        return cls(realm=params["realm"], nonce=params["nonce"], algorithm=known[algorithm.upper()],
                   qop=qop, opaque=params.get("opaque"), stale=params.get("stale", "").lower() == "true",
                   proxy=proxy)

    @property
    def header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"


def parse_auth_params(text: str) -> dict[str, str]:
    """The auth-params of a challenge, names lower-cased, quoted values unquoted."""
    params: dict[str, str] = {}
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _AUTH_PARAM.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"malformed auth-param at {text[pos:pos + 20]!r}")
        name, raw = m.group(1).lower(), m.group(2)
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        params[name] = raw
        pos = m.end()
    return params


def _h(algorithm: str, data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return _HASHES[algorithm.removesuffix("-sess")](raw).hexdigest()


def digest_response(*, algorithm: str = "MD5", username: str, realm: str, password: str, method: str,
                    uri: str, nonce: str, qop: str | None = None, nc: str | None = None,
                    cnonce: str | None = None, body: bytes = b"") -> str:
    """The `response` value of RFC 2617 section 3.2.2 / RFC 7616 section 3.4.1.

    With `qop` ("auth" or "auth-int") the nonce count and client nonce are
    mixed in; without it this is RFC 2069's response. The "-sess" algorithms
    hash the client nonce into the first secret as well.
    """
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + _h(algorithm, body)
    ha2 = _h(algorithm, a2)
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


def authorization(challenge: Challenge, *, username: str, password: str, method: str, uri: str,
                  body: bytes = b"", cnonce: str | None = None) -> str:
    """The Authorization (or Proxy-Authorization) value answering `challenge`; counts the nonce use."""
    qop = "auth" if "auth" in challenge.qop else ("auth-int" if "auth-int" in challenge.qop else None)
    parts = [f"username={quote(username)}", f"realm={quote(challenge.realm)}",
             f"nonce={quote(challenge.nonce)}", f"uri={quote(uri)}"]
    nc = None
    if qop or challenge.algorithm.endswith("-sess"):
        cnonce = cnonce or secrets.token_hex(8)
    if qop:
        challenge.nc += 1
        nc = f"{challenge.nc:08x}"
    response = digest_response(algorithm=challenge.algorithm, username=username, realm=challenge.realm,
                               password=password, method=method, uri=uri, nonce=challenge.nonce, qop=qop,
                               nc=nc, cnonce=cnonce, body=body)
    parts += [f'response="{response}"', f"algorithm={challenge.algorithm}"]
    if cnonce is not None:
        parts.append(f"cnonce={quote(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc}"]
    return "Digest " + ", ".join(parts)


def pick_challenge(resp: SipResponse) -> Challenge | None:
    """The strongest Digest challenge of a 401/407 we can answer, or None."""
    proxy = resp.status == 407
    found: list[Challenge] = []
    for value in resp.get_all("Proxy-Authenticate" if proxy else "WWW-Authenticate"):
        with contextlib.suppress(ValueError):
            found.append(Challenge.parse(value, proxy=proxy))
    if not found:
        return None
    return min(found, key=lambda c: _PREFERENCE.index(c.algorithm))


# ---- the address of record -----------------------------------------------------------------------
def parse_aor(text: str) -> SipUri:
    """`sip:ivr@pbx.example.com:5060` as a SipUri; ValueError unless it names a user and a host."""
    try:
        uri = parse_uri(text.strip())
    except SipParseError as exc:
        raise ValueError(f"{text!r} is not a SIP URI ({exc})") from None
    if not isinstance(uri, SipUri) or uri.scheme != "sip" or not uri.user or not uri.host:
        raise ValueError(f"{text!r}: use sip:USER@HOST[:PORT]")
    transport = (uri.param("transport") or "udp").lower()
    if transport != "udp":
        raise ValueError(f"{text!r}: only UDP registration is supported")
    return uri


def _local_address_towards(host: str, port: int) -> str:
    """The local IP the kernel would use to reach host:port (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return s.getsockname()[0]


# ---- the registration --------------------------------------------------------------------------
@dataclass
class _Binding:
    """What the registrar last granted."""

    expires_at: float = 0.0  # loop time the binding lapses (0: none)
    granted: int = 0


@dataclass
class Registration:
    """Keeps the IVR registered at `aor` through `server` (a started SipServer).

    `server` is used only through its public attributes: `transport` and `tx`
    to send, `address` and `settings.public_host` for the Contact.
    """

    server: Any = field(repr=False)
    aor: str
    username: str | None = None  # default: the AOR's user
    password: str | None = field(default=None, repr=False)  # never in logs or reprs
    expires: int = 3600
    registrar: tuple[str, int] | None = None  # default: the AOR's host and port
    retry_min: float = 2.0  # first back-off after a failure; doubles up to retry_max
    retry_max: float = 300.0
    timeout: float = 32.0  # one REGISTER transaction (Timer F, 64*T1)
    refresh_fraction: float = 0.5
    state: str = field(default="idle", init=False)  # idle, registering, registered, failed, stopped
    last_error: str | None = field(default=None, init=False)
    failures: int = field(default=0, init=False)  # consecutive failed attempts
    registrations: int = field(default=0, init=False)  # successful REGISTERs, refreshes included

    def __post_init__(self) -> None:
        self.uri = parse_aor(self.aor)
        self.username = self.username or self.uri.user
        self.request_uri = f"sip:{self.uri.hostport}"  # RFC 3261 10.2: the registrar's domain
        self.aor_value = f"<sip:{self.uri.user}@{self.uri.hostport}>"
        self.call_id = f"{secrets.token_hex(8)}@ivr"  # one Call-ID for all refreshes (RFC 3261 10.2.4)
        self.from_tag = new_tag()
        self.cseq = 0
        self.binding = _Binding()
        self.contact_uri: str | None = None
        self.next_attempt_at: float | None = None
        self._challenges: dict[str, Challenge] = {}  # header name -> last challenge, reused on refresh
        self._task: asyncio.Task | None = None

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Register now and keep the binding refreshed until `stop()`."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sip-register")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop refreshing and remove our binding (Expires: 0), waiting at most `timeout` seconds."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.binding.expires_at > self._now() or self.state == "registering":
            try:
                await asyncio.wait_for(self._exchange(0), timeout)
                log.info("unregistered %s", self.aor)
            except (RegistrationError, TimeoutError, OSError) as exc:
                # The registrar will drop the binding when it expires anyway.
                log.warning("could not unregister %s: %s", self.aor, str(exc) or "no answer")
        self.binding = _Binding()
        self.state = "stopped"
        self.next_attempt_at = None

    @property
    def registered(self) -> bool:
        """True while a binding the registrar granted has not lapsed."""
        return self.binding.expires_at > self._now()

    def status(self) -> dict:
        """The registration as /healthz reports it (never the password)."""
        now = self._now()
        return {
            "aor": f"sip:{self.uri.user}@{self.uri.hostport}",
            "state": self.state,
            "registered": self.registered,
            "expires_in": round(self.binding.expires_at - now, 1) if self.registered else None,
            "next_attempt_in": (round(max(0.0, self.next_attempt_at - now), 1)
                                if self.next_attempt_at is not None else None),
            "failures": self.failures,
            "last_error": self.last_error,
        }

    # ---- the refresh loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self.registered:
                self.state = "registering"
            try:
                granted = await self._exchange(self.expires)
            except Exception as exc:  # the loop must outlive any one failure, a bug included
                if not isinstance(exc, (RegistrationError, TimeoutError, OSError)):
                    log.exception("registration of %s: unexpected error", self.aor)
                self.failures += 1
                self.last_error = str(exc) or type(exc).__name__
                self.state = "failed"
                delay = self._backoff(getattr(exc, "retry_after", None))
                log.warning("registration of %s failed (%s); retrying in %.1f s", self.aor, self.last_error, delay)
            else:
                if self.state != "registered":
                    log.info("registered %s as %s for %d s", self.aor, self.contact_uri, granted)
                self.failures = 0
                self.last_error = None
                self.state = "registered"
                self.registrations += 1
                self.binding = _Binding(self._now() + granted, granted)
                delay = max(granted * self.refresh_fraction, 0.5)
            self.next_attempt_at = self._now() + delay
            await asyncio.sleep(delay)

    def _backoff(self, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, self.retry_min), self.retry_max)
        base = min(self.retry_max, self.retry_min * 2 ** (self.failures - 1))
        # A little jitter, so IVRs that failed together do not retry in lockstep.
        return min(self.retry_max, base * random.uniform(1.0, 1.2))

    # ---- one REGISTER transaction, challenges answered ---------------------------------------------
    async def _exchange(self, expires: int) -> int:
        """Send REGISTER until it succeeds; the seconds granted (0 when unregistering)."""
        dest = await self._destination()
        answered: set[str] = set()  # header names we answered a fresh challenge for in this exchange
        stale_rounds = 0
        min_expires_tried = False
        for _ in range(6):  # bounds the rounds: fresh and stale challenges, one 423
            req = self._request(dest, expires)
            resp = await self.server.tx.request(req, dest, timeout=self.timeout)
            if 200 <= resp.status < 300:
                return self._granted(resp, expires)
            if resp.status in (401, 407):
                challenge = pick_challenge(resp)
                if challenge is None:
                    raise RegistrationError(f"{resp.status} {resp.reason}: no Digest challenge we can answer")
                if self.password is None:
                    raise RegistrationError(f"{resp.status} {resp.reason}: the registrar wants a password "
                                            "(--register-password or IVR_REGISTER_PASSWORD)")
                if challenge.stale:
                    # Our credentials were right; only the nonce was old (RFC 2617 3.2.1).
                    stale_rounds += 1
                    if stale_rounds > 2:
                        raise RegistrationError(f"{resp.status}: the registrar keeps calling its nonce stale")
                elif challenge.header in answered:
                    # A fresh challenge right after we answered one: the credentials were refused.
                    raise RegistrationError(f"{resp.status} {resp.reason}: credentials refused for user "
                                            f"{self.username!r} in realm {challenge.realm!r}")
                else:
                    answered.add(challenge.header)
                self._challenges[challenge.header] = challenge
                continue
            if resp.status == 423 and expires > 0 and not min_expires_tried:
                min_expires_tried = True
                with contextlib.suppress(TypeError, ValueError):
                    expires = max(expires, int(resp.get("Min-Expires") or ""))
                    continue
            raise RegistrationError(f"{resp.status} {resp.reason}".strip(), _retry_after(resp))
        raise RegistrationError("too many authentication rounds")

    async def _destination(self) -> tuple[str, int]:
        host, port = self.registrar or (self.uri.host.strip("[]"), self.uri.port or 5060)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host}")
        addr = infos[0][4]
        return addr[0], addr[1]

    def _contact_host(self, dest: tuple[str, int]) -> str:
        public = getattr(self.server.settings, "public_host", None)
        if public:
            return public
        host = self.server.address[0]
        if host in ("0.0.0.0", "::", ""):
            host = _local_address_towards(*dest)  # listening everywhere: name the way out to the registrar
        return host

    def _request(self, dest: tuple[str, int], expires: int) -> SipRequest:
        host, port = self._contact_host(dest), self.server.address[1]
        self.contact_uri = f"sip:{self.uri.user}@{format_host(host)}:{port}"
        self.cseq += 1
        via = Via("UDP", host, port, {"branch": new_branch(), "rport": None})
        headers = [
            ("Via", via.serialize()),
            ("Max-Forwards", "70"),
            ("From", f"{self.aor_value};tag={self.from_tag}"),
            ("To", self.aor_value),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            # Only our own Contact, never "*": other IVR processes may share this AOR.
            ("Contact", f"<{self.contact_uri}>"),
            ("Expires", str(expires)),
            ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"),
            ("User-Agent", "ivr-engine"),
        ]
        # Answer the last challenges again (nonce count + 1), saving a round trip on refreshes.
        for challenge in self._challenges.values():
            headers.append((challenge.header, authorization(
                challenge, username=self.username or "", password=self.password or "",
                method="REGISTER", uri=self.request_uri)))
        req = SipRequest("REGISTER", self.request_uri, headers=headers)
        req.set_body(b"", None)
        return req

    def _granted(self, resp: SipResponse, asked: int) -> int:
        """Seconds the registrar granted our Contact: its expires param, else Expires, else what we asked."""
        if asked == 0:
            return 0
        mine = _same_contact(self.contact_uri or "")
        for value in resp.get_all("Contact"):
            try:
                na = NameAddr.parse(value)
            except SipParseError:
                continue
            if _same_contact(str(na.uri)) == mine and na.params.get("expires") is not None:
                with contextlib.suppress(ValueError):
                    return _positive(int(na.params["expires"] or ""))
        with contextlib.suppress(TypeError, ValueError):
            return _positive(int(resp.get("Expires") or ""))
        return asked

    @staticmethod
    def _now() -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # status() from outside the loop (tests, a debugger)
            return 0.0


def _positive(seconds: int) -> int:
    if seconds <= 0:
        raise RegistrationError("the registrar granted no time to our binding")
    return seconds


def _same_contact(uri_text: str) -> tuple:
    """What identifies a Contact: user, host, port (registrars add or drop parameters)."""
    try:
        uri = parse_uri(uri_text)
    except SipParseError:
        return (uri_text,)
    if not isinstance(uri, SipUri):
        return (uri_text,)
    return (uri.user, uri.host.lower().strip("[]"), uri.port or 5060)


def _retry_after(resp: SipResponse) -> float | None:
    value = (resp.get("Retry-After") or "").split(";")[0].strip()
    return float(value) if value.isdigit() else None
