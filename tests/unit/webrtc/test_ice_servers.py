"""STUN/TURN servers for browser calls: TURN credentials (time-limited or static), the checks made
at start-up, the `ice` message an accepted socket gets first, and what the server's own peer uses."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import aiohttp
import pytest
from aiohttp import web
from aiortc.rtcicetransport import connection_kwargs

from ivr import cli
from ivr.app import Settings
from ivr.audio.clock import MediaClock
from ivr.webrtc import protocol
from ivr.webrtc.ice import (
    TURN_TTL,
    IceConfig,
    IceServer,
    configuration,
    turn_credential,
    turn_username,
)
from ivr.webrtc.server import PATH, WebRtcServer, WebRtcSettings

NOW = 1_700_000_000.7
STUN = "stun:127.0.0.1:3478"
TURN = "turn:127.0.0.1:3478"
TURNS = "turns:127.0.0.1:5349?transport=tcp"


def expected_credential(secret: str, username: str) -> str:
    """The TURN REST API password, computed here without the code under test."""
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


# ---- credentials -------------------------------------------------------------------------------

def test_the_credential_is_base64_of_hmac_sha1_of_the_user_name():
    # RFC 2202, test case 2 of HMAC-SHA1.
    rfc = base64.b64encode(bytes.fromhex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")).decode()
    assert turn_credential("Jefe", "what do ya want for nothing?") == rfc
    assert turn_credential("s3cret", "1700003600:webrtc-abc") == "ZCzSbPDRp4wjPMYTrAiZIEmeEg4="
    assert turn_credential("s3cret", "1700003600:webrtc-abc") == expected_credential("s3cret", "1700003600:webrtc-abc")


def test_time_limited_credentials_name_the_call_and_expire_after_the_ttl():
    conf = IceConfig((STUN, TURN, TURNS), secret="s3cret")
    stun, turn = conf.servers("webrtc-abc", now=NOW)
    assert turn.urls == (TURN, TURNS)  # every TURN URL shares the one credential
    assert turn.username == "1700003600:webrtc-abc" == turn_username("webrtc-abc", TURN_TTL, NOW)
    assert turn.credential == expected_credential("s3cret", "1700003600:webrtc-abc")
    short = IceConfig((TURN,), secret="s3cret", ttl=600).servers("ivr", now=NOW)[0]
    assert short.username == "1700000600:ivr"
    # Without `now`, the clock's: the expiry is an hour from now.
    expiry, name = IceConfig((TURN,), secret="s3cret").servers()[0].username.split(":")
    assert name == "ivr" and abs(int(expiry) - (time.time() + 3600)) < 5


def test_stun_urls_never_carry_credentials():
    for conf in (IceConfig((STUN, TURN), secret="s3cret"), IceConfig((STUN, TURN), user="u", password="p")):
        stun = conf.servers("webrtc-abc", now=NOW)[0]
        assert stun == IceServer((STUN,))
        assert stun.to_json() == {"urls": [STUN]}
        assert (stun.to_aiortc().username, stun.to_aiortc().credential) == (None, None)
    assert IceConfig((STUN,)).servers("webrtc-abc") == [IceServer((STUN,))]  # STUN alone needs none


def test_static_credentials_are_the_same_for_every_call():
    conf = IceConfig((TURN,), user="alice", password="pw")
    assert conf.servers("webrtc-1") == conf.servers("webrtc-2") == [IceServer((TURN,), "alice", "pw")]
    assert conf.servers("webrtc-1")[0].to_json() == {"urls": [TURN], "username": "alice", "credential": "pw"}


def test_no_servers_is_an_empty_list():
    assert IceConfig().servers("webrtc-abc") == []
    assert IceConfig().summary() == "ICE: no STUN or TURN server (host candidates only)"


def test_the_summary_names_no_secret():
    assert IceConfig((STUN, TURN), secret="s3cret").summary() == "ICE: 1 STUN, 1 TURN (time-limited credentials)"
    assert IceConfig((TURN, TURNS), user="alice", password="pw").summary() == "ICE: 2 TURN (static credentials)"
    assert "unused" in IceConfig((STUN,), secret="s3cret").summary()
    for text in (repr(IceConfig((TURN,), secret="s3cret")), repr(IceConfig((TURN,), user="u", password="pw")),
                 repr(IceConfig((TURN,), secret="s3cret").servers()[0]),
                 repr(WebRtcSettings(turn_secret="s3cret", turn_password="pw")),
                 repr(Settings(turn_secret="s3cret", turn_password="pw"))):
        assert "s3cret" not in text and "'pw'" not in text
        assert all(f"{name}=" not in text for name in ("credential", "turn_password", "turn_secret", "secret"))


# ---- refused at start-up -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, words", [
    ({"urls": (TURN,)}, "needs TURN credentials"),
    ({"urls": (STUN, TURNS)}, "needs TURN credentials"),
    ({"urls": (TURN,), "secret": "s", "user": "u", "password": "p"}, "not both"),
    ({"urls": (TURN,), "user": "u"}, "needs a password"),
    ({"urls": (TURN,), "password": "p"}, "--turn-password needs --turn-user"),
    ({"urls": (TURN,), "secret": "s", "ttl": 0}, "--turn-ttl"),
    ({"urls": ("http://127.0.0.1",)}, "not a stun:"),
])
def test_servers_that_cannot_work_are_refused(kwargs, words):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=words):
        IceConfig(tuple(kwargs.pop("urls")), **kwargs)


def serve_args(*argv: str):
    return cli.build_parser().parse_args(["serve", "flows.yaml", *argv])


@pytest.fixture
def env(monkeypatch):
    for name in ("IVR_TURN_SECRET", "IVR_TURN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_flags_and_their_environment_defaults(env):
    assert cli._turn_settings(serve_args()) == \
        {"turn_secret": None, "turn_user": None, "turn_password": None, "turn_ttl": 3600}
    assert cli._turn_settings(serve_args("--ice-server", TURN, "--turn-secret", "s3cret", "--turn-ttl", "600")) == \
        {"turn_secret": "s3cret", "turn_user": None, "turn_password": None, "turn_ttl": 600}
    env.setenv("IVR_TURN_SECRET", "from-env")
    assert cli._turn_settings(serve_args("--ice-server", TURN))["turn_secret"] == "from-env"
    env.delenv("IVR_TURN_SECRET")
    env.setenv("IVR_TURN_PASSWORD", "pw-env")
    got = cli._turn_settings(serve_args("--ice-server", TURN, "--turn-user", "alice"))
    assert (got["turn_user"], got["turn_password"]) == ("alice", "pw-env")
    # Without a static user the environment's password is not used (nor refused).
    assert cli._turn_settings(serve_args("--ice-server", STUN))["turn_password"] is None


@pytest.mark.parametrize("argv, words", [
    (("--ice-server", TURN), "needs TURN credentials: --turn-secret"),
    (("--ice-server", TURN, "--turn-secret", "s", "--turn-user", "u", "--turn-password", "p"), "not both"),
    (("--ice-server", TURN, "--turn-user", "u"), "needs a password"),
    (("--ice-server", TURN, "--turn-password", "p"), "needs --turn-user"),
])
def test_the_command_refuses_to_start(env, argv, words):
    with pytest.raises(SystemExit) as refused:
        cli._turn_settings(serve_args(*argv))
    assert str(refused.value).startswith("ivr serve: ") and words in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_a_secret_from_the_environment_and_a_static_user_are_refused(env):
    env.setenv("IVR_TURN_SECRET", "s3cret")
    with pytest.raises(SystemExit, match="IVR_TURN_SECRET") as refused:
        cli._turn_settings(serve_args("--ice-server", TURN, "--turn-user", "u", "--turn-password", "p"))
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("ttl", ["0", "-5", "an hour"])
def test_bad_ttls_are_refused(ttl, capsys):
    with pytest.raises(SystemExit):
        serve_args("--turn-ttl", ttl)
    assert "--turn-ttl" in capsys.readouterr().err


# ---- the server's own peer -----------------------------------------------------------------------

def test_aiortc_gets_the_same_servers_and_the_turn_credentials():
    stun, turn = IceConfig((STUN, TURN), secret="s3cret").servers("ivr", now=NOW)
    kwargs = connection_kwargs(configuration([stun, turn]).iceServers)
    assert kwargs["stun_server"] == ("127.0.0.1", 3478)
    assert kwargs["turn_server"] == ("127.0.0.1", 3478)
    assert kwargs["turn_username"] == "1700003600:ivr"
    assert kwargs["turn_password"] == expected_credential("s3cret", "1700003600:ivr")
    # Plain URLs still work as before.
    assert [s.urls for s in configuration([STUN]).iceServers] == [STUN]


def test_the_server_peer_has_credentials_of_its_own_made_fresh():
    server = WebRtcServer(WebRtcSettings(ice_servers=[STUN, TURN], turn_secret="s3cret"),
                          on_call=None, prompts=None, clock=None, music_root="media/moh")
    conf = server.rtc_configuration()
    turn = [s for s in conf.iceServers if s.username is not None][0]
    assert turn.username.endswith(":ivr") and turn.credential == expected_credential("s3cret", turn.username)
    page = server.ice_servers("webrtc-abc")[1]
    assert page.username.endswith(":webrtc-abc")
    static = WebRtcServer(WebRtcSettings(ice_servers=[TURN], turn_user="u", turn_password="p"),
                          on_call=None, prompts=None, clock=None, music_root="media/moh")
    assert static.rtc_configuration() is static.rtc_configuration()  # nothing to renew
    assert [(s.username, s.credential) for s in static.rtc_configuration().iceServers] == [("u", "p")]
    with pytest.raises(ValueError, match="needs TURN credentials"):
        WebRtcServer(WebRtcSettings(ice_servers=[TURN]), on_call=None, prompts=None, clock=None, music_root="")


# ---- the ice message -----------------------------------------------------------------------------

def test_the_ice_message():
    servers = IceConfig((STUN, TURN), secret="s3cret").servers("webrtc-abc", now=NOW)
    assert json.loads(protocol.ice([s.to_json() for s in servers])) == {"type": "ice", "iceServers": [
        {"urls": [STUN]},
        {"urls": [TURN], "username": "1700003600:webrtc-abc",
         "credential": expected_credential("s3cret", "1700003600:webrtc-abc")},
    ]}
    assert json.loads(protocol.ice([])) == {"type": "ice", "iceServers": []}


async def _first_messages(settings: WebRtcSettings) -> tuple[list[dict], list[dict], str]:
    """(what an accepted socket gets before its offer, what a refused one gets, the call id)."""
    clock = MediaClock()
    server = WebRtcServer(settings, on_call=None, prompts=None, clock=clock, music_root="media/moh")
    app = web.Application()
    server.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}{PATH}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url + "?token=t") as ws:
                first = [json.loads((await ws.receive(timeout=5)).data)]
                call_id = next(iter(server.live)).call_id
            async with http.ws_connect(url + "?token=wrong") as ws:
                refused = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
    finally:
        await server.close()
        await runner.cleanup()
        await clock.stop()
    return first, refused, call_id


def test_an_accepted_socket_is_told_the_servers_first_and_a_refused_one_only_why():
    settings = WebRtcSettings(token="t", ice_servers=[STUN, TURN], turn_secret="s3cret")
    before = int(time.time())
    first, refused, call_id = asyncio.run(_first_messages(settings))
    (msg,) = first
    assert msg["type"] == "ice" and msg["iceServers"][0] == {"urls": [STUN]}
    turn = msg["iceServers"][1]
    expiry, name = turn["username"].split(":")
    assert name == call_id and before + 3600 <= int(expiry) <= int(time.time()) + 3600
    assert turn["credential"] == expected_credential("s3cret", turn["username"])
    assert refused == [{"type": "error", "message": "bad token"}]
