"""The testers' harness (`ivr test`) over real calls on 127.0.0.1.

- The repository's journeys (journeys/) against `ivr serve` on flows.yaml, with
  the engine's events read too: every journey passes, and the reports (JUnit,
  HTML, JSON, coverage on the flow's picture) say so. The line's hours are
  fixed open or closed in a copy of the flow, so the journeys for both run
  whatever the time of day.
- A journey expecting a prompt the IVR never plays fails at that step, and
  the report keeps the audio of the failed step.
- Black box: a SIPp phone that is no IVR of ours plays a known prompt; the
  harness recognises it from the audio alone, and does not "recognise" a
  prompt that was not played.
- Load mode: calls in parallel at a rate, with the summary's percentiles.
- The pytest fixture runs a journey from a test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import wave
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ivr.audio.g711 import PCMU
from ivr.sip.pcap import UdpDatagram

from .conftest import ROOT, free_media_port, free_port, need, stop_server, with_media

TOKEN = "harness-token"
IVR = Path(sys.executable).parent / "ivr"


def flow_variant(tmp: Path, hours: str) -> Path:
    """flows.yaml with its line always open or always closed (beside a link to media/)."""
    flow = with_media(tmp, ROOT / "flows.yaml")
    text = flow.read_text()
    if hours == "open":
        text = text.replace('mon-fri: "08:00-20:00"', 'mon-sun: "00:00-23:59"')
        text = text.replace("closed: [2026-12-25, 2026-12-26, 2027-01-01]", "closed: []")
    else:
        text = text.replace('- when: open("office")', '- when: open("office") and false')
    assert text != flow.read_text()
    flow.write_text(text)
    return flow


def ivr_test(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    cmd = [str(IVR) if IVR.exists() else sys.executable, *([] if IVR.exists() else ["-m", "ivr.cli"]), "test", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module", params=["open", "closed"])
def line(request, tmp_path_factory):
    """`ivr serve` on flows.yaml with the line open (or closed): (server, flow file, tag)."""
    from .conftest import start_server

    need("espeak-ng")
    tmp = tmp_path_factory.mktemp(f"harness-{request.param}")
    flow = flow_variant(tmp, request.param)
    server = start_server(tmp, flow, "--api-token", TOKEN, "--speech-engine", "pocketsphinx")
    yield server, flow, "open-hours" if request.param == "open" else "after-hours"
    stop_server(server)


def test_the_repository_journeys_pass_against_ivr_serve_with_reports_and_coverage(line, tmp_path):
    server, flow, tag = line
    out = tmp_path / "out"
    proc = ivr_test("journeys", "-k", tag, "--target", f"sip:ivr@127.0.0.1:{server.sip_port}",
                    "--events", f"http://127.0.0.1:{server.http_port}", "--api-token", TOKEN,
                    "--junit", str(out / "junit.xml"), "--html", str(out / "report.html"),
                    "--json", str(out / "results.json"), "--coverage", str(flow))
    print(proc.stdout[-3000:], proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "results.json").read_text())
    journeys = doc["journeys"]
    assert journeys and all(j["passed"] for j in journeys)
    assert all(tag in j["tags"] for j in journeys)
    suite = ET.parse(out / "junit.xml").getroot()
    assert int(suite.get("tests")) == len(journeys) and int(suite.get("failures")) == 0
    # Prompts were recognised from the audio (black box), and the engine's events were read too.
    prompts = [s for j in journeys for s in j["steps"] if s["kind"] == "expect_prompt"]
    assert prompts and all(s["evidence"]["via"] in ("audio", "transcript") for s in prompts), prompts
    assert all(j["nodes"] for j in journeys)
    cov = doc["coverage"]
    assert cov["nodes_hit"] >= 3 and cov["nodes_hit"] < cov["nodes_total"]
    html = (out / "report.html").read_text()
    assert "<svg" in html and journeys[0]["name"] in html
    if tag == "open-hours":
        assert any(s["evidence"].get("event") for s in prompts)  # a prompt id confirmed by the engine
        handoffs = [s for j in journeys for s in j["steps"] if s["kind"] == "expect_handoff"]
        assert handoffs and all(s["evidence"]["via"] == "refer" for s in handoffs)
        assert "12345678" in json.dumps(handoffs)  # the account number went to the agents
        assert any(s["kind"] == "expect_voicemail" and s["status"] == "passed" for j in journeys for s in j["steps"])


def test_a_prompt_the_ivr_never_plays_fails_its_step_and_keeps_the_audio(line, tmp_path):
    server, _flow, tag = line
    if tag != "open-hours":
        pytest.skip("one line is enough for this")
    journey = tmp_path / "wrong.yaml"
    journey.write_text(
        "journey: the wrong company\n"
        "language: en-GB\n"
        "steps:\n"
        "  - expect_prompt: {text: \"Welcome to Globex Corporation, the world's finest widgets.\", within: 6s}\n"
        "  - hangup\n")
    out = tmp_path / "out"
    proc = ivr_test(str(journey), "--target", f"sip:ivr@127.0.0.1:{server.sip_port}",
                    "--junit", str(out / "junit.xml"), "--html", str(out / "report.html"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL the wrong company: step 1 expect prompt" in proc.stdout
    assert f"{journey}:4" in proc.stdout  # where the step is written
    failure = ET.parse(out / "junit.xml").getroot().find(".//failure")
    assert failure is not None and "not heard within 6 s" in failure.get("message")
    assert "data:audio/wav;base64," in (out / "report.html").read_text()


def test_load_mode_runs_calls_in_parallel_and_summarises(line, tmp_path):
    server, _flow, tag = line
    if tag != "open-hours":
        pytest.skip("one line is enough for this")
    proc = ivr_test("journeys/escape.yaml", "--target", f"sip:ivr@127.0.0.1:{server.sip_port}",
                    "--load", "6", "--rate", "3", "--json", str(tmp_path / "load.json"))
    print(proc.stdout, proc.stderr[-1500:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 journeys: 6 passed, 0 failed" in proc.stdout
    assert "latency p50" in proc.stdout and "setup p50" in proc.stdout
    results = json.loads((tmp_path / "load.json").read_text())["journeys"]
    calls = {r["call_id"] for r in results}
    assert len(calls) == 6  # six distinct calls
    assert max(r["duration_s"] for r in results) > 2.0  # each call lasted long enough to overlap others
    # The rough audio figure: clean loopback G.711 speech scores near the codec's ceiling.
    assert "audio MOS~ mean" in proc.stdout
    assert all(r["heard_s"] > 3 and 3.8 <= r["mos"] <= 4.4 for r in results), [(r["heard_s"], r["mos"]) for r in results]


TONES = """\
journey: key 0 as a tone on a call without telephone-event
language: en-GB
steps:
  - dial: {telephone_event: false}
  - expect_prompt: {text: "For billing and payments, press 1 or say billing.", within: 20s}
  - press: {keys: "0", method: inband}
  - expect_prompt: "Connecting you to an adviser."
  - expect_handoff: {queue: general, reason: escape}
"""


def tones_heard(server) -> float:
    """How many keys the engine has heard as in-band tones (its metrics page)."""
    m = re.search(r'^ivr_sip_dtmf_received_total\{via="inband"\} ([0-9.]+)$', server.http("/metrics"), re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def test_keys_as_in_band_tones_reach_the_ivr(line, tmp_path):
    """Offering no telephone-event, the harness's tones are the only way the key can arrive."""
    server, _flow, tag = line
    if tag != "open-hours":
        pytest.skip("one line is enough for this")
    (tmp_path / "tones.yaml").write_text(TONES)
    before = tones_heard(server)
    proc = ivr_test(str(tmp_path / "tones.yaml"), "--target", f"sip:ivr@127.0.0.1:{server.sip_port}",
                    "--json", str(tmp_path / "tones.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [result] = json.loads((tmp_path / "tones.json").read_text())["journeys"]
    press = next(s for s in result["steps"] if s["kind"] == "press")
    assert press["detail"] == "pressed 0 (inband)"
    end = time.monotonic() + 30
    while not (mine := [j for j in server.journeys() if j["call_id"] == result["call_id"]]):
        assert time.monotonic() < end, "the engine wrote no journey for the call"
        time.sleep(0.2)
    assert [(i["via"], i["value"]) for i in mine[0]["inputs"]] == [("dtmf", "0")]
    assert tones_heard(server) == before + 1  # and it came as a tone: the engine counts how keys arrive


def test_the_pytest_fixture_runs_a_journey(line, ivr_harness):
    server, _flow, tag = line
    if tag != "open-hours":
        pytest.skip("one line is enough for this")
    [result] = ivr_harness.run(ROOT / "journeys" / "escape.yaml", target=f"sip:ivr@127.0.0.1:{server.sip_port}")
    assert result.passed, ivr_harness.explain(result)
    assert [s.status for s in result.steps] == ["passed"] * len(result.steps)


# ---- black box: an IVR that is not ours ------------------------------------------------------

KNOWN = "Thank you for calling the test line. Your call matters to us."
DECOY = "Our offices are closed for the holidays. Please call again tomorrow."


def _write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)


def _ethernet_pcap(path: Path, pcm: bytes) -> None:
    """The prompt as PCMU RTP in an Ethernet pcap (what SIPp's play_pcap_audio reads)."""
    import struct

    frames = [pcm[i:i + 320] for i in range(0, len(pcm) - 319, 320)]
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for n, f in enumerate(frames):
        rtp = struct.pack("!BBHII", 0x80, 0x80 if n == 0 else 0, n, n * 160, 0x1234) + PCMU.encode(f)
        d = UdpDatagram(n * 0.02, ("127.0.0.1", 6000), ("127.0.0.1", 6002), rtp)
        udp = struct.pack("!HHHH", d.src[1], d.dst[1], 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        sec, usec = divmod(round(d.time * 1e6), 1_000_000)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def test_black_box_a_sipp_phone_playing_a_known_prompt_is_recognised_by_its_audio(tmp_path):
    from ivr.harness.listen import render_prompt

    need("espeak-ng")
    sipp = need("sipp")
    known, decoy = render_prompt(KNOWN, "en-GB"), render_prompt(DECOY, "en-GB")
    assert len(known) / 16000 < 5.5  # it fits in the scenario's 6 s before its BYE
    _ethernet_pcap(tmp_path / "prompt.pcap", known)
    _write_wav(tmp_path / "known.wav", known)
    _write_wav(tmp_path / "decoy.wav", decoy)
    (tmp_path / "phone.yaml").write_text(
        "journeys:\n"
        "  - journey: the known prompt\n"
        "    steps:\n"
        "      - expect_prompt: {wav: known.wav, within: 8s}\n"
        "      - expect_hangup\n"
        "  - journey: a prompt it never plays\n"
        "    steps:\n"
        "      - expect_prompt: {wav: decoy.wav, match: audio, within: 8s}\n"
        "      - hangup\n")
    port = free_port()
    phone = subprocess.Popen([sipp, "-sf", str(ROOT / "tests/interop/scenarios/uas_known_prompt.xml"),
                              "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_media_port()), "-m", "2",
                              "-nostdin", "-timeout", "60s", "-trace_err", "-error_file",
                              str(tmp_path / "sipp.errors")],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc = ivr_test(str(tmp_path / "phone.yaml"), "--target", f"sip:prompt@127.0.0.1:{port}",
                        "--json", str(tmp_path / "r.json"), timeout=120)
    finally:
        phone.kill()
        phone.wait(5)
    print(proc.stdout, proc.stderr[-2000:])
    results = {r["name"]: r for r in json.loads((tmp_path / "r.json").read_text())["journeys"]}
    ok, wrong = results["the known prompt"], results["a prompt it never plays"]
    assert ok["passed"], ok
    heard = ok["steps"][0]["evidence"]
    assert heard["via"] == "audio" and heard["score"] > 0.8, heard  # from the audio alone
    assert ok["steps"][1]["status"] == "passed"  # and the phone's BYE
    assert not wrong["passed"] and wrong["steps"][0]["status"] == "failed"
    assert proc.returncode == 1  # one of the two failed, as it should
