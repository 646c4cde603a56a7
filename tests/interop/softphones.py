"""Real softphones as IVR callers: baresip over its ctrl_tcp socket, linphonec over stdin.

Both run headless on loopback with files for sound: a WAV of silence as the
microphone, and a WAV of what the phone heard, which the tests search for the
IVR's prompts (see `audio_match`). Every wait has a deadline, and `close()`
(also on leaving a `with` block) ends the phone however far the call got.

The settings follow what was tried on these machines with baresip 1.0.0 and
linphonec 5.1.65; the comments say which ones matter and why.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from string import Template

from ivr.harness.baresip_phone import (
    NetstringReader,
    baresip_account,
    baresip_config,
    data_offset,
    netstring,
    owned_by,
    tcp_listener,
    write_wav,
)

from .audio_match import RATE, PieceMatch, find_pieces, pcm_array
from .conftest import free_port

__all__ = [
    "Baresip",
    "Linphonec",
    "SoftphoneError",
    "read_growing_wav",
    "read_recording",
    "wait_for_prompt",
    "write_silence",
]


class SoftphoneError(AssertionError):
    """A softphone did not do what the test asked in time; carries its recent log."""


def write_silence(path: Path, seconds: float, rate: int = RATE) -> Path:
    """A mono PCM16 WAV of digital silence: the microphone of a phone that only listens.

    baresip ends the call when its microphone file runs out, so make it
    longer than any call the test places."""
    return write_wav(path, b"", seconds, rate)


def read_growing_wav(path: Path) -> bytes:
    """The PCM16 samples of a WAV file that may still be being written.

    While a call is up, baresip's sndfile has written a RIFF header whose
    sizes are not filled in yet, and linphone has written a placeholder of
    zeros where its header will go (see `data_offset`); both at 8 kHz mono
    PCM16 (the tests check the format once the file is closed).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b""
    body = data[data_offset(data) or 44:]
    return body[: len(body) // 2 * 2]


def wait_for_prompt(read: Callable[[], bytes], template: bytes, *, threshold: float = 0.8,
                    timeout: float = 30.0, interval: float = 0.25,
                    alive: Callable[[], bool] | None = None, log: Path | None = None) -> PieceMatch:
    """Poll a growing recording until it holds all of `template`, and return that match.

    Waiting for the audio itself (rather than sleeping for the prompt's
    length) keeps the test right when the server is slow to start the prompt
    on a loaded machine, and lets it go on as soon as the prompt has been heard.
    `alive` stops the wait early when the phone is gone; `log` is quoted on failure.
    """
    end = time.monotonic() + timeout
    best = PieceMatch(0.0, 0.0, 0.0, ())
    t_len = len(template) // 2
    while True:
        pcm = read()
        if len(pcm) // 2 >= t_len:
            best = find_pieces(pcm, template)
            # Heard in full: matches, and the recording runs past the prompt's end.
            if best.score >= threshold and best.offset * RATE + t_len <= len(pcm) // 2:
                return best
        gone = alive is not None and not alive()
        if gone or time.monotonic() > end:
            why = "the phone exited" if gone else f"not within {timeout:.0f} s"
            raise SoftphoneError(f"prompt not heard ({why}); heard {len(pcm) / 2 / RATE:.2f} s, "
                                 f"best match {best}\n{_tail(log) if log else ''}")
        time.sleep(interval)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End a phone process we started: politely first, then for good."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


# --- baresip --------------------------------------------------------------------------------
# The configuration, account and ctrl_tcp framing are the harness's baresip driver's
# (ivr/harness/baresip_phone.py): the tests drive the same phone the testers do.


class Baresip:
    """A baresip process in `workdir`, controlled over ctrl_tcp with netstring JSON.

    Commands (`dial`, `sndcode`, `hangup`, `quit`) are answered on the same
    socket by a response with the command's token; call progress comes as
    events (`CALL_ESTABLISHED`, `CALL_CLOSED` ...). A reader thread keeps
    every message in `messages`, so a test can wait for an event that may
    already have arrived.
    """

    def __init__(self, workdir: Path, mic: Path, program: str = "baresip") -> None:
        self.workdir = workdir
        self.mic = mic
        self.program = program
        self.conf = workdir / "baresip"
        self.rec_dir = workdir / "heard"
        self.log = workdir / "baresip.log"
        self.sip_port = free_port()
        self.ctrl_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.messages: list[dict] = []
        self._sock: socket.socket | None = None
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._tokens = 0

    # -- life cycle

    def start(self, timeout: float = 20.0, attempts: int = 3) -> Baresip:
        """Write the config, start baresip and connect to its control socket.

        The ports come from `free_port`, so another process may take one
        before baresip binds it (other suites run on the same machine): then
        baresip is started again on fresh ports."""
        self.conf.mkdir(parents=True, exist_ok=True)
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            if self._launch(timeout):
                break
            _stop(self.proc)
            if attempt == attempts:
                raise SoftphoneError(f"baresip's ctrl_tcp port was taken {attempts} times:\n{_tail(self.log)}")
            self.sip_port, self.ctrl_port = free_port(), free_port()
        assert self._sock is not None
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, name="baresip-ctrl", daemon=True)
        self._reader.start()
        return self

    def _launch(self, timeout: float) -> bool:
        """Start baresip; True once connected to its ctrl_tcp, False if another process has the port."""
        # Paths relative to its working directory: baresip cuts long ones short (pytest's can be).
        # Its RTP ports (42000-42999) lie apart from the IVR's (20000-29999) and linphone's.
        (self.conf / "config").write_text(baresip_config(
            sip_port=self.sip_port, ctrl_port=self.ctrl_port, mic=os.path.relpath(self.mic, self.workdir),
            rec_dir=os.path.relpath(self.rec_dir, self.workdir)))
        (self.conf / "accounts").write_text(baresip_account(sip_port=self.sip_port))
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([self.program, "-f", str(self.conf)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        end = time.monotonic() + timeout
        # Connect only once something listens: probing a closed port in the ephemeral range can
        # connect the probe to itself (TCP simultaneous open), which then holds the port that
        # baresip was about to bind.
        while True:
            if self.proc.poll() is not None:
                raise SoftphoneError(f"baresip exited {self.proc.returncode}:\n{_tail(self.log)}")
            owner = tcp_listener(self.ctrl_port)
            if owner is not None:
                break
            if time.monotonic() > end:
                raise SoftphoneError(f"baresip's ctrl_tcp did not open:\n{_tail(self.log)}")
            time.sleep(0.05)
        if not owned_by(owner, self.proc.pid):
            return False
        self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=5)
        return True

    def close(self) -> None:
        """Quit baresip (which closes its recordings) and reap it, killing it if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self._sock is not None:
            try:
                self._send("quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        _stop(self.proc)
        if self._sock is not None:
            self._sock.close()
        if self._reader is not None:
            self._reader.join(2)

    def __enter__(self) -> Baresip:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    # -- control protocol

    def _read(self) -> None:
        reader = NetstringReader()
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            try:
                messages = [json.loads(frame) for frame in reader.feed(data)] if data else []
            except ValueError as exc:  # garbled framing or JSON: say so rather than go quiet
                messages, data = [{"event": True, "type": "CTRL_ERROR", "error": str(exc)}], b""
            with self._cond:
                self.messages.extend(messages)
                if not data:
                    self.messages.append({"event": True, "type": "CTRL_CLOSED"})
                self._cond.notify_all()
            if not data:
                return

    def _send(self, command: str, params: str | None = None) -> str:
        self._tokens += 1
        token = f"t{self._tokens}"
        body = {"command": command, "token": token}
        if params is not None:
            body["params"] = params
        assert self._sock is not None
        self._sock.sendall(netstring(json.dumps(body).encode()))
        return token

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
        """The first message (old or new) that satisfies `predicate`."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in self.messages:
                    if predicate(msg):
                        return msg
                left = end - time.monotonic()
                if left <= 0:
                    raise SoftphoneError(f"baresip: no {what} within {timeout:.0f} s; messages: "
                                         f"{self.messages}\n{_tail(self.log)}")
                self._cond.wait(min(left, 0.5))

    def command(self, command: str, params: str | None = None, timeout: float = 10.0) -> dict:
        """Run a ctrl_tcp command and return its response; fail if baresip says no."""
        token = self._send(command, params)
        reply = self.wait_for(lambda m: m.get("response") and m.get("token") == token, timeout,
                              f"response to {command}")
        if not reply.get("ok"):
            raise SoftphoneError(f"baresip refused {command} {params!r}: {reply}")
        return reply

    def wait_event(self, kind: str, timeout: float = 15.0) -> dict:
        """The first event of type `kind` (for example CALL_ESTABLISHED, CALL_CLOSED)."""
        return self.wait_for(lambda m: m.get("event") and m.get("type") == kind, timeout, f"{kind} event")

    # -- a call

    def dial(self, uri: str, timeout: float = 15.0) -> dict:
        """Place a call and wait until it is answered; returns the CALL_ESTABLISHED event."""
        self.command("dial", uri)
        established = self.wait_for(lambda m: m.get("event") and m.get("type") in
                                    ("CALL_ESTABLISHED", "CALL_CLOSED"), timeout, "answer")
        if established["type"] != "CALL_ESTABLISHED":
            raise SoftphoneError(f"call to {uri} failed: {established}")
        return established

    def send_digits(self, digits: str) -> None:
        """Press keys: baresip sends them as RFC 2833 telephone-events on the call."""
        self.command("sndcode", digits)

    def hangup(self) -> None:
        self.command("hangup")

    def recording(self, direction: str = "dec") -> Path | None:
        """The WAV sndfile writes: `dec` is what the phone heard, `enc` what it sent."""
        found = sorted(self.rec_dir.glob(f"dump-*-{direction}.wav"))
        return found[-1] if found else None

    def heard(self) -> bytes:
        """What the phone has heard so far (PCM16, 8 kHz), read while the call is up."""
        path = self.recording("dec")
        return read_growing_wav(path) if path else b""

    def wait_heard(self, template: bytes, threshold: float = 0.8, timeout: float = 40.0) -> PieceMatch:
        """Wait until the phone has heard all of `template` (see `wait_for_prompt`)."""
        return wait_for_prompt(self.heard, template, threshold=threshold, timeout=timeout,
                               alive=lambda: self.proc is not None and self.proc.poll() is None,
                               log=self.log)


# --- linphonec ------------------------------------------------------------------------------
# linphone rewrites this file with its defaults on exit; these are the keys that matter.
LINPHONE_RC = Template("""\
[sip]
# A port of our own (the default 5060 may be taken), UDP only.
sip_port=$sip_port
sip_tcp_port=0
sip_tls_port=0
# Left to itself the phone names the host's Ethernet IPv6 address in From and in the SDP
# (c=IN IP6 fd00::...), so the IVR's RTP would be aimed there rather than at loopback:
# IPv4 only, our own identity kept as written, and media bound to 127.0.0.1 (below).
use_ipv6=0
guess_hostname=0
contact="Tester" <sip:tester@127.0.0.1>
default_proxy=-1
[rtp]
audio_rtp_port=$rtp_low-$rtp_high
bind_address=127.0.0.1
""")


class Linphonec:
    """A linphonec process with its own HOME, fed commands on stdin, its output kept in `lines`.

    linphonec needs `$HOME/.local/share/linphone` to exist or it opens no SIP
    port at all. `soundcard use files` swaps the sound card for WAV files:
    `play` is the microphone, `record` collects what the phone hears.
    """

    def __init__(self, workdir: Path, mic: Path, record: Path, program: str = "linphonec") -> None:
        self.workdir = workdir
        self.mic = mic
        self.record = record
        self.program = program
        self.home = workdir / "linphone-home"
        self.rc = self.home / "linphonerc"
        self.log = workdir / "linphone.log"
        self.sip_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> Linphonec:
        """Start linphonec and set up its file sound card; returns once it has answered a command."""
        (self.home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        # RTP ports apart from the server's (the interop server uses 20000-29999) and baresip's.
        self.rc.write_text(LINPHONE_RC.substitute(sip_port=self.sip_port, rtp_low=43000, rtp_high=43999))
        env = dict(os.environ, HOME=str(self.home))
        self.proc = subprocess.Popen(
            [self.program, "-c", str(self.rc), "-d", "6", "-l", str(self.log)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, cwd=self.workdir, text=True, bufsize=1, errors="replace")
        self._reader = threading.Thread(target=self._read, name="linphonec-out", daemon=True)
        self._reader.start()
        self.send("soundcard use files")
        self.expect(r"Using wav files instead of soundcard", timeout)
        self.send(f"play {self.mic}")
        self.send(f"record {self.record}")
        return self

    def close(self) -> None:
        """`quit` (linphone then closes the recording), and make sure the process is gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.send("terminate")
                self.send("quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        _stop(self.proc)
        if self._reader is not None:
            self._reader.join(2)

    def __enter__(self) -> Linphonec:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<linphonec exited>")
            self._cond.notify_all()

    def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, pattern: str, timeout: float = 15.0, since: int = 0) -> re.Match:
        """The first output line from index `since` on that matches `pattern`."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[since:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = end - time.monotonic()
                if left <= 0 or (self.lines and self.lines[-1] == "<linphonec exited>"):
                    out = "\n".join(self.lines[-40:])
                    raise SoftphoneError(f"linphonec: no /{pattern}/ within {timeout:.0f} s:\n{out}\n"
                                         f"--- log ---\n{_tail(self.log)}")
                self._cond.wait(min(left, 0.5))

    def mark(self) -> int:
        """Where the output is now, to `expect` only what comes after."""
        with self._cond:
            return len(self.lines)

    def call(self, uri: str, timeout: float = 15.0) -> None:
        """Dial and wait until the call's media is up."""
        since = self.mark()
        self.send(f"call {uri}")
        self.expect(r"Call \d+ with \S+ connected|Media streams established|ended|failed|declined",
                    timeout, since)
        self.expect(r"Call \d+ with \S+ connected", 1, since)

    def press(self, digits: str) -> None:
        """Keys, one line each: linphonec sends them as RFC 2833 telephone-events."""
        for digit in digits:
            self.send(digit)

    def wait_ended(self, timeout: float = 15.0, since: int = 0) -> None:
        """Wait for the far end to hang up."""
        self.expect(r"Call \d+ with \S+ ended", timeout, since)

    def heard(self) -> bytes:
        """What the phone has heard so far (PCM16, 8 kHz), read while the call is up."""
        return read_growing_wav(self.record)

    def wait_heard(self, template: bytes, threshold: float = 0.8, timeout: float = 40.0) -> PieceMatch:
        """Wait until the phone has heard all of `template` (see `wait_for_prompt`).

        linphone writes its recording in blocks of about a second, so this
        returns up to a second after the prompt has ended."""
        return wait_for_prompt(self.heard, template, threshold=threshold, timeout=timeout,
                               alive=lambda: self.proc is not None and self.proc.poll() is None,
                               log=self.log)


def read_recording(path: Path) -> bytes:
    """A phone's finished recording as 8 kHz mono PCM16, the format the matcher expects.

    Once the phone has quit, its WAV header is complete. If it was killed
    before finishing the file, the samples written so far are read as is."""
    with wave.open(str(path)) as w:
        fmt = (w.getframerate(), w.getnchannels(), w.getsampwidth())
        pcm = w.readframes(w.getnframes())
    if not pcm:
        return read_growing_wav(path)
    if fmt != (RATE, 1, 2):
        raise SoftphoneError(f"{path} is {fmt} (rate, channels, width), expected ({RATE}, 1, 2)")
    return pcm


def duration(pcm: bytes) -> float:
    """Seconds of 8 kHz PCM16."""
    return pcm_array(pcm).size / RATE
