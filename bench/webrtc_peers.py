"""The peers of bench/webrtc_calls.py: a bare aiortc server and the callers.

bench/webrtc_calls.py runs each in a process of its own (`python
bench/webrtc_calls.py --bare-server ...` and `--client ...`), and describes
what they do and what is measured.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import json
import re
import signal
import sys
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUSIC = ROOT / "media" / "moh" / "default" / "acme-theme.wav"  # the flow's class, also looped by the bare server
LOCAL = "127.0.0.1"
PATH = "/softphone/ws"
MARK = "@@ "  # prefix of the client's protocol lines on its standard output
CLIENT_LIFETIME = 900.0  # a client process ends itself after this long, whatever happens
MIC_RATE = 48000
FRAME_S = 0.02


def loopback_only() -> None:
    """Make aioice offer 127.0.0.1 as this process's only host address (it leaves loopback out itself).

    The same thing `ivr.webrtc.ice.offer_hosts(["127.0.0.1"])` does in the engine, written out here
    so that the bare server runs no engine code."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [LOCAL] if use_ipv4 else []


def negotiated_codec(sdp: str) -> str:
    """The first codec of the audio section of an SDP answer, as name/rate[/channels]."""
    pts = None
    maps: dict[str, str] = {}
    for line in sdp.splitlines():
        if line.startswith("m=audio") and pts is None:
            pts = line.split()[3:]
        m = re.match(r"a=rtpmap:(\d+) (\S+)", line)
        if m:
            maps.setdefault(m.group(1), m.group(2))
    return maps.get(pts[0], pts[0]) if pts else "?"


# ---- the bare aiortc server ----------------------------------------------------------------------

def music_frames() -> list[bytes]:
    """The music class's file as 20 ms frames of s16 mono 8 kHz (what the engine sends too)."""
    with wave.open(str(MUSIC)) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
            raise SystemExit(f"{MUSIC}: expected 8 kHz mono 16-bit PCM")
        pcm = w.readframes(w.getnframes())
    size = 320
    return [pcm[i:i + size] for i in range(0, len(pcm) - size + 1, size)]


async def bare_server(port: int) -> None:
    """aiohttp + aiortc only: the softphone's signalling, a looped music track out, audio in discarded."""
    from aiohttp import WSMsgType, web
    from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError
    from av import AudioFrame

    loopback_only()
    frames = music_frames()
    stats = {"calls": 0, "frames_in": 0, "answered": 0, "frames_out": 0}
    lateness: collections.deque[float] = collections.deque(maxlen=1000)  # the last 20 s of a 20 ms timer
    time_base = fractions.Fraction(1, 8000)

    class MusicTrack(MediaStreamTrack):
        """Looped 8 kHz frames, paced like aiortc's AudioStreamTrack (wall clock and asyncio.sleep)."""

        kind = "audio"

        def __init__(self, start: int) -> None:
            super().__init__()
            self._i = start
            self._start: float | None = None
            self._timestamp = 0

        async def recv(self) -> AudioFrame:
            if self.readyState != "live":
                raise MediaStreamError
            if self._start is None:
                self._start = time.time()
            else:
                self._timestamp += 160
                await asyncio.sleep(self._start + self._timestamp / 8000 - time.time())
            frame = AudioFrame(format="s16", layout="mono", samples=160)
            frame.planes[0].update(frames[self._i % len(frames)])
            self._i += 1
            frame.sample_rate = 8000
            frame.time_base = time_base
            frame.pts = self._timestamp
            stats["frames_out"] += 1
            return frame

    async def drain(track) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                stats["frames_in"] += 1

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        tasks: list[asyncio.Task] = []
        stats["calls"] += 1

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio":
                tasks.append(asyncio.ensure_future(drain(track)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                stats["answered"] += 1
                await ws.send_str(json.dumps({"type": "state", "state": "in-call"}))
            elif pc.connectionState in ("failed", "closed"):
                await ws.close()

        try:
            await ws.send_str(json.dumps({"type": "ice", "iceServers": []}))  # as the engine says first
            msg = await asyncio.wait_for(ws.receive(), 15)
            if msg.type != WSMsgType.TEXT or json.loads(msg.data).get("type") != "offer":
                return ws
            await pc.setRemoteDescription(RTCSessionDescription(json.loads(msg.data)["sdp"], "offer"))
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            audio[0].direction = "sendrecv"
            pc.addTrack(MusicTrack(start=37 * stats["answered"]))
            await pc.setLocalDescription(await pc.createAnswer())
            await ws.send_str(json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}))
            await ws.send_str(json.dumps({"type": "state", "state": "connecting"}))
            async for m in ws:  # candidates (none are trickled here) and hangup
                if m.type != WSMsgType.TEXT or json.loads(m.data).get("type") == "hangup":
                    break
        finally:
            stats["calls"] -= 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 5)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await ws.close()
        return ws

    async def ticker() -> None:
        # How late a 20 ms timer fires on this loop: the figure the engine's media clock reports.
        due = loop.time()
        while True:
            due += FRAME_S
            await asyncio.sleep(max(0.0, due - loop.time()))
            lateness.append(loop.time() - due)

    async def stats_view(request: web.Request) -> web.Response:
        late = sorted(lateness)
        p99 = round(1000 * late[int(0.99 * (len(late) - 1))], 2) if late else None
        return web.json_response({**stats, "lateness_p99_ms": p99})

    app = web.Application()
    app.router.add_get(PATH, handle)
    app.router.add_get("/stats", stats_view)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, LOCAL, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    tick = asyncio.ensure_future(ticker())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"bare aiortc server on http://{LOCAL}:{port}{PATH}", flush=True)
    await stop.wait()
    tick.cancel()
    await runner.cleanup()


# ---- the callers ---------------------------------------------------------------------------------

def mic_signal(seconds: float = 4.0) -> bytes:
    """Speech-shaped noise at 48 kHz: band-limited noise in syllables about 4 a second, with pauses."""
    import numpy as np

    rng = np.random.default_rng(7)
    n = int(seconds * MIC_RATE)
    t = np.arange(n) / MIC_RATE
    k = np.arange(-48, 49)
    h = np.sinc(2 * 3000 / MIC_RATE * k) * np.hanning(k.size)  # low-pass about 3 kHz
    noise = np.convolve(rng.normal(0.0, 1.0, n), h / h.sum(), mode="same")
    noise /= noise.std()
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0.0, None) ** 0.5
    talking = (t % 2.0) < 1.4  # 1.4 s of talk, 0.6 s of pause
    x = 3000.0 * noise * syllables * talking + rng.normal(0.0, 30.0, n)  # and a faint line noise
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


async def client_main(args) -> None:
    """`--calls` callers to `--port`; then answers the coordinator's "mark" and "quit" on stdin."""
    import aiohttp
    import numpy as np
    from aiortc import (
        MediaStreamTrack,
        RTCConfiguration,
        RTCPeerConnection,
        RTCRtpSender,
        RTCSessionDescription,
    )
    from av import AudioFrame

    from ivr.webrtc.ice import offer_hosts

    offer_hosts([LOCAL])  # the caller's side of loopback ICE (the engine has --webrtc-host)
    signal_pcm = mic_signal()
    per_frame = MIC_RATE // 50
    time_base = fractions.Fraction(1, MIC_RATE)
    url = f"http://{LOCAL}:{args.port}{PATH}"

    class Mic(MediaStreamTrack):
        kind = "audio"

        def __init__(self, offset: int) -> None:
            super().__init__()
            self.n = 0
            self._start: float | None = None
            self._pos = offset * 2

        async def recv(self) -> AudioFrame:
            loop = asyncio.get_running_loop()
            if self._start is None:
                self._start = loop.time()
            await asyncio.sleep(max(0.0, self._start + self.n * FRAME_S - loop.time()))
            size = per_frame * 2
            if self._pos + size > len(signal_pcm):
                self._pos = 0
            frame = AudioFrame(format="s16", layout="mono", samples=per_frame)
            frame.planes[0].update(signal_pcm[self._pos:self._pos + size])
            self._pos += size
            frame.sample_rate = MIC_RATE
            frame.time_base = time_base
            frame.pts = self.n * per_frame
            self.n += 1
            return frame

    class Call:
        def __init__(self, http: aiohttp.ClientSession, index: int) -> None:
            self.http = http
            self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: loopback only
            self.dc = self.pc.createDataChannel("dtmf")
            self.mic = Mic(offset=index * 3371)
            self.tr = tr = self.pc.addTransceiver(self.mic, direction="sendrecv")
            if args.codec == "pcmu":
                tr.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs
                                        if c.mimeType == "audio/PCMU"])
            self.ws = None
            self.codec = "?"
            self.frames = 0  # audio frames received
            self.audible = 0  # of the sampled ones (every 25th), those not silent
            self.sampled = 0
            self.last: float | None = None
            self.max_gap = 0.0  # the longest time between two frames since the last mark
            self.got_audio = asyncio.Event()
            self.tasks: list[asyncio.Task] = []
            self.pc.on("track", self._on_track)

        def _on_track(self, track) -> None:
            async def read() -> None:
                loop = asyncio.get_running_loop()
                while True:
                    try:
                        frame = await track.recv()
                    except Exception:
                        return
                    now = loop.time()
                    if self.last is not None:
                        self.max_gap = max(self.max_gap, now - self.last)
                    self.last = now
                    self.frames += 1
                    if self.frames % 25 == 0:
                        self.sampled += 1
                        if int(np.abs(frame.to_ndarray()).max()) > 200:
                            self.audible += 1
                    if self.frames >= 5:
                        self.got_audio.set()

            self.tasks.append(asyncio.ensure_future(read()))

        async def dial(self) -> None:
            self.ws = await self.http.ws_connect(url, origin=f"http://{LOCAL}:{args.port}")
            await self.pc.setLocalDescription(await self.pc.createOffer())
            await self.ws.send_str(json.dumps({"type": "offer", "sdp": self.pc.localDescription.sdp}))
            self.tasks.append(asyncio.ensure_future(self._read()))
            await asyncio.wait_for(self.got_audio.wait(), 30)

        async def _read(self) -> None:
            async for m in self.ws:
                if m.type != aiohttp.WSMsgType.TEXT:
                    break
                msg = json.loads(m.data)
                if msg["type"] == "answer":
                    self.codec = negotiated_codec(msg["sdp"])
                    await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))

        async def rtp(self) -> tuple[int, int, int]:
            """RTP packets received and lost (before aiortc's jitter buffer and decoder), and sent."""
            got = lost = sent = 0
            for s in (await self.tr.receiver.getStats()).values():
                if s.type == "inbound-rtp":
                    got, lost = s.packetsReceived, s.packetsLost
            for s in (await self.tr.sender.getStats()).values():
                if s.type == "outbound-rtp":
                    sent = s.packetsSent
            return got, lost, sent

        async def close(self) -> None:
            with contextlib.suppress(Exception):
                if self.ws is not None and not self.ws.closed:
                    await self.ws.send_str(json.dumps({"type": "hangup"}))
                    await asyncio.wait_for(self.ws.close(), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), 5)
            for t in self.tasks:
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def say(doc: dict) -> None:
        print(MARK + json.dumps(doc), flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with aiohttp.ClientSession() as http:
        calls = [Call(http, args.first + i) for i in range(args.calls)]
        gate = asyncio.Semaphore(4)  # a few offers at a time, as callers arriving

        async def dial(c: Call) -> str | None:
            async with gate:
                try:
                    await asyncio.wait_for(c.dial(), 40)
                    return None
                except Exception as exc:
                    return repr(exc)[:200]

        errors = await asyncio.gather(*(dial(c) for c in calls))
        say({"ready": sum(e is None for e in errors), "errors": [e for e in errors if e],
             "codecs": sorted({c.codec for c in calls})})
        try:
            while True:
                line = (await asyncio.wait_for(reader.readline(), CLIENT_LIFETIME)).decode().strip()
                if line == "mark":
                    rtp = await asyncio.gather(*(c.rtp() for c in calls))
                    say({"t": loop.time(), "frames": [c.frames for c in calls], "sent": [c.mic.n for c in calls],
                         "packets": [r[0] for r in rtp], "lost": [r[1] for r in rtp], "packets_sent": [r[2] for r in rtp],
                         "max_gap_ms": [round(1000 * c.max_gap, 1) for c in calls],
                         "audible": [c.audible for c in calls], "sampled": [c.sampled for c in calls],
                         "connected": sum(c.pc.connectionState == "connected" for c in calls)})
                    for c in calls:
                        c.max_gap = 0.0
                else:  # "quit", or the coordinator is gone
                    break
        finally:
            await asyncio.gather(*(c.close() for c in calls), return_exceptions=True)
            say({"closed": len(calls)})
