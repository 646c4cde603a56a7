"""Line pieces every caller driver shares: a transfer read from the IVR's REFER."""

from __future__ import annotations

from ivr.harness.line import Transfer


def test_a_transfer_keeps_the_refer_to_uri_and_its_headers_and_the_refers_x_headers() -> None:
    refer_to = '"Desk" <sip:agents@10.0.0.5:5080?X-IVR-Queue=billing&X-Note=a%20b>'
    headers = [("Via", "SIP/2.0/UDP 127.0.0.1"), ("X-IVR-Reason", "escape"), ("x-ivr-queue", "general")]
    t = Transfer.from_refer(refer_to, headers, 1.5)
    assert t.target == "sip:agents@10.0.0.5:5080" and t.at == 1.5
    assert t.headers == {"X-IVR-Queue": "billing", "X-Note": "a b", "X-IVR-Reason": "escape", "x-ivr-queue": "general"}
    assert Transfer.from_refer("sip:desk@h", [], 0.0).headers == {}
