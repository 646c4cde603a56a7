"""REGISTER client: digest answers against the RFCs' worked examples, and a fake
registrar on a real UDP socket that challenges, grants short bindings, calls
nonces stale and refuses bad passwords."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from ivr.audio.clock import MediaClock
from ivr.audio.prompts import PromptCache
from ivr.sip.message import SipRequest, SipResponse, make_response, parse
from ivr.sip.register import (
    Challenge,
    Registration,
    authorization,
    digest_response,
    parse_aor,
    parse_auth_params,
    pick_challenge,
)
from ivr.sip.ua import SipServer, SipSettings

# ---- digest: the RFCs' own examples ------------------------------------------------------------

RFC2617_CHALLENGE = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                     'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
RFC7616_CHALLENGE = ('Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
                     'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
                     'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def test_rfc2617_section_3_5_worked_example():
    """Mufasa / "Circle Of Life" GETting /dir/index.html: response 6629fae4..."""
    assert digest_response(algorithm="MD5", username="Mufasa", realm="testrealm@host.com",
                           password="Circle Of Life", method="GET", uri="/dir/index.html",
                           nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth", nc="00000001",
                           cnonce="0a4f113b") == "6629fae49393a05397450978507c4ef1"


def test_rfc2617_example_through_the_parsed_challenge():
    challenge = Challenge.parse(RFC2617_CHALLENGE)
    assert challenge.qop == ("auth", "auth-int") and challenge.algorithm == "MD5" and not challenge.stale
    value = authorization(challenge, username="Mufasa", password="Circle Of Life", method="GET",
                          uri="/dir/index.html", cnonce="0a4f113b")
    params = parse_auth_params(value.removeprefix("Digest "))
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert params["nc"] == "00000001" and params["qop"] == "auth" and params["cnonce"] == "0a4f113b"
    assert params["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41" and params["uri"] == "/dir/index.html"
    # The same nonce used again counts up (RFC 2617 3.2.2: nc is the number of requests).
    again = parse_auth_params(authorization(challenge, username="Mufasa", password="Circle Of Life",
                                            method="GET", uri="/dir/index.html").removeprefix("Digest "))
    assert again["nc"] == "00000002" and again["cnonce"] != "0a4f113b"


@pytest.mark.parametrize(("alg", "expected"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_section_3_9_1_examples(alg, expected):
    challenge = Challenge.parse(RFC7616_CHALLENGE.format(alg=alg))
    value = authorization(challenge, username="Mufasa", password="Circle of Life", method="GET",
                          uri="/dir/index.html", cnonce=RFC7616_CNONCE)
    params = parse_auth_params(value.removeprefix("Digest "))
    assert params["response"] == expected and params["algorithm"] == alg


def test_without_qop_is_rfc2069_style():
    challenge = Challenge.parse('Digest realm="pbx", nonce="abc"')
    params = parse_auth_params(authorization(challenge, username="ivr", password="pw", method="REGISTER",
                                             uri="sip:pbx.example.com").removeprefix("Digest "))
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha1, ha2 = md5("ivr:pbx:pw"), md5("REGISTER:sip:pbx.example.com")
    assert params["response"] == md5(f"{ha1}:abc:{ha2}")
    assert not {"qop", "nc", "cnonce", "opaque"} & params.keys()


def test_auth_int_when_it_is_the_only_qop_offered():
    challenge = Challenge.parse('Digest realm="pbx", nonce="abc", qop="auth-int", algorithm=MD5-sess')
    params = parse_auth_params(authorization(challenge, username="ivr", password="pw", method="REGISTER",
                                             uri="sip:pbx", cnonce="c1").removeprefix("Digest "))
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha1 = md5(f"{md5('ivr:pbx:pw')}:abc:c1")  # -sess: the client nonce is hashed into the secret
    ha2 = md5(f"REGISTER:sip:pbx:{md5('')}")  # auth-int: the (empty) body is hashed in
    assert params["qop"] == "auth-int" and params["algorithm"] == "MD5-sess"
    assert params["response"] == md5(f"{ha1}:abc:00000001:c1:auth-int:{ha2}")


def test_the_serve_options_and_no_password_in_sight():
    from ivr.cli import build_parser
    args = build_parser().parse_args(["serve", "--register", "sip:ivr@127.0.0.1:5099", "--register-user", "7001",
                                      "--register-expires", "120"])
    assert (args.register, args.register_user, args.register_expires) == ("sip:ivr@127.0.0.1:5099", "7001", 120)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--register", "pbx.example.com"])
    reg = Registration(object(), "sip:ivr@pbx.example.com", password="hunter2")
    assert "hunter2" not in repr(reg) and "hunter2" not in str(reg.status())


def test_challenge_parsing_edge_cases():
    c = Challenge.parse('Digest realm="a \\"quoted\\", realm",nonce=xyz,stale=TRUE,algorithm=md5')
    assert c.realm == 'a "quoted", realm' and c.nonce == "xyz" and c.stale and c.algorithm == "MD5"
    with pytest.raises(ValueError):
        Challenge.parse('Basic realm="x"')
    with pytest.raises(ValueError):
        Challenge.parse('Digest realm="x", nonce="y", algorithm=AKAv1-MD5')
    with pytest.raises(ValueError):
        Challenge.parse('Digest realm="x"')
    # Several challenges: the strongest one we support wins, the unknown one is ignored.
    resp = SipResponse(401, "Unauthorized", headers=[
        ("WWW-Authenticate", 'Digest realm="r", nonce="1", algorithm=AKAv1-MD5'),
        ("WWW-Authenticate", 'Digest realm="r", nonce="2", algorithm=MD5'),
        ("WWW-Authenticate", 'Digest realm="r", nonce="3", algorithm=SHA-256'),
    ])
    assert pick_challenge(resp).nonce == "3"


def test_aor_must_name_a_user_and_a_host():
    assert parse_aor("sip:ivr@127.0.0.1:5099").port == 5099
    for bad in ("ivr@pbx", "sip:pbx.example.com", "tel:+44123", "sip:ivr@pbx;transport=tcp"):
        with pytest.raises(ValueError):
            parse_aor(bad)


# ---- a fake registrar on a UDP socket ----------------------------------------------------------

PASSWORD = "s3cret"
REALM = "pbx.test"


@dataclass
class Seen:
    """One REGISTER as the registrar received it."""

    at: float
    req: SipRequest

    @property
    def expires(self) -> int:
        return int(self.req.get("Expires") or "-1")

    @property
    def auth(self) -> dict[str, str]:
        value = self.req.get("Authorization") or self.req.get("Proxy-Authorization")
        return parse_auth_params(value.removeprefix("Digest ")) if value else {}


@dataclass
class FakeRegistrar(asyncio.DatagramProtocol):
    """Answers each REGISTER with `policy(registrar, request)` (a response, or None for silence)."""

    policy: Callable[[FakeRegistrar, SipRequest], SipResponse | None]
    seen: list[Seen] = field(default_factory=list)
    nonce: str = "n1"
    granted: int = 2
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        req = parse(data)
        assert isinstance(req, SipRequest) and req.method == "REGISTER"
        self.seen.append(Seen(asyncio.get_running_loop().time(), req))
        resp = self.policy(self, req)
        if resp is not None:
            self.transport.sendto(resp.serialize(), addr)

    # ---- building blocks of policies ----
    def challenge(self, req: SipRequest, *, stale: bool = False, status: int = 401, qop: bool = True) -> SipResponse:
        header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
        value = f'Digest realm="{REALM}", nonce="{self.nonce}", algorithm=MD5, opaque="op4que"'
        value += ', qop="auth"' if qop else ""
        value += ", stale=true" if stale else ""
        return make_response(req, status, to_tag="reg", extra_headers=[(header, value)])

    def authorised(self, req: SipRequest, password: str = PASSWORD) -> bool:
        auth = Seen(0, req).auth
        if not auth or auth.get("nonce") != self.nonce or auth.get("opaque") != "op4que":
            return False
        want = digest_response(username=auth["username"], realm=REALM, password=password, method="REGISTER",
                               uri=auth["uri"], nonce=auth["nonce"], qop=auth.get("qop"), nc=auth.get("nc"),
                               cnonce=auth.get("cnonce"))
        return auth["response"] == want and auth["uri"] == req.uri

    def accept(self, req: SipRequest) -> SipResponse:
        expires = min(int(req.get("Expires") or "3600"), self.granted)
        contact = req.get("Contact") or ""
        # Registrars echo every binding of the AOR; ours carries its own expires.
        return make_response(req, 200, to_tag="reg", extra_headers=[
            ("Contact", "<sip:other@192.0.2.1:5060>;expires=999"),
            ("Contact", f"{contact};expires={expires}")])


async def _endpoint(policy) -> tuple[SipServer, FakeRegistrar, asyncio.DatagramTransport]:
    server = SipServer(SipSettings(host="127.0.0.1", port=0), on_call=None, prompts=PromptCache(None),
                       clock=MediaClock())
    await server.start()
    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(lambda: FakeRegistrar(policy),
                                                               local_addr=("127.0.0.1", 0))
    return server, registrar, transport


def _run(scenario) -> None:
    async def main():
        server, registrar, transport = await _endpoint(scenario.policy)
        port = transport.get_extra_info("sockname")[1]
        try:
            await asyncio.wait_for(scenario(server, registrar, port), 20)
        finally:
            transport.close()
            await server.close()
            server.prompts.close()
    asyncio.run(main())


async def _until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.01)


def digest_policy(reg: FakeRegistrar, req: SipRequest) -> SipResponse:
    """Challenge anything not answering the current nonce with the right password; grant `granted` s."""
    if int(req.get("Expires") or "1") == 0 and reg.authorised(req):
        return make_response(req, 200, to_tag="reg")
    return reg.accept(req) if reg.authorised(req) else reg.challenge(req)


def test_challenge_then_accept_then_refresh_then_unregister():
    async def scenario(server, registrar, port):
        reg = Registration(server, f"sip:ivr@127.0.0.1:{port}", password=PASSWORD, expires=600)
        reg.start()
        await _until(lambda: reg.registered)
        first, second = registrar.seen[:2]
        assert not first.auth and second.auth["username"] == "ivr"
        assert second.auth["realm"] == REALM and second.auth["nc"] == "00000001"
        assert first.req.uri == f"sip:127.0.0.1:{port}" and first.expires == 600
        assert first.req.get("To") == f"<sip:ivr@127.0.0.1:{port}>"
        assert first.req.get("Contact") == f"<sip:ivr@127.0.0.1:{server.address[1]}>"
        status = reg.status()
        assert status["state"] == "registered" and status["registered"] and status["last_error"] is None
        assert 0 < status["expires_in"] <= 2  # the 200's Contact expires, not the Expires we asked for
        # Refreshed at half the 2 s granted, answering the cached nonce without a new challenge.
        await _until(lambda: len(registrar.seen) >= 3, timeout=3)
        refresh = registrar.seen[2]
        assert 0.8 <= refresh.at - second.at <= 1.6
        assert refresh.auth["nc"] == "00000002" and refresh.req.call_id == first.req.call_id
        assert refresh.req.cseq.number > second.req.cseq.number
        await _until(lambda: reg.registrations >= 2)
        assert len(registrar.seen) == 3 and reg.registered
        await reg.stop()
        bye = registrar.seen[-1]
        assert bye.expires == 0 and bye.auth and bye.req.get("Contact") == first.req.get("Contact")
        assert not reg.registered and reg.status()["state"] == "stopped"

    scenario.policy = digest_policy
    _run(scenario)


def test_stale_nonce_is_answered_again_without_counting_as_a_failure():
    def policy(reg: FakeRegistrar, req: SipRequest) -> SipResponse:
        if len(reg.seen) == 3:  # the first refresh: the nonce has just expired
            reg.nonce = "n2"
            return reg.challenge(req, stale=True)
        return digest_policy(reg, req)

    async def scenario(server, registrar, port):
        reg = Registration(server, f"sip:ivr@127.0.0.1:{port}", password=PASSWORD)
        reg.start()
        await _until(lambda: reg.registrations >= 2, timeout=4)
        stale_answer = registrar.seen[3]
        assert stale_answer.auth["nonce"] == "n2" and stale_answer.auth["nc"] == "00000001"
        assert reg.failures == 0 and reg.last_error is None and reg.registered
        await reg.stop()

    scenario.policy = policy
    _run(scenario)


def test_wrong_password_fails_and_backs_off():
    async def scenario(server, registrar, port):
        reg = Registration(server, f"sip:ivr@127.0.0.1:{port}", password="wrong", retry_min=0.2, retry_max=5)
        reg.start()
        await _until(lambda: reg.failures >= 3, timeout=5)
        status = reg.status()
        assert status["state"] == "failed" and not status["registered"]
        assert "credentials refused" in status["last_error"] and status["next_attempt_in"] is not None
        # Each attempt is two REGISTERs (the challenge, then our refused answer); the waits double.
        starts = [registrar.seen[i].at for i in range(0, len(registrar.seen), 2)]
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert len(gaps) >= 2 and gaps[1] > 1.5 * gaps[0]
        assert gaps[0] >= 0.2
        n = len(registrar.seen)
        await reg.stop()
        assert len(registrar.seen) == n  # never registered: nothing to remove

    scenario.policy = digest_policy
    _run(scenario)


def test_challenge_without_a_password_is_an_error():
    async def scenario(server, registrar, port):
        reg = Registration(server, f"sip:ivr@127.0.0.1:{port}", retry_min=5)
        reg.start()
        await _until(lambda: reg.failures == 1)
        assert "wants a password" in reg.last_error and len(registrar.seen) == 1
        await reg.stop()

    scenario.policy = digest_policy
    _run(scenario)


def test_proxy_challenge_without_qop_and_interval_too_brief():
    def policy(reg: FakeRegistrar, req: SipRequest) -> SipResponse:
        if not req.has("Proxy-Authorization"):
            return reg.challenge(req, status=407, qop=False)
        if int(req.get("Expires") or "0") == 0:
            return make_response(req, 200, to_tag="reg")
        if int(req.get("Expires") or "0") < 60:
            return make_response(req, 423, to_tag="reg", extra_headers=[("Min-Expires", "60")])
        assert reg.authorised(req)
        return make_response(req, 200, to_tag="reg", extra_headers=[("Expires", "60")])

    async def scenario(server, registrar, port):
        reg = Registration(server, f"sip:ivr@127.0.0.1:{port}", username="7001", password=PASSWORD, expires=30)
        reg.start()
        await _until(lambda: reg.registered)
        last = registrar.seen[-1]
        assert last.expires == 60 and last.auth["username"] == "7001" and "qop" not in last.auth
        assert 55 < reg.status()["expires_in"] <= 60  # from the Expires header: no Contact came back
        await reg.stop()
        assert registrar.seen[-1].expires == 0

    scenario.policy = policy
    _run(scenario)


def test_silent_registrar_times_out_and_retry_after_is_honoured():
    def policy(reg: FakeRegistrar, req: SipRequest) -> SipResponse | None:
        if req.cseq.number == 1:
            return None  # no answer at all, retransmissions included
        return make_response(req, 503, to_tag="reg", extra_headers=[("Retry-After", "1")])

    async def scenario(server, registrar, port):
        reg = Registration(server, f"sip:ivr@127.0.0.1:{port}", timeout=0.6, retry_min=0.1, retry_max=30)
        reg.start()
        await _until(lambda: reg.failures == 1, timeout=3)
        assert "no final response" in reg.last_error
        await _until(lambda: reg.failures == 2, timeout=3)
        assert reg.last_error.startswith("503") and 0.8 < reg.status()["next_attempt_in"] <= 1.0
        await reg.stop()

    scenario.policy = policy
    _run(scenario)
