"""linphonec calls the IVR: its RFC 2833 key takes the right branch, and it hears the right prompts.

linphonec is Linphone's console phone, fed commands on stdin with WAV files
for a sound card. It listens to the menu, presses 2, and is hung up on after
"Goodbye.". The journey must show the key and the branch; linphone's
recording of the call must hold the menu and the goodbye as the server's TTS
renders them through mu-law, and not a sentence that was never played.
"""

from __future__ import annotations

import re

import pytest
import yaml

from .audio_match import find_pieces, line_prompt
from .conftest import HERE, need
from .softphones import Linphonec, duration, read_recording, write_silence

FLOWS = HERE / "flows" / "menu.yaml"
NODES = yaml.safe_load(FLOWS.read_text())["nodes"]
MENU_TEXT = NODES["main_menu"]["prompt"]
GOODBYE_TEXT = NODES["goodbye"]["prompt"]
NEVER_PLAYED = "To hear your balance press 3. To speak to a person, stay on the line."

# Piecewise normalised cross-correlation, as in test_baresip. Measured with linphonec here, idle
# and with the 2 cores fully loaded: 0.95-1.00 for the prompts (the whole-prompt score drops to
# 0.65-0.92, since linphone's playout shifts by a few ms now and then) and 0.07-0.13 for the decoy.
HEARD = 0.7
NOT_HEARD = 0.4


@pytest.fixture(scope="module")
def prompts() -> dict[str, bytes]:
    """The expected line audio of each prompt (and of the decoy), rendered once."""
    need("espeak-ng")
    return {text: line_prompt(text) for text in (MENU_TEXT, GOODBYE_TEXT, NEVER_PLAYED)}


def test_linphonec_presses_2_hears_the_menu_then_goodbye(serve, tmp_path, prompts, record_property):
    need("linphonec")
    server = serve(FLOWS)
    mic = write_silence(tmp_path / "mic.wav", 90)
    recording = tmp_path / "heard.wav"
    with Linphonec(tmp_path, mic, recording) as phone:
        phone.call(f"sip:ivr@127.0.0.1:{server.sip_port}")
        # Press only once the whole menu has been heard, so the recording holds all of it.
        phone.wait_heard(prompts[MENU_TEXT], threshold=HEARD, timeout=40)
        since = phone.mark()
        phone.press("2")
        phone.wait_ended(timeout=30, since=since)  # the IVR says goodbye and hangs up by itself

    (journey,) = server.wait_journeys(1)
    assert journey["channel"] == "sip" and journey["caller"] == "tester", journey
    assert [(i["node"], i["via"], i["value"]) for i in journey["inputs"]] == [("main_menu", "dtmf", "2")]
    assert journey["path"] == ["main_menu", "goodbye"], journey
    assert journey["outcome"] == "hangup", journey
    # And the key came as an RFC 2833/4733 telephone-event (not SIP INFO, not tones in the audio).
    received = re.findall(r'^ivr_sip_dtmf_received_total\{via="(\w+)"\} (\d+)', server.http("/metrics"), re.M)
    assert received == [("rfc4733", "1")], received

    # linphone has quit and closed the file; its header is then filled in.
    pcm = read_recording(recording)

    menu = find_pieces(pcm, prompts[MENU_TEXT])
    goodbye = find_pieces(pcm, prompts[GOODBYE_TEXT])
    # The decoy wherever it fits best, and where the menu was heard (as if played instead of it).
    decoy = find_pieces(pcm, prompts[NEVER_PLAYED])
    decoy_there = find_pieces(pcm, prompts[NEVER_PLAYED], anchor=menu.offset)
    for name, m in (("menu", menu), ("goodbye", goodbye), ("decoy", decoy), ("decoy_there", decoy_there)):
        record_property(f"{name}_score", round(m.score, 4))
        record_property(f"{name}_whole", round(m.whole, 4))
        record_property(f"{name}_offset", round(m.offset, 3))
    summary = (f"heard {duration(pcm):.2f} s; menu {menu}; goodbye {goodbye}; decoy {decoy}; "
               f"decoy where the menu was {decoy_there}")
    print(summary)

    assert menu.score >= HEARD, summary
    # The menu is the first thing the IVR says: it starts within moments of the answer.
    assert -0.1 <= menu.offset <= 3.0, summary
    assert goodbye.score >= HEARD, summary
    # "Goodbye." follows the key; the recording's timeline agrees with the journey's.
    t_menu, t_goodbye = ({p["node"]: p["t"] for p in journey["prompts"]}[n] for n in ("main_menu", "goodbye"))
    assert abs((goodbye.offset - menu.offset) - (t_goodbye - t_menu)) <= 0.5, (summary, journey["prompts"])
    assert max(decoy.score, decoy_there.score) <= NOT_HEARD, summary
    assert menu.score - max(decoy.score, decoy_there.score) >= 0.4, summary
