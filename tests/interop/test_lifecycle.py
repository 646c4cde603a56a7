"""The server's life around its calls: draining on SIGTERM, reloading the flows, health and
metrics, and the soft capacity's overflow path, all against a real `ivr serve`."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

from .conftest import HERE, Server
from .sipclient import Call, Peer

FLOWS = HERE / "flows" / "menu.yaml"
OVERFLOW = HERE / "flows" / "overflow.yaml"
KEY_2 = "      - key: 2\n        goto: goodbye\n"


def _bye_from_server(call: Call, timeout: float = 15.0) -> None:
    bye = call.peer.recv(lambda m: m.method == "BYE" and call.call_id in (m.get("Call-ID") or ""), timeout)
    call.answer_request(bye)


def _health(server: Server) -> dict:
    return json.loads(server.http("/healthz"))


def _wait(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _press_2_and_finish(call: Call) -> None:
    assert call.info("2").status == 200
    _bye_from_server(call)


def _edited_flow(text: str) -> str:
    """The menu with key 2 leading to a new node, `farewell`."""
    assert KEY_2 in text
    return text.replace(KEY_2, KEY_2.replace("goodbye", "farewell")) + (
        "  farewell:\n    kind: hangup\n    prompt: \"See you soon.\"\n")


def _replace_keeping_mtime(path: Path, text: str) -> None:
    """New content under the old modification time, so only SIGHUP can make the server look."""
    st = path.stat()
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


def test_sigterm_drains(serve):
    """New calls get 503 while the call in progress runs to its end; then the process exits 0."""
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    running, late = Call(peer), Call(peer)
    try:
        running.start()
        server.proc.send_signal(signal.SIGTERM)
        _wait(lambda: _health(server)["status"] == "draining", what="draining")
        assert _health(server)["active_calls"] == 1
        late.send_invite()
        refused = late.final()
        assert refused.status == 503 and refused.get("Retry-After"), refused.first
        assert server.proc.poll() is None  # still serving the call in progress
        _press_2_and_finish(running)
        assert server.proc.wait(10) == 0
        (journey,) = server.journeys()
        assert journey["call_id"] == running.call_id and journey["path"] == ["main_menu", "goodbye"]
        assert "drained: 0 call(s) left" in server.log.read_text()
    finally:
        running.close()
        late.close()
        peer.close()


def test_reload_applies_to_new_calls_only(serve, tmp_path):
    flows = tmp_path / "flows.yaml"
    shutil.copy(FLOWS, flows)
    server = serve(flows)
    first_version = _health(server)["flow_version"]
    peer = Peer(server.sip_port)
    old, new = Call(peer), Call(peer)
    try:
        old.start()  # in the menu of the first version
        flows.write_text(_edited_flow(flows.read_text()))
        _wait(lambda: _health(server)["flow_version"] != first_version, 5.0, "the reload")
        new.start()
        _press_2_and_finish(new)
        _press_2_and_finish(old)
        journeys = {j["call_id"]: j for j in server.wait_journeys(2)}
        assert journeys[new.call_id]["path"] == ["main_menu", "farewell"]
        assert journeys[old.call_id]["path"] == ["main_menu", "goodbye"]
        assert journeys[old.call_id]["flow_version"] == first_version
        assert journeys[new.call_id]["flow_version"] == _health(server)["flow_version"]
    finally:
        old.close()
        new.close()
        peer.close()


def test_invalid_edit_is_refused_and_sighup_reloads(serve, tmp_path):
    flows = tmp_path / "flows.yaml"
    shutil.copy(FLOWS, flows)
    server = serve(flows)
    version = _health(server)["flow_version"]
    peer = Peer(server.sip_port)
    try:
        # A broken edit: key 2 leads nowhere. Refused with the validator's file:line:col message.
        flows.write_text(flows.read_text().replace(KEY_2, KEY_2.replace("goodbye", "nowhere")))
        pattern = re.compile(re.escape(str(flows)) + r":16:15: error: .*'nowhere'.*\[missing-target\]")
        _wait(lambda: pattern.search(server.log.read_text()) is not None, 5.0, "the validator's error in the log")
        assert "flows not reloaded: 1 error(s); still running version " + version in server.log.read_text()
        assert _health(server)["flow_version"] == version
        assert "ivr_flow_reload_failures_total 1" in server.http("/metrics")
        call = Call(peer)
        call.start()
        _press_2_and_finish(call)  # the old version still answers
        assert server.wait_journeys(1)[0]["path"] == ["main_menu", "goodbye"]
        call.close()

        # A valid edit the file watcher cannot see (same modification time): SIGHUP loads it.
        _replace_keeping_mtime(flows, _edited_flow(FLOWS.read_text()))
        time.sleep(1.2)  # a watch period passes: nothing changes by itself
        assert _health(server)["flow_version"] == version
        server.proc.send_signal(signal.SIGHUP)
        _wait(lambda: _health(server)["flow_version"] != version, 5.0, "the SIGHUP reload")
        call = Call(peer)
        call.start()
        _press_2_and_finish(call)
        assert server.wait_journeys(2)[1]["path"] == ["main_menu", "farewell"]
        call.close()
    finally:
        peer.close()


PROM_LINE = re.compile(r'^(# (HELP|TYPE) \w+ .+|\w+(\{(\w+="[^"]*",?)+\})? -?[0-9.e+-]+)$')


def test_healthz_and_metrics_after_calls(serve):
    server = serve(FLOWS)
    peer = Peer(server.sip_port)
    try:
        pressed, left = Call(peer), Call(peer)
        pressed.start()
        _press_2_and_finish(pressed)
        left.start()
        time.sleep(0.3)
        assert left.bye().status == 200
        server.wait_journeys(2)
        health = _health(server)
        assert health["status"] == "ok" and health["active_calls"] == 0
        assert re.fullmatch(r"[0-9a-f]{12}", health["flow_version"])
        text = server.http("/metrics")
        assert all(PROM_LINE.match(line) for line in text.splitlines()), \
            [line for line in text.splitlines() if not PROM_LINE.match(line)]
        samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
        assert samples["ivr_active_calls"] == "0"
        assert samples['ivr_calls_total{outcome="hangup"}'] == "1"
        assert samples['ivr_calls_total{outcome="abandoned"}'] == "1"
        assert samples['ivr_node_visits_total{kind="menu",node="main_menu"}'] == "2"
        assert samples['ivr_node_visits_total{kind="hangup",node="goodbye"}'] == "1"
        assert samples['ivr_dtmf_inputs_total{result="option"}'] == "1"
        assert samples['ivr_sip_dtmf_received_total{via="info"}'] == "1"
        assert "# TYPE ivr_speech_inputs_total counter" in text  # listed before any speech input
        assert "ivr_sip_errors_total" in samples and "ivr_sip_malformed_total" in samples
        assert 0 <= float(samples["ivr_rtp_send_lateness_p99_seconds"]) < 0.05
        assert float(samples["ivr_rtp_send_lateness_p50_seconds"]) <= \
            float(samples["ivr_rtp_send_lateness_p99_seconds"])
        pressed.close()
        left.close()
    finally:
        peer.close()


def test_soft_capacity_sends_callers_to_the_overflow_path(serve):
    """With --soft-capacity 1 the second caller starts at the flow's overflow node, and its
    hand-off says why; the first caller is unaffected."""
    server = serve(OVERFLOW, "--soft-capacity", "1")
    peer = Peer(server.sip_port)
    first, second = Call(peer), Call(peer)
    try:
        first.start()
        second.start()
        refer = peer.recv(lambda m: m.method == "REFER" and second.call_id in (m.get("Call-ID") or ""), 15)
        assert refer.get("X-IVR-Reason") == "overflow"
        second.answer_request(refer, 202, "Accepted")
        second.in_dialog("NOTIFY", "SIP/2.0 200 OK\r\n", "message/sipfrag;version=2.0",
                         ["Event: refer", "Subscription-State: terminated;reason=noresource"])
        assert second.final("NOTIFY").status == 200
        _bye_from_server(second)
        _press_2_and_finish(first)
        journeys = {j["call_id"]: j for j in server.wait_journeys(2)}
        over = journeys[second.call_id]
        assert over["path"] == ["busy_message", "overflow_agent"]
        assert over["outcome"] == "handoff" and over["handoff"]["reason"] == "overflow"
        assert journeys[first.call_id]["path"] == ["main_menu", "goodbye"]
        assert "ivr_calls_overflow_total 1" in server.http("/metrics")
    finally:
        first.close()
        second.close()
        peer.close()


def test_soft_capacity_without_an_overflow_path_refuses(serve):
    """A flow with no overflow node has nothing to offer beyond the soft limit: 503, as at the hard one."""
    server = serve(FLOWS, "--soft-capacity", "1")
    peer = Peer(server.sip_port)
    first, second = Call(peer), Call(peer)
    try:
        first.start()
        second.send_invite()
        refused = second.final()
        assert refused.status == 503 and refused.get("Retry-After") == "5"
        assert first.bye().status == 200
    finally:
        first.close()
        second.close()
        peer.close()


def _decoding_workers(pid: int) -> set[int]:
    """Child processes of `pid` that are speech decoding workers."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            out.add(int(entry.name))
    return out


def test_speech_decoding_processes_die_with_a_killed_server(serve):
    """A server killed outright (no drain, no shutdown) leaves no decoding process behind."""
    server = serve(HERE / "flows" / "speech.yaml", "--speech-engine", "pocketsphinx")
    workers = _decoding_workers(server.proc.pid)
    assert workers, "pocketsphinx decodes in worker processes started at load time"
    server.proc.kill()
    server.proc.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.2)
    left = [p for p in workers if Path(f"/proc/{p}").exists()]
    assert not left, f"decoding processes {left} outlived their server"
