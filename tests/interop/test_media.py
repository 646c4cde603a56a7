"""RTP against a real `ivr serve`: latching, RFC 4733 de-duplication, in-band DTMF, pacing."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import numpy as np

from .conftest import HERE, need
from .sipclient import Call, Peer, Rtp, parse_rtp
from .test_sipp import _errors, run_sipp

FLOWS = HERE / "flows" / "menu.yaml"


def _metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text page (0 when absent)."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name + (f"{{{inner}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def _bye_from_server(call: Call, timeout: float = 15.0) -> None:
    bye = call.peer.recv(lambda m: m.method == "BYE" and call.call_id in (m.get("Call-ID") or ""), timeout)
    call.answer_request(bye)


def test_dtmf_from_a_third_address_is_ignored(serve):
    """Latched to the caller's RTP source: a key sent to the call's port from elsewhere
    does nothing, the caller's own key counts, once however often its end packet repeats."""
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    call = Call(peer)
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind(("127.0.0.1", 0))
    try:
        call.start()
        mine, theirs = Rtp(), Rtp()
        call.send_rtp(mine.audio(5))  # the caller speaks first: the session latches to it
        call.send_rtp(theirs.dtmf("1") + theirs.audio(5) + theirs.dtmf("1"), sock=intruder)  # 1 = billing
        time.sleep(0.3)
        call.send_rtp(mine.audio(3) + mine.dtmf("2", end_repeats=3), gap=0.01)
        _bye_from_server(call)
        (journey,) = server.wait_journeys(1)
        assert journey["path"] == ["main_menu", "goodbye"], journey["path"]
        assert [i["value"] for i in journey["inputs"]] == ["2"]
        metrics = server.http("/metrics")
        assert _metric(metrics, "ivr_sip_dtmf_received_total", via="rfc4733") == 1
        assert _metric(metrics, "ivr_rtp_foreign_packets_total") >= 2 * 8 + 5  # every intruder packet
    finally:
        intruder.close()
        call.close()
        peer.close()


def test_end_packet_retransmits_make_one_key(serve):
    """RFC 4733 2.5.1.4: the end packet is sent three times; a late copy is still the same key."""
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        call.start()
        rtp = Rtp()
        call.send_rtp(rtp.audio(3))
        packets = rtp.dtmf("2", end_repeats=3)
        call.send_rtp(packets + packets[-1:] * 2, gap=0.01)  # five end packets in all
        _bye_from_server(call)
        server.wait_journeys(1)
        assert _metric(server.http("/metrics"), "ivr_sip_dtmf_received_total", via="rfc4733") == 1
    finally:
        call.close()
        peer.close()


def test_inband_tone_from_sipp_is_heard(serve, tmp_path):
    """SIPp offers PCMU only (no telephone-event) and streams a DTMF tone made with sox."""
    sox = need("sox")
    audio = tmp_path / "key2.ulaw"
    # 1 s of silence, key 2 (697 Hz + 1336 Hz) for 200 ms at a comfortable level, 1.5 s of silence.
    subprocess.run([sox, "-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "raw", str(audio),
                    "synth", "0.2", "sine", "697", "sine", "1336", "remix", "-", "gain", "-6", "pad", "1", "1.5"],
                   check=True, timeout=30)
    server = serve(FLOWS)
    proc = run_sipp(tmp_path, "uac_inband_bye.xml", server.sip_port, timeout=30, audio=str(audio))
    assert proc.returncode == 0, proc.stdout[-2000:] + _errors(tmp_path)
    (journey,) = server.wait_journeys(1)
    assert journey["path"] == ["main_menu", "goodbye"]
    metrics = server.http("/metrics")
    assert _metric(metrics, "ivr_sip_dtmf_received_total", via="inband") == 1
    assert _metric(metrics, "ivr_sip_dtmf_received_total", via="rfc4733") == 0


def test_audio_arrives_at_exactly_fifty_packets_a_second(serve):
    """Over three seconds: no gap in sequence numbers, 160 samples a packet, 50 packets/s."""
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        call.start()
        arrivals: list[float] = []
        packets = []
        call.rtp.settimeout(1.0)
        call.rtp.recv(2048)  # the stream is running
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            packets.append(parse_rtp(call.rtp.recv(2048)))
            arrivals.append(time.monotonic())
        seqs = [p[1] for p in packets]
        stamps = [p[2] for p in packets]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False)), "lost or reordered"
        assert all((b - a) & 0xFFFFFFFF == 160 for a, b in zip(stamps, stamps[1:], strict=False))
        assert {p[3] for p in packets} == {160} and {p[0] for p in packets} == {0}
        # The slope of arrival time against packet number: one late packet at either
        # end of the window (a busy machine) does not bend it as first-to-last would.
        per_packet = float(np.polyfit(np.arange(len(arrivals)), np.array(arrivals), 1)[0])
        assert 49.5 <= 1 / per_packet <= 50.5, 1 / per_packet
        assert 147 <= len(packets) <= 153, len(packets)
        assert call.bye().status == 200
    finally:
        call.close()
        peer.close()
