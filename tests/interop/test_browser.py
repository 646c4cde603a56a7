"""A real browser calls the IVR: headless Chromium on the softphone page, over WebRTC.

One `ivr serve --speech-engine pocketsphinx` on tests/interop/flows/browser.yaml
and one Chromium per call, driven by playwright, all inside a network namespace
of their own with only loopback up (interop/netns.py): no packet of the call
can leave the machine. Each browser opens /softphone?autocall=1, so the page
dials at once; its microphone is a WAV (Chromium's fake capture device):

- "billing", said over the menu prompt: the billing branch, then the flow
  says goodbye and hangs up (the hang-up from the flow);
- line noise, and a click on the page's 0 key: the escape to a person, the
  key carried on the "dtmf" data channel; the IVR calls the agent (a SIPp
  phone in the same namespace) and bridges the browser to it, until the
  agent hangs up;
- line noise, and a click on the page's hang-up button.

The calls run one after another; what each left behind (the page's call
states and live view, the server's journey, the `ivr_webrtc_calls` gauge) is
written to results.json, and the tests below check it. A screenshot of the
page during the billing call is kept with the test's files, and copied to
docs/images/softphone.png for the README when IVR_UPDATE_SCREENSHOT is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import HERE, ROOT, Server, logged, need, sipp_phone, start_server, stop_server
from .netns import isolated

FLOWS = HERE / "flows" / "browser.yaml"
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = ROOT / "docs" / "images" / "softphone.png"
# When the caller starts talking, in seconds from the microphone's start (getUserMedia, as the
# page dials): after the connection is up and the menu prompt has begun, well before it ends.
LEAD = 2.5
CALL_TIMEOUT = 45.0  # from loading the page to the end of one call
STEP_TIMEOUT = 20.0  # for one thing to show on the page (connected, a prompt, a recognised input)
AGENT = "dial_uas_agent_hangs_up.xml"  # answers, logs the hand-off headers, hangs up 2 s later
MENU_PROMPT = "Say billing or sales, or press 1 or 2. Press 0 for a person."


def chromium_flags(mic: Path) -> list[str]:
    """Headless Chromium with a WAV as its microphone, WebRTC allowed over loopback."""
    return ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}%noloop", "--autoplay-policy=no-user-gesture-required",
            "--allow-loopback-in-peer-connection", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]


# Every value the page's body takes in data-call-state, in order (an init script, run before the page's).
RECORD_STATES = """
window.__states = [];
const note = (s) => { if (s && window.__states[window.__states.length - 1] !== s) window.__states.push(s); };
new MutationObserver((records) => {
  for (const r of records) note(r.oldValue);  // states set and replaced within one task count too
  note(document.body.dataset.callState);
}).observe(document, { attributes: true, attributeOldValue: true, subtree: true, attributeFilter: ["data-call-state"] });
"""


# --- inside the namespace -------------------------------------------------------------------

def microphone(path: Path, text: str | None, workdir: Path) -> Path:
    """A 48 kHz mono PCM16 WAV: faint line noise, `text` (espeak-ng) at LEAD seconds, line noise."""
    from .phrases import mic_file, phrase

    narrow = mic_file(path.with_suffix(".8k.wav"), phrase(text, workdir) if text else None,
                      lead=LEAD, total=20.0)
    subprocess.run(["sox", str(narrow.path), "-r", "48000", "-c", "1", "-b", "16", "-e", "signed-integer",
                    str(path)], check=True, capture_output=True, timeout=30)
    return path


def webrtc_calls(server: Server) -> float | None:
    """The `ivr_webrtc_calls` gauge from /metrics, or None when the server has no such gauge."""
    m = re.search(r"^ivr_webrtc_calls(?:\{[^}]*\})? (\S+)$", server.http("/metrics"), re.M)
    return float(m[1]) if m else None


def keys_by_datachannel(server: Server) -> float:
    """Keys the server took from browsers' "dtmf" data channels, from /metrics."""
    m = re.search(r'^ivr_webrtc_dtmf_received_total\{[^}]*via="datachannel"[^}]*\} (\S+)$', server.http("/metrics"), re.M)
    return float(m[1]) if m else 0.0


def gauge_back_to_zero(server: Server, timeout: float = 10.0) -> float | None:
    end = time.monotonic() + timeout
    while True:
        value = webrtc_calls(server)
        if value is None or value == 0 or time.monotonic() > end:
            return value
        time.sleep(0.1)


def wait_for_line(page, prefix: str, timeout: float = STEP_TIMEOUT) -> None:
    """Until a line of the page's live view starts with `prefix`."""
    page.wait_for_function("p => [...document.querySelectorAll('#log li')].some(li => li.textContent.startsWith(p))",
                           arg=prefix, timeout=timeout * 1000)


def in_the_menu(page) -> None:
    """Until the call is up and the IVR has started speaking the menu."""
    page.wait_for_function("document.body.dataset.callState === 'in-call'", timeout=STEP_TIMEOUT * 1000)
    wait_for_line(page, "IVR: ")


def say_billing(page, server: Server, record: dict, workdir: Path) -> None:
    """Nothing to do but listen (the microphone says billing); photograph the page mid-call."""
    in_the_menu(page)
    try:
        wait_for_line(page, "You: billing")
        wait_for_line(page, "IVR: Billing")
    finally:  # even when the words were not understood: the page as it was, during the call
        page.screenshot(path=str(workdir / "softphone.png"))
        record["screenshot"] = str(workdir / "softphone.png")


def press_0(page, server: Server, record: dict, workdir: Path) -> None:
    in_the_menu(page)
    before = keys_by_datachannel(server)
    page.click("#keypad button[data-key='0']", timeout=5000)
    wait_for_line(page, "You: 0")
    record["datachannel_keys"] = keys_by_datachannel(server) - before


def hang_up(page, server: Server, record: dict, workdir: Path) -> None:
    in_the_menu(page)
    record["gauge_in_call"] = webrtc_calls(server)
    page.click("#hangup", timeout=5000)


def one_call(pw, server: Server, name: str, mic: Path, act, workdir: Path) -> dict:
    """Load the page with ?autocall=1 in a fresh Chromium, act, and wait for the call's end."""
    record: dict = {"name": name, "states": [], "log": [], "console": [], "error": None, "journey": None}
    before = len(server.journeys())
    context = pw.chromium.launch_persistent_context(
        str(workdir / "profile"), executable_path=CHROMIUM, headless=True, args=chromium_flags(mic),
        viewport={"width": 440, "height": 620})
    t0 = time.monotonic()
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.on("console", lambda m: record["console"].append(f"{m.type}: {m.text}"))
        page.add_init_script(RECORD_STATES)
        page.goto(f"http://127.0.0.1:{server.http_port}/softphone?autocall=1", timeout=10_000)
        act(page, server, record, workdir)
        page.wait_for_function("document.body.dataset.callState === 'ended'",
                               timeout=max(CALL_TIMEOUT - (time.monotonic() - t0), 1.0) * 1000)
    except Exception as exc:  # reported by the test that owns this call
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        record["seconds"] = round(time.monotonic() - t0, 2)
        try:
            record["states"] = page.evaluate("window.__states")
            record["log"] = page.locator("#log li").all_inner_texts()
            record["state_text"] = page.inner_text("#state")
        except Exception as exc:
            record["error"] = record["error"] or f"the page could not be read: {exc}"
        context.close()
    end = time.monotonic() + 20
    while len(server.journeys()) <= before and time.monotonic() < end:
        time.sleep(0.1)
    new = server.journeys()[before:]
    record["journey"] = new[0] if len(new) == 1 else None
    record["journeys_written"] = len(new)
    record["gauge_after"] = gauge_back_to_zero(server)
    return record


def run_calls(tmp: Path) -> None:
    """The body run in the namespace: the server, then each call in its own browser."""
    from playwright.sync_api import sync_playwright

    calls = {"billing": ("billing", say_billing), "key0": (None, press_0), "hangup": (None, hang_up)}
    (tmp / "server").mkdir(exist_ok=True)
    (tmp / "agent").mkdir(exist_ok=True)
    # The person at the end of the escape: a SIPp phone that answers the bridged call, then hangs up.
    agent, agent_port = sipp_phone(tmp / "agent", AGENT, timeout=200)
    server = start_server(tmp / "server", FLOWS, "--speech-engine", "pocketsphinx", "--webrtc-host", "127.0.0.1",
                          "--agents", f"sip:agent@127.0.0.1:{agent_port}")
    results: dict[str, dict] = {}
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/softphone", timeout=5)
        results["page"] = {"status": page.status, "type": page.headers.get("Content-Type")}
        with sync_playwright() as pw:
            for name, (words, act) in calls.items():
                workdir = tmp / name
                workdir.mkdir(exist_ok=True)
                mic = microphone(workdir / "mic.wav", words, workdir)
                results[name] = one_call(pw, server, name, mic, act, workdir)
                (tmp / "results.json").write_text(json.dumps(results, indent=2))
        try:
            results["agent"] = {"exit": agent.wait(15), "queue": logged(tmp / "agent", AGENT, "QUEUE "),
                                "reason": logged(tmp / "agent", AGENT, "REASON ")}
        except subprocess.TimeoutExpired:
            results["agent"] = {"exit": None}
    finally:
        if agent.poll() is None:
            agent.kill()
        stop_server(server)
        results["server_log"] = server.log.read_text()[-4000:]
        (tmp / "results.json").write_text(json.dumps(results, indent=2))


# --- the tests ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> dict[str, dict]:
    for program in ("chromium", "espeak-ng", "sox"):
        need(program)
    pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")
    tmp = tmp_path_factory.mktemp("browser")
    try:
        isolated("interop.test_browser:run_calls", tmp, timeout=240.0)
    finally:
        results = tmp / "results.json"
        if results.exists():
            for name, r in json.loads(results.read_text()).items():
                if isinstance(r, dict) and "states" in r:
                    j = r["journey"] or {}
                    print(f"{name}: {r['seconds']} s, states {r['states']}, path {j.get('path')}, inputs "
                          f"{[(i['via'], i['value'], i['result']) for i in j.get('inputs', [])]}, outcome "
                          f"{j.get('outcome')}, gauge after {r['gauge_after']}; {r['error'] or ''}")
    out = json.loads((tmp / "results.json").read_text())
    out["tmp"] = str(tmp)
    return out


def placed(calls: dict, name: str) -> tuple[dict, dict]:
    """The page's record of one call and the server's journey of it."""
    r = calls[name]
    assert r["error"] is None, (f"{name}: {r['error']}\nstates {r['states']}\nlog {r['log']}\n"
                                f"console {r['console'][-20:]}\n{calls['server_log']}")
    assert r["journey"] is not None, f"{name}: {r['journeys_written']} journeys written for one call"
    return r, r["journey"]


def connected_then_ended(r: dict) -> None:
    """The page went idle -> connecting -> in-call -> ended, and nothing after the end."""
    assert r["states"][:3] == ["idle", "connecting", "in-call"], r["states"]
    assert r["states"][-1] == "ended" and r["states"].count("ended") == 1, r["states"]


def test_the_page_is_served():
    page = (ROOT / "ivr" / "webrtc" / "softphone.html").read_text()
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # nothing external
    assert 'createDataChannel("dtmf")' in page and "autoGainControl: false" in page


def test_get_softphone_serves_the_page(calls):
    assert calls["page"]["status"] == 200
    assert calls["page"]["type"].startswith("text/html"), calls["page"]


def test_saying_billing_takes_the_billing_branch(calls):
    r, journey = placed(calls, "billing")
    assert journey["path"] == ["main_menu", "billing", "goodbye"], journey["path"]
    (answer,) = journey["inputs"]
    assert (answer["node"], answer["via"], answer["value"], answer["result"]) == \
        ("main_menu", "speech", "billing", "option"), answer
    assert journey["intent"] == "billing"
    connected_then_ended(r)
    # The live view showed the prompts and what was understood, as they happened.
    assert f"IVR: {MENU_PROMPT}" in r["log"], r["log"]
    assert "You: billing (speech, option)" in r["log"], r["log"]
    assert "IVR: Billing. Your balance is zero." in r["log"], r["log"]


def test_key_0_on_the_page_reaches_a_person(calls):
    r, journey = placed(calls, "key0")
    assert "agent" in journey["path"], journey["path"]
    first = journey["inputs"][0]
    # The key went over the data channel; the engine sees it as any other key.
    assert (first["node"], first["via"], first["value"], first["result"]) == ("main_menu", "dtmf", "0", "escape"), first
    visit = next(v for v in journey["visits"] if v["node"] == "agent")
    assert visit["via"] == "escape", visit
    assert r["datachannel_keys"] == 1, r["datachannel_keys"]  # one key, and it came on the data channel
    assert "You: 0 (dtmf, escape)" in r["log"], r["log"]
    # The person is reached: the IVR called the agent's phone and bridged the browser to it.
    assert journey["outcome"] == "handoff", journey
    assert "Now with an agent" in r["log"], r["log"]
    assert calls["agent"]["exit"] == 0, calls["agent"]
    assert calls["agent"]["queue"] == ["general"] and calls["agent"]["reason"] == ["escape"], calls["agent"]
    assert r["states"][-1] == "ended" and "agent hung up" in r["state_text"], r["state_text"]
    connected_then_ended(r)


def test_hang_up_on_the_page_ends_the_call(calls):
    r, journey = placed(calls, "hangup")
    connected_then_ended(r)
    assert journey["outcome"] == "abandoned", journey  # the caller hung up
    assert journey["path"] == ["main_menu"], journey["path"]
    assert r["gauge_in_call"] == 1, r.get("gauge_in_call")
    assert r["gauge_after"] == 0, r["gauge_after"]


def test_hang_up_by_the_flow_ends_the_call(calls):
    r, journey = placed(calls, "billing")
    # "hangup", not "abandoned": the engine counts a call the caller left before the end as abandoned.
    assert journey["outcome"] == "hangup", journey
    connected_then_ended(r)
    assert "you hung up" not in r["state_text"], r["state_text"]
    assert r["gauge_after"] == 0, r["gauge_after"]


def test_screenshot_of_a_call(calls):
    shot = Path(calls["tmp"]) / "billing" / "softphone.png"
    assert shot.exists(), calls["billing"]["error"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    placed(calls, "billing")  # only a picture of a call that worked goes into the docs
    if os.environ.get("IVR_UPDATE_SCREENSHOT"):  # kept with the test's files; the docs' copy on request
        shutil.copyfile(shot, SCREENSHOT)
