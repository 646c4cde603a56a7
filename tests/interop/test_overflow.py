"""Over the soft capacity, a new caller hears a short message and books a callback,
instead of waiting, hearing a busy tone or silence (real SIPp calls)."""

from __future__ import annotations

import json
import time
import urllib.request

from .conftest import HERE, with_media
from .test_sipp import _errors, run_sipp
from .test_voicemail import TOKEN, _sipp_in_background


def test_over_the_soft_capacity_a_caller_is_offered_a_callback(serve, tmp_path):
    server = serve(with_media(tmp_path, HERE / "flows" / "overflow_callback.yaml"), "--soft-capacity", "1", "--api-token", TOKEN)
    holder = _sipp_in_background(tmp_path, server.sip_port)  # the first caller waits on hold
    try:
        deadline = time.monotonic() + 15
        while "ivr_active_calls 1" not in server.http("/metrics"):
            assert time.monotonic() < deadline, "the first call never started"
            time.sleep(0.1)
        # The second caller hears "We are very busy right now." and the callback offer for
        # their own number, and presses 1 to confirm it.
        proc = run_sipp(tmp_path, "uac_key_after_pause.xml", server.sip_port, digit="1", pause_ms="6000",
                        timeout=60)
        assert proc.returncode == 0, _errors(tmp_path)
    finally:
        holder.kill()
        holder.wait(10)
    [journey] = [j for j in server.wait_journeys(1) if j["path"][0] == "busy"]
    assert journey["path"] == ["busy", "offer"] and journey["outcome"] == "callback"
    assert [p["text"] for p in journey["prompts"]][0] == "We are very busy right now."
    req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/api/callbacks",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        [row] = json.loads(r.read())
    assert row["status"] == "pending" and row["number"].startswith("+4416329600")
    assert row["context"]["reason"] == "overflow" and row["queue"] == "general"
    assert row["id"] == journey["callback"]["id"]
    assert "ivr_calls_overflow_total 1" in server.http("/metrics")
