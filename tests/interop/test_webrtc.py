"""Browser callers, end to end: a real aiortc peer written here calls `ivr serve` over WebRTC.

The test's caller does what the softphone page does: it opens the signalling
WebSocket with aiohttp, offers audio and a "dtmf" data channel, applies the
answer, sends keys as one-character messages and talks through its own
microphone track (line noise, and espeak-ng phrases when asked). It records
what it hears (Opus, decoded by aiortc, brought to 8 kHz) and keeps every
signalling message, journey events included. Everything runs on 127.0.0.1:
both sides offer only that host address (`--webrtc-host 127.0.0.1` for the
server, the same setting in this process for the caller) and no STUN server.

- keys and prompts: the prompt is heard (its level, and a match with the
  server's own rendering of it) and "0" on the data channel reaches the
  flow's escape hand-off, which fails for a WebRTC call (the on_failure path);
- speech: "billing" said into a speech menu takes the billing branch;
- the end of a call from either side (the page's hangup, the socket closed,
  the flow's hangup node) frees the peer connection: the gauge goes back to 0
  and the server's thread count back to where it was;
- limits: over the cap a call is told "busy", a wrong or missing token is
  refused, a foreign Origin gets 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from av import AudioFrame

from ivr.audio.resample import resample
from ivr.threads import POOL_NAME
from ivr.webrtc.ice import offer_hosts
from ivr.webrtc.inbound import FrameCutter

from .audio_match import RATE, find_pieces, line_prompt
from .conftest import HERE, ROOT, need
from .phrases import NOISE_RMS, phrase

FLOWS = ROOT / "flows.yaml"
SPEECH_FLOW = HERE / "flows" / "webrtc_speech.yaml"
LOOPBACK = ("--webrtc-host", "127.0.0.1")
MIC_RATE = 48000
TEST_TIMEOUT = 60.0  # each test's calls together


class Mic(MediaStreamTrack):
    """The caller's microphone: faint line noise, and whatever `say` is given, in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._rng = np.random.default_rng(5)
        self._speech = np.zeros(0, dtype=np.int16)
        self._start: float | None = None
        self._n = 0

    def say(self, samples_8k: np.ndarray) -> None:
        """Speak these 8 kHz samples from the next frame on."""
        pcm = np.clip(np.round(samples_8k), -32768, 32767).astype("<i2").tobytes()
        self._speech = np.frombuffer(resample(pcm, RATE, MIC_RATE), dtype="<i2")

    async def recv(self) -> AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        self._n += 1
        await asyncio.sleep(max(0.0, self._start + self._n * 0.02 - loop.time()))
        n = MIC_RATE // 50
        x = self._rng.normal(0.0, NOISE_RMS, n)
        if self._speech.size:
            chunk, self._speech = self._speech[:n], self._speech[n:]
            x[:chunk.size] += chunk
        frame = AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(np.clip(x, -32768, 32767).astype("<i2").tobytes())
        frame.sample_rate = MIC_RATE
        frame.time_base = fractions.Fraction(1, MIC_RATE)
        frame.pts = self._n * n
        return frame


class Caller:
    """One browser-like caller: signalling over aiohttp, media over aiortc."""

    def __init__(self, http_port: int) -> None:
        self.url = f"http://127.0.0.1:{http_port}/softphone/ws"
        self.http = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.dc = self.pc.createDataChannel("dtmf")
        self.mic = Mic()
        self.pc.addTrack(self.mic)
        self.messages: list[dict] = []
        self.heard = bytearray()  # 8 kHz PCM16 of what the IVR sent
        self.closed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track) -> None:
        async def read():
            cutter = FrameCutter()
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                for pcm in cutter.push(frame):
                    self.heard += pcm

        self._tasks.append(asyncio.ensure_future(read()))

    async def open(self, token: str | None = None, origin: str | None = None) -> None:
        """Open the signalling socket (raises WSServerHandshakeError when refused)."""
        url = self.url + (f"?token={token}" if token is not None else "")
        self.ws = await self.http.ws_connect(url, origin=origin)
        self._tasks.append(asyncio.ensure_future(self._read()))

    async def dial(self, token: str | None = None, origin: str | None = None) -> None:
        """Open the socket and send the offer (our candidates are in it)."""
        await self.open(token, origin)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.send({"type": "offer", "sdp": self.pc.localDescription.sdp})

    async def send(self, msg: dict) -> None:
        await self.ws.send_str(json.dumps(msg))

    async def _read(self) -> None:
        async for m in self.ws:
            if m.type != aiohttp.WSMsgType.TEXT:
                break
            msg = json.loads(m.data)
            self.messages.append(msg)
            if msg["type"] == "answer":
                await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
        self.closed.set()

    def events(self, name: str, **match) -> list[dict]:
        """The data of the journey events `name` seen so far whose fields include `match`."""
        return [m["data"] for m in self.messages if m["type"] == "event" and m["event"] == name
                and all(m["data"].get(k) == v for k, v in match.items())]

    async def wait(self, what: str, check, timeout: float = 20.0) -> dict:
        """The first message for which check(msg) holds, waiting up to `timeout` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for m in self.messages:
                if check(m):
                    return m
            if loop.time() > end:
                tail = "\n".join(json.dumps(m)[:200] for m in self.messages[-8:])
                raise AssertionError(f"no {what} within {timeout:.0f} s; last messages:\n{tail}")
            await asyncio.sleep(0.02)

    async def wait_state(self, state: str, timeout: float = 20.0) -> dict:
        return await self.wait(f"state {state}", lambda m: m["type"] == "state" and m["state"] == state, timeout)

    async def wait_event(self, name: str, timeout: float = 20.0, **match) -> dict:
        def check(m):
            return (m["type"] == "event" and m["event"] == name
                    and all(m["data"].get(k) == v for k, v in match.items()))
        return (await self.wait(f"event {name} {match}", check, timeout))["data"]

    async def press(self, key: str) -> None:
        end = asyncio.get_running_loop().time() + 10
        while self.dc.readyState != "open":
            assert asyncio.get_running_loop().time() < end, "the dtmf channel never opened"
            await asyncio.sleep(0.02)
        self.dc.send(key)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.pc.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.close()


def run(coro, timeout: float = TEST_TIMEOUT):
    """Run one test's calls, bounded in time."""
    async def bounded():
        offer_hosts(["127.0.0.1"])  # the caller's side of loopback ICE (the server has --webrtc-host)
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def metrics(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def gauge_back_to_zero(port: int, timeout: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while (await metrics(port))["ivr_webrtc_calls"] != 0:
        assert asyncio.get_running_loop().time() < end, "ivr_webrtc_calls stayed above 0"
        await asyncio.sleep(0.05)


def threads(pid: int) -> int:
    """The server's threads, less the loop's executor pool (named, and kept between calls)."""
    names = []
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            names.append(comm.read_text().strip())
    return sum(1 for n in names if n != POOL_NAME)


async def settled_threads(pid: int, steady: float = 0.5, timeout: float = 10.0) -> int:
    """The server's thread count once it has not changed for `steady` seconds (a call's
    threads end a moment after the call)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    last, since = threads(pid), loop.time()
    while loop.time() - since < steady and loop.time() < end:
        await asyncio.sleep(0.05)
        if (now := threads(pid)) != last:
            last, since = now, loop.time()
    return last


async def _threads_back(pid: int, before: int, timeout: float = 10.0) -> None:
    """Wait until the server runs no more threads than `before` (a call's are gone when it is freed)."""
    end = asyncio.get_running_loop().time() + timeout
    while threads(pid) > before:
        assert asyncio.get_running_loop().time() < end, f"{threads(pid)} threads, {before} before the call"
        await asyncio.sleep(0.1)


def rms(pcm: bytes) -> float:
    x = np.frombuffer(bytes(pcm), dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


# ---- the tests --------------------------------------------------------------------------------

def test_prompts_are_heard_and_key_0_reaches_the_escape_hand_off(serve):
    need("espeak-ng")
    server = serve(FLOWS, *LOOPBACK)

    async def call():
        c = Caller(server.http_port)
        try:
            await c.dial(origin=f"http://127.0.0.1:{server.http_port}")  # what the page sends
            await c.wait_state("in-call")
            first = await c.wait_event("prompt")
            # Open hours or not, the first prompt is long enough for 2.5 s of it to be heard.
            await asyncio.sleep(3.0)
            heard = bytes(c.heard)
            await c.wait_event("listen", keys=True, timeout=30)
            await c.press("0")
            await c.wait_event("input", value="0", result="escape")
            handoff = await c.wait_event("node", via="escape")  # the bridge: tests/interop/test_webrtc_bridge.py
            await c.send({"type": "hangup"})
            ended = await c.wait_state("ended", timeout=10)
            await asyncio.wait_for(c.closed.wait(), 10)
            await gauge_back_to_zero(server.http_port)
            return first, heard, handoff, ended
        finally:
            await c.close()

    first, heard, handoff, ended = run(call())
    assert ended.get("reason") == "hangup"
    assert handoff["kind"] == "handoff"
    # The prompt arrived as audio: loud, and the server's own rendering of it lines up with it.
    assert rms(heard) > 300, f"heard only {rms(heard):.0f} RMS"
    template = line_prompt(first["text"], "en-GB")[: int(2.5 * RATE) * 2]
    match = find_pieces(heard, template)
    print("first prompt heard:", match)
    assert match.score > 0.6, f"the first prompt was not heard: {match}"
    journey = server.wait_journeys(1)[0]
    assert journey["channel"] == "webrtc" and journey["caller"] == "webrtc:127.0.0.1"
    assert journey["dialled"] == "softphone"
    assert {"via": "dtmf", "value": "0", "result": "escape"}.items() <= journey["inputs"][0].items()
    assert handoff["node"] in journey["path"]
    assert journey["outcome"] == "abandoned"  # the caller hung up while the hand-off was under way
    m = run(metrics(server.http_port))
    assert m['ivr_webrtc_dtmf_received_total{via="datachannel"}'] == 1
    assert m['ivr_webrtc_calls_total{outcome="answered"}'] == 1


def test_billing_said_into_a_speech_menu_takes_the_billing_branch_and_the_flow_hangs_up(serve, tmp_path):
    need("espeak-ng")
    need("sox")
    server = serve(SPEECH_FLOW, *LOOPBACK, "--speech-engine", "pocketsphinx")
    words = phrase("billing", tmp_path)

    async def call():
        c = Caller(server.http_port)
        try:
            await c.dial()
            await c.wait_state("in-call")
            await c.wait_event("prompt-end", node="main_menu")
            c.mic.say(words)
            said = await c.wait_event("input", node="main_menu", timeout=20)
            ended = await c.wait_state("ended", timeout=20)  # the billing node hangs up
            await asyncio.wait_for(c.closed.wait(), 10)
            await gauge_back_to_zero(server.http_port)
            return said, ended
        finally:
            await c.close()

    said, ended = run(call())
    assert (said["via"], said["result"]) == ("speech", "option"), said
    assert ended.get("reason") == "normal"
    journey = server.wait_journeys(1)[0]
    assert journey["path"] == ["main_menu", "billing"]
    assert journey["intent"] == "billing" and journey["outcome"] == "hangup"


def test_a_closed_socket_ends_the_call_and_frees_its_peer_connection(serve):
    server = serve(SPEECH_FLOW, *LOOPBACK, "--speech-engine", "off")
    pid = server.proc.pid

    async def call() -> int:
        c = Caller(server.http_port)
        try:
            await c.dial()
            await c.wait_state("in-call")
            await c.wait_event("prompt")
            assert (await metrics(server.http_port))["ivr_webrtc_calls"] == 1
            during = threads(pid)
            await c.ws.close()  # the page was closed: no hangup message
            await gauge_back_to_zero(server.http_port)
            return during
        finally:
            await c.close()

    async def calls():
        await call()  # the first call also starts what lives on (prompt cache, pools)
        baseline = await settled_threads(pid)
        during = await call()
        assert during > baseline  # aiortc decodes each call's audio in a thread of its own, and more
        await _threads_back(pid, baseline)

    run(calls())
    journeys = server.wait_journeys(2)
    assert [j["outcome"] for j in journeys] == ["abandoned", "abandoned"]
    assert all(any(n["what"] == "hangup" and n["by"] == "closed" for n in j["notes"]) for j in journeys)


def test_over_the_cap_a_call_is_busy_and_wrong_tokens_and_foreign_origins_are_refused(serve):
    server = serve(SPEECH_FLOW, *LOOPBACK, "--speech-engine", "off", "--webrtc-max-calls", "1",
                   "--webrtc-token", "s3cret", "--webrtc-origin", "https://phone.example.org")
    port = server.http_port

    async def refused(token: str | None, origin: str | None = None) -> dict:
        c = Caller(port)
        try:
            await c.open(token=token, origin=origin)
            await asyncio.wait_for(c.closed.wait(), 10)
            return c.messages[0]
        finally:
            await c.close()

    async def calls():
        first = Caller(port)
        try:
            await first.dial(token="s3cret", origin="https://phone.example.org")  # a listed origin
            await first.wait_state("in-call")
            busy = await refused("s3cret")
            bad = await refused("guess")
            missing = await refused(None)
            c = Caller(port)
            try:
                with pytest.raises(aiohttp.WSServerHandshakeError) as foreign:
                    await c.open(token="s3cret", origin="https://evil.example.com")
            finally:
                await c.close()
            await first.send({"type": "hangup"})
            await first.wait_state("ended")
            await gauge_back_to_zero(port)
            return busy, bad, missing, foreign.value.status, await metrics(port)
        finally:
            await first.close()

    busy, bad, missing, status, m = run(calls())
    assert busy == {"type": "error", "message": "busy"}
    assert bad == missing == {"type": "error", "message": "bad token"}
    assert status == 403
    assert m['ivr_webrtc_calls_total{outcome="busy"}'] == 1
    assert m['ivr_webrtc_calls_total{outcome="refused-token"}'] == 2
    assert m['ivr_webrtc_calls_total{outcome="refused-origin"}'] == 1
    assert m['ivr_webrtc_calls_total{outcome="answered"}'] == 1


def test_the_page_is_told_the_turn_server_with_time_limited_credentials_and_the_call_connects(serve):
    # Nobody serves TURN on 127.0.0.1:3478: the server's own peer gives up on it (within aioice's
    # 5 s for gathering) and the call connects over the loopback host candidates.
    import base64
    import hashlib
    import hmac
    import time

    server = serve(SPEECH_FLOW, *LOOPBACK, "--speech-engine", "off",
                   "--ice-server", "turn:127.0.0.1:3478", "--turn-secret", "s3cret")

    async def call():
        c = Caller(server.http_port)
        try:
            before = time.time()
            await c.dial()
            await c.wait("the answer", lambda m: m["type"] == "answer", timeout=15)
            answered = time.time() - before
            await c.wait_state("in-call")
            after = time.time()
            await c.send({"type": "hangup"})
            await c.wait_state("ended", timeout=10)
            await asyncio.wait_for(c.closed.wait(), 10)
            await gauge_back_to_zero(server.http_port)
            return before, after, answered, c.messages
        finally:
            await c.close()

    before, after, answered, messages = run(call())
    print(f"answered {answered:.1f} s after the offer")
    first = messages[0]
    assert first["type"] == "ice", first
    (turn,) = first["iceServers"]
    assert turn["urls"] == ["turn:127.0.0.1:3478"]
    expiry, name = turn["username"].split(":")
    assert before + 3600 - 1 <= int(expiry) <= after + 3600
    expected = base64.b64encode(hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn["credential"] == expected
    assert [m["type"] for m in messages[1:3]] == ["answer", "state"]
    journey = server.wait_journeys(1)[0]
    assert name == journey["call_id"]  # the TURN server's logs name the call
    log = server.log.read_text()
    assert "ICE: 1 TURN (time-limited credentials)" in log
    assert "s3cret" not in log and expected not in log
