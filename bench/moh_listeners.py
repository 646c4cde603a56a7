"""What music on hold costs: N listeners of one stream class against N streams of silence.

    python bench/moh_listeners.py [--listeners 1000] [--periods 500] [--rounds 7] [--out FILE]

N real RtpSessions (one UDP socket each, on 127.0.0.1) are ticked by one
MediaClock on one event loop, as in `ivr serve`, and send PCMU to a few UDP
sinks on 127.0.0.1 that are never read (the kernel drops what overflows; that
is the same for both sides). The same sessions take turns in two modes:

- silence: no source, every tick sends the session's silence payload;
- stream: every session listens to the class media/moh/default (24 s, decoded
  and encoded once by the prompt cache's MusicLibrary), so every tick reads
  the stream's frame off the clock and sends it;
- resume (reported, not part of the ratio): every session has its own place.

Each measurement is CPU time of this process (time.process_time: user +
system, so the kernel's share of sendto counts) over a fixed number of clock
periods, counted by a probe on the clock after a short settling time. The
modes alternate within each round (the order flips every round); the figure
is the median over rounds of CPU(stream) / CPU(silence). It also times one
source's `next()` alone (the only work music adds to a tick). It prints progress on
standard error and JSON on standard output. Everything is bounded: at most
5,000 listeners, 3,000 periods (60 s) a measurement, 21 rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sipbench import machine  # noqa: E402 - the sibling module, found through the path above

from ivr.audio.clock import MediaClock  # noqa: E402
from ivr.audio.g711 import PCMU  # noqa: E402
from ivr.audio.moh import ResumeSource, StreamSource  # noqa: E402
from ivr.audio.prompts import PromptCache  # noqa: E402
from ivr.sip.media import RtpSession  # noqa: E402

CLASS = ROOT / "media" / "moh" / "default"
LOCAL = "127.0.0.1"


class Probe:
    """Ticks once a period like any stream, and wakes the benchmark after `n` periods."""

    def __init__(self) -> None:
        self.periods = 0
        self._wait: tuple[int, asyncio.Future] | None = None

    def tick(self) -> None:
        self.periods += 1
        if self._wait is not None and self.periods >= self._wait[0] and not self._wait[1].done():
            self._wait[1].set_result(None)

    async def after(self, n: int) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._wait = (self.periods + n, fut)
        await fut


def _set_mode(sessions: list[RtpSession], mode: str, payloads: tuple[bytes, ...], clock: MediaClock) -> None:
    for i, rtp in enumerate(sessions):
        if mode == "silence":
            rtp.stop()
        elif mode == "stream":
            rtp.feed(StreamSource(payloads, clock))
        else:
            rtp.feed(ResumeSource(payloads, start=i * 37))  # callers spread over the loop


async def _measure(mode: str, sessions, payloads, clock: MediaClock, probe: Probe, periods: int,
                   settle: int) -> dict:
    _set_mode(sessions, mode, payloads, clock)
    await probe.after(settle)
    sent0 = sum(r.sent for r in sessions)
    dropped0 = sum(r.dropped for r in sessions)
    clock.lateness.clear()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await probe.after(periods)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    sent = sum(r.sent for r in sessions) - sent0
    late = sorted(clock.lateness)  # per burst of the clock (its last 20,000: 2,000 periods)
    return {
        "mode": mode, "cpu_s": round(cpu, 4), "wall_s": round(wall, 3), "core": round(cpu / wall, 3),
        "packets": sent, "us_per_packet": round(1e6 * cpu / max(1, sent), 3),
        "dropped": sum(r.dropped for r in sessions) - dropped0,
        "lateness_p50_ms": round(1000 * late[len(late) // 2], 3) if late else None,
        "lateness_p99_ms": round(1000 * late[int(0.99 * (len(late) - 1))], 3) if late else None,
    }


def _next_cost(payloads: tuple[bytes, ...], clock: MediaClock, calls: int = 1_000_000) -> dict:
    """Nanoseconds per `next()` of each source alone: the part of a tick music adds."""
    out = {}
    for name, src in (("stream", StreamSource(payloads, clock)), ("resume", ResumeSource(payloads))):
        nxt = src.next
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(calls):
                nxt()
            best = min(best, time.perf_counter() - t0)
        out[name] = round(1e9 * best / calls, 1)
    return out


def _room_for_sockets(n: int) -> None:
    """Raise the soft limit of open files to fit n sockets (within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


async def run(args) -> dict:
    _room_for_sockets(args.listeners + args.sinks)
    clock = MediaClock()
    cache = PromptCache()
    payloads = await cache.music(str(CLASS), PCMU)
    next_ns = _next_cost(payloads, clock)
    sinks = []
    for _ in range(args.sinks):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((LOCAL, 0))
        sinks.append(s)
    sessions: list[RtpSession] = []
    probe = Probe()
    try:
        for i in range(args.listeners):
            rtp = RtpSession(clock, PCMU, sinks[i % len(sinks)].getsockname(), dtmf_pt=None,
                             on_dtmf=lambda d, via: None)
            await rtp.open(LOCAL)
            sessions.append(rtp)
        clock.add(probe)
        await probe.after(args.settle)
        rounds = []
        for r in range(args.rounds):
            order = ["silence", "stream"] if r % 2 == 0 else ["stream", "silence"]
            got = {}
            for mode in order + (["resume"] if args.resume else []):
                got[mode] = await _measure(mode, sessions, payloads, clock, probe, args.periods, args.settle)
            ratio = got["stream"]["cpu_s"] / got["silence"]["cpu_s"]
            rounds.append({"order": order, "ratio": round(ratio, 4), **{m: v for m, v in got.items()}})
            print(f"round {r + 1}/{args.rounds}: silence {got['silence']['cpu_s']:.3f} s, "
                  f"stream {got['stream']['cpu_s']:.3f} s CPU over {args.periods} periods, ratio {ratio:.3f}"
                  + (f", resume {got['resume']['cpu_s']:.3f} s" if args.resume else ""),
                  file=sys.stderr, flush=True)
    finally:
        for rtp in sessions:
            rtp.close()
        await clock.stop()
        for s in sinks:
            s.close()
        cache.close()

    def med(mode: str, key: str) -> float:
        return round(statistics.median(x[mode][key] for x in rounds), 4)

    modes = ["silence", "stream"] + (["resume"] if args.resume else [])
    return {
        "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M"), "args": sys.argv[1:],
        "listeners": args.listeners, "periods": args.periods,
        "class": {"folder": str(CLASS.relative_to(ROOT)), "frames": len(payloads),
                  "encoded_bytes_shared": sum(len(p) for p in payloads)},
        "next_ns": next_ns,  # one source.next() call, best of 3 x 1,000,000
        "median": {m: {k: med(m, k) for k in ("cpu_s", "core", "us_per_packet", "lateness_p50_ms",
                                              "lateness_p99_ms") if rounds[0][m][k] is not None}
                   for m in modes},
        "ratio_stream_over_silence": {"median": round(statistics.median(x["ratio"] for x in rounds), 4),
                                      "min": min(x["ratio"] for x in rounds),
                                      "max": max(x["ratio"] for x in rounds)},
        "rounds": rounds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listeners", type=int, default=1000)
    ap.add_argument("--periods", type=int, default=500, help="20 ms clock periods per measurement")
    ap.add_argument("--settle", type=int, default=25, help="periods after a mode change before measuring")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sinks", type=int, default=16, help="UDP sockets on 127.0.0.1 receiving the packets")
    ap.add_argument("--no-resume", dest="resume", action="store_false", help="skip the resume-mode figure")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    if not (1 <= args.listeners <= 5000 and 10 <= args.periods <= 3000 and 1 <= args.rounds <= 21
            and 1 <= args.sinks <= 256 and 0 <= args.settle <= 500):
        ap.error("out of bounds: listeners 1-5000, periods 10-3000, rounds 1-21, sinks 1-256, settle 0-500")
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
