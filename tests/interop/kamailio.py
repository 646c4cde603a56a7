"""Kamailio as a loopback registrar/proxy for the interop tests, and helpers around it.

`run_kamailio(dir)` starts it on a free port from a checked copy of
peers/kamailio.cfg and stops it (by its own pid, or its own session) when the
`with` block ends. The test modules wrap it in fixtures of the scope they need.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import HERE, Server, free_port, need

KAMAILIO_CFG = HERE / "peers" / "kamailio.cfg"  # the loopback registrar, as written for port 5060


@dataclass
class Kamailio:
    """A running Kamailio and where its log goes."""

    proc: subprocess.Popen
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def config(port: int) -> str:
    """The loopback registrar config, moved from 5060 to `port`."""
    text = KAMAILIO_CFG.read_text()
    text = text.replace("listen=udp:127.0.0.1:5060", f"listen=udp:127.0.0.1:{port}")
    text = text.replace('alias="127.0.0.1:5060"', f'alias="127.0.0.1:{port}"')
    # pyVoIP writes its registrar's name without a port (sip:ivr@localhost). On 5060
    # that is Kamailio's own port; here it is not, so "localhost" is ours on any port.
    # (127.0.0.1 stays port-bound: the IVR's and the phone's contacts live there too.)
    text = text.replace('alias="localhost:5060"', 'alias="localhost"')
    # The modules' directory depends on the machine's architecture.
    modules = sorted(glob.glob("/usr/lib/*/kamailio/modules/tm.so") + glob.glob("/usr/lib*/kamailio/modules/tm.so"))
    if modules:
        text = re.sub(r'mpath="[^"]*"', f'mpath="{Path(modules[0]).parent}/"', text)
    # Short bindings are allowed, so a refresh shows within seconds.
    text = text.replace('modparam("registrar", "max_expires", 3600)',
                        'modparam("registrar", "max_expires", 3600)\nmodparam("registrar", "min_expires", 1)')
    assert f"listen=udp:127.0.0.1:{port}" in text and "min_expires" in text
    return text


def sip_probe(port: int, uri: str, timeout: float = 5.0) -> str:
    """Send OPTIONS for `uri` to 127.0.0.1:port; the final response's text ("" if none came)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
        msg = (f"OPTIONS {uri} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
               f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag={secrets.token_hex(4)}\r\n"
               f"To: <{uri}>\r\nCall-ID: {secrets.token_hex(8)}@probe\r\nCSeq: 1 OPTIONS\r\n"
               f"Content-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), ("127.0.0.1", port))
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                text = s.recv(65535).decode(errors="replace")
            except TimeoutError:
                break
            if not text.startswith("SIP/2.0 1"):  # skip provisional responses
                return text
    return ""


@contextlib.contextmanager
def run_kamailio(run: Path) -> Iterator[Kamailio]:
    """Kamailio on a free loopback port, its config, pid file and log in `run` (created).

    Start it before the IVR that registers there, so it outlives the IVR and sees its
    un-REGISTER.
    """
    # /usr/sbin is not on every user's PATH.
    exe = "/usr/sbin/kamailio" if os.access("/usr/sbin/kamailio", os.X_OK) else need("kamailio")
    port = free_port()
    run.mkdir(parents=True, exist_ok=True)
    cfg = run / "kamailio.cfg"
    cfg.write_text(config(port))
    check = subprocess.run([exe, "-f", str(cfg), "-c"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    log = run / "kamailio.log"
    # Absolute paths: Kamailio changes its working directory to "/".
    proc = subprocess.Popen([exe, "-f", str(cfg), "-DD", "-E", "-P", str(run / "kamailio.pid"), "-Y", str(run)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    k = Kamailio(proc, port, log)
    try:
        end = time.monotonic() + 15
        # The config answers OPTIONS for itself (no user part) with "200 Keepalive".
        while not sip_probe(port, f"sip:127.0.0.1:{port}", timeout=0.5).startswith("SIP/2.0 200"):
            if proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"kamailio did not start:\n{k.log_text()[-3000:]}")
        yield k
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the main process stops its children
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only Kamailio's processes
                proc.wait(5)


def registered(server: Server, timeout: float = 10.0) -> dict:
    """The IVR's registration state from /healthz, once it says registered (or fail)."""
    end = time.monotonic() + timeout
    while True:
        reg = json.loads(server.http("/healthz")).get("registration") or {}
        if reg.get("registered") or time.monotonic() > end:
            assert reg.get("registered"), f"not registered: {reg}\n{server.log.read_text()[-3000:]}"
            return reg
        time.sleep(0.1)


def pyvoip():
    """pyVoIP's VoIP module, or skip: 1.6.8 needs audioop, which Python 3.13 removed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # audioop's, on 3.11 and 3.12
            import pyVoIP.VoIP as voip  # before pyVoIP.SIP: the package imports circularly
    except ModuleNotFoundError as exc:
        if exc.name == "audioop" or not os.environ.get("CI"):
            pytest.skip(f"pyVoIP is not usable here ({exc}); pip install -e '.[test]'")
        raise
    return voip
