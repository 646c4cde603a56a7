"""Two callers, one recogniser: the second is asked to use the keypad, and its keys work.

`ivr serve --speech-engine pocketsphinx` on tests/interop/flows/speech.yaml
with `speech: {max_concurrent: 1}` added (written into the test's directory).
Two baresip phones call the speech menu one after the other, so which call
gets the only recogniser is not left to chance:

- call A dials first; once /metrics shows a recogniser in use
  (`ivr_speech_sessions` 1), A's menu turn holds the slot. A's microphone says
  "billing" 4 s into the call, over the menu prompt, so A keeps the slot for
  at least that long, and A reaches billing by speech;
- call B dials then, while A still listens. No recogniser is free: B's
  journey notes the fallback to keys, B hears "Please use your telephone
  keypad." before the menu (checked in what B's phone recorded), presses 3
  (RFC 4733) and reaches sales.

/metrics counts B's refused turn (`ivr_speech_refused_total`), and both slots
are free again once the calls are over.
"""

from __future__ import annotations

import math
import re
import time
from contextlib import ExitStack

from .audio_match import line_prompt
from .conftest import HERE, need, start_server, stop_server
from .heard_menu import HEARD
from .phrases import mic_file, phrase
from .softphones import Baresip
from .test_speech import CALL_TIMEOUT, Placed, ended_by_the_ivr, find_journey, menu_prompt

FLOWS = HERE / "flows" / "speech.yaml"
KEYPAD = "Please use your telephone keypad."  # the default speech.keypad_prompt
# When A says "billing", in seconds from the start of A's call: inside the 5.4 s menu prompt,
# late enough that B is in its menu turn long before A's turn ends and frees the slot.
LEAD_A = 4.0


def metric(server, name: str) -> float:
    """One unlabelled sample from the server's /metrics."""
    m = re.search(rf"^{name} (\S+)$", server.http("/metrics"), re.MULTILINE)
    assert m, f"{name} not in /metrics"
    return float(m[1])


def wait_metric(server, name: str, want: float, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while (got := metric(server, name)) != want:
        if time.monotonic() > end:
            raise AssertionError(f"{name} is {got}, not {want}, after {timeout:.0f} s\n"
                                 f"{server.log.read_text()[-3000:]}")
        time.sleep(0.05)


def is_closed(call_id: str):
    return lambda m: m.get("event") and m.get("type") == "CALL_CLOSED" and m.get("id") == call_id


def test_the_second_caller_falls_back_to_keys_when_the_only_recogniser_is_busy(tmp_path):
    for program in ("baresip", "espeak-ng", "sox"):
        need(program)
    flows = tmp_path / "speech_cap.yaml"
    flows.write_text(FLOWS.read_text() + "speech:\n  max_concurrent: 1\n")
    (tmp_path / "server").mkdir()
    mic_a = mic_file(tmp_path / "a.wav", phrase("billing", tmp_path), lead=LEAD_A, seed=11)
    mic_b = mic_file(tmp_path / "b.wav", None, seed=12)  # B says nothing: line noise only
    keypad = line_prompt(KEYPAD)
    server = start_server(tmp_path / "server", flows, "--speech-engine", "pocketsphinx")
    try:
        uri = f"sip:ivr@127.0.0.1:{server.sip_port}"
        with ExitStack() as stack:
            # Both phones are up before either dials, so B can dial as soon as A holds the slot.
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
            a = stack.enter_context(Baresip(tmp_path / "a", mic_a.path))
            b = stack.enter_context(Baresip(tmp_path / "b", mic_b.path))
            assert metric(server, "ivr_speech_sessions") == 0

            id_a = a.dial(uri, timeout=30)["id"]
            t_a = time.monotonic()
            wait_metric(server, "ivr_speech_sessions", 1)  # A's menu turn has the recogniser
            id_b = b.dial(uri, timeout=30)["id"]
            b_after_a = time.monotonic() - t_a
            # B hears the keypad prompt in full, then presses 3 during the menu prompt.
            b.wait_heard(keypad, threshold=HEARD, timeout=40)
            b.send_digits("3")

            closed_b = b.wait_for(is_closed(id_b), CALL_TIMEOUT, "CALL_CLOSED of call B")
            closed_a = a.wait_for(is_closed(id_a), CALL_TIMEOUT, "CALL_CLOSED of call A")
        journey_a, journey_b = find_journey(server, id_a), find_journey(server, id_b)
        refused, busy = metric(server, "ivr_speech_refused_total"), metric(server, "ivr_speech_sessions")
    finally:
        stop_server(server)
    print(f"A: path {journey_a['path']}, inputs {journey_a['inputs']}, notes {journey_a['notes']}")
    print(f"B: path {journey_b['path']}, inputs {journey_b['inputs']}, notes {journey_b['notes']}, "
          f"prompts {[(p['text'], p['t'], p['played_s'], p['interrupted']) for p in journey_b['prompts']]}")
    print(f"B answered {b_after_a:.2f} s after A (A speaks at {mic_a.onset:.2f} s); "
          f"/metrics: ivr_speech_refused_total {refused}, ivr_speech_sessions {busy}")

    # A held the recogniser: no fallback, the menu as written, and "billing" heard.
    assert not any(n["what"] == "speech-unavailable" for n in journey_a["notes"]), journey_a["notes"]
    assert journey_a["prompts"][0]["text"] != KEYPAD, journey_a["prompts"]
    assert journey_a["path"] == ["main_menu", "billing"], journey_a
    (answer,) = journey_a["inputs"]
    assert (answer["node"], answer["via"], answer["value"], answer["result"]) == \
        ("main_menu", "speech", "billing", "option"), answer
    assert menu_prompt(journey_a)["interrupted"] is True  # barge-in by voice
    ended_by_the_ivr(Placed("a", mic_a, closed=closed_a), journey_a, "hangup")

    # B found no recogniser free: told to use the keypad before the menu, and its key worked.
    fallback = [n for n in journey_b["notes"] if n["what"] == "speech-unavailable"]
    assert len(fallback) == 1, journey_b["notes"]
    assert {k: fallback[0][k] for k in ("node", "fallback", "engine")} == \
        {"node": "main_menu", "fallback": "dtmf", "engine": "pocketsphinx"}, fallback
    texts = [p["text"] for p in journey_b["prompts"]]
    assert texts[:2] == [KEYPAD, "Say billing, technical support or sales, or press 1, 2 or 3."], texts
    assert journey_b["prompts"][0]["interrupted"] is False, journey_b["prompts"][0]  # heard in full
    assert journey_b["path"] == ["main_menu", "sales"], journey_b
    (answer,) = journey_b["inputs"]
    assert (answer["node"], answer["via"], answer["value"], answer["result"]) == \
        ("main_menu", "dtmf", "3", "option"), answer
    assert math.isnan(mic_b.onset)  # B said nothing
    ended_by_the_ivr(Placed("b", mic_b, closed=closed_b), journey_b, "hangup")

    # The server counted the refused turn, and no slot is left taken.
    assert refused >= 1, refused
    assert busy == 0, busy
