"""Voicemail over real calls: SIPp callers race for a box's last places, the server is
killed mid-message, and the admin API lists, plays and deletes what was kept."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from ivr.audio import g711

from .audio_match import find, line_prompt, pcm_array
from .conftest import HERE, free_media_port, free_port, need, start_server, stop_server
from .sipclient import Call, Peer, Rtp
from .test_moh import Recorder, _press, _wait_bye
from .test_sipp import _errors, run_sipp

TOKEN = "interop-token"


def flow_file(tmp: Path, notify: str, max_length: str = "4s", max_messages: int = 5) -> Path:
    text = (HERE / "flows" / "voicemail.yaml").read_text()
    text = text.replace("NOTIFY_URL", notify).replace("MAX_LENGTH", max_length)
    text = text.replace("max_messages: 5", f"max_messages: {max_messages}")
    path = tmp / "voicemail.yaml"
    path.write_text(text)
    return path


def api(server, path: str, method: str = "GET", token: str | None = TOKEN):
    req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=5) as r:
        body = r.read()
        return json.loads(body) if r.headers.get_content_type() == "application/json" else body


class Hooks:
    """A webhook receiver on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the standard library's name
                n = int(self.headers.get("Content-Length", 0))
                hooks.events.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def wav_files(server) -> list[Path]:
    return sorted((server.data / "voicemail").glob("*/*.wav"))


def test_thirty_callers_race_for_five_places(serve, tmp_path):
    hooks = Hooks()
    try:
        server = serve(flow_file(tmp_path, hooks.url), "--api-token", TOKEN)
        proc = run_sipp(tmp_path, "uac_audio_until_bye.xml", server.sip_port, calls=30, limit=30, rate=30,
                        timeout=90, bye_ms="60000")
        assert proc.returncode == 0, proc.stdout[-2000:] + _errors(tmp_path)
        journeys = server.wait_journeys(30)
        saved = [j for j in journeys if j["outcome"] == "voicemail"]
        refused = [j for j in journeys if j["outcome"] != "voicemail"]
        assert len(saved) == 5, [j["outcome"] for j in journeys]
        for j in refused:
            # Never offered: no greeting, no beep; straight to the alternative.
            assert j["path"][:2] == ["leave_message", "mailbox_full"], j["path"]
            heard = [p.get("text") or p.get("id") for p in j["prompts"]]
            assert "Leave a message." not in heard and "tone:beep" not in heard
            assert any(n["what"] == "mailbox-full" for n in j["notes"])
        # Every message is real audio of the caller's recording, and disk and database agree.
        messages = api(server, "/api/mailboxes/race/messages")
        files = wav_files(server)
        assert len(messages) == 5 and len(files) == 5
        assert {server.data / "voicemail" / m["file"] for m in messages} == set(files)
        for f in files:
            with wave.open(str(f)) as w:
                assert w.getframerate() == 8000 and w.getnframes() > 8000  # over a second of audio
        [box] = api(server, "/api/mailboxes")
        assert (box["name"], box["messages"], box["held"], box["fill"]) == ("race", 5, 0, 1.0)
        assert {m["call_id"] for m in messages} == {j["call_id"] for j in saved}
        # The operators were told as the box filled: at 80 % (4 of 5) and when full.
        deadline = time.monotonic() + 10
        while len(hooks.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        # (Each is its own POST: they may arrive in either order.)
        assert sorted((e["event"], e["messages"]) for e in hooks.events) == [("mailbox-80-percent", 4),
                                                                             ("mailbox-full", 5)]
        assert "mailbox race is full" in server.log.read_text()
    finally:
        hooks.close()


def test_the_api_needs_its_token_and_plays_and_deletes(serve, tmp_path):
    server = serve(flow_file(tmp_path, "http://127.0.0.1:9/unused", max_messages=2), "--api-token", TOKEN)
    proc = run_sipp(tmp_path, "uac_audio_until_bye.xml", server.sip_port, calls=1, timeout=60, bye_ms="30000")
    assert proc.returncode == 0, _errors(tmp_path)
    server.wait_journeys(1)
    for token in (None, "wrong"):
        try:
            api(server, "/api/mailboxes", token=token)
            raise AssertionError("the API answered without the right token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    [msg] = api(server, "/api/mailboxes/race/messages")
    assert msg["caller"].startswith("+4416329600") and not msg["heard"]
    audio = api(server, f"/api/messages/{msg['id']}/audio")
    assert audio[:4] == b"RIFF" and len(audio) > 16000
    assert api(server, f"/api/messages/{msg['id']}")["heard"]
    page = urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/voicemail", timeout=5).read().decode()
    assert "/api/mailboxes" in page
    assert api(server, f"/api/messages/{msg['id']}", method="DELETE") == {"deleted": True}
    assert api(server, "/api/mailboxes/race/messages") == [] and wav_files(server) == []


def test_kill_during_a_recording_leaves_no_partial_message(tmp_path):
    flows = flow_file(tmp_path, "http://127.0.0.1:9/unused", max_length="30s", max_messages=1)
    server = start_server(tmp_path, flows, "--api-token", TOKEN)
    sipp = None
    try:
        sipp = _sipp_in_background(tmp_path, server.sip_port)
        # Wait until the caller holds the only place and is being recorded.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            boxes = api(server, "/api/mailboxes")
            if boxes and boxes[0]["held"] == 1:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the caller never reached the recording")
        time.sleep(3.5)  # greeting, beep, then seconds of message
        server.proc.kill()  # kill -9: no clean-up code runs
        server.proc.wait(10)
    finally:
        if sipp is not None:
            sipp.kill()
            sipp.wait(10)
    # The killed run left its place held in the database, and no message.
    db = sqlite3.connect(server.data / "voicemail" / "voicemail.db")
    try:
        assert db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 1
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    finally:
        db.close()
    again = start_server(tmp_path, flows, "--api-token", TOKEN)
    try:
        [box] = api(again, "/api/mailboxes")
        assert (box["messages"], box["held"]) == (0, 0)  # no partial message, the place is back
        assert wav_files(again) == [] and not list((again.data / "voicemail").glob("*/.*.part"))
        assert "swept after restart: {'reservations': 1" in again.log.read_text()
        # Capacity is consistent: the one place is offered and kept by the next caller.
        proc = run_sipp(tmp_path, "uac_audio_until_bye.xml", again.sip_port, calls=1, timeout=60, bye_ms="45000")
        assert proc.returncode == 0, _errors(tmp_path)
        assert len(api(again, "/api/mailboxes/race/messages")) == 1 and len(wav_files(again)) == 1
    finally:
        stop_server(again)


def _sipp_in_background(tmp: Path, port: int) -> subprocess.Popen:
    from string import Template

    text = Template((HERE / "scenarios" / "uac_audio_until_bye.xml").read_text()).substitute(bye_ms="60000")
    sc = tmp / "kill.xml"
    sc.write_text(text)
    return subprocess.Popen([need("sipp"), "-sf", str(sc), "-s", "ivr", f"127.0.0.1:{port}", "-i", "127.0.0.1",
                             "-p", str(free_port()), "-mp", str(free_media_port()), "-m", "1", "-nostdin",
                             "-timeout", "60s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)


def test_review_plays_the_callers_own_message_back(serve, tmp_path):
    """A caller records, presses # and then 1: they hear their own message, sample for
    sample as it came down the line; # saves it."""
    need("espeak-ng")
    flows = flow_file(tmp_path, "http://127.0.0.1:9/unused", max_length="20s")
    flows.write_text(flows.read_text().replace("review: false", "review: true"))
    server = serve(flows, "--api-token", TOKEN)
    message = line_prompt("Please call me back about my gas bill, my number is on the account.")
    peer = Peer(server.sip_port)
    call = Call(peer)
    try:
        call.start()
        heard = Recorder(call.rtp).start()
        rtp = Rtp()
        call.send_rtp(rtp.audio(125))  # 2.5 s of silence: the greeting and the beep
        encoded = g711.ulaw_encode(message)
        call.send_rtp([rtp.packet(0, encoded[i:i + 160]) for i in range(0, len(encoded) - 159, 160)])
        call.send_rtp(rtp.audio(25))
        _press(call, rtp, "#")  # the end of the message
        time.sleep(1.5)
        _press(call, rtp, "1")  # listen (cuts the review prompt short)
        time.sleep(len(message) / 16000 + 2.5)
        _press(call, rtp, "#")  # save
        _wait_bye(call)
        heard.stop()
    finally:
        call.close()
        peer.close()
    pcm, _ = heard.timeline()
    # The message's own quiet ends are not kept (trailing silence is trimmed) nor played.
    voiced = np.flatnonzero(np.abs(pcm_array(message)) > 300)
    match = find(pcm, message[voiced[0] * 2:(voiced[-1] + 1) * 2])
    assert match.score > 0.99, match  # sample for sample when nothing is lost (about 1.0)
    [journey] = server.wait_journeys(1)
    assert [n["choice"] for n in journey["notes"] if n["what"] == "review"] == ["listen", "save"]
    assert journey["outcome"] == "voicemail" and journey["voicemail"]["ended_by"] == "key"
    [msg] = api(server, "/api/mailboxes/race/messages")
    assert abs(msg["seconds"] - len(message) / 16000) < 3.0
