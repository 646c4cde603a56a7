"""SIPp calls the IVR over real UDP: RFC 2833 keys from SIPp's pcaps, REFER to the agents."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from string import Template

from .conftest import HERE, free_media_port, free_port, http_router, need

SCENARIOS = HERE / "scenarios"
FLOWS = HERE / "flows" / "menu.yaml"


def run_sipp(tmp: Path, scenario: str, port: int, *, calls: int = 1, limit: int = 1, rate: float = 10,
             timeout: float = 60, extra: tuple[str, ...] = (), **values: str) -> subprocess.CompletedProcess:
    sipp = need("sipp")
    text = Template((SCENARIOS / scenario).read_text()).substitute(values)
    sc = tmp / scenario
    sc.write_text(text)
    cmd = [sipp, "-sf", str(sc), "-s", "ivr", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
           "-mp", str(free_media_port()), "-m", str(calls), "-l", str(limit), "-r", str(rate), "-nostdin",
           "-timeout", f"{int(timeout)}s", "-trace_err", "-error_file", str(tmp / "sipp_errors.log"),
           "-trace_stat", "-stf", str(tmp / "sipp_stats.csv"), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30, cwd=tmp)
    return proc


def _errors(tmp: Path) -> str:
    p = tmp / "sipp_errors.log"
    return p.read_text()[-3000:] if p.exists() else ""


def test_key_0_escapes_with_a_refer_to_the_agents(serve, tmp_path):
    """The default flow, at whatever hour: 0 reaches a person, by REFER with the context."""
    server = serve()
    proc = run_sipp(tmp_path, "uac_dtmf_refer.xml", server.sip_port, digit="0",
                    agents="sip:agents@127.0.0.1:5070", reason="escape", queue="general|out_of_hours")
    assert proc.returncode == 0, proc.stdout[-2000:] + _errors(tmp_path)
    (journey,) = server.wait_journeys(1)
    assert journey["outcome"] == "handoff"
    assert journey["handoff"]["reason"] == "escape"
    assert journey["inputs"][0]["via"] == "dtmf" and journey["inputs"][0]["value"] == "0"
    assert journey["channel"] == "sip" and journey["caller"] == "+441632960099"


def test_key_1_takes_the_billing_branch(serve, tmp_path):
    server = serve(FLOWS, "--queue-target", "billing=sip:billing@127.0.0.1:5070")
    proc = run_sipp(tmp_path, "uac_dtmf_refer.xml", server.sip_port, digit="1",
                    agents="sip:billing@127.0.0.1:5070", reason="choice", queue="billing")
    assert proc.returncode == 0, proc.stdout[-2000:] + _errors(tmp_path)
    (journey,) = server.wait_journeys(1)
    assert journey["path"] == ["main_menu", "billing"]
    assert journey["intent"] == "billing"
    assert journey["handoff"]["queue"] == "billing" and journey["handoff"]["skills"] == ["billing"]


def test_refer_carries_the_whole_payload(serve, tmp_path):
    """The REFER's X-IVR-Context header, as SIPp received it, decodes to the journey's payload."""
    server = serve(FLOWS)
    trace = tmp_path / "messages.log"
    proc = run_sipp(tmp_path, "uac_dtmf_refer.xml", server.sip_port, digit="0", agents="sip:agents@127.0.0.1:5070",
                    reason="escape", queue="general", extra=("-trace_msg", "-message_file", str(trace)))
    assert proc.returncode == 0, proc.stdout[-2000:] + _errors(tmp_path)
    (journey,) = server.wait_journeys(1)
    refer = trace.read_text().split("REFER sip:", 1)[1].split("\n\n", 1)[0]
    headers = dict(line.split(":", 1) for line in refer.splitlines()[1:] if ":" in line)
    context = headers["X-IVR-Context"].strip()
    payload = json.loads(base64.urlsafe_b64decode(context + "=" * (-len(context) % 4)))
    assert payload == journey["handoff"]
    assert headers["X-IVR-Queue"].strip() == "general" and headers["X-IVR-Reason"].strip() == "escape"
    assert "X-IVR-Reason=escape" in headers["Refer-To"]  # copied into the transferee's INVITE


def test_hundred_concurrent_calls_all_end_right(serve, tmp_path):
    """100 SIPp calls at once through a menu: each presses 2 and is hung up by the IVR."""
    server = serve(FLOWS)
    proc = run_sipp(tmp_path, "uac_dtmf_bye.xml", server.sip_port, calls=100, limit=100, rate=100,
                    timeout=90, digit="2")
    assert proc.returncode == 0, proc.stdout[-3000:] + _errors(tmp_path)
    journeys = server.wait_journeys(100, timeout=60)
    assert len(journeys) == 100
    assert all(j["outcome"] == "hangup" and j["path"] == ["main_menu", "goodbye"] for j in journeys), \
        {(j["outcome"], tuple(j["path"])) for j in journeys}
    assert len({j["call_id"] for j in journeys}) == 100
    metrics = server.http("/metrics")
    assert 'ivr_calls_total{outcome="hangup"} 100' in metrics


def test_http_router_decides_where_the_refer_goes(serve, tmp_path):
    """`--router http`: the IVR POSTs the payload to a router, and REFERs the call where it says."""
    with http_router({"target": "sip:expert@127.0.0.1:5070"}) as (url, seen):
        server = serve(FLOWS, "--router", "http", "--router-url", url)
        proc = run_sipp(tmp_path, "uac_dtmf_refer.xml", server.sip_port, digit="1",
                        agents="sip:expert@127.0.0.1:5070", reason="choice", queue="billing")
        assert proc.returncode == 0, proc.stdout[-2000:] + _errors(tmp_path)
        (journey,) = server.wait_journeys(1)
        assert journey["outcome"] == "handoff"
        assert seen == [journey["handoff"]]  # the router saw exactly the payload
