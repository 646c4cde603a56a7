"""Outgoing calls against real SIPp as the callee (UAS), on 127.0.0.1 only.

The SipServer runs in the test's own event loop; SIPp runs as a subprocess in
server mode with one of the dial_uas_*.xml scenarios and must finish it cleanly
(exit code 0): answered and hung up by us, busy, ringing until our CANCEL, and
answered then hung up by the callee.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from ivr.audio.clock import MediaClock
from ivr.audio.prompts import PromptCache
from ivr.engine.call import Hangup
from ivr.sip.ua import SipServer, SipSettings

from .conftest import HERE, free_media_port, free_port, need

SCENARIOS = HERE / "scenarios"


class Sipp:
    """SIPp in server mode (one call), started without blocking the loop."""

    def __init__(self, tmp: Path, scenario: str, *extra: str) -> None:
        self.tmp = tmp
        self.scenario = scenario
        self.extra = extra
        self.port = free_port()
        self.media_port = free_media_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def uri(self) -> str:
        return f"sip:+441632960001@127.0.0.1:{self.port}"

    async def start(self) -> None:
        cmd = [need("sipp"), "-sf", str(SCENARIOS / self.scenario), "-i", "127.0.0.1", "-p", str(self.port),
               "-mp", str(self.media_port), "-m", "1", "-nostdin", "-timeout", "20s",
               "-trace_err", "-error_file", str(self.tmp / "sipp_errors.log"), *self.extra]
        self.proc = await asyncio.create_subprocess_exec(*cmd, cwd=self.tmp, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.STDOUT)
        # Ready once the kernel lists its SIP socket (looking, not binding: a probe
        # holding the port for a moment could make SIPp's own bind fail).
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        while loop.time() < end:
            if _udp_bound(self.port):
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"sipp did not start: {await self.output()}")

    async def finish(self, timeout: float = 10.0) -> int:
        """SIPp's exit code once its one call is done."""
        await asyncio.wait_for(self.proc.wait(), timeout)
        return self.proc.returncode

    async def output(self) -> str:
        out = b""
        if self.proc is not None and self.proc.stdout is not None and self.proc.returncode is not None:
            out = await self.proc.stdout.read()
        log = self.tmp / "sipp_errors.log"
        errors = log.read_text()[-2000:] if log.exists() else ""
        return out.decode(errors="replace")[-2000:] + errors

    def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


def _udp_bound(port: int) -> bool:
    """Whether some UDP socket is bound to `port` (Linux's /proc/net/udp)."""
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return True  # no way to look: the INVITE's retransmissions cover a slow start
    return any(line.split()[1].endswith(f":{port:04X}") for line in lines if len(line.split()) > 1)


def _run(tmp: Path, scenario: str, test, *extra: str, timeout: float = 20.0) -> None:
    async def main():
        server = SipServer(SipSettings(host="127.0.0.1", port=0, rtp_ports=range(20000, 30000)),
                           on_call=None, prompts=PromptCache(None), clock=MediaClock())
        counts: list[str] = []
        server.count = lambda name, by=1.0, **labels: counts.append(labels.get("result", ""))
        await server.start()
        sipp = Sipp(tmp, scenario, *extra)
        try:
            await sipp.start()
            await asyncio.wait_for(test(server, sipp), timeout)
            code = await sipp.finish()
            assert code == 0, await sipp.output()
        finally:
            sipp.stop()
            if sipp.proc is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sipp.proc.wait(), 5)
            await server.close()
            server.prompts.close()
    asyncio.run(main())


def test_sipp_answers_rtp_flows_and_we_hang_up(tmp_path):
    async def test(server, sipp):
        result = await server.dial(sipp.uri, caller_id="+441632960000", ring_timeout=5)
        assert result.answered and result.status == 200 and result.outcome == "answered"
        call = result.call
        assert call.rtp.codec.name == "PCMA" and call.rtp.dtmf_pt == 101
        assert call.rtp.remote == ("127.0.0.1", sipp.media_port)
        loop = asyncio.get_running_loop()
        end = loop.time() + 3
        while call.rtp.received < 10 and loop.time() < end:  # SIPp echoes what it gets
            await asyncio.sleep(0.05)
        assert call.rtp.sent >= 10 and call.rtp.received >= 10
        assert call.rtp.peer == ("127.0.0.1", sipp.media_port)
        await call.hangup()
        assert call.call_id not in server.calls
    _run(tmp_path, "dial_uas_answer.xml", test, "-rtp_echo")


def test_sipp_busy_gives_486(tmp_path):
    async def test(server, sipp):
        result = await server.dial(sipp.uri, ring_timeout=5)
        assert (result.status, result.outcome, result.call) == (486, "busy", None)
    _run(tmp_path, "dial_uas_busy.xml", test)


def test_sipp_rings_until_we_cancel(tmp_path):
    async def test(server, sipp):
        loop = asyncio.get_running_loop()
        start = loop.time()
        result = await server.dial(sipp.uri, ring_timeout=1.0)
        assert (result.status, result.outcome, result.call) == (487, "no-answer", None)
        assert 1.0 <= loop.time() - start < 4.0
    _run(tmp_path, "dial_uas_ring_cancel.xml", test)


def test_sipp_answers_then_hangs_up(tmp_path):
    async def test(server, sipp):
        result = await server.dial(sipp.uri, ring_timeout=5)
        assert result.answered and result.call.rtp.codec.name == "PCMU"
        call = result.call
        event = await asyncio.wait_for(call.next_event(), 5)
        assert isinstance(event, Hangup)
        assert call.ended and call.call_id not in server.calls
    _run(tmp_path, "dial_uas_hangs_up.xml", test)
