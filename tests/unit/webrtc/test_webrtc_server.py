"""The signalling socket's gate and its handling of bad messages, over a real aiohttp server on
127.0.0.1 (no media: every call here ends before a peer connection would connect)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection

from ivr.audio.clock import MediaClock
from ivr.webrtc.server import PATH, WebRtcServer, WebRtcSettings


async def _serve(settings: WebRtcSettings, test) -> tuple[object, dict]:
    counts: dict = {}

    def count(name, by=1.0, **labels):
        key = (name, tuple(sorted(labels.items())))
        counts[key] = counts.get(key, 0) + by

    async def on_call(call, overflow, observers=()):
        raise AssertionError("no call should reach the flow")

    clock = MediaClock()
    server = WebRtcServer(settings, on_call, prompts=None, clock=clock, music_root="media/moh", count=count)
    app = web.Application()
    server.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            result = await asyncio.wait_for(test(http, f"http://127.0.0.1:{port}{PATH}", server), 20)
    finally:
        await server.close()
        await runner.cleanup()
        await clock.stop()
    return result, {f"{k[0]}{dict(k[1])}": v for k, v in counts.items()}


async def _messages(ws) -> list[dict]:
    return [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]


def run(settings, test):
    return asyncio.run(_serve(settings, test))


@pytest.mark.parametrize("first, error", [
    ('{"type": "hangup"}', "the first message must be the offer"),
    ("hello", "not JSON"),
    ('{"type": "offer", "sdp": "v=0\\r\\nthis is not SDP\\r\\n"}', "the offer has no audio"),
    ('{"type": "offer", "sdp": "v=0\\r\\nm=audio port RTP/AVP 0\\r\\n"}', "bad offer"),
])
def test_a_bad_first_message_gets_an_error_and_the_socket_closes(first, error):
    async def test(http, url, server):
        async with http.ws_connect(url) as ws:
            await ws.send_str(first)
            return await _messages(ws), len(server.live)
    (msgs, live), counts = run(WebRtcSettings(), test)
    assert msgs[0] == {"type": "ice", "iceServers": []}  # an accepted socket is told its servers first
    assert len(msgs) == 2 and msgs[1]["type"] == "error" and msgs[1]["message"].startswith(error)
    assert counts == {"ivr_webrtc_calls_total{'outcome': 'bad-request'}": 1}


def test_an_offer_without_audio_is_refused():
    async def test(http, url, server):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.createDataChannel("dtmf")
        await pc.setLocalDescription(await pc.createOffer())
        try:
            async with http.ws_connect(url) as ws:
                await ws.send_str(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
                return await _messages(ws)
        finally:
            await pc.close()
    msgs, _ = run(WebRtcSettings(hosts=["127.0.0.1"]), test)
    assert msgs == [{"type": "ice", "iceServers": []}, {"type": "error", "message": "the offer has no audio"}]


def test_a_socket_closed_before_its_offer_is_abandoned_and_frees_its_place():
    async def test(http, url, server):
        async with http.ws_connect(url) as ws:
            await asyncio.sleep(0.1)
            live = len(server.live)
            await ws.close()
        for _ in range(100):
            if not server.live:
                break
            await asyncio.sleep(0.02)
        return live, len(server.live)
    (during, after), counts = run(WebRtcSettings(), test)
    assert (during, after) == (1, 0)
    assert counts == {"ivr_webrtc_calls_total{'outcome': 'abandoned'}": 1}


def test_the_gate_origin_token_and_cap():
    async def test(http, url, server):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "?token=t", origin="http://evil.example.com")
        own = url.split("/softphone")[0]
        async with http.ws_connect(url + "?token=t", origin=own) as first:  # holds the only place
            await asyncio.sleep(0.05)
            async with http.ws_connect(url + "?token=t") as second:
                busy = await _messages(second)
            async with http.ws_connect(url + "?token=nope", origin="https://page.example.org") as third:
                bad = await _messages(third)
            await first.close()
        return refused.value.status, busy, bad

    (status, busy, bad), counts = run(
        WebRtcSettings(max_calls=1, token="t", origins=["https://page.example.org"]), test)
    assert status == 403
    assert busy == [{"type": "error", "message": "busy"}]
    assert bad == [{"type": "error", "message": "bad token"}]
    assert counts == {f"ivr_webrtc_calls_total{{'outcome': '{o}'}}": 1
                      for o in ("refused-origin", "busy", "refused-token", "abandoned")}
