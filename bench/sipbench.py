"""Helpers of bench/sip_load.py: processes started and stopped by pid, /proc
readings, and a tiny probe UAC whose UDP socket is its call's media port.

The probe UAC is written independently of ivr/sip/: it sends an INVITE with
its own RTP port in the SDP, ACKs the 200 (following a Record-Route when a
proxy sits in between), counts and timestamps every RTP packet it receives
for a while, presses one key by RFC 4733 and answers the answerer's BYE.
"""

from __future__ import annotations

import contextlib
import glob
import os
import platform
import re
import secrets
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LOCAL = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine() -> dict:
    """nproc, CPU model and load average, as the figures' context."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            "python": platform.python_version()}


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((LOCAL, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((LOCAL, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def _status(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    return _status(pid, "VmRSS")


def threads_of(pid: int) -> int:
    """Thread count of a process."""
    return _status(pid, "Threads")


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of `values`, None when empty."""
    if not values:
        return None
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))]


@dataclass
class Proc:
    """A child process with its log file; stopped by its own pid (or its own session)."""

    popen: subprocess.Popen
    log: Path
    session: bool = False

    @classmethod
    def start(cls, cmd: list[str], log: Path, cwd: Path, session: bool = False) -> Proc:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=cwd, start_new_session=session)
        return cls(popen, log, session)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def check_alive(self, what: str) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{what} exited {self.popen.returncode}: {self.tail()}")

    def wait(self, timeout: float) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.popen.wait(timeout)
        return None

    def stop(self) -> None:
        """SIGTERM (SIGINT would do for ivr), then SIGKILL after 10 s; its session only if it has one."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            if self.wait(10) is None:
                if self.session:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                else:
                    self.popen.kill()
                self.wait(5)


def kamailio_config(template: Path, port: int) -> str:
    """The loopback registrar config of the interop tests, moved to `port`."""
    text = template.read_text()
    text = text.replace("listen=udp:127.0.0.1:5060", f"listen=udp:127.0.0.1:{port}")
    text = text.replace('alias="127.0.0.1:5060"', f'alias="127.0.0.1:{port}"')
    text = text.replace('alias="localhost:5060"', 'alias="localhost"')  # pyVoIP writes it portless
    text = text.replace("debug=2", "debug=1")  # one log line per request would cost Kamailio, not the peers
    text = text.replace("children=2", "children=4")
    modules = sorted(glob.glob("/usr/lib/*/kamailio/modules/tm.so") + glob.glob("/usr/lib*/kamailio/modules/tm.so"))
    if modules:
        text = re.sub(r'mpath="[^"]*"', f'mpath="{Path(modules[0]).parent}/"', text)
    return text


def _header(msg: str, name: str) -> list[str]:
    out = []
    for line in msg.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            out.append(value.strip())
    return out


@dataclass
class ProbeCall:
    """One call whose received RTP is counted. `run()` blocks; `result()` reports."""

    server_port: int
    user: str
    digit: str = "2"
    via_proxy: bool = False
    listen: float = 10.0
    arrivals: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, seq, ts, pt
    error: str | None = None
    got_bye: bool = False
    answered_after: float | None = None

    def run(self) -> None:
        sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._run(sip, rtp)
        except Exception as exc:  # noqa: BLE001 - the report shows what broke
            self.error = repr(exc)
        finally:
            sip.close()
            rtp.close()

    def _run(self, sip: socket.socket, rtp: socket.socket) -> None:
        sip.bind((LOCAL, 0))
        rtp.bind((LOCAL, 0))
        rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        lport, mport = sip.getsockname()[1], rtp.getsockname()[1]
        call_id, tag = secrets.token_hex(8) + "@probe", secrets.token_hex(4)
        ruri = f"sip:{self.user}@{LOCAL}:{self.server_port}"
        sdp = (f"v=0\r\no=probe 1 1 IN IP4 {LOCAL}\r\ns=-\r\nc=IN IP4 {LOCAL}\r\nt=0 0\r\n"
               f"m=audio {mport} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
               f"a=fmtp:101 0-15\r\na=sendrecv\r\n")
        branch = "z9hG4bK" + secrets.token_hex(8)
        common = (f"From: <sip:probe@{LOCAL}:{lport}>;tag={tag}\r\nCall-ID: {call_id}\r\n"
                  f"Contact: <sip:probe@{LOCAL}:{lport}>\r\nMax-Forwards: 70\r\n")
        invite = (f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {LOCAL}:{lport};branch={branch};rport\r\n"
                  f"To: <{ruri}>\r\n{common}CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
                  f"Content-Length: {len(sdp)}\r\n\r\n{sdp}")
        dest = (LOCAL, self.server_port)
        start = time.monotonic()
        sip.sendto(invite.encode(), dest)
        final, sent_at = None, start
        while final is None:
            if time.monotonic() - start > 20:
                raise TimeoutError("no final response to INVITE")
            sip.settimeout(0.5)
            try:
                data, src = sip.recvfrom(65535)
            except TimeoutError:
                if time.monotonic() - sent_at > 1.0:
                    sip.sendto(invite.encode(), dest)
                    sent_at = time.monotonic()
                continue
            text = data.decode(errors="replace")
            if text.startswith("SIP/2.0 ") and " INVITE" in (_header(text, "CSeq") or [""])[0]:
                code = int(text.split()[1])
                if code >= 200:
                    final = (code, text, src)
        code, text, src = final
        self.answered_after = time.monotonic() - start
        if code != 200:
            raise RuntimeError(f"INVITE answered {code}")
        to = _header(text, "To")[0]
        contact = re.search(r"<([^>]+)>", _header(text, "Contact")[0]).group(1)
        routes = [r for v in _header(text, "Record-Route") for r in v.split(",")][::-1]
        route = "".join(f"Route: {r.strip()}\r\n" for r in routes)
        ack = (f"ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {LOCAL}:{lport};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
               f"{route}To: {to}\r\n{common}CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")
        sip.sendto(ack.encode(), src)
        body = text.split("\r\n\r\n", 1)[1]
        media = (re.search(r"c=IN IP4 (\S+)", body).group(1), int(re.search(r"m=audio (\d+)", body).group(1)))
        self._count(rtp, self.listen)
        self._press(rtp, media)
        self._await_bye(sip, 30.0)

    def _count(self, rtp: socket.socket, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            rtp.settimeout(left)
            try:
                data = rtp.recv(2048)
            except TimeoutError:
                break
            now = time.monotonic()
            if len(data) >= 12:
                _, pt, seq, ts = struct.unpack("!BBHI", data[:8])
                self.arrivals.append((now, seq, ts, pt & 0x7F))

    def _press(self, rtp: socket.socket, media: tuple[str, int]) -> None:
        """One RFC 4733 press of 100 ms: start, updates, three end packets, 20 ms apart."""
        ssrc, seq, ts = secrets.randbits(32), secrets.randbits(15), secrets.randbits(31)
        event = "0123456789*#".index(self.digit)
        durations = [160, 320, 480, 640] + [800] * 4
        for i, dur in enumerate(durations):
            end = 0x80 if i >= 4 else 0
            head = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | 101, (seq + i) & 0xFFFF, ts, ssrc)
            rtp.sendto(head + struct.pack("!BBH", event, end | 10, dur), media)
            time.sleep(0.02)

    def _await_bye(self, sip: socket.socket, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            sip.settimeout(left)
            try:
                data, src = sip.recvfrom(65535)
            except TimeoutError:
                break
            text = data.decode(errors="replace")
            if text.startswith("BYE "):
                lines = [f"{h}: {v}" for h in ("Via", "From", "To", "Call-ID", "CSeq") for v in _header(text, h)]
                sip.sendto(("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), src)
                self.got_bye = True
                return
        raise TimeoutError("no BYE after the key")

    def result(self) -> dict:
        """Packets received, their rate, gaps and sequence losses over the listening window."""
        audio = [a for a in self.arrivals if a[3] in (0, 8)]
        out: dict = {"error": self.error, "got_bye": self.got_bye, "packets": len(audio),
                     "answered_after_s": None if self.answered_after is None else round(self.answered_after, 3)}
        if len(audio) >= 3:
            t = [a[0] for a in audio]
            span = t[-1] - t[0]
            gaps = [b - a for a, b in zip(t, t[1:], strict=False)]
            dev = [abs(g - 0.020) for g in gaps]
            seqs = [a[1] for a in audio]
            lost = sum(((b - a) & 0xFFFF) - 1 for a, b in zip(seqs, seqs[1:], strict=False) if (b - a) & 0xFFFF)
            ts_span = (audio[-1][2] - audio[0][2]) & 0xFFFFFFFF
            out.update({"span_s": round(span, 3), "packets_per_s": round((len(audio) - 1) / span, 3),
                        "rtp_ts_rate_per_s": round(ts_span / span, 1), "seq_lost": lost,
                        "gap_dev_p50_ms": round(percentile(dev, 0.5) * 1000, 3),
                        "gap_dev_p99_ms": round(percentile(dev, 0.99) * 1000, 3),
                        "gap_max_ms": round(max(gaps) * 1000, 3)})
        return out


@contextlib.contextmanager
def run_probes(probes: list[ProbeCall], listen: float) -> Iterator[list[ProbeCall]]:
    """Run the probe calls in threads (each listens `listen` s), joined on exit (bounded)."""
    threads = []
    for p in probes:
        p.listen = listen
        t = threading.Thread(target=p.run, daemon=True, name="probe")
        t.start()
        threads.append(t)
    try:
        yield probes
    finally:
        deadline = time.monotonic() + listen + 60
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
