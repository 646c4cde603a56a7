"""WebRTC calls per core, audio both ways: `ivr serve` against a bare aiortc server, in one run.

    python bench/webrtc_calls.py [--calls 20] [--window 20] [--rounds 3] [--codec opus|pcmu]
                                 [--clients 2] [--settle 5] [--no-pin] [--out FILE] [--keep]

Two servers run side by side on 127.0.0.1 for the whole run:

- ivr: `ivr serve bench/flows/webrtc_hold.yaml --webrtc-host 127.0.0.1 --speech-engine off`
  (a copy of the flow in a work folder with the repository's media/ beside it):
  every caller is put on music on hold (media/moh/default, resume mode) at
  once, so the engine sends audio for the whole measurement through its
  OutgoingTrack on the media clock, and reads the caller's audio through its
  Inbound (8 kHz frames, in-band DTMF detection);
- bare: this script with `--bare-server`, aiohttp + aiortc and nothing else:
  the same signalling messages on /softphone/ws, answered with a track that
  loops the same music file's 8 kHz PCM frames paced with asyncio timing the
  way aiortc's own AudioStreamTrack is, and the caller's track read in a loop
  and thrown away. That is what aiortc alone costs for the same calls.

The callers are this script with `--client`, in `--clients` processes of their
own (their CPU is not the server's): each call does what the softphone page
does (a WebSocket, an offer with audio and a "dtmf" data channel, the answer
applied; the `ice` message is ignored: no STUN or TURN server is ever used)
and talks continuously: speech-shaped noise (syllables about 4 a second with
pauses, no tones) at 48 kHz in 20 ms frames paced by the event loop, as a
browser's microphone would. Nothing is offered but 127.0.0.1 on either side,
so no packet leaves the machine. The codec is what the page negotiates by
default (Opus, 48 kHz stereo); `--codec pcmu` makes the callers offer only PCMU.

By default both servers are pinned to the last CPU and the callers (and this
script) to the others, so "a core" is literal: a Python process runs on about
one core anyway (the GIL), the callers cannot take the server's CPU, and
FFmpeg starts no extra threads per call (it sizes its pools by the CPUs a
process may use). `--no-pin` lets the scheduler place everything.

Each round connects N calls to one server, waits `--settle` s, then reads the
server process's CPU (utime + stime from /proc/PID/stat, so its aiortc
encoder and decoder threads count) over `--window` s, then hangs them all up
and waits for the server to have no call left. Sides alternate (bare, ivr,
then ivr, bare, ...). Each server's idle rate, measured once before the first
round, is subtracted: CPU per call is (core fraction in the window - idle) / N,
calls per core its inverse; the ratio ivr/bare is taken per round; the
figures are medians over rounds.

Whether the server kept up: each caller counts the RTP packets it receives
(aiortc's stats) and the audio frames it decodes, per second (50 when the
server keeps up; the engine's track skips a 20 ms tick its sender is not
ready for, so a server that cannot keep up shows fewer), the longest gap
between two frames, and whether the sampled frames are audible. The server's
CPU per RTP packet handled (both ways) and the calls per core that makes at a
full 50 packets a second each way are given too, for a server that fell
behind. The bare server also reports the frames it read and sent, and the
p99 lateness of a 20 ms timer on its loop (the engine's media clock reports
the same as ivr_rtp_send_lateness_p99_seconds); the kernel's UDP receive
buffer drops over the window are counted machine-wide.

The bare server and the callers are written in bench/webrtc_peers.py.

Progress goes to standard error, JSON to standard output (`--out FILE` too).
Everything is bounded: at most 100 calls, 4 client processes, a 60 s window,
9 rounds; every wait has a timeout, every process started here is stopped by
its pid when the script ends, and each client process ends itself after 15
minutes whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sipbench import cpu_seconds, free_port, machine, rss_kib, threads_of  # noqa: E402 - sibling module
from webrtc_peers import CLIENT_LIFETIME, FRAME_S, LOCAL, MARK, bare_server, client_main  # noqa: E402 - sibling module

ROOT = Path(__file__).resolve().parents[1]
FLOW = ROOT / "bench" / "flows" / "webrtc_hold.yaml"
LIMITS = {"calls": (1, 100), "window": (5, 60), "rounds": (1, 9), "clients": (1, 4), "settle": (1, 30),
          "idle": (2, 30)}


def pin(pid: int, cpus: set[int]) -> None:
    """Keep every thread of a process (and the threads they start later) on these CPUs."""
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):  # a thread that just ended
                os.sched_setaffinity(int(tid), cpus)


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (machine-wide)."""
    lines = [x.split() for x in Path("/proc/net/snmp").read_text().splitlines() if x.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def engine_version() -> dict:
    """The commit the engine ran from, and its files changed since (the tree may be moving)."""
    def git(*a: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        return ""
    changed = [line[3:] for line in git("status", "--porcelain", "--", "ivr").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "ivr_files_changed": changed}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- the coordinator -----------------------------------------------------------------------------

class Server:
    """One server process (ivr or bare), its ports and its log; stopped by its pid."""

    def __init__(self, name: str, cmd: list[str], http_port: int, work: Path, ready: str) -> None:
        self.name, self.http_port, self.ready = name, http_port, ready
        self.log = work / f"{name}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=ROOT)
        self.idle_core = 0.0
        self.idle_rss_kib = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    async def wait_ready(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while self.ready not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > end:
                raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")
            await asyncio.sleep(0.1)

    async def http(self, path: str) -> str:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, \
                s.get(f"http://{LOCAL}:{self.http_port}{path}") as r:
            return await r.text()

    async def probe(self) -> dict:
        """What the server says about itself: live calls, and its own counters."""
        if self.name == "bare":
            return json.loads(await self.http("/stats"))
        out = {}
        for line in (await self.http("/metrics")).splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return {"calls": int(out.get("ivr_webrtc_calls", -1)),
                "send_lateness_p99_ms": round(1000 * out.get("ivr_rtp_send_lateness_p99_seconds", 0.0), 2),
                "dtmf": sum(v for k, v in out.items() if k.startswith("ivr_webrtc_dtmf_received_total"))}

    async def wait_no_calls(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while (await self.probe())["calls"] != 0:
            if time.monotonic() > end:
                raise RuntimeError(f"{self.name} still has calls {timeout:.0f} s after the hang-ups")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Clients:
    """The caller processes of one measurement."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, port: int, calls: int, processes: int, codec: str, work: Path, tag: str,
                    cpus: set[int] | None) -> dict:
        shares = [calls // processes + (i < calls % processes) for i in range(processes)]
        first = 0
        for i, n in enumerate(s for s in shares if s):
            with (work / f"client-{tag}-{i}.log").open("w") as err:
                self.procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, str(Path(__file__).resolve()), "--client", "--port", str(port),
                    "--calls", str(n), "--first", str(first), "--codec", codec,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=ROOT))
            if cpus:
                pin(self.procs[-1].pid, cpus)
            first += n
        replies = await self._each(timeout=120)  # imports, then every call's offer and first audio
        ready = sum(r["ready"] for r in replies)
        errors = [e for r in replies for e in r["errors"]]
        if ready != calls:
            raise RuntimeError(f"{ready}/{calls} calls connected; errors: {errors[:5]}")
        return {"codecs": sorted({c for r in replies for c in r["codecs"]})}

    async def _each(self, timeout: float) -> list[dict]:
        async def one(p: asyncio.subprocess.Process) -> dict:
            end = time.monotonic() + timeout
            while True:
                line = await asyncio.wait_for(p.stdout.readline(), max(0.1, end - time.monotonic()))
                if not line:
                    raise RuntimeError(f"client {p.pid} exited {await p.wait()}")
                text = line.decode(errors="replace")
                if text.startswith(MARK):
                    return json.loads(text[len(MARK):])

        return list(await asyncio.gather(*(one(p) for p in self.procs)))

    async def mark(self) -> list[dict]:
        for p in self.procs:
            p.stdin.write(b"mark\n")
            await p.stdin.drain()
        return await self._each(timeout=10)

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            with contextlib.suppress(OSError):
                total += cpu_seconds(p.pid)
        return total

    async def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.stdin.write(b"quit\n")
                await p.stdin.drain()
        for p in self.procs:
            try:
                await asyncio.wait_for(p.wait(), 20)
            except TimeoutError:
                p.kill()
                await p.wait()
        self.procs.clear()


def _med(values: list[float], digits: int = 4) -> float:
    return round(statistics.median(values), digits)


async def measure(server: Server, args, work: Path, tag: str, client_cpus: set[int] | None) -> dict:
    clients = Clients()
    try:
        rss0 = rss_kib(server.pid)
        t_dial = time.monotonic()
        started = await clients.start(server.http_port, args.calls, args.clients, args.codec, work, tag,
                                       client_cpus)
        dial_s = time.monotonic() - t_dial
        await asyncio.sleep(args.settle)
        before = await server.probe()
        m0 = await clients.mark()
        cpu0, ccpu0, w0, drop0 = cpu_seconds(server.pid), clients.cpu(), time.monotonic(), udp_rcvbuf_errors()
        await asyncio.sleep(args.window)
        cpu1, ccpu1, w1, drop1 = cpu_seconds(server.pid), clients.cpu(), time.monotonic(), udp_rcvbuf_errors()
        m1 = await clients.mark()
        after = await server.probe()
        rss1, threads = rss_kib(server.pid), threads_of(server.pid)
    finally:
        await clients.stop()
    await server.wait_no_calls()
    wall = w1 - w0
    core = (cpu1 - cpu0) / wall
    net = max(1e-9, core - server.idle_core)
    rates, packets, lost, sent, gaps, audible = [], [], [], [], [], []
    handled = 0  # RTP packets the server sent (as the callers received them) and received (as they sent them)
    for a, b in zip(m0, m1, strict=True):
        dt = b["t"] - a["t"]
        rates += [(y - x) / dt for x, y in zip(a["frames"], b["frames"], strict=True)]
        packets += [(y - x) / dt for x, y in zip(a["packets"], b["packets"], strict=True)]
        lost += [y - x for x, y in zip(a["lost"], b["lost"], strict=True)]
        sent += [(y - x) / dt for x, y in zip(a["packets_sent"], b["packets_sent"], strict=True)]
        handled += sum(b["packets"]) - sum(a["packets"]) + sum(b["packets_sent"]) - sum(a["packets_sent"])
        gaps += b["max_gap_ms"]
        audible += [(y - x) / max(1, s1 - s0) for x, y, s0, s1
                    in zip(a["audible"], b["audible"], a["sampled"], b["sampled"], strict=True)]
    out = {
        "server": server.name, "calls": args.calls, "codecs": started["codecs"], "dial_s": round(dial_s, 2),
        "connected_at_end": sum(x["connected"] for x in m1),
        "window_s": round(wall, 3), "cpu_s": round(cpu1 - cpu0, 3), "core": round(core, 4),
        "core_less_idle": round(net, 4),
        "core_per_call": round(net / args.calls, 5), "calls_per_core": round(args.calls / net, 2),
        "core_per_call_gross": round(core / args.calls, 5),
        "clients_core": round((ccpu1 - ccpu0) / wall, 3),
        # CPU per RTP packet handled, both ways, and what it makes of a call at 50 packets/s each way.
        "us_per_packet": round(1e6 * net * wall / max(1, handled), 2),
        "calls_per_core_at_full_rate": round(max(1, handled) / (net * wall) / (2 / FRAME_S), 2),
        "rss_per_call_kib": round((rss1 - rss0) / args.calls), "threads": threads,
        "frames_per_s_received": {"min": round(min(rates), 2), "median": round(statistics.median(rates), 2)},
        "packets_per_s_received": {"min": round(min(packets), 2), "median": round(statistics.median(packets), 2)},
        "packets_lost": sum(lost),
        "udp_rcvbuf_errors": drop1 - drop0,
        "packets_per_s_sent": {"min": round(min(sent), 2), "median": round(statistics.median(sent), 2)},
        "max_gap_ms": max(gaps),
        "audible_fraction_min": round(min(audible), 3),
    }
    if server.name == "bare":
        out["server_frames_in_per_s_per_call"] = round(
            (after["frames_in"] - before["frames_in"]) / wall / args.calls, 2)
        out["server_frames_out_per_s_per_call"] = round(
            (after["frames_out"] - before["frames_out"]) / wall / args.calls, 2)
        out["timer_lateness_p99_ms"] = after["lateness_p99_ms"]
    else:
        out["timer_lateness_p99_ms"] = after["send_lateness_p99_ms"]  # the media clock's bursts
        out["dtmf_detected"] = after["dtmf"]
    return out


async def coordinator(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="webrtc-calls-"))
    started, engine, mach = time.strftime("%Y-%m-%d %H:%M"), engine_version(), machine()
    servers: dict[str, Server] = {}
    try:
        flow_dir = work / "flow"
        flow_dir.mkdir()
        (flow_dir / "media").symlink_to(ROOT / "media", target_is_directory=True)
        flow = flow_dir / FLOW.name
        shutil.copyfile(FLOW, flow)
        exe = Path(sys.executable).parent / "ivr"
        ivr_port, bare_port = free_port(), free_port()
        servers["ivr"] = Server("ivr", [
            *([str(exe)] if exe.exists() else [sys.executable, "-m", "ivr"]), "serve", str(flow),
            "--sip", f"{LOCAL}:{free_port()}", "--http", f"{LOCAL}:{ivr_port}", "--data", str(work / "data"),
            "--rtp-ports", "20000-29999", "--webrtc-host", LOCAL, "--webrtc-max-calls", str(args.calls + 10),
            "--speech-engine", "off", "--quiet"], ivr_port, work, "IVR engine running")
        servers["bare"] = Server("bare", [sys.executable, str(Path(__file__).resolve()), "--bare-server",
                                          "--port", str(bare_port)], bare_port, work, "bare aiortc server on")
        for s in servers.values():
            await s.wait_ready()
        client_cpus = None
        if args.pin:
            cpus = sorted(os.sched_getaffinity(0))
            if len(cpus) < 2:
                raise RuntimeError("--pin needs at least two CPUs")
            client_cpus = set(cpus[:-1])
            for s in servers.values():
                pin(s.pid, {cpus[-1]})  # the servers' core; only one of them has calls at a time
            pin(os.getpid(), client_cpus)
            log(f"servers on CPU {cpus[-1]}, callers and this script on CPU {sorted(client_cpus)}")
        await asyncio.sleep(2)
        # Idle rates, both at once (each its own process): what a server costs with no call.
        c0 = {k: cpu_seconds(s.pid) for k, s in servers.items()}
        t0 = time.monotonic()
        await asyncio.sleep(args.idle)
        dt = time.monotonic() - t0
        for k, s in servers.items():
            s.idle_core = (cpu_seconds(s.pid) - c0[k]) / dt
            s.idle_rss_kib = rss_kib(s.pid)
        log(f"idle: ivr {servers['ivr'].idle_core:.4f} core, bare {servers['bare'].idle_core:.4f} core")
        rounds = []
        for r in range(args.rounds):
            order = ("bare", "ivr") if r % 2 == 0 else ("ivr", "bare")
            got = {}
            for side in order:
                got[side] = res = await measure(servers[side], args, work, f"{r}-{side}", client_cpus)
                log(f"round {r + 1}/{args.rounds} {side}: {res['core']:.3f} core for {args.calls} calls "
                    f"({res['codecs']}), {100 * res['core_per_call']:.2f} % of a core per call, "
                    f"{res['calls_per_core']:.1f} calls/core; received min {res['frames_per_s_received']['min']:.1f}"
                    f" frames/s ({res['packets_per_s_received']['min']:.1f} packets/s), max gap {res['max_gap_ms']:.0f} ms; "
                    f"{res['us_per_packet']:.0f} us/packet; clients {res['clients_core']:.2f} core")
            ratio = got["ivr"]["core_per_call"] / got["bare"]["core_per_call"]
            rounds.append({"order": list(order), "ratio_ivr_over_bare": round(ratio, 4), **got})
            log(f"round {r + 1}/{args.rounds}: ivr/bare CPU per call {ratio:.3f}")
    finally:
        for s in servers.values():
            s.stop()
        if args.keep:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    def side(name: str) -> dict:
        rs = [x[name] for x in rounds]
        return {
            "idle_core": round(servers[name].idle_core, 4),
            "core": _med([x["core"] for x in rs]),
            "core_per_call": _med([x["core_per_call"] for x in rs], 5),
            "calls_per_core": _med([x["calls_per_core"] for x in rs], 2),
            "core_per_call_gross": _med([x["core_per_call_gross"] for x in rs], 5),
            "calls_per_core_gross": round(1 / _med([x["core_per_call_gross"] for x in rs], 5), 2),
            "clients_core": _med([x["clients_core"] for x in rs], 3),
            "us_per_packet": _med([x["us_per_packet"] for x in rs], 2),
            "calls_per_core_at_full_rate": _med([x["calls_per_core_at_full_rate"] for x in rs], 2),
            "packets_per_s_received_median": _med([x["packets_per_s_received"]["median"] for x in rs], 2),
            "timer_lateness_p99_ms": _med([x["timer_lateness_p99_ms"] for x in rs], 2),
            "rss_per_call_kib": _med([x["rss_per_call_kib"] for x in rs], 0),
            "frames_per_s_received_min": min(x["frames_per_s_received"]["min"] for x in rs),
            "packets_per_s_received_min": min(x["packets_per_s_received"]["min"] for x in rs),
            "packets_per_s_sent_min": min(x["packets_per_s_sent"]["min"] for x in rs),
            "max_gap_ms": max(x["max_gap_ms"] for x in rs),
            "audible_fraction_min": min(x["audible_fraction_min"] for x in rs),
        }

    ratios = [x["ratio_ivr_over_bare"] for x in rounds]
    per_packet = [x["ivr"]["us_per_packet"] / x["bare"]["us_per_packet"] for x in rounds]
    return {
        "machine": mach, "loadavg_end": machine()["loadavg"], "started": started, "engine": engine,
        "args": sys.argv[1:],
        "calls": args.calls, "window_s": args.window, "settle_s": args.settle, "client_processes": args.clients,
        "codec_offered": args.codec, "pinned": args.pin,
        "median": {"ivr": side("ivr"), "bare": side("bare")},
        "ratio_ivr_over_bare": {"median": _med(ratios), "min": min(ratios), "max": max(ratios)},
        "ratio_ivr_over_bare_per_packet": {"median": _med(per_packet), "min": round(min(per_packet), 4),
                                           "max": round(max(per_packet), 4)},
        "rounds": rounds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20, help="concurrent calls per measurement")
    ap.add_argument("--window", type=float, default=20.0, help="seconds of CPU measured while all calls are up")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after the last call connects")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each measures both servers")
    ap.add_argument("--clients", type=int, default=2, help="caller processes")
    ap.add_argument("--codec", choices=["opus", "pcmu"], default="opus",
                    help="opus: offer what a browser offers (Opus first); pcmu: offer PCMU only")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="let the scheduler place everything (default: the servers on the last CPU, "
                         "the callers on the others)")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds of each server's idle rate")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (server and client logs)")
    ap.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    for name, (lo, hi) in LIMITS.items():
        if not lo <= getattr(args, name) <= hi:
            ap.error(f"--{name} must be within {lo}-{hi}")
    if args.bare_server:
        asyncio.run(bare_server(args.port))
        return
    if args.client:
        sys.path.insert(0, str(ROOT))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(asyncio.wait_for(client_main(args), CLIENT_LIFETIME))
        return
    report = asyncio.run(coordinator(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
