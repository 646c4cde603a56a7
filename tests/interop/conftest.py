"""Real peers against a real `ivr serve` process, on loopback only."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The servers' RTP ports lie below the kernel's ephemeral range (32768 up), where free_port()
# finds ports for the peers: a port handed to SIPp is never one a server binds meanwhile.
RTP_PORTS = "20000-29999"
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def free_media_port() -> int:
    """An even port with the three above it free too: SIPp binds audio and video RTP and RTCP."""
    for _ in range(100):
        base = free_port() & ~1
        socks = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no four free UDP ports in a row")


@dataclass
class Server:
    """A running `ivr serve` and where to reach it."""

    proc: subprocess.Popen
    sip_port: int
    http_port: int
    data: Path
    log: Path

    def journeys(self) -> list[dict]:
        path = self.data / "journeys.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_journeys(self, n: int, timeout: float = 30.0) -> list[dict]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.journeys()
            if len(got) >= n:
                return got
            time.sleep(0.1)
        raise AssertionError(f"expected {n} journeys, got {len(self.journeys())}\n{self.log.read_text()[-3000:]}")

    def http(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return r.read().decode()


def start_server(tmp: Path, flows: Path, *extra: str) -> Server:
    sip, http = free_port(), free_port()
    data = tmp / "data"
    log = tmp / "server.log"
    exe = Path(sys.executable).parent / "ivr"
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "ivr.cli"]),
           "serve", str(flows), "--sip", f"127.0.0.1:{sip}", "--http", f"127.0.0.1:{http}",
           "--data", str(data), "--rtp-ports", RTP_PORTS, *extra]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
    server = Server(proc, sip, http, data, log)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise AssertionError(f"ivr serve exited {proc.returncode}:\n{log.read_text()}")
            try:
                if '"ok"' in server.http("/healthz"):
                    return server
            except (OSError, HTTPException):
                # Not listening yet. Polling a port nobody listens on can even connect the
                # client to itself (TCP simultaneous open) and read back its own request.
                time.sleep(0.1)
        raise AssertionError(f"ivr serve did not become healthy:\n{log.read_text()}")
    except BaseException:
        proc.kill()  # never leave a server behind when starting it failed
        proc.wait(5)
        raise


def with_media(tmp: Path, flows: Path) -> Path:
    """A copy of `flows` in `tmp` with the repository's media/ beside it (music classes, prompts)."""
    work = tmp / "flow"
    work.mkdir(exist_ok=True)
    media = work / "media"
    if not media.exists():
        media.symlink_to(ROOT / "media", target_is_directory=True)
    copy = work / flows.name
    copy.write_text(flows.read_text())
    return copy


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGINT)
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()


@pytest.fixture
def serve(tmp_path):
    """Start `ivr serve FLOWS *args`; stopped after the test."""
    started: list[Server] = []

    def _start(flows: Path | str = ROOT / "flows.yaml", *extra: str) -> Server:
        s = start_server(tmp_path, Path(flows), *extra)
        started.append(s)
        return s

    yield _start
    for s in started:
        stop_server(s)


def sipp_phone(tmp: Path, scenario: str, *extra: str, calls: int = 1,
               timeout: int = 60) -> tuple[subprocess.Popen, int]:
    """A SIPp phone (UAS) on 127.0.0.1 running scenarios/`scenario` for `calls` calls: (process, SIP port).
    Its `<log>` lines go to files that `logged` reads; errors to `tmp/<scenario>.errors`."""
    port = free_port()
    cmd = [need("sipp"), "-sf", str(HERE / "scenarios" / scenario), "-i", "127.0.0.1", "-p", str(port),
           "-mp", str(free_media_port()), "-m", str(calls), "-nostdin", "-timeout", f"{timeout}s",
           "-trace_logs", "-trace_err", "-error_file", str(tmp / f"{scenario}.errors"), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp), port


@contextlib.contextmanager
def sipp_agent(tmp: Path, scenario: str, *extra: str, timeout: int = 60):
    """A sipp_phone for the length of a `with` block: (process, SIP port); killed if still running."""
    proc, port = sipp_phone(tmp, scenario, *extra, timeout=timeout)
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def http_router(answer: dict):
    """A stand-in HTTP router on 127.0.0.1 that answers every POST with `answer`:
    yields (its URL, the JSON bodies it was sent)."""
    import http.server
    import threading

    seen: list[dict] = []

    class Router(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the standard library's name
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Router)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/route", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def logged(tmp: Path, scenario: str, prefix: str) -> list[str]:
    """What a sipp_phone's scenario logged on lines starting `prefix` (the prefix cut off)."""
    lines = []
    for log in tmp.glob(f"{Path(scenario).stem}_*_logs.log"):
        lines += [line.split(prefix, 1)[1].strip() for line in log.read_text().splitlines() if prefix in line]
    return lines


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is not installed (scripts/test installs it)")
        pytest.skip(f"{program} is not installed (scripts/test installs it)")
    return path


@pytest.fixture(scope="module")
def menu_prompts() -> dict[str, bytes]:
    """The expected line audio of menu.yaml's prompts (and of a decoy), rendered once."""
    from .audio_match import line_prompt
    from .heard_menu import TEXTS

    need("espeak-ng")
    return {text: line_prompt(text) for text in TEXTS}
