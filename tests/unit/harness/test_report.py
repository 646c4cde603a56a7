"""Journey reports: JUnit XML, the HTML page, the terminal summary, JSON, and flow coverage.

Results are built by hand: one journey that passed, one whose step failed (with
the audio heard, and a detail holding markup), one that could not run.
Coverage is checked against the repository's flows.yaml and its SVG drawing.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ivr.flows import load_flow
from ivr.flows.graph import _describe
from ivr.harness.report import (
    Coverage,
    coverage,
    coverage_text,
    describe_evidence,
    html_report,
    junit_xml,
    percentile,
    summary_text,
    totals,
    wav_bytes,
    write_reports,
)
from ivr.harness.results import FAILED, PASSED, SKIPPED, JourneyResult, StepResult

REPO = Path(__file__).resolve().parents[3]
SVG = "{http://www.w3.org/2000/svg}"
AUDIO = bytes(range(256)) * 25  # 6,400 bytes: 0.4 s of 8 kHz 16-bit PCM
EVIL = '<script>alert("x")</script> & more'


def passing() -> JourneyResult:
    steps = [
        StepResult(0, "dial", "dial", 3, PASSED, 0.0, 0.0, "dialled"),
        StepResult(1, "expect", 'expect prompt "Welcome"', 4, PASSED, 0.1, 1.2, "heard at 1.30 s (score 0.83)",
                   {"via": "audio", "score": 0.83, "at_s": 1.3}),
        StepResult(2, "press", "press 1", 6, PASSED, 1.3, 0.2, "pressed 1 (rfc4733)"),
        StepResult(3, "expect", 'expect prompt "Billing"', 7, PASSED, 1.5, 0.9, "the engine said it played 'billing'",
                   {"via": "event", "id": "billing_menu", "text": "Billing"}),
    ]
    return JourneyResult("billing by key", "tests/journeys/billing.yaml", "sip", "sip:ivr@127.0.0.1:5070", steps,
                         passed=True, call_id="abc@host", setup_s=0.1, duration_s=3.2, latencies_s=[0.4, 0.6],
                         heard_s=3.1, mos=4.3,
                         nodes=["check_hours", "welcome", "main_menu"],
                         edges=[("check_hours", "welcome", "case"), ("welcome", "main_menu", "next")],
                         tags=["smoke"])


def failing() -> JourneyResult:
    steps = [
        StepResult(0, "expect", 'expect prompt "Welcome"', 2, PASSED, 0.0, 1.0, "transcribed \"welcome\"",
                   {"via": "transcript", "heard": "welcome to acme", "similarity": 0.7}),
        StepResult(1, "press", "press 2", 3, PASSED, 1.0, 0.2, "pressed 2 (rfc4733)"),
        StepResult(2, "expect", 'expect prompt "Appointments"', 4, FAILED, 1.2, 10.0, EVIL,
                   {"via": "audio", "score": 0.31}, audio=AUDIO),
        StepResult(3, "press", "press 1", 5, SKIPPED),
    ]
    return JourneyResult("appointments", "tests/journeys/appointments.yaml", "sip", "sip:ivr@127.0.0.1:5070", steps,
                         passed=False, call_id="def@host", setup_s=0.3, duration_s=11.5, latencies_s=[1.0],
                         heard_s=11.2, mos=3.1,
                         nodes=["check_hours", "welcome", "main_menu", "appointments_menu"],
                         edges=[("check_hours", "welcome", "case"), ("welcome", "main_menu", "next"),
                                ("main_menu", "appointments_menu", "option")])


def unanswered() -> JourneyResult:
    steps = [StepResult(0, "expect", 'expect prompt "Welcome"', 2), StepResult(1, "press", "press 9", 3)]
    return JourneyResult("night line", "tests/journeys/night.yaml", "sip", "sip:night@127.0.0.1:5070", steps,
                         error="the call was not answered: 486 Busy Here", duration_s=0.5)


@pytest.fixture
def results() -> list[JourneyResult]:
    return [passing(), failing(), unanswered()]


@pytest.fixture(scope="module")
def flow():
    return load_flow(REPO / "flows.yaml")


# ---- percentiles and totals ------------------------------------------------------------------------

def test_percentile_interpolates_between_ranks():
    xs = [0.5, 0.1, 0.4, 0.2, 0.3]
    assert percentile(xs, 50) == pytest.approx(0.3)
    assert percentile(xs, 95) == pytest.approx(0.48)  # rank 3.8: 0.4 + 0.8 * 0.1
    assert percentile(xs, 100) == pytest.approx(0.5)
    assert percentile(xs, 0) == pytest.approx(0.1)
    assert percentile([1.0, 2.0], 50) == pytest.approx(1.5)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_percentile_agrees_with_numpy():
    np = pytest.importorskip("numpy")
    xs = [0.12, 0.9, 0.33, 0.41, 2.5, 0.05, 0.77, 0.61, 0.2]
    for q in (0, 10, 50, 90, 95, 99, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_totals(results):
    t = totals(results)
    assert (t["journeys"], t["passed"], t["failed"], t["errors"]) == (3, 1, 1, 1)
    assert t["duration_s"] == pytest.approx(15.2)
    # latencies 0.4, 0.6, 1.0 over all journeys; setup 0.1 and 0.3 (the unanswered call has none)
    assert t["latency"] == {"n": 3, "p50": 0.6, "p95": pytest.approx(0.96), "max": 1.0}
    assert t["setup"] == {"n": 2, "p50": pytest.approx(0.2), "p95": pytest.approx(0.29)}
    # the rough audio figure of the two calls that heard something
    assert t["audio"] == {"n": 2, "mos_mean": 3.7, "mos_min": 3.1, "heard_s": 14.3}
    assert "audio MOS~ mean 3.70, min 3.10 (rough)" in summary_text(results)


def test_totals_of_nothing():
    t = totals([])
    assert t["journeys"] == 0 and t["latency"]["p50"] is None and t["setup"]["p95"] is None
    assert t["audio"]["mos_mean"] is None and "MOS" not in summary_text([])
    assert "0 journeys" in summary_text([])
    ET.fromstring(junit_xml([]))
    assert "<h1>Journey report</h1>" in html_report([])


# ---- evidence ----------------------------------------------------------------------------------------

def test_evidence_says_how_a_step_was_judged():
    assert describe_evidence({"via": "audio", "score": 0.83, "at_s": 1.2}) == "audio match 0.83"
    assert describe_evidence({"via": "transcript", "heard": "xyz", "similarity": 0.7}) == "transcript 'xyz' 0.70"
    assert describe_evidence({"via": "event", "id": "main_menu"}) == "engine event (exact prompt id 'main_menu')"
    assert "confirmed by engine event" in describe_evidence({"via": "audio", "score": 0.9, "event": True})
    assert describe_evidence({"via": "audio", "music_s": 12.0}) == "audio: hold music 12.0 s"
    assert describe_evidence({"via": "refer", "target": "sip:q@x"}) == "SIP REFER to sip:q@x"
    assert describe_evidence({}) == ""


# ---- JUnit -----------------------------------------------------------------------------------------

def test_junit_counts_and_messages(results):
    root = ET.fromstring(junit_xml(results, suite="acme line"))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "acme line"
    for el in (root, suite):
        assert (el.get("tests"), el.get("failures"), el.get("errors"), el.get("skipped")) == ("3", "1", "1", "0")
        assert float(el.get("time")) == pytest.approx(15.2)
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("billing", "billing by key"), ("appointments", "appointments"), ("night", "night line")]
    assert float(cases[0].get("time")) == pytest.approx(3.2)

    ok, bad, err = cases
    assert ok.find("failure") is None and ok.find("error") is None
    assert "✓ press 1 (0.20 s) pressed 1 (rfc4733)" in ok.find("system-out").text
    assert "[engine event (exact prompt id 'billing_menu')]" in ok.find("system-out").text

    failure = bad.find("failure")
    assert failure is not None and bad.find("error") is None
    msg = failure.get("message")
    assert msg == f"step 3 'expect prompt \"Appointments\"' (tests/journeys/appointments.yaml:4): {EVIL}"
    assert "✗ expect prompt \"Appointments\" (10.0 s)" in failure.text  # the step log in the body
    assert "– press 1 (skipped)" in failure.text
    out = bad.find("system-out").text
    assert "[transcript 'welcome to acme' 0.70]" in out and "[audio match 0.31]" in out

    error = err.find("error")
    assert error is not None and err.find("failure") is None
    assert error.get("message") == "the call was not answered: 486 Busy Here"


def test_junit_escapes_and_drops_what_xml_cannot_hold():
    r = failing()
    r.name = 'a "quoted" <name> & co'
    r.steps[2].detail = "bad \x00bytes\x1b here <b>"
    xml = junit_xml([r])
    assert "<b>" not in xml and "\x00" not in xml
    case = ET.fromstring(xml).find("testsuite/testcase")
    assert case.get("name") == 'a "quoted" <name> & co'
    assert case.find("failure").get("message").endswith("bad bytes here <b>")


# ---- terminal summary ----------------------------------------------------------------------------------

def test_summary_text(results):
    lines = summary_text(results).splitlines()
    assert lines[0] == "PASS billing by key (3.2 s)"
    assert lines[1] == ("FAIL appointments: step 3 'expect prompt \"Appointments\"' "
                        f"(tests/journeys/appointments.yaml:4): {EVIL}")
    assert lines[2] == "ERROR night line: the call was not answered: 486 Busy Here"
    assert lines[3].startswith("3 journeys: 1 passed, 1 failed, 1 could not run (15.2 s)")
    assert "latency p50 0.60 s, p95 0.96 s, max 1.0 s (n=3)" in lines[3]
    assert "setup p50 0.20 s, p95 0.29 s" in lines[3]


def test_summary_of_a_timeout_names_the_step():
    r = failing()
    r.error = "the journey's timeout (30 s) ran out"
    line = summary_text([r]).splitlines()[0]
    assert line.startswith("ERROR appointments: the journey's timeout (30 s) ran out (during step 3 ")


# ---- HTML ------------------------------------------------------------------------------------------

def test_html_has_steps_escaped_and_audio(results):
    page = html_report(results, title="Acme <line>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Acme &lt;line&gt;</title>" in page
    for label in ("expect prompt &quot;Welcome&quot;", "press 1", "expect prompt &quot;Appointments&quot;"):
        assert label in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in page
    # how each step was judged; engine events marked as such
    assert "audio match 0.83" in page and "transcript &#x27;welcome to acme&#x27; 0.70" in page
    assert re.search(r'<span class="engine" title="[^"]*not a black-box check[^"]*">engine event '
                     r"\(exact prompt id &#x27;billing_menu&#x27;\)</span>", page)
    # summary numbers
    assert "p50 0.60 s · p95 0.96 s · max 1.0 s (n=3)" in page
    assert "the call was not answered: 486 Busy Here" in page
    # the failed step's audio, inline, as a WAV of the right size
    found = re.findall(r'<audio controls preload="none" src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"></audio>', page)
    assert len(found) == 1
    wav = base64.b64decode(found[0])
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert len(wav) == 44 + len(AUDIO)
    assert wav == wav_bytes(AUDIO)
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_wav_bytes_is_8khz_mono_16bit():
    import io
    import wave

    with wave.open(io.BytesIO(wav_bytes(AUDIO + b"\x01")), "rb") as w:  # an odd byte is dropped
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 3200)


# ---- coverage --------------------------------------------------------------------------------------

def test_coverage_of_flows_yaml(flow, results):
    cov = coverage(flow, results)
    nodes = list(flow.nodes)
    edges = list(dict.fromkeys((link.src, link.dst) for link in _describe(flow)[1]))
    hit_nodes = {"check_hours", "welcome", "main_menu", "appointments_menu"}
    hit_edges = {("check_hours", "welcome"), ("welcome", "main_menu"), ("main_menu", "appointments_menu")}
    assert (cov.nodes_total, cov.nodes_hit) == (len(nodes), 4)
    assert (cov.edges_total, cov.edges_hit) == (len(edges), 3)
    assert cov.missed_nodes == [n for n in nodes if n not in hit_nodes]
    assert cov.missed_edges == [e for e in edges if e not in hit_edges]
    assert (cov.journeys, cov.traced) == (3, 2)
    assert cov.flow == flow.name and cov.unknown_nodes == []


def test_coverage_svg_marks_visited(flow, results):
    cov = coverage(flow, results)
    assert cov.svg.lstrip().startswith("<?xml") and "<svg" in cov.svg
    root = ET.fromstring(cov.svg)
    assert root.tag == f"{SVG}svg"
    groups = {g.get("data-id"): g for g in root.iter(f"{SVG}g") if g.get("class", "").startswith("node")}
    visited = {i for i, g in groups.items() if g.get("class") == "node visited"}
    assert visited == {"check_hours", "welcome", "main_menu", "appointments_menu"}
    for i, g in groups.items():
        assert (g.get("opacity") is None) == (i in visited)  # the others are faded
    lit = {(g.get("data-src"), g.get("data-dst")) for g in root.iter(f"{SVG}g")
           if g.get("class") == "edge" and g.get("opacity") is None}
    assert lit == {("check_hours", "welcome"), ("welcome", "main_menu"), ("main_menu", "appointments_menu")}


def test_coverage_counts_a_subflow_return_as_the_callers_edge(flow):
    path = ["check_hours", "welcome", "main_menu", "identify_billing", "identify.ask_account",
            "identify.account_ok", "identify.done", "billing_menu", "payments_agent"]
    vias = ["case", "next", "option", "call", "next", "next", "return", "option"]
    r = JourneyResult("billing", "b.yaml", "sip", "t", [], passed=True, nodes=path,
                      edges=list(zip(path[:-1], path[1:], vias, strict=True)))
    cov = coverage(flow, [r])
    assert cov.nodes_hit == len(path)
    # the return itself is no drawn edge; identify_billing -> billing_menu ("returns") is
    assert cov.edges_hit == len(path) - 2 + 1
    assert ("identify_billing", "billing_menu") not in cov.missed_edges
    assert ("identify_billing", "identify.ask_account") not in cov.missed_edges
    # the same from the visits alone
    r.edges = []
    assert coverage(flow, [r]).edges_hit == cov.edges_hit


def test_coverage_notes_ids_the_flow_lacks(flow):
    r = JourneyResult("old", "o.yaml", "sip", "t", [], nodes=["welcome", "gone_node"],
                      edges=[("welcome", "gone_node", "next")])
    cov = coverage(flow, [r])
    assert cov.nodes_hit == 1 and cov.edges_hit == 0 and cov.unknown_nodes == ["gone_node"]
    assert "not in this flow: gone_node" in coverage_text(cov)


def test_coverage_text():
    cov = Coverage(20, 14, 31, 18, ["a", "b", "c"], [("a", "b")], journeys=3, traced=3)
    assert coverage_text(cov).splitlines() == ["nodes 14/20 (70%), edges 18/31 (58%)",
                                               "never reached: a, b, c", "never taken: a → b"]
    nearly = Coverage(1000, 999, 0, 0, ["x"], [], journeys=2, traced=1)
    text = coverage_text(nearly)
    assert text.startswith("nodes 999/1000 (99%), edges 0/0 (–)")  # 100% only when complete
    assert "from 1 of 2 journeys" in text
    many = Coverage(30, 0, 0, 0, [f"n{i}" for i in range(30)], [])
    assert "n19 … and 10 more" in coverage_text(many, limit=20)


def test_html_embeds_coverage(flow, results):
    cov = coverage(flow, results)
    page = html_report(results, cov)
    assert f"Nodes <b>4/{cov.nodes_total}</b>" in page
    assert '<g class="node visited" data-id="main_menu"' in page
    assert "<?xml" not in page  # the SVG is inline, without its XML declaration
    assert "<code>after_hours</code>" in page


# ---- files -----------------------------------------------------------------------------------------

def test_write_reports(tmp_path, flow, results):
    cov = coverage(flow, results)
    out = tmp_path / "reports"
    written = write_reports(results, junit=out / "junit.xml", html=out / "report.html",
                            json_path=out / "results.json", coverage=cov)
    assert written == [out / "junit.xml", out / "report.html", out / "results.json"]
    ET.parse(out / "junit.xml")
    assert "data:audio/wav;base64," in (out / "report.html").read_text(encoding="utf-8")
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [j["name"] for j in doc["journeys"]] == ["billing by key", "appointments", "night line"]
    assert doc["journeys"][1]["steps"][2]["audio_s"] == 0.4
    assert doc["summary"]["failed"] == 1
    assert doc["coverage"]["nodes_hit"] == 4 and doc["coverage"]["edges_total"] == cov.edges_total
    assert "svg" not in doc["coverage"]
    assert write_reports(results) == []
