"""linphonec calls the IVR: its RFC 2833 key takes the right branch, and it hears the right prompts.

linphonec is Linphone's console phone, fed commands on stdin with WAV files
for a sound card. It listens to the menu, presses 2, and is hung up on after
"Goodbye.". The journey must show the key and the branch; linphone's
recording of the call must hold the menu and the goodbye as the server's TTS
renders them through mu-law, and not a sentence that was never played.
"""

from __future__ import annotations

from .conftest import need
from .heard_menu import FLOWS, HEARD, MENU_TEXT, check_call
from .softphones import Linphonec, read_recording, write_silence


def test_linphonec_presses_2_hears_the_menu_then_goodbye(serve, tmp_path, menu_prompts, record_property):
    need("linphonec")
    server = serve(FLOWS)
    mic = write_silence(tmp_path / "mic.wav", 90)
    recording = tmp_path / "heard.wav"
    with Linphonec(tmp_path, mic, recording) as phone:
        phone.call(f"sip:ivr@127.0.0.1:{server.sip_port}")
        # Press only once the whole menu has been heard, so the recording holds all of it.
        phone.wait_heard(menu_prompts[MENU_TEXT], threshold=HEARD, timeout=40)
        since = phone.mark()
        phone.press("2")
        phone.wait_ended(timeout=30, since=since)  # the IVR says goodbye and hangs up by itself

    # linphone has quit and closed the file; its header is then filled in.
    assert recording.exists() and recording.stat().st_size > 44, f"linphonec recorded nothing in {recording}"
    check_call(server, read_recording(recording), menu_prompts, record_property)
