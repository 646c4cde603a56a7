"""What a softphone calling tests/interop/flows/menu.yaml must have lived through.

Shared by the baresip and linphonec tests: the phone listens to the menu,
presses 2 and is hung up on after "Goodbye.". `check_call` verifies the
journey, how the key arrived, and the sound the phone recorded: the menu and
then the goodbye, as the server's TTS renders them through mu-law, and not a
sentence that was never played.
"""

from __future__ import annotations

import re

import yaml

from .audio_match import find_pieces
from .conftest import HERE
from .softphones import duration

FLOWS = HERE / "flows" / "menu.yaml"
NODES = yaml.safe_load(FLOWS.read_text())["nodes"]
MENU_TEXT = NODES["main_menu"]["prompt"]
GOODBYE_TEXT = NODES["goodbye"]["prompt"]
# Same voice, similar words ("press", "call"), never played by this flow: the test must tell it apart.
NEVER_PLAYED = "To hear your balance press 3. To speak to a person, stay on the line."

# Piecewise normalised cross-correlation (see audio_match.find_pieces). Measured here, idle and
# with the 2 cores fully loaded: 1.000 for prompts baresip heard, 0.95-1.00 for linphone (its
# playout adjusts under load) and 0.07-0.16 for the decoy. A short prompt has only two pieces,
# so one damaged piece costs half its score: the thresholds leave room on both sides.
HEARD = 0.7
NOT_HEARD = 0.4
TEXTS = (MENU_TEXT, GOODBYE_TEXT, NEVER_PLAYED)


def check_call(server, pcm: bytes, prompts: dict[str, bytes], record_property) -> None:
    """Assert the journey, the key's path (RFC 2833) and the recorded audio of one call."""
    (journey,) = server.wait_journeys(1)
    assert journey["channel"] == "sip" and journey["caller"] == "tester", journey
    assert [(i["node"], i["via"], i["value"]) for i in journey["inputs"]] == [("main_menu", "dtmf", "2")]
    assert journey["path"] == ["main_menu", "goodbye"], journey
    assert journey["outcome"] == "hangup", journey
    # And the key came as an RFC 2833/4733 telephone-event (not SIP INFO, not tones in the audio).
    received = re.findall(r'^ivr_sip_dtmf_received_total\{via="(\w+)"\} (\d+)', server.http("/metrics"), re.M)
    assert received == [("rfc4733", "1")], received

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
