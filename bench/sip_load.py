"""Load on the SIP edge: concurrent calls held in a menu, call-setup rate, and
the pyVoIP baseline side by side.

Everything runs on 127.0.0.1, bounded in count and time, and every process
started here is stopped (by pid) before the script exits.

    python bench/sip_load.py --calls 1000 --hold 30            # calls held in a menu
    python bench/sip_load.py --calls 100 --hold 30 --pyvoip    # + pyVoIP, same scenario, ratio
    python bench/sip_load.py --cps 200 --seconds 10            # call-setup rate, short calls

Held calls: `ivr serve bench/flows/menu_hold.yaml` answers N SIPp calls
(bench/scenarios/uac_hold_key_bye.xml: hold T s, press a key by RFC 2833,
wait for the IVR's BYE). While all N are up it samples the server's CPU
(/proc/PID/stat utime+stime) and RSS (/proc/PID/status VmRSS), reads send
lateness from /metrics, and places a few extra probe calls from a small
Python UAC whose own UDP sockets are the media ports, counting the RTP packets
each stream delivers. Afterwards every journey is checked for the key pressed
and DTMF-to-next-prompt latency is taken from the journeys.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from string import Template

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sipbench import (  # noqa: E402 - the sibling module, found through the path above
    ProbeCall,
    Proc,
    cpu_seconds,
    free_port,
    kamailio_config,
    machine,
    percentile,
    rss_kib,
    run_probes,
    threads_of,
)

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
FLOW = BENCH / "flows" / "menu_hold.yaml"
SCENARIO = BENCH / "scenarios" / "uac_hold_key_bye.xml"
DIGIT = "2"


def http(port: int, path: str) -> str:
    """GET a path from the server's HTTP port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def metric(text: str, name: str) -> float | None:
    """One un-labelled metric's value from Prometheus text."""
    m = re.search(rf"^{re.escape(name)}\s+(\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def start_ivr(tmp: Path, capacity: int) -> tuple[Proc, int, int, Path]:
    """`ivr serve` on the bench flow; returns it, its SIP and HTTP ports, its data dir."""
    sip, web = free_port(), free_port()
    data = tmp / "data"
    exe = Path(sys.executable).parent / "ivr"
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "ivr.cli"]
    cmd = [*head, "serve", str(FLOW), "--sip", f"127.0.0.1:{sip}", "--http", f"127.0.0.1:{web}",
           "--data", str(data), "--rtp-ports", "20000-29999", "--capacity", str(capacity)]
    proc = Proc.start(cmd, tmp / "ivr.log", cwd=ROOT)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        proc.check_alive("ivr serve")
        with contextlib.suppress(OSError):
            if '"ok"' in http(web, "/healthz"):
                return proc, sip, web, data
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"ivr serve did not become healthy: {proc.tail()}")


def sipp(tmp: Path, name: str, target: str, service: str, *, calls: int, limit: int, rate: float,
         hold_ms: int, bye_ms: int, timeout: float) -> tuple[Proc, Path]:
    """SIPp (UAC) in the background with the bench scenario; returns it and its stats CSV."""
    exe = shutil.which("sipp")
    if exe is None:
        raise SystemExit("sipp is not installed (apt-get install sip-tester)")
    text = Template(SCENARIO.read_text()).substitute(hold_ms=hold_ms, digit=DIGIT, bye_ms=bye_ms)
    scenario = tmp / f"{name}.xml"
    scenario.write_text(text)
    stats = tmp / f"{name}_stats.csv"
    cmd = [exe, "-sf", str(scenario), "-s", service, target, "-i", "127.0.0.1", "-p", str(free_port()),
           "-mp", str(free_port() & ~1), "-m", str(calls), "-l", str(limit), "-r", str(rate), "-nostdin",
           "-timeout", f"{int(timeout)}s", "-timeout_error", "-max_socket", "5000",
           "-trace_err", "-error_file", str(tmp / f"{name}_errors.log"),
           "-trace_stat", "-stf", str(stats), "-fd", "1"]
    return Proc.start(cmd, tmp / f"{name}.log", cwd=tmp), stats


def sipp_totals(stats: Path) -> dict:
    """Cumulative counters from the last line of SIPp's statistics file."""
    if not stats.exists():
        return {}
    lines = [line for line in stats.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    head, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(head, last, strict=False))
    keep = ("TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)", "FailedCallRejected(C)",
            "FailedMaxUDPRetrans(C)", "FailedUnexpectedMessage(C)", "FailedCallTimeout(C)",
            "Retransmissions(C)", "ResponseTime1(C)", "CallRate(C)")
    out = {}
    for k in keep:
        with contextlib.suppress(KeyError, ValueError):
            out[k] = float(row[k]) if ":" not in row[k] else row[k]
    return out


class Sampler:
    """CPU (core fraction) and RSS of one process over a window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.c0 = cpu_seconds(pid)
        self.rss: list[int] = []
        self.threads: list[int] = []

    def sample(self) -> None:
        self.rss.append(rss_kib(self.pid))
        self.threads.append(threads_of(self.pid))

    def result(self) -> dict:
        wall = time.monotonic() - self.t0
        return {"window_s": round(wall, 2), "core_fraction": (cpu_seconds(self.pid) - self.c0) / wall,
                "rss_kib_max": max(self.rss, default=0), "threads_max": max(self.threads, default=0)}


def wait_until(pred, timeout: float, step: float = 0.2) -> bool:
    """Poll `pred` until true or `timeout` s passed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def measure_window(pid: int, seconds: float, probes: list[ProbeCall] | None, extra=None) -> dict:
    """Sample `pid` once a second for `seconds`, probes running meanwhile."""
    sampler = Sampler(pid)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sampler.sample()
        if extra:
            extra()
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    return sampler.result()


def dtmf_checks(journeys: list[dict], digit: str) -> dict:
    """Keys seen per journey, and DTMF-to-next-prompt latency (journey times, 1 ms resolution)."""
    pressed, lat = 0, []
    for j in journeys:
        inputs = [i for i in j.get("inputs", []) if i.get("via") == "dtmf"]
        if any(i.get("value") == digit for i in inputs):
            pressed += 1
        for i in inputs:
            later = [p["t"] for p in j.get("prompts", []) if p["t"] >= i["t"]]
            if later:
                lat.append(min(later) - i["t"])
    return {"journeys": len(journeys), "with_key": pressed,
            "outcomes": _count(j.get("outcome") for j in journeys),
            "dtmf_to_prompt_p50_ms": _ms(percentile(lat, 0.5)), "dtmf_to_prompt_p99_ms": _ms(percentile(lat, 0.99)),
            "dtmf_to_prompt_max_ms": _ms(max(lat, default=None))}


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def read_journeys(data: Path) -> list[dict]:
    """The server's journey records."""
    path = data / "journeys.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def held_ivr(tmp: Path, n: int, hold: float, probes: int, rate: float) -> dict:
    """N calls held in the menu of `ivr serve`, measured while all are up."""
    ivr, sip_port, web, data = start_ivr(tmp / "ivr", capacity=n + probes + 50)
    procs = [ivr]
    try:
        idle_rss = rss_kib(ivr.pid)
        idle = measure_window(ivr.pid, 2.0, None)
        ramp = n / rate
        load, stats = sipp(tmp, "ivr_hold", f"127.0.0.1:{sip_port}", "ivr", calls=n, limit=n, rate=rate,
                           hold_ms=int(hold * 1000), bye_ms=30000, timeout=ramp + hold + 90)
        procs.append(load)

        def active() -> float:
            return metric(http(web, "/metrics"), "ivr_active_calls") or 0

        full = wait_until(lambda: active() >= n, ramp + 30)
        up = active()
        window = max(3.0, hold - ramp - 6)
        probe_calls = [ProbeCall(sip_port, "ivr", digit=DIGIT) for _ in range(probes)]
        with run_probes(probe_calls, listen=window):
            time.sleep(1.0)  # the probes' INVITEs land; then measure the steady state
            win = measure_window(ivr.pid, window - 1.5, None)
            metrics = http(web, "/metrics")
            active_in_window = metric(metrics, "ivr_active_calls")
        load.wait(ramp + hold + 120)
        wait_until(lambda: len(read_journeys(data)) >= n + probes, 30)
        journeys = read_journeys(data)
        return {
            "target": "ivr", "calls": n, "hold_s": hold, "rate": rate, "all_up": full, "active_at_start": up,
            "active_in_window": active_in_window, "idle_rss_kib": idle_rss, "idle_core_fraction": idle["core_fraction"],
            "window": win, "cpu_per_call": (win["core_fraction"] - idle["core_fraction"]) / n,
            "rss_per_call_kib": (win["rss_kib_max"] - idle_rss) / n,
            "lateness_p50_ms": _ms(metric(metrics, "ivr_rtp_send_lateness_p50_seconds")),
            "lateness_p99_ms": _ms(metric(metrics, "ivr_rtp_send_lateness_p99_seconds")),
            "probes": [p.result() for p in probe_calls], "sipp": sipp_totals(stats),
            "dtmf": dtmf_checks(journeys, DIGIT),
        }
    finally:
        for p in reversed(procs):
            p.stop()


def start_kamailio(tmp: Path) -> tuple[Proc, int]:
    """Kamailio (registrar + proxy) on a free loopback port."""
    exe = "/usr/sbin/kamailio" if os.access("/usr/sbin/kamailio", os.X_OK) else shutil.which("kamailio")
    if not exe:
        raise SystemExit("kamailio is not installed (apt-get install kamailio)")
    port = free_port()
    run = tmp / "kamailio"
    run.mkdir(parents=True, exist_ok=True)
    cfg = run / "kamailio.cfg"
    cfg.write_text(kamailio_config(ROOT / "tests" / "interop" / "peers" / "kamailio.cfg", port))
    check = subprocess.run([exe, "-f", str(cfg), "-c"], capture_output=True, text=True, timeout=30)
    if check.returncode:
        raise RuntimeError(check.stdout[-2000:] + check.stderr[-2000:])
    proc = Proc.start([exe, "-f", str(cfg), "-DD", "-E", "-P", str(run / "kamailio.pid"), "-Y", str(run)],
                      run / "kamailio.log", cwd=run, session=True)
    time.sleep(1.0)
    proc.check_alive("kamailio")
    return proc, port


def make_wavs(tmp: Path) -> tuple[Path, Path]:
    """The menu prompt and goodbye as 8 kHz 8-bit WAVs (espeak-ng + sox), the same text as the flow."""
    import yaml

    flow = yaml.safe_load(FLOW.read_text())
    out = []
    for name, text in (("menu", flow["nodes"]["main_menu"]["prompt"]), ("goodbye", flow["nodes"]["goodbye"]["prompt"])):
        raw, wav = tmp / f"{name}_22k.wav", tmp / f"{name}_8k_u8.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True, timeout=60)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "8", "-e", "unsigned-integer", str(wav)],
                       check=True, timeout=60)
        out.append(wav)
    return out[0], out[1]


def held_pyvoip(tmp: Path, n: int, hold: float, probes: int, rate: float) -> dict:
    """The same scenario against bench/pyvoip_menu.py, registered to Kamailio, through Kamailio."""
    tmp = tmp / "pyvoip"
    tmp.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        kam, kport = start_kamailio(tmp)
        procs.append(kam)
        menu, bye = make_wavs(tmp)
        journal = tmp / "calls.jsonl"
        rtp_lo = 40000
        phone = Proc.start([sys.executable, str(BENCH / "pyvoip_menu.py"), "--registrar-port", str(kport),
                            "--sip-port", str(free_port()), "--rtp-ports", f"{rtp_lo}-{rtp_lo + 4 * (n + probes) + 100}",
                            "--prompt", str(menu), "--goodbye", str(bye), "--journal", str(journal),
                            "--max-seconds", str(int(hold + n / rate + 300))], tmp / "pyvoip.log", cwd=tmp)
        procs.append(phone)
        if not wait_until(lambda: "registered" in phone.tail() or phone.poll() is not None, 30):
            raise RuntimeError(f"pyVoIP did not register: {phone.tail()}")
        phone.check_alive("pyvoip_menu.py")
        idle_rss = rss_kib(phone.pid)
        idle = measure_window(phone.pid, 2.0, None)
        ramp = n / rate
        load, stats = sipp(tmp, "pyvoip_hold", f"127.0.0.1:{kport}", "pyvoip", calls=n, limit=n, rate=rate,
                           hold_ms=int(hold * 1000), bye_ms=30000, timeout=ramp + hold + 90)
        procs.append(load)
        # pyVoIP has no metrics: "all up" is its thread count settling (3 per call).
        time.sleep(ramp + 3.0)
        window = max(3.0, hold - ramp - 6)
        probe_calls = [ProbeCall(kport, "pyvoip", digit=DIGIT, via_proxy=True) for _ in range(probes)]
        with run_probes(probe_calls, listen=window):
            time.sleep(1.0)
            win = measure_window(phone.pid, window - 1.5, None)
        load.wait(ramp + hold + 120)
        wait_until(lambda: journal.exists() and len(journal.read_text().splitlines()) >= n + probes, 30)
        calls = [json.loads(x) for x in journal.read_text().splitlines()] if journal.exists() else []
        return {
            "target": "pyvoip", "calls": n, "hold_s": hold, "rate": rate, "idle_rss_kib": idle_rss,
            "idle_core_fraction": idle["core_fraction"], "window": win,
            "cpu_per_call": (win["core_fraction"] - idle["core_fraction"]) / n,
            "rss_per_call_kib": (win["rss_kib_max"] - idle_rss) / n,
            "probes": [p.result() for p in probe_calls], "sipp": sipp_totals(stats),
            "dtmf": {"journeys": len(calls), "with_key": sum(c.get("key") == DIGIT for c in calls),
                     "outcomes": _count(c.get("outcome") for c in calls)},
        }
    finally:
        for p in reversed(procs):
            p.stop()


def setup_rate(tmp: Path, cps: float, seconds: float, hold: float) -> dict:
    """`cps` new calls a second for `seconds`, each short (hold, key, BYE)."""
    n = int(cps * seconds)
    limit = int(cps * (hold + 8)) + 50
    ivr, sip_port, web, data = start_ivr(tmp / "ivr", capacity=limit + 50)
    procs = [ivr]
    try:
        load, stats = sipp(tmp, "ivr_cps", f"127.0.0.1:{sip_port}", "ivr", calls=n, limit=limit, rate=cps,
                           hold_ms=int(hold * 1000), bye_ms=30000, timeout=seconds + hold + 90)
        procs.append(load)
        peak, cpu = [0.0], Sampler(ivr.pid)

        def watch() -> None:
            peak[0] = max(peak[0], metric(http(web, "/metrics"), "ivr_active_calls") or 0)
            cpu.sample()

        end = time.monotonic() + seconds + hold + 120
        while load.poll() is None and time.monotonic() < end:
            watch()
            time.sleep(0.5)
        load.wait(5)
        metrics = http(web, "/metrics")
        wait_until(lambda: len(read_journeys(data)) >= n, 30)
        journeys = read_journeys(data)
        totals = sipp_totals(stats)
        return {"target": "ivr", "cps": cps, "seconds": seconds, "calls": n, "hold_s": hold, "sipp": totals,
                "sipp_exit": load.poll(), "peak_active": peak[0], "cpu": cpu.result(),
                "lateness_p50_ms": _ms(metric(metrics, "ivr_rtp_send_lateness_p50_seconds")),
                "lateness_p99_ms": _ms(metric(metrics, "ivr_rtp_send_lateness_p99_seconds")),
                "dtmf": dtmf_checks(journeys, DIGIT)}
    finally:
        for p in reversed(procs):
            p.stop()


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark and print its figures as JSON (also written to --out)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, help="concurrent calls to hold (100, 500, 1000)")
    ap.add_argument("--hold", type=float, default=30.0, help="seconds each held call stays in the menu")
    ap.add_argument("--rate", type=float, default=100.0, help="calls/s while ramping up held calls")
    ap.add_argument("--probes", type=int, default=4, help="extra calls whose RTP is counted")
    ap.add_argument("--pyvoip", action="store_true", help="also run the pyVoIP baseline (same N) and the ratio")
    ap.add_argument("--cps", type=float, help="call-setup-rate run: new calls per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the call-setup-rate run")
    ap.add_argument("--short-hold", type=float, default=1.0, help="hold of each call in the setup-rate run")
    ap.add_argument("--out", type=Path, help="write the JSON result here too")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, SIPp stats)")
    args = ap.parse_args(argv)
    if not args.calls and not args.cps:
        ap.error("give --calls N or --cps R")
    if (args.calls or 0) > 2000 or (args.cps or 0) > 1000 or args.hold > 300 or args.seconds > 120:
        ap.error("bounded: --calls <= 2000, --cps <= 1000, --hold <= 300, --seconds <= 120")
    tmp = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    result: dict = {"machine": machine(), "command": "python bench/sip_load.py " + " ".join(sys.argv[1:])}
    old = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if args.calls:
            result["ivr"] = held_ivr(tmp, args.calls, args.hold, args.probes, args.rate)
            if args.pyvoip:
                result["pyvoip"] = held_pyvoip(tmp, args.calls, args.hold, args.probes, args.rate)
                mine, theirs = result["ivr"]["cpu_per_call"], result["pyvoip"]["cpu_per_call"]
                result["cpu_per_call_ratio_ivr_over_pyvoip"] = mine / theirs if theirs else None
        if args.cps:
            result["setup_rate"] = setup_rate(tmp, args.cps, args.seconds, args.short_hold)
        result["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        signal.signal(signal.SIGTERM, old)
        result["workdir"] = str(tmp) if args.keep else None
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
