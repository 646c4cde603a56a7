"""`ivr test --driver baresip`: the repository's journeys over calls placed by real baresip phones.

`ivr serve` runs twice on flows.yaml, with the line always open and always
closed. The open one hands callers to a SIPp phone that answers: baresip
carries out the IVR's REFER itself by calling it, which completes the hand-off.
The `ivr test` runs are separate processes, started together to keep the file
quick (every call has its own baresip process anyway):

- open hours, every repository journey: key 0 hands off (queue general, reason
  escape, the context read from baresip's SIP trace); the billing hold and
  callback; "appointments" said (audio switched into baresip's microphone) and
  a voicemail. "pay a bill" stops at its `press: {method: info}`: baresip 1.0
  cannot send SIP INFO.
- after hours: the callback offer reads back the caller id, baresip's account user.
- what the driver cannot do fails saying so: keys as SIP INFO, headers on the
  INVITE, an offer without telephone-event.

Then the driver in-process: in-band tones and speech are in what baresip sent
(its own recording of its microphone) by the time `press`/`say` return, and the
phone leaves no process or file behind. Last, without a phone, the readers of
the growing recording and of the control socket's netstrings.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ivr.audio.dtmf_detect import InbandDtmfDetector
from ivr.harness.baresip_phone import (
    BaresipPhone,
    GrowingWav,
    NetstringReader,
    netstring,
    write_wav,
)
from ivr.harness.listen import find_pieces, render_prompt

from .conftest import ROOT, need, sipp_agent, start_server, stop_server
from .softphones import read_growing_wav
from .test_harness import IVR, flow_variant

TOKEN = "harness-baresip-token"
RUN_TIMEOUT = 240  # one `ivr test` run, at most (they take 5-40 s here)

CANNOT = """\
journeys:
  - journey: keys as SIP INFO
    steps:
      - press: {keys: "1", method: info}
      - hangup
  - journey: headers on the call
    headers: {X-Test-Run: "42"}
    steps:
      - hangup
  - journey: no telephone-event
    steps:
      - dial: {telephone_event: false}
      - hangup
"""


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    """The open line (handing off to a SIPp phone that answers) and the closed one: (open, closed, agent port)."""
    for program in ("baresip", "espeak-ng"):
        need(program)
    tmp = tmp_path_factory.mktemp("harness-baresip")
    with sipp_agent(tmp, "dial_uas_answer.xml", timeout=RUN_TIMEOUT) as (_agent, agent_port):
        servers = []
        try:
            for hours, extra in (("open", ("--agents", f"sip:agents@127.0.0.1:{agent_port}",
                                           "--speech-engine", "pocketsphinx")), ("closed", ())):
                (tmp / hours).mkdir()
                servers.append(start_server(tmp / hours, flow_variant(tmp / hours, hours), "--api-token", TOKEN,
                                            *extra))
            yield servers[0], servers[1], agent_port
        finally:
            for server in servers:
                stop_server(server)


def _ivr_test(tmp: Path, name: str, *args: str) -> tuple[subprocess.Popen, Path]:
    """Start `ivr test ARGS --driver baresip --json` with a TMPDIR of its own (to see it left nothing)."""
    scratch = tmp / f"tmp-{name}"
    scratch.mkdir()
    cmd = [str(IVR) if IVR.exists() else sys.executable, *([] if IVR.exists() else ["-m", "ivr.cli"]), "test",
           *args, "--driver", "baresip", "--json", str(tmp / f"{name}.json")]
    # A session of its own: if it must be killed, its baresip children go with it.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TMPDIR=str(scratch)), start_new_session=True)
    return proc, scratch


@pytest.fixture(scope="module")
def runs(lines, tmp_path_factory):
    """The `ivr test` runs, at once: name -> (exit code, stdout, {journey name: result}, its TMPDIR)."""
    open_line, closed_line, _ = lines
    tmp = tmp_path_factory.mktemp("harness-baresip-runs")
    (tmp / "cannot.yaml").write_text(CANNOT)
    target = f"sip:ivr@127.0.0.1:{open_line.sip_port}"
    events = ("--events", f"http://127.0.0.1:{open_line.http_port}", "--api-token", TOKEN)
    started = {
        "billing": _ivr_test(tmp, "billing", "journeys/billing.yaml", "--target", target, *events),
        "escape_speech": _ivr_test(tmp, "escape_speech", "journeys/escape.yaml", "journeys/speech.yaml",
                                   "--target", target, *events),
        "after_hours": _ivr_test(tmp, "after_hours", "journeys", "-k", "after-hours",
                                 "--target", f"sip:ivr@127.0.0.1:{closed_line.sip_port}"),
        "cannot": _ivr_test(tmp, "cannot", str(tmp / "cannot.yaml"), "--target", target),
    }
    out = {}
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        for name, (proc, scratch) in started.items():
            try:
                stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate(timeout=10)
            print(f"--- {name} (exit {proc.returncode})\n{stdout}{stderr[-3000:]}")
            doc = json.loads((tmp / f"{name}.json").read_text()) if (tmp / f"{name}.json").exists() else {}
            out[name] = (proc.returncode, stdout, {j["name"]: j for j in doc.get("journeys", [])}, scratch)
    finally:
        for proc, _ in started.values():  # whatever went wrong above, no run is left behind
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    return out


def _steps(result: dict, kind: str) -> list[dict]:
    return [s for s in result["steps"] if s["kind"] == kind]


def _record(server, call_id: str, timeout: float = 10.0) -> dict:
    """The IVR's own journey record of a call, by its SIP Call-ID (baresip's call id)."""
    end = time.monotonic() + timeout
    while not (found := [r for r in server.journeys() if r["call_id"] == call_id]):
        if time.monotonic() > end:
            raise AssertionError(f"the IVR has no record of call {call_id}")
        time.sleep(0.2)
    return found[0]


def _heard_from_audio(result: dict) -> None:
    prompts = [s for s in _steps(result, "expect_prompt") if s["status"] == "passed"]
    assert prompts and all(s["evidence"]["via"] == "audio" and s["evidence"]["score"] > 0.8 for s in prompts), prompts


def test_the_open_hours_journeys_run_on_baresip_but_sip_info(runs, lines):
    open_line, _, agent_port = lines
    code, out, billing, scratch = runs["billing"]
    code2, out2, others, scratch2 = runs["escape_speech"]
    assert set(billing) == {"pay a bill with the account number",
                            "a billing question waits with music, then asks for a callback"}, out
    assert set(others) == {"key 0 reaches a person", "say appointments and leave a message"}, out2
    assert code == 1 and code2 == 0, out + out2

    # Key 0: the hand-off as the IVR asked for it, the context from baresip's SIP trace of the REFER.
    escape = others["key 0 reaches a person"]
    assert escape["passed"] and escape["setup_s"] > 0, escape
    _heard_from_audio(escape)
    [handoff] = _steps(escape, "expect_handoff")
    ev = handoff["evidence"]
    assert ev["via"] == "refer" and ev["target"] == f"sip:agents@127.0.0.1:{agent_port}", ev
    assert ev["headers"]["X-IVR-Queue"] == "general" and ev["headers"]["X-IVR-Reason"] == "escape", ev
    assert ev["context"]["queue"] == "general" and ev["context"]["reason"] == "escape", ev
    assert ev["context"]["caller"] == "+441632960001" and ev["context"]["call_id"] == escape["call_id"], ev
    record = _record(open_line, escape["call_id"])
    assert record["caller"] == "+441632960001" and record["outcome"] == "handoff", record  # the agent answered
    assert [(i["via"], i["value"]) for i in record["inputs"]] == [("dtmf", "0")], record

    # Hold music, then the callback key; the account number keyed in by RFC 4733.
    hold = billing["a billing question waits with music, then asks for a callback"]
    assert hold["passed"], hold
    _heard_from_audio(hold)
    assert _steps(hold, "expect_hold_music")[0]["evidence"]["music_s"] >= 3.0
    record = _record(open_line, hold["call_id"])
    assert [(i["via"], i["value"]) for i in record["inputs"]] == [
        ("dtmf", "1"), ("dtmf", "87654321"), ("dtmf", "2"), ("dtmf", "1")], record
    assert record["detail"] == "caller hung up", record  # the journey's `hangup`: baresip's BYE

    # Said, not keyed: the IVR recognised the audio baresip sent, then the voicemail beep was heard.
    speech = others["say appointments and leave a message"]
    assert speech["passed"], speech
    _heard_from_audio(speech)
    assert _steps(speech, "expect_voicemail")[0]["status"] == "passed"
    record = _record(open_line, speech["call_id"])
    assert record["inputs"][0]["via"] == "speech" and record["inputs"][0]["value"].startswith("appointment"), record

    # The prompt ids were confirmed by the engine's events too.
    assert any(s["evidence"].get("event") for s in _steps(escape, "expect_prompt"))

    # "pay a bill": everything up to SIP INFO works, and that step fails saying why.
    pay = billing["pay a bill with the account number"]
    statuses = [s["status"] for s in pay["steps"]]
    assert statuses == ["passed"] * 6 + ["failed"] + ["skipped"] * 3, pay
    failed = pay["steps"][6]
    assert failed["kind"] == "press" and failed["evidence"] == {"driver": "baresip"}, failed
    assert failed["detail"] == "the baresip driver cannot send keys as info (it can: rfc4733, inband)", failed
    assert [(i["via"], i["value"]) for i in _record(open_line, pay["call_id"])["inputs"]] == [
        ("dtmf", "1"), ("dtmf", "12345678")]

    # Every call's baresip process and files are gone.
    assert not any(scratch.iterdir()) and not any(scratch2.iterdir())


def test_after_hours_the_ivr_reads_back_the_caller_id_baresip_called_from(runs, lines):
    _, closed_line, _ = lines
    code, out, results, scratch = runs["after_hours"]
    assert code == 0 and list(results) == ["after hours a caller asks to be called back"], out
    [result] = results.values()
    assert result["passed"], result
    _heard_from_audio(result)  # "We can call you back on plus 4 4 1 6 3 2 9 6 0 0 0 5" ...
    assert _record(closed_line, result["call_id"])["caller"] == "+441632960005"
    assert not any(scratch.iterdir())


def test_what_baresip_cannot_do_fails_with_the_drivers_reason(runs):
    code, out, results, scratch = runs["cannot"]
    assert code == 1, out
    info = results["keys as SIP INFO"]
    assert info["call_id"] and not info["passed"], info  # the call was answered; the step could not be done
    assert info["steps"][0]["status"] == "failed" and info["steps"][0]["evidence"] == {"driver": "baresip"}
    assert "FAIL keys as SIP INFO: step 1 press 1 (info)" in out
    assert "the baresip driver cannot send keys as info (it can: rfc4733, inband)" in out
    headers = results["headers on the call"]
    assert not headers["call_id"] and "cannot add headers to the call" in headers["error"], headers
    no_te = results["no telephone-event"]
    assert not no_te["call_id"] and "cannot dial without telephone-event" in no_te["error"], no_te
    assert not any(scratch.iterdir())


def test_tones_and_speech_are_sent_by_the_time_press_and_say_return(lines, tmp_path, monkeypatch):
    open_line, _, _ = lines
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    phrase = "Thank you, goodbye."

    async def call() -> dict:
        phone = BaresipPhone()
        await phone.start()
        try:
            line = await phone.call(f"sip:ivr@127.0.0.1:{open_line.sip_port}", caller="+441632960010")
            async with asyncio.timeout(15):
                while len(line.heard) < 16000:  # a second of the welcome: the call is up both ways
                    await line.wait_change(0.5)
            [enc] = line.proc.rec_dir.glob("dump-*-enc.wav")  # what baresip sent, as it sent it
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            method = await line.press("159", "inband", duration=0.15, gap=0.2)
            pressed_s, after_keys = loop.time() - t0, read_growing_wav(enc)
            await line.say(phrase, "en-US")
            after_say = read_growing_wav(enc)
            await line.hangup()
            return {"line": line, "method": method, "pressed_s": pressed_s, "after_keys": after_keys,
                    "after_say": after_say, "left": sorted(p.name for p in tmp_path.iterdir())}
        finally:
            await phone.close()

    got = asyncio.run(call())
    line = got["line"]
    assert got["method"] == "inband" and got["pressed_s"] >= 3 * 0.15 + 2 * 0.2
    assert "".join(InbandDtmfDetector().push(got["after_keys"])) == "159"
    assert find_pieces(got["after_say"], render_prompt(phrase, "en-US")).score > 0.8
    # We hung up: the line ended, but not by the IVR; baresip was reaped and its call's files removed.
    assert line.ended and not line.hung_up.is_set() and line.proc.proc.returncode is not None
    assert [n for n in got["left"] if not n.startswith("ivr-baresip-")] == [] and not line.proc.workdir.exists()
    assert not any(tmp_path.iterdir())  # and the phone's own files on close
    record = _record(open_line, line.call_id)
    assert record["caller"] == "+441632960010" and record["detail"] == "caller hung up", record


def test_the_recording_is_read_as_it_grows_and_control_messages_across_reads(tmp_path):
    """What the driver relies on, without a phone: sndfile's header has no sizes while it writes,
    and a read may end anywhere in a frame; netstrings may come split or several at once."""
    pcm = bytes(range(256)) * 10  # 2560 bytes: 8 frames of 20 ms
    path = tmp_path / "dump-dec.wav"
    header = bytearray(write_wav(path, b"").read_bytes())
    header[4:8] = header[40:44] = bytes(4)  # the sizes are not filled in while sndfile writes
    path.write_bytes(header)
    wav, got = GrowingWav(path), []
    for i in range(0, len(pcm), 500):
        with path.open("ab") as f:
            f.write(pcm[i:i + 500])
        got.append(wav.read())
    wav.close()
    assert all(len(chunk) % 320 == 0 for chunk in got) and b"".join(got) == pcm
    frames = NetstringReader()
    stream = netstring(b'{"response":true}') + netstring(b'{"event":true,"type":"CALL_CLOSED"}')
    assert [m for i in range(0, len(stream), 7) for m in frames.feed(stream[i:i + 7])] == [
        b'{"response":true}', b'{"event":true,"type":"CALL_CLOSED"}']
    with pytest.raises(ValueError):
        NetstringReader().feed(b"HTTP/1.1 400 Bad Request\r\n")
