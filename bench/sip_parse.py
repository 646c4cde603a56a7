"""How many SIP messages per second the message layer handles, per step.

    python bench/sip_parse.py 50000

Parses a typical INVITE (SIPp's, relayed by Kamailio: two Vias, a
Record-Route, an SDP body) N times and prints messages/s for: parse alone,
parse + validate_request (what the UDP transport does with every request),
the same through the TCP StreamParser, building the 200 with make_response,
and serializing it. Target: far above the 200 call setups/s a process must
sustain (a call setup is a handful of messages: INVITE, ACK, BYE and their
responses). No timing is asserted anywhere; this only reports.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.sip.message import make_response, parse  # noqa: E402
from ivr.sip.stream import StreamParser  # noqa: E402
from ivr.sip.validate import validate_request  # noqa: E402

SDP = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)
INVITE = (
    "INVITE sip:ivr@127.0.0.1:5080 SIP/2.0\r\n"
    "Record-Route: <sip:127.0.0.1;lr>\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK0d4c.5e0a3a3f8b0a9c2c6f1b7e5d4a3c2b1a.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5071;received=127.0.0.1;rport=5071;branch=z9hG4bK-41417-1-0\r\n"
    "From: sipp <sip:sipp@127.0.0.1:5071>;tag=41417SIPpTag001\r\n"
    "To: ivr <sip:ivr@127.0.0.1:5060>\r\n"
    "Call-ID: 1-41417@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: sip:sipp@127.0.0.1:5071\r\n"
    "Max-Forwards: 69\r\n"
    "Subject: Performance Test\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
).encode()


def _rate(fn, n: int, runs: int = 5) -> float:
    """Median messages/s over `runs` runs of `fn` called n times."""
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def _stream(n: int) -> float:
    wire = INVITE * 100
    parser = StreamParser()
    rates = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n // 100):
            parser.feed(wire)
            for _ in parser:
                pass
        rates.append((n // 100) * 100 / (time.perf_counter() - t))
    return statistics.median(rates)


def main(n: int) -> None:
    request = parse(INVITE)
    validate_request(request)  # type: ignore[arg-type]
    response = make_response(request, 200, to_tag="ivr-1")  # type: ignore[arg-type]
    results = {
        "parse": _rate(lambda: parse(INVITE), n),
        "parse+validate": _rate(lambda: validate_request(parse(INVITE)), n),  # type: ignore[arg-type]
        "stream(tcp)": _stream(n),
        "make_response": _rate(lambda: make_response(request, 200, to_tag="ivr-1"), n),  # type: ignore[arg-type]
        "serialize": _rate(response.serialize, n),
    }
    print(f"INVITE of {len(INVITE)} bytes, {len(request.headers)} headers, n={n}")
    for name, rate in results.items():
        print(f"{name:>15}: {rate:10,.0f} messages/s  ({1e6 / rate:6.1f} us each)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
