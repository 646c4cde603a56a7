"""`ivr serve`: the engine wired to real calls, HTTP, metrics and storage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path

from .api import add_api
from .audio.clock import MediaClock
from .audio.prompts import PromptCache
from .audio.tts import EspeakTts, TtsError
from .engine.context import Services
from .engine.runner import run_call
from .flows.validate import iter_prompts
from .flowstore import FlowStore
from .live import CallEvents
from .metrics import Metrics
from .services.callback_worker import CallbackWorker
from .services.callbacks import SqliteCallbacks
from .services.router import HttpRouter, SipReferRouter
from .services.voicemail import SqliteVoicemail
from .sip.register import Registration
from .sip.ua import Admission, SipServer, SipSettings
from .speech import SpeechUnavailable, flow_phrases, make_engine
from .threads import named_pool

log = logging.getLogger("ivr")


@dataclass
class Settings:
    """Everything `ivr serve` can be told."""

    flows: str = "flows.yaml"
    sip_host: str = "0.0.0.0"
    sip_port: int = 5060
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    data: str = "data"
    public_host: str | None = None
    rtp_ports: range = field(default_factory=lambda: range(10000, 20000))
    capacity: int = 1000
    soft_capacity: int | None = None
    router: str = "sip-refer"
    router_url: str | None = None
    router_status_url: str | None = None  # GET template for a waiting caller's place ({queue}, {call_id})
    agents: str = "sip:agents@127.0.0.1:5070"
    queue_targets: dict[str, str] = field(default_factory=dict)
    ring_s: float = 0.0
    drain_s: float = 600.0  # longest wait for running calls on SIGTERM
    watch_s: float = 1.0
    # Optional registration as an extension of a PBX/registrar (see ivr/sip/register.py).
    register: str | None = None  # the AOR, sip:ivr@HOST[:PORT]; the registrar is HOST:PORT
    register_user: str | None = None  # digest user name (default: the AOR's user)
    register_password: str | None = None
    register_expires: int = 3600
    # Overrides of the flow's speech: settings (command-line flags).
    speech_engine: str | None = None
    vosk_model: str | None = None
    speech_workers: int | None = None
    # Callbacks are dialled through this SIP URI template ({number}); None: stored, not dialled.
    trunk: str | None = None
    caller_id: str | None = None  # From of callback calls (default sip:ivr@our address)
    callback_calls: int = 4  # callbacks dialled at once
    callback_ring_s: float = 30.0  # ringing before an attempt counts as not answered
    api_token: str | None = None  # the admin API's token (default: made once, kept in DATA/api-token)
    # Browser callers (ivr/webrtc/): see WebRtcSettings.
    webrtc_max_calls: int = 50
    webrtc_origins: list[str] = field(default_factory=list)
    webrtc_token: str | None = None
    ice_servers: list[str] = field(default_factory=list)
    webrtc_hosts: list[str] = field(default_factory=list)
    turn_secret: str | None = field(default=None, repr=False)  # time-limited TURN credentials
    turn_user: str | None = None  # or static ones
    turn_password: str | None = field(default=None, repr=False)
    turn_ttl: int = 3600  # seconds a time-limited TURN credential is valid


def no_tts_problems(flow) -> list[str]:
    """One line per text-only prompt, for a machine without text-to-speech. The
    flow's own prompts are named where they are written; built-in ones (the
    default retry and escape prompts) at the top of the file, with their key."""
    out: list[str] = []
    for owner, p in iter_prompts(flow):
        if not p.text or p.audio:
            continue
        if p.pos.line:
            where, what = p.pos, f"{owner}: prompt"
        else:
            where, what = flow.at(owner), f"the built-in {owner} prompt {p.text!r}"
        line = (f"{flow.path}:{max(where.line, 1)}:{max(where.col, 1)}: error: {what} has only text and no "
                f"text-to-speech is installed [no-tts] (hint: apt-get install espeak-ng, or give it audio:)")
        if line not in out:
            out.append(line)
    return out


class App:
    """One engine process: SIP, HTTP, the media clock, the flows and the services."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.flows = FlowStore(settings.flows)
        self.metrics = Metrics()
        self.clock = MediaClock()
        self.tts: EspeakTts | None = None
        self.recognizer = None
        self.speech_line = "speech: off"
        self.prompts: PromptCache | None = None
        self.sip: SipServer | None = None
        self.registration: Registration | None = None
        self.http = None
        self.webrtc = None  # ivr.webrtc.server.WebRtcServer, made with the HTTP server
        self.calls: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()
        data = Path(settings.data)
        data.mkdir(parents=True, exist_ok=True)
        self.journeys = data / "journeys.jsonl"
        self.callbacks = SqliteCallbacks(data / "callbacks.db")
        self.voicemail = SqliteVoicemail(data / "voicemail", limits=self._mailbox_limits, notify=self._notify)
        self.worker: CallbackWorker | None = None
        self.api_token = settings.api_token or _token(data / "api-token")
        self._background: set[asyncio.Task] = set()
        self.live = CallEvents()  # each call's journey events, for followers (/api/calls/ID/events)
        self._warm: asyncio.Task | None = None
        refer = SipReferRouter(settings.queue_targets, settings.agents)
        self.router = HttpRouter(settings.router_url, fallback=refer, status_url=settings.router_status_url) \
            if settings.router == "http" else refer

    def check_startup(self) -> list[str]:
        """Problems that stop the server from starting (invalid flows, no TTS for text prompts)."""
        if not self.flows.load():
            return self.flows.last_errors
        try:
            self.tts = EspeakTts()
        except TtsError:
            self.tts = None
        if self.tts is None:
            return no_tts_problems(self.flows.flow)
        return self._start_speech()

    def _start_speech(self) -> list[str]:
        """Choose and load the recogniser once, for every call of this process."""
        s, flow = self.settings, self.flows.flow
        try:
            self.recognizer, self.speech_line = make_engine(
                flow.speech, engine=s.speech_engine, vosk_model=s.vosk_model, workers=s.speech_workers)
        except SpeechUnavailable as e:
            return [f"{flow.path}:{max(flow.speech.pos.line, 1)}:{max(flow.speech.pos.col, 1)}: error: {e} "
                    f"[speech-unavailable] (hint: set speech.engine: auto, or install the engine and its model)"]
        log.info("%s", self.speech_line)
        if self.recognizer is not None:
            self.recognizer.load()
            # Logs each phrase the model cannot recognise, once, before any caller meets it.
            self.recognizer.usable(sorted({p for ps in flow_phrases(flow) for p in ps}))
        return []

    async def start(self) -> None:
        s = self.settings
        self.prompts = PromptCache(self.tts)
        self.sip = SipServer(
            SipSettings(host=s.sip_host, port=s.sip_port, public_host=s.public_host, rtp_ports=s.rtp_ports,
                        ring_s=s.ring_s),
            self.on_call, self.prompts, self.clock,
            Admission(hard=s.capacity, soft=s.soft_capacity, can_overflow=self._has_overflow),
            music_root=str(Path(self.flows.flow.media_dir) / "moh"))
        self.sip.count = self.metrics.inc
        await self.sip.start()
        if s.trunk:
            self.worker = CallbackWorker(self.callbacks, self._dial, self.router, max_calls=s.callback_calls,
                                         on_result=lambda r: self.metrics.inc("ivr_callback_attempts_total",
                                                                              status=r["status"]))
            self.worker.start()
        else:
            log.warning("callbacks: stored, but not dialled: give --trunk sip:{number}@HOST to dial them")
        if s.register:
            # Registered only once the SIP socket is up: the Contact names its address and port.
            self.registration = Registration(self.sip, s.register, username=s.register_user,
                                             password=s.register_password, expires=s.register_expires)
            self.registration.start()
        self._gauges()
        await self._start_http()
        self.flows.start_watching(s.watch_s)
        self._warm = asyncio.get_running_loop().create_task(self._warm_prompts())

    def _mailbox_limits(self, name: str):
        return self.flows.flow.mailbox(name)

    async def _dial(self, number: str):
        """Place a callback call through the trunk: (the answered call, or None and why)."""
        s = self.settings
        host, port = self.sip.address
        caller_id = s.caller_id or f"sip:ivr@{s.public_host or ('127.0.0.1' if host in ('0.0.0.0', '::') else host)}"
        res = await self.sip.dial(s.trunk.format(number=number), caller_id=caller_id, ring_timeout=s.callback_ring_s)
        return res.call, f"{res.status} {res.reason}"

    def _notify(self, event: dict) -> None:
        """A mailbox reached 80 % or filled: POST the event to its notify URL (logged by the store)."""
        self.metrics.inc("ivr_voicemail_notices_total", event=event["event"])
        if event.get("url"):
            task = asyncio.get_running_loop().create_task(_post_json(event["url"], event))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _has_overflow(self) -> bool:
        """Whether the running flow has a path for callers over the soft capacity."""
        return self.flows.flow is not None and self.flows.flow.overflow is not None

    async def _warm_prompts(self) -> None:
        """Render every fixed prompt once, so the first caller hears no delay."""
        from .audio.g711 import PCMA, PCMU
        from .engine.call import PromptAudio
        from .flows.model import Hold
        flow = self.flows.flow
        for music in sorted({n.music for n in flow.nodes.values() if isinstance(n, Hold)}):
            # Decoded and encoded now, so the first caller put on hold hears music at once.
            for codec in (PCMU, PCMA):
                with contextlib.suppress(Exception):
                    await self.prompts.music(str(Path(flow.media_dir) / "moh" / music), codec)
        for _, p in iter_prompts(flow):
            if p.text and "{" in p.text:
                continue  # rendered per call (it contains variables)
            audio = str(Path(flow.media_dir) / p.audio) if p.audio else None
            with contextlib.suppress(Exception):
                await self.prompts.frames(PromptAudio(text=p.text if not audio else None, audio=audio,
                                                      language=flow.language))

    def _gauges(self) -> None:
        m = self.metrics
        m.gauge("ivr_active_calls", lambda: self.sip.admission.active if self.sip else 0, "calls in progress")
        m.gauge("ivr_rtp_send_lateness_p50_seconds", lambda: self.clock.percentile(0.5),
                "median lateness of outgoing RTP bursts")
        m.gauge("ivr_rtp_send_lateness_p99_seconds", lambda: self.clock.percentile(0.99),
                "99th percentile lateness of outgoing RTP bursts")
        m.gauge("ivr_sip_errors_total", lambda: self.sip.errors if self.sip else 0,
                "SIP requests refused as malformed or failed while handled", kind="counter")
        m.gauge("ivr_sip_malformed_total", lambda: self.sip.transport.bad if self.sip else 0,
                "SIP messages that could not be parsed", kind="counter")
        m.gauge("ivr_calls_refused_capacity_total", lambda: self.sip.admission.refused if self.sip else 0,
                "calls refused with 503 over the capacity", kind="counter")
        m.gauge("ivr_calls_overflow_total", lambda: self.sip.admission.overflowed if self.sip else 0,
                "calls sent to the flow's overflow path over the soft capacity", kind="counter")
        m.gauge("ivr_speech_sessions", lambda: self.recognizer.busy if self.recognizer else 0,
                "listening turns holding a recogniser now")
        m.gauge("ivr_speech_refused_total", lambda: self.recognizer.refused if self.recognizer else 0,
                "turns that fell back to keys because every recogniser was busy", kind="counter")
        m.gauge("ivr_flow_version", lambda: self.flows.version, "flows reloads applied")
        m.gauge("ivr_flow_reload_failures_total", lambda: self.flows.failures,
                "edits of the flows refused because they did not validate", kind="counter")
        m.describe("ivr_calls_total", "finished calls by outcome")
        m.describe("ivr_node_visits_total", "node visits")
        m.describe("ivr_dtmf_inputs_total", "key inputs by result")
        m.describe("ivr_speech_inputs_total", "speech inputs by result")
        m.describe("ivr_sip_dtmf_received_total", "keys received, by how they came (rfc4733, info, inband)")
        m.describe("ivr_voicemail_notices_total", "mailboxes that reached 80 % or filled")
        m.describe("ivr_sip_dial_total", "outgoing calls placed, by result (answered, busy, no-answer, failed)")
        m.describe("ivr_callback_attempts_total", "callback attempts by what followed (done, pending, failed)")
        m.describe("ivr_rtp_foreign_packets_total", "RTP packets ignored: not from the call's latched peer")
        m.gauge("ivr_webrtc_calls", lambda: len(self.webrtc.live) if self.webrtc else 0,
                "browser calls holding a place (signalling or in a call), each with its peer connection")
        m.describe("ivr_webrtc_calls_total", "browser sockets by how they ended (answered, abandoned, no-media, "
                   "bad-request, error, busy, refused-token, refused-origin)")
        m.describe("ivr_webrtc_dtmf_received_total", "keys from browser callers, by how they came (datachannel, inband)")
        m.describe("ivr_webrtc_bridges_total", "hand-offs of browser calls by calling the SIP target, by result "
                   "(answered, busy, no-answer, failed, abandoned)")
        m.describe("ivr_webrtc_bridges_ended_total", "bridged browser calls by the side that hung up (caller, agent)")

    async def _start_http(self) -> None:
        from aiohttp import web

        app = web.Application()

        async def healthz(_req):
            ok = self.sip is not None and self.flows.flow is not None
            body = {"status": "draining" if self.sip and self.sip.draining else ("ok" if ok else "starting"),
                    "active_calls": self.sip.admission.active if self.sip else 0,
                    "flow_version": self.flows.flow.digest if self.flows.flow else None}
            if self.registration is not None:
                # Reported, not part of "status": the IVR still answers calls sent to it directly.
                body["registration"] = self.registration.status()
            return web.json_response(body, status=200 if ok else 503)

        async def metrics(_req):
            return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")

        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        add_api(app, token=self.api_token, voicemail=self.voicemail, callbacks=self.callbacks, worker=self.worker,
                flow=lambda: self.flows.flow, live=self.live)
        self._add_webrtc(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.http_host, self.settings.http_port)
        await site.start()
        self.http = runner

    def _add_webrtc(self, app) -> None:
        """Browser callers: the signalling socket, and the softphone page when it is installed."""
        from aiohttp import web

        from .webrtc.bridge import SipBridge
        from .webrtc.server import WebRtcServer, WebRtcSettings

        s = self.settings
        # A browser caller has no SIP dialog to REFER: a hand-off calls the target and bridges.
        bridge = SipBridge(self.sip.dial, caller_id=s.caller_id, count=self.metrics.inc)
        self.webrtc = WebRtcServer(
            WebRtcSettings(max_calls=s.webrtc_max_calls, origins=list(s.webrtc_origins), token=s.webrtc_token,
                           ice_servers=list(s.ice_servers), hosts=list(s.webrtc_hosts), turn_secret=s.turn_secret,
                           turn_user=s.turn_user, turn_password=s.turn_password, turn_ttl=s.turn_ttl),
            self.on_call, self.prompts, self.clock, music_root=str(Path(self.flows.flow.media_dir) / "moh"),
            transferer=bridge, count=self.metrics.inc)
        self.webrtc.add_routes(app)
        page = Path(__file__).parent / "webrtc" / "softphone.html"

        async def softphone(_req):
            if not page.is_file():
                raise web.HTTPNotFound(text="the softphone page is not installed\n")
            return web.FileResponse(page, headers={"Cache-Control": "no-cache"})

        app.router.add_get("/softphone", softphone)

    async def on_call(self, call, overflow: bool, observers=()) -> None:
        """Run the current flow on one answered call (a reload won't change it mid-call).

        `observers` are extra journey observers of this call (a softphone page's live view)."""
        flow = self.flows.flow
        start = None
        if overflow:
            if flow.overflow is None:
                await call.hangup("over capacity")
                return
            start = flow.overflow
        services = Services(self.router, self.voicemail, self.callbacks, recognizer=self.recognizer)
        task = asyncio.current_task()
        self.calls.add(task)
        try:
            journey = await run_call(flow, call, services, overflow=overflow, start=start,
                                     observers=[self.metrics.observer, self.live.observer(call.call_id), *observers])
        finally:
            self.calls.discard(task)
            self.live.ended(call.call_id)
        with self.journeys.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(journey.to_dict(), default=str) + "\n")

    async def drain(self) -> None:
        """Stop taking calls (503, or "busy" for browsers), let running calls finish, then stop."""
        if self.sip is not None:
            self.sip.draining = True
        if self.webrtc is not None:
            self.webrtc.draining = True
        if self.worker is not None:
            self.worker.pause()
        if self.registration is not None:
            # Unregister first, so the registrar stops routing new calls here while calls drain.
            await self.registration.stop()
        log.info("draining: %d call(s) in progress", self._in_progress())
        # Counted by admission, not by flow tasks: a call still ringing has no flow task yet.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_s
        while self._in_progress() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        log.info("drained: %d call(s) left", self._in_progress())
        self.stopping.set()

    def _in_progress(self) -> int:
        admitted = self.sip.admission.active if self.sip is not None else 0
        # Browser calls still connecting have no flow task yet.
        admitted += len(self.webrtc.live) if self.webrtc is not None else 0
        callbacks = len(self.worker.active) if self.worker is not None else 0
        return max(admitted, len(self.calls)) + callbacks

    async def stop(self) -> None:
        if self._warm is not None:
            self._warm.cancel()  # starts no more renders; those running finish below
        if self.prompts is not None:
            await self.prompts.settle(10.0)
        self.flows.stop()
        if self.worker is not None:
            await self.worker.stop()  # before the SIP socket closes: a cut callback still sends its BYE
        if self.registration is not None:
            await self.registration.stop()  # before the SIP socket closes: the un-REGISTER needs it
        if self.webrtc is not None:
            await self.webrtc.close()  # the pages are told, the peer connections freed
        if self.sip is not None:
            await self.sip.close()
        if self.http is not None:
            await self.http.cleanup()
        await self.clock.stop()
        self.callbacks.close()
        self.voicemail.close()
        if self.recognizer is not None:
            self.recognizer.shutdown()
        if self.prompts is not None:
            self.prompts.close()

    def banner(self) -> str:
        host, port = self.sip.address
        shown = self.settings.public_host or ("127.0.0.1" if host in ("0.0.0.0", "::") else host)
        return (f"IVR engine running {self.flows.flow.name!r} ({self.flows.path}, version {self.flows.flow.digest})\n"
                f"  call it:  sip:ivr@{shown}:{port}   (UDP and TCP; e.g. baresip, linphonec, SIPp)\n"
                f"  health:   http://{self.settings.http_host}:{self.settings.http_port}/healthz\n"
                f"  metrics:  http://{self.settings.http_host}:{self.settings.http_port}/metrics\n"
                f"  browsers: http://{self.settings.http_host}:{self.settings.http_port}/softphone "
                f"(WebRTC, at most {self.settings.webrtc_max_calls} calls)\n"
                f"  {self.webrtc.ice.summary() if self.webrtc else 'ICE: not set up'}\n"
                f"  messages: http://{self.settings.http_host}:{self.settings.http_port}/voicemail?token=... "
                f"(the token is in {Path(self.settings.data) / 'api-token'} unless --api-token was given)\n"
                f"  callbacks: {'dialled through ' + self.settings.trunk if self.settings.trunk else 'stored, not dialled (no --trunk)'}\n"
                f"  {self.speech_line}\n"
                f"  hand-offs go to {self.settings.agents} ({self.router.name})")


def _token(path: Path) -> str:
    """The API token kept in `path`, made (random, readable by the owner only) the first time."""
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


async def _post_json(url: str, body: dict) -> None:
    """One webhook POST, bounded in time; a failure is logged, never raised."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, \
                http.post(url, json=body) as resp:
            if resp.status >= 300:
                log.warning("notify %s: HTTP %d", url, resp.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("notify %s failed: %s", url, exc)


async def serve(settings: Settings) -> int:
    """Run until SIGTERM (drain) or SIGINT; SIGHUP reloads the flows."""
    asyncio.get_running_loop().set_default_executor(named_pool())
    app = App(settings)
    problems = app.check_startup()
    if problems:
        for line in problems:
            print(line, flush=True)
        print(f"{settings.flows}: not starting ({len(problems)} problem(s))", flush=True)
        return 1
    await app.start()
    loop = asyncio.get_running_loop()
    # Handlers before the banner: whoever waits for the banner may signal at once.
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(app.drain()))
    loop.add_signal_handler(signal.SIGINT, app.stopping.set)
    loop.add_signal_handler(signal.SIGHUP, app.flows.load)
    print(app.banner(), flush=True)
    try:
        await app.stopping.wait()
    finally:
        await app.stop()
    return 0
