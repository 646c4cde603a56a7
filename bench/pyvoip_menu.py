"""The benchmark's baseline: the same menu as bench/flows/menu_hold.yaml, as a
plain pyVoIP 1.6.8 answering script.

It registers to a registrar (pyVoIP sends everything to it), answers every
call, plays a WAV prompt in a loop, reads RFC 2833 keys, and on one of 1-4
plays a goodbye WAV and hangs up. Each finished call appends one JSON line
(call id, key, times) to --journal. It runs until SIGTERM/SIGINT or
--max-seconds, whichever comes first.

    python bench/pyvoip_menu.py --registrar-port 5060 --sip-port 5062 \
        --rtp-ports 40000-40999 --prompt menu.wav --goodbye bye.wav --journal calls.jsonl

The WAVs must be 8 kHz mono 8-bit unsigned (what pyVoIP writes as audio).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import warnings
import wave
from pathlib import Path

KEYS = "1234"
CALL_LIMIT = 600.0  # seconds: no call handler runs longer than this


def read_wav(path: Path) -> tuple[bytes, float]:
    """The WAV's 8-bit frames and their length in seconds."""
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 1):
            raise SystemExit(f"{path}: need 8 kHz mono 8-bit unsigned")
        data = w.readframes(w.getnframes())
    return data, len(data) / 8000


def main(argv: list[str] | None = None) -> int:
    """Run the phone until told to stop; the exit status is 0 when it registered."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registrar-host", default="localhost")
    ap.add_argument("--registrar-port", type=int, required=True)
    ap.add_argument("--user", default="pyvoip")
    ap.add_argument("--sip-port", type=int, required=True)
    ap.add_argument("--rtp-ports", required=True, help="LO-HI")
    ap.add_argument("--prompt", type=Path, required=True)
    ap.add_argument("--goodbye", type=Path, required=True)
    ap.add_argument("--journal", type=Path, required=True)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    args = ap.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # audioop's
        import pyVoIP.VoIP as voip  # before pyVoIP.SIP: the package imports circularly

    prompt, prompt_s = read_wav(args.prompt)
    goodbye, goodbye_s = read_wav(args.goodbye)
    journal_lock = threading.Lock()
    journal = args.journal.open("a")

    def record(entry: dict) -> None:
        with journal_lock:
            journal.write(json.dumps(entry) + "\n")
            journal.flush()

    def on_call(call) -> None:
        """The menu: prompt in a loop until a key, then goodbye and hang up."""
        answered = time.time()
        entry = {"call_id": call.call_id, "answered": answered, "key": None, "key_t": None, "outcome": "caller-hangup"}
        try:
            call.answer()
            call.write_audio(prompt)
            next_write = time.monotonic() + prompt_s
            end = time.monotonic() + CALL_LIMIT
            while call.state == voip.CallState.ANSWERED and time.monotonic() < end:
                key = call.get_dtmf()
                if key and key in KEYS:
                    entry.update(key=key, key_t=time.time())
                    call.write_audio(goodbye)
                    time.sleep(goodbye_s)
                    call.hangup()
                    entry["outcome"] = "hangup"
                    break
                if time.monotonic() >= next_write:
                    call.write_audio(prompt)
                    next_write += prompt_s
                time.sleep(0.05)
        except voip.InvalidStateError:
            pass  # the caller hung up first
        except Exception as exc:  # noqa: BLE001 - a benchmark records, never hides, a failure
            entry["outcome"] = f"error: {exc!r}"
        entry["ended"] = time.time()
        record(entry)

    lo, hi = (int(p) for p in args.rtp_ports.split("-"))
    phone = voip.VoIPPhone(args.registrar_host, args.registrar_port, args.user, "", myIP="127.0.0.1",
                           callCallback=on_call, sipPort=args.sip_port, rtpPortLow=lo, rtpPortHigh=hi)
    phone.sip.register_timeout = 5
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    phone.start()
    status = phone.get_status()
    print(f"status {status.name}", flush=True)
    ok = status == voip.PhoneStatus.REGISTERED
    if ok:
        print("registered", flush=True)
        stop.wait(args.max_seconds)
    stopper = threading.Thread(target=phone.stop, daemon=True)  # it can block on sockets
    stopper.start()
    stopper.join(15)
    journal.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
