"""Callbacks kept over real calls: booked by a SIPp caller, stored, the server
restarted, then dialled through the trunk to a SIPp phone at the scheduled time
and handed to the agents with the stored context; a busy phone is retried."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from pathlib import Path

from ivr.services.router import decode_context

from .conftest import HERE, logged, sipp_phone, start_server, stop_server
from .test_sipp import _errors, run_sipp
from .test_voicemail import TOKEN


def flow_file(tmp: Path, dial_after: str, attempts: int) -> Path:
    text = (HERE / "flows" / "callback.yaml").read_text()
    path = tmp / "callback.yaml"
    path.write_text(text.replace("DIAL_AFTER", dial_after).replace("ATTEMPTS", str(attempts)))
    return path


def callbacks(server) -> list[dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/api/callbacks",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def book(tmp: Path, flows: Path) -> dict:
    """A caller confirms a callback to their own number; the server is then stopped."""
    server = start_server(tmp, flows, "--api-token", TOKEN)
    try:
        proc = run_sipp(tmp, "uac_key_after_pause.xml", server.sip_port, digit="1", pause_ms="3000", timeout=60)
        assert proc.returncode == 0, _errors(tmp)
        [journey] = server.wait_journeys(1)
        assert journey["outcome"] == "callback"
        [row] = callbacks(server)
    finally:
        stop_server(server)
    assert row["status"] == "pending" and row["id"] == journey["callback"]["id"]
    return row


def test_a_stored_callback_survives_a_restart_and_is_kept_on_time(tmp_path):
    flows = flow_file(tmp_path, "12s", 3)
    row = book(tmp_path, flows)
    scheduled = row["dial_at"]
    assert scheduled - dt.datetime.fromisoformat(row["created_at"]).timestamp() >= 11
    callee, port = sipp_phone(tmp_path, "uas_callback_refer.xml", calls=1, timeout=90)
    server = start_server(tmp_path, flows, "--api-token", TOKEN, "--trunk", f"sip:{{number}}@127.0.0.1:{port}")
    try:
        assert callee.wait(80) == 0, (tmp_path / "uas_callback_refer.xml.errors").read_text()[-2000:] \
            if (tmp_path / "uas_callback_refer.xml.errors").exists() else "sipp failed"
        deadline = time.monotonic() + 10
        while (got := callbacks(server)[0])["status"] != "done":
            assert time.monotonic() < deadline, got
            time.sleep(0.2)
    finally:
        stop_server(server)
        if callee.poll() is None:
            callee.kill()
    assert got["attempts"] == 1 and got["last_result"].startswith("answered")
    # Not before its time: the request was updated (dialled) after the scheduled moment.
    assert dt.datetime.fromisoformat(got["updated_at"]).timestamp() >= int(scheduled)
    # The number dialled is the caller's own, and the agents get the context stored when they asked.
    [invited] = logged(tmp_path, "uas_callback_refer.xml", "INVITE ")
    assert row["number"].lstrip("+") in invited
    [ctx] = logged(tmp_path, "uas_callback_refer.xml", "CONTEXT ")
    payload = decode_context(ctx)
    assert payload["reason"] == "callback" and payload["queue"] == "billing"
    assert payload["variables"] == {"brand": "Acme Energy", "account": "12345678"}
    assert payload["callback"]["id"] == row["id"] and payload["call_id"] == row["call_id"]
    assert payload["path"] == ["offer"]


def test_a_busy_phone_is_tried_again_per_the_policy(tmp_path):
    flows = flow_file(tmp_path, "0s", 2)
    row = book(tmp_path, flows)
    callee, port = sipp_phone(tmp_path, "uas_busy.xml", calls=2, timeout=60)
    server = start_server(tmp_path, flows, "--api-token", TOKEN, "--trunk", f"sip:{{number}}@127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 40
        while (got := callbacks(server)[0])["status"] != "failed":
            assert time.monotonic() < deadline, got
            time.sleep(0.2)
        assert callee.wait(20) == 0
    finally:
        stop_server(server)
        if callee.poll() is None:
            callee.kill()
    assert got["id"] == row["id"] and got["attempts"] == 2 and "486" in got["last_result"]
    first, second = (int(t) for t in logged(tmp_path, "uas_busy.xml", "INVITE at "))  # ms on SIPp's clock
    assert second - first >= 9_500  # retry_after: 10s
