"""baresip calls the IVR: its RFC 2833 key takes the right branch, and it hears the right prompts.

baresip is a real softphone, driven over its ctrl_tcp socket. It listens to
the menu, presses 2, and is hung up on after "Goodbye.". Besides the journey,
the test checks the sound itself: the recording baresip made of what it heard
must contain the menu prompt and then the goodbye, as the server's TTS
renders them through mu-law, and must not contain a sentence never played.
"""

from __future__ import annotations

from .conftest import need
from .heard_menu import FLOWS, HEARD, MENU_TEXT, check_call
from .softphones import Baresip, read_recording, write_silence


def test_baresip_presses_2_hears_the_menu_then_goodbye(serve, tmp_path, menu_prompts, record_property):
    need("baresip")
    server = serve(FLOWS)
    # Silence as the microphone, longer than the call: baresip hangs up when the file ends.
    mic = write_silence(tmp_path / "mic.wav", 90)
    with Baresip(tmp_path, mic) as phone:
        phone.dial(f"sip:ivr@127.0.0.1:{server.sip_port}")
        # Press only once the whole menu has been heard, so the recording holds all of it.
        phone.wait_heard(menu_prompts[MENU_TEXT], threshold=HEARD, timeout=40)
        phone.send_digits("2")
        # The IVR says goodbye and hangs up by itself: the phone never sends `hangup`.
        phone.wait_event("CALL_CLOSED", timeout=30)
        recording = phone.recording("dec")
    assert recording is not None, f"baresip recorded nothing in {phone.rec_dir}"

    # baresip has quit, so sndfile has finished the file.
    check_call(server, read_recording(recording), menu_prompts, record_property)
