"""The baresip caller driver: each call is placed by a baresip 1.0 process of its own.

The process runs in a temporary directory with one account, the journey's
caller, and is driven over `ctrl_tcp` (netstring-framed JSON commands and
events), never a terminal.

- Heard audio: module `sndfile` writes what the phone decoded to a WAV, read
  as it grows. The IVR's hang-up is the CALL_CLOSED event.
- Keys: RFC 4733 (`sndcode`), or tones. No SIP INFO: baresip 1.0 cannot.
- Audio out: the microphone is a WAV (`aufile`); `ausrc` switches it to a
  file of the audio padded with silence, and back to silence once played
  (baresip hangs up when its microphone file ends).
- REFER: baresip carries it out itself (a TRANSFER event, then it calls the
  target and tells the IVR how that went), so the target must answer for the
  IVR's hand-off to complete. The REFER's headers are read from baresip's SIP
  trace (`-s`). No headers can be added to the INVITE.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import struct
import tempfile
from pathlib import Path
from string import Template

from ..news import News
from .line import CallFailed, DriverCannot, Line, Transfer

RATE = 8000
FRAME_BYTES = 320  # 20 ms of 8 kHz PCM16
POLL_S = 0.02  # how often the heard recording is read for new audio
SILENCE_S = 300.0  # length of the silence microphone (aufile holds a whole file in memory)
REARM_S = 60.0  # switch to the silence file again when this little of it is left
PAD_S = 5.0  # silence after audio we play, so the file never ends before we switch back
INSTALL = "apt-get install baresip-core"

# Tried with baresip 1.0.0. No stdio module: the phone is driven only over ctrl_tcp. `net_interface`
# must be the address, not `lo`, or baresip advertises its Ethernet address in the SDP.
CONFIG = Template("""\
# baresip 1.0.0 caller for the IVR harness (generated); no status line in the log
sip_listen\t\t$host:$sip_port
net_interface\t\t$host
audio_player\t\taubridge,sink
audio_source\t\taufile,$mic
audio_alert\t\taubridge,sink
ausrc_srate\t\t8000
auplay_srate\t\t8000
ausrc_channels\t\t1
auplay_channels\t\t1
rtp_ports\t\t$rtp_ports
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\taubridge.so
module\t\t\tsndfile.so
module_app\t\taccount.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t127.0.0.1:$ctrl_port
snd_path\t\t$rec_dir
statmode_default\toff
""")

USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,?/%]+")  # a SIP URI user without ';' (account params)


def baresip_config(*, sip_port: int, ctrl_port: int, mic: os.PathLike | str, rec_dir: os.PathLike | str,
                   host: str = "127.0.0.1", rtp_ports: str = "42000-42999") -> str:
    """The text of baresip's `config`: loopback-style media, a WAV microphone, sndfile recordings."""
    return CONFIG.substitute(host=host, sip_port=sip_port, ctrl_port=ctrl_port, mic=mic, rec_dir=rec_dir,
                             rtp_ports=rtp_ports)


def baresip_account(*, sip_port: int, user: str = "tester", host: str = "127.0.0.1") -> str:
    """The text of baresip's `accounts`: one account that dials without registering."""
    if not USER.fullmatch(user):
        raise ValueError(f"{user!r} cannot be the user of a SIP address")
    # regint=0: dial straight to the target without registering anywhere; PCMU only, like a trunk.
    return f"<sip:{user}@{host}:{sip_port}>;regint=0;audio_codecs=PCMU\n"


# ---- ctrl_tcp framing, WAV files, ports ---------------------------------------------------------

def netstring(payload: bytes) -> bytes:
    """One netstring frame, as ctrl_tcp reads and writes them."""
    return b"%d:%s," % (len(payload), payload)


class NetstringReader:
    """Splits a byte stream into netstring payloads (ValueError when it is not netstrings)."""

    _buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        while True:
            head, sep, rest = self._buf.partition(b":")
            if not (head.isdigit() if sep else len(head) <= 20 and not head.strip(b"0123456789")):
                raise ValueError(f"not a netstring: {self._buf[:40]!r}")
            if not sep or len(rest) < int(head) + 1:
                return out
            n = int(head)
            if rest[n:n + 1] != b",":
                raise ValueError(f"netstring without its comma: {self._buf[:40]!r}")
            out.append(rest[:n])
            self._buf = rest[n + 1:]


def write_wav(path: Path, pcm: bytes, pad_s: float = 0.0, rate: int = RATE) -> Path:
    """A mono PCM16 WAV of `pcm` followed by `pad_s` seconds of silence."""
    pcm = pcm[: len(pcm) // 2 * 2] + bytes(int(pad_s * rate) * 2)
    head = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, 1, rate,
                       rate * 2, 2, 16, b"data", len(pcm))
    path.write_bytes(head + pcm)
    return path


def data_offset(head: bytes) -> int | None:
    """Where the samples start in a WAV beginning with `head` (None: not known yet).

    Chunks are walked by their own sizes (a file being written has no total sizes yet);
    no RIFF yet (linphone writes zeros first) means the canonical 44-byte header."""
    if len(head) < 12:
        return None
    if head[:4] != b"RIFF":
        return 44
    pos = 12
    while pos + 8 <= len(head):
        if head[pos:pos + 4] == b"data":
            return pos + 8
        size = int.from_bytes(head[pos + 4:pos + 8], "little")
        pos += 8 + size + (size & 1)
    return None


class GrowingWav:
    """A recording read as it is written: each `read` returns only the new whole 20 ms frames."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("rb", buffering=0)
        self._buf = b""
        self._start: int | None = None

    def read(self) -> bytes:
        self._buf += self._f.read() or b""
        if self._start is None:
            self._start = data_offset(self._buf)
            if self._start is None or len(self._buf) < self._start:
                self._start = None
                return b""
            self._buf = self._buf[self._start:]
        whole = len(self._buf) // FRAME_BYTES * FRAME_BYTES
        out, self._buf = self._buf[:whole], self._buf[whole:]
        return out

    def close(self) -> None:
        self._f.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` (baresip listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            u.bind((host, 0))
            with contextlib.suppress(OSError):
                t.bind((host, u.getsockname()[1]))
                return u.getsockname()[1]
    raise OSError("no free port")


def tcp_listener(port: int, host: str = "127.0.0.1") -> int | None:
    """The socket inode listening on TCP host:port (from /proc/net/tcp), or None if none is."""
    want = (f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}", f"00000000:{port:04X}")
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if fields[1] in want and fields[3] == "0A":  # 0A: LISTEN
                return int(fields[9])
    return None


def owned_by(inode: int, pid: int) -> bool:
    """Whether process `pid` holds the socket with this inode."""
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == f"socket:[{inode}]":
                    return True
    return False


# ---- one baresip process -------------------------------------------------------------------------

class BaresipError(Exception):
    """baresip did not do what it was asked (in time)."""


class BaresipProcess:
    """A baresip process in `workdir` and its ctrl_tcp connection: responses wake the command
    waiting for them (by token); events are kept in order, to wait for one that may have come."""

    def __init__(self, program: list[str], workdir: Path, mic: Path, *, host: str = "127.0.0.1",
                 user: str = "tester", rtp_ports: str = "42000-42999") -> None:
        self.program, self.workdir, self.mic = program, workdir, mic  # program: baresip's argv before options
        self.host, self.user, self.rtp_ports = host, user, rtp_ports
        self.rec_dir, self.log = workdir / "heard", workdir / "baresip.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict] = []
        self.ctrl_closed = False
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self.news = News()  # poked at every event from baresip
        self._replies: dict[str, asyncio.Future] = {}
        self._tokens = 0

    async def start(self, timeout: float = 20.0, attempts: int = 3) -> None:
        """Write the configuration, start baresip and connect to its control socket."""
        conf = self.workdir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        self.rec_dir.mkdir(exist_ok=True)
        for _ in range(attempts):
            sip_port, ctrl_port = free_port(self.host), free_port()
            # Paths relative to baresip's working directory: it cuts long ones short (sndfile fails).
            (conf / "config").write_text(baresip_config(
                sip_port=sip_port, ctrl_port=ctrl_port, mic=os.path.relpath(self.mic, self.workdir),
                rec_dir=self.rec_dir.name, host=self.host, rtp_ports=self.rtp_ports))
            (conf / "accounts").write_text(baresip_account(sip_port=sip_port, user=self.user, host=self.host))
            with self.log.open("ab") as log:
                # -s: the SIP trace, the only place baresip shows a REFER's own headers.
                self.proc = await asyncio.create_subprocess_exec(
                    *self.program, "-s", "-f", conf.name, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                    stderr=asyncio.subprocess.STDOUT, cwd=self.workdir)
            if await self._connect(self.proc, ctrl_port, timeout):
                return
            await self._stop()  # a port was taken meanwhile (it was free when chosen): others
        raise BaresipError(f"baresip did not start on free ports {attempts} times:\n{self.tail()}")

    async def _connect(self, proc: asyncio.subprocess.Process, ctrl_port: int, timeout: float) -> bool:
        """Connect to ctrl_tcp once baresip listens; False if it exited or another process has the port."""
        deadline = asyncio.get_running_loop().time() + timeout
        # Connect only once something listens: probing a closed port in the ephemeral range can
        # connect the probe to itself (TCP simultaneous open) and hold the port baresip wanted.
        while (owner := tcp_listener(ctrl_port)) is None:
            if proc.returncode is not None:
                return False
            if asyncio.get_running_loop().time() > deadline:
                raise BaresipError(f"baresip's control socket did not open in {timeout:g} s:\n{self.tail()}")
            await asyncio.sleep(0.05)
        if not owned_by(owner, proc.pid):
            return False
        reader, self._writer = await asyncio.open_connection("127.0.0.1", ctrl_port)
        self._task = asyncio.ensure_future(self._read(reader))
        return True

    async def _read(self, reader: asyncio.StreamReader) -> None:
        frames = NetstringReader()
        try:
            while data := await reader.read(65536):
                for msg in map(json.loads, frames.feed(data)):
                    fut = self._replies.get(str(msg.get("token")))
                    if msg.get("response") and fut is not None and not fut.done():
                        fut.set_result(msg)
                    elif msg.get("event"):
                        self.events.append(msg)
                        self.news.poke()
        except (OSError, ValueError) as exc:  # garbled framing or JSON: say so rather than go quiet
            self.events.append({"event": True, "type": "CTRL_ERROR", "param": str(exc)})
        self.ctrl_closed = True
        self.events.append({"event": True, "type": "CTRL_CLOSED"})
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(BaresipError("baresip closed its control socket"))
        self.news.poke()

    async def command(self, command: str, params: str | None = None, timeout: float = 10.0) -> dict:
        """Run a ctrl_tcp command and return baresip's response; BaresipError if it refuses."""
        if self._writer is None or self.ctrl_closed:
            raise BaresipError(f"cannot {command}: baresip is not running")
        self._tokens += 1
        token = f"t{self._tokens}"
        body = {"command": command, "token": token, **({"params": params} if params is not None else {})}
        fut = self._replies[token] = asyncio.get_running_loop().create_future()
        try:
            self._writer.write(netstring(json.dumps(body).encode()))
            await self._writer.drain()
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise BaresipError(f"baresip did not answer {command} within {timeout:g} s") from None
        except OSError as exc:
            raise BaresipError(f"cannot {command}: {exc}") from exc
        finally:
            self._replies.pop(token, None)
        if not reply.get("ok"):
            raise BaresipError(f"baresip refused {command} {params or ''}: {reply.get('data') or reply}")
        return reply

    async def wait_event(self, types: tuple[str, ...], timeout: float) -> dict | None:
        """The first event (old or new) of `types`, or CTRL_CLOSED; None after `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for ev in self.events:
                if ev.get("type") in (*types, "CTRL_CLOSED"):
                    return ev
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            await self.news.wait(left)

    def recording(self) -> Path | None:
        """What the phone heard on its first call (sndfile's `dump-*-dec.wav`), once it exists."""
        found = sorted(self.rec_dir.glob("dump-*-dec.wav"))
        return found[0] if found else None

    def traced(self, method: str, call_id: str) -> list[list[tuple[str, str]]]:
        """The headers of the `method` requests baresip received on `call_id`, from its SIP trace."""
        found = re.finditer(rf"^{method} sip:\S+ SIP/2\.0\r?\n(.*?)\r?\n\r?\n", self.tail(None), re.M | re.S)
        heads = [[(k.strip(), v.strip()) for k, sep, v in (h.partition(":") for h in m[1].splitlines()) if sep]
                 for m in found]
        return [h for h in heads if any(k.lower() in ("call-id", "i") and v == call_id for k, v in h)]

    def tail(self, chars: int | None = 3000) -> str:
        """The end of baresip's log (all of it for None)."""
        try:
            return self.log.read_text(errors="replace")[-chars if chars else 0:]
        except OSError:
            return ""

    async def close(self) -> None:
        """Quit baresip (it hangs up its calls and closes its recordings) and reap it."""
        if self.proc is not None and self.proc.returncode is None and self._writer is not None \
                and not self.ctrl_closed:
            with contextlib.suppress(OSError, TimeoutError):
                self._writer.write(netstring(b'{"command": "quit", "token": "quit"}'))
                await asyncio.wait_for(self._writer.drain(), 2)
                # Quick with calls up (a BYE each); an INVITE nobody answered keeps it for 32 s.
                await asyncio.wait_for(self.proc.wait(), 3)
        await self._stop()

    async def _stop(self) -> None:
        """Drop the control connection; end the process politely, then for good."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 2)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), 5)


# ---- the line and the phone ----------------------------------------------------------------------

class BaresipLine(Line):
    """One answered call placed by a baresip process of its own."""

    driver = "baresip"
    key_methods = ("rfc4733", "inband")  # baresip 1.0 has no SIP INFO keys

    def __init__(self, phone: BaresipPhone, proc: BaresipProcess, call_id: str, answered_at: float,
                 setup_s: float, silence: Path) -> None:
        super().__init__(answered_at, setup_s)
        self.phone, self.proc, self.silence, self._call_id = phone, proc, silence, call_id
        self._closed = self._by_us = False  # _by_us: we hung up, so CALL_CLOSED is not the IVR's doing
        self._mic = asyncio.Lock()  # one switch of the microphone at a time
        self._mic_since = answered_at  # loop time the microphone file last started
        self._wav: GrowingWav | None = None
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(c) for c in (self._listen(), self._follow(), self._keep_mic())]

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def ended(self) -> bool:
        return self._closed or self._by_us or self.hung_up.is_set()

    # ---- what was heard ----------------------------------------------------------------------
    def _drain(self) -> None:
        """Take in what the recording has grown by since the last look."""
        path = self.proc.recording() if self._wav is None else None
        if path is not None:
            self._wav = GrowingWav(path)
        with contextlib.suppress(OSError):
            if self._wav is not None and (pcm := self._wav.read()):
                self.add_audio(pcm, asyncio.get_running_loop().time())

    async def _listen(self) -> None:
        while not self.ended:
            self._drain()
            await asyncio.sleep(POLL_S)

    async def _follow(self) -> None:
        """Act on baresip's events for this call: the IVR's REFER, its hang-up."""
        seen = 0
        while not self._closed:
            for ev in self.proc.events[seen:]:
                seen += 1
                kind, mine = ev.get("type"), ev.get("id") == self.call_id
                if kind in ("TRANSFER", "CALL_TRANSFER") and mine:  # 1.0 says TRANSFER
                    await self._transfer(str(ev.get("param") or ""))
                elif (kind == "CALL_CLOSED" and mine) or kind == "CTRL_CLOSED":
                    self._drain()  # the last of the audio before the end
                    if not self._by_us:  # baresip says "Connection reset by peer" for the IVR's BYE
                        self.ended_by_ivr(str(ev.get("param") or "baresip exited"))
                    return
            await self.proc.news.wait(1.0)

    async def _transfer(self, refer_to: str) -> None:
        """Record the IVR's REFER. baresip has accepted it and now dials the target by itself."""
        at = self.now()
        # The event has only the Refer-To; the REFER's own headers (X-IVR-Context ...) come from
        # the SIP trace, written before the event is sent (a moment's grace all the same).
        headers: list[tuple[str, str]] = []
        for _ in range(20):
            refers = self.proc.traced("REFER", self.call_id)
            if len(refers) > len(self.transfers):
                headers = refers[len(self.transfers)]
                break
            await asyncio.sleep(0.05)
        self.add_transfer(Transfer.from_refer(refer_to, headers, at))

    # ---- what the caller does ----------------------------------------------------------------
    def _cannot(self, exc: BaresipError) -> None:
        """A command baresip refused: nothing to say if the call has ended meanwhile."""
        if not self.ended:
            raise DriverCannot(f"baresip: {exc}") from exc

    async def send_key(self, digit: str, method: str, duration: float) -> None:
        if method != "rfc4733":
            raise DriverCannot(f"the baresip driver cannot send keys as {method}")
        try:
            await self.proc.command("sndcode", digit)  # the key's RFC 4733 start and end, at once
        except BaresipError as exc:
            self._cannot(exc)
            return
        await asyncio.sleep(duration)

    async def _switch(self, wav: Path) -> None:
        """Make `wav` the microphone, from its start."""
        reply = await self.proc.command("ausrc", f"aufile,{os.path.relpath(wav, self.proc.workdir)}")
        if "switch audio device" not in str(reply.get("data")):
            raise BaresipError(f"baresip did not switch its microphone to {wav}: {reply.get('data')}")
        self._mic_since = asyncio.get_running_loop().time()

    async def play(self, pcm: bytes) -> None:
        if self.ended or not pcm:
            return
        async with self._mic:
            # Padded: if switching back is late, the file must not run out (baresip would hang up).
            wav = write_wav(self.proc.workdir / "play.wav", pcm, PAD_S)
            try:
                await self._switch(wav)
                # aufile sends the file in real time from the switch on: wait until it has gone out.
                await asyncio.sleep(len(pcm) / (2 * RATE) + 2 * POLL_S)
                if not self.ended:
                    await self._switch(self.silence)
            except BaresipError as exc:
                self._cannot(exc)
            finally:
                wav.unlink(missing_ok=True)  # aufile read it whole when switched to

    async def _keep_mic(self) -> None:
        """Start the silence file again before it runs out, which would end the call."""
        while not self.ended:
            left = self._mic_since + SILENCE_S - REARM_S - asyncio.get_running_loop().time()
            if left > 0:
                await asyncio.sleep(min(left, 5.0))
                continue
            async with self._mic:
                with contextlib.suppress(BaresipError):
                    await self._switch(self.silence)

    async def hangup(self) -> None:
        # Quitting baresip (close) sends a BYE on every call; its `hangup` ends only the current
        # one, which after a REFER is the call to the target.
        self._by_us = self._by_us or not self.ended
        await self.close()

    async def close(self) -> None:
        """Stop listening, quit baresip and remove its directory."""
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._wav is not None:
            self._wav.close()
        await self.proc.close()
        self.phone.lines.discard(self)
        shutil.rmtree(self.proc.workdir, ignore_errors=True)  # the process is gone: its files go too


class BaresipPhone:
    """Places calls with baresip, one process per call; `caller` is the account's user."""

    driver = "baresip"

    def __init__(self, host: str = "127.0.0.1", *, program: str = "baresip", user: str = "tester",
                 rtp_ports: str = "42000-42999") -> None:
        self.host, self.program, self.user, self.rtp_ports = host, program, user, rtp_ports
        self.lines: set[BaresipLine] = set()
        self._exe: list[str] = []
        self._root: Path | None = None
        self._calls = 0

    async def start(self) -> None:
        """Find baresip, and write the silence every call's microphone starts with."""
        exe, setpriv = shutil.which(self.program), shutil.which("setpriv")
        if exe is None:
            raise DriverCannot(f"the baresip driver needs baresip, which is not installed ({INSTALL})")
        # If we are killed before closing, the kernel ends our baresip processes too.
        self._exe = [setpriv, "--pdeathsig", "TERM", "--", exe] if setpriv else [exe]
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="ivr-baresip-"))
            write_wav(self._root / "silence.wav", b"", SILENCE_S)

    async def close(self) -> None:
        """Hang up what is still up and remove the phone's files."""
        for line in list(self.lines):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(line.hangup(), 15)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    async def call(self, target: str, *, caller: str | None = None, headers: dict[str, str] | None = None,
                   ring_timeout: float = 30.0, telephone_event: bool = True) -> BaresipLine:
        """Dial `target` from a new baresip process; raises CallFailed when it is not answered."""
        if headers:
            raise DriverCannot("the baresip driver cannot add headers to the call (baresip 1.0 has no way "
                               "to put them on its INVITE): leave out `headers`, or use --driver sip")
        if not telephone_event:
            raise DriverCannot("the baresip driver cannot dial without telephone-event (baresip 1.0 "
                               "always offers it): use --driver sip")
        if not target.startswith(("sip:", "sips:")):
            raise ValueError(f"baresip dials sip: addresses, not {target!r}")
        baresip_account(sip_port=0, user=caller or self.user)  # ValueError for a caller no SIP user can be
        if self._root is None:
            await self.start()
        assert self._root is not None
        self._calls += 1
        proc = BaresipProcess(self._exe, self._root / f"call-{self._calls}", self._root / "silence.wav",
                              host=self.host, user=caller or self.user, rtp_ports=self.rtp_ports)
        loop = asyncio.get_running_loop()
        try:
            try:
                await proc.start()
                t0 = loop.time()
                await proc.command("dial", target)
            except BaresipError as exc:
                raise CallFailed(0, str(exc)) from exc
            ev = await proc.wait_event(("CALL_ESTABLISHED", "CALL_CLOSED"), ring_timeout)
            if ev is None:  # quitting baresip (below) cancels the call
                raise CallFailed(408, f"no answer within {ring_timeout:g} s")
            if ev["type"] != "CALL_ESTABLISHED":  # "486 Busy Here", or baresip exited
                m = re.match(r"(\d{3}) (.*)", str(ev.get("param")))
                raise CallFailed(int(m[1]), m[2]) if m else CallFailed(0, str(ev.get("param") or "baresip exited"))
        except BaseException:
            await proc.close()
            shutil.rmtree(proc.workdir, ignore_errors=True)
            raise
        now = loop.time()
        # baresip's call id is the SIP Call-ID, which is the IVR's name for the call too.
        line = BaresipLine(self, proc, str(ev.get("id") or f"baresip-{self._calls}"), now, now - t0,
                           self._root / "silence.wav")
        self.lines.add(line)
        line.start()
        return line
