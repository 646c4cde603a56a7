"""The one exception the SIP message layer raises on bad input.

Everything that reads bytes from the network (`parse`, `StreamParser`, the
header parsers, `validate_request`) raises only `SipParseError`, so a
transport can catch one type, answer with `status` and `reason` when the
message was a request, and drop it otherwise.
"""

from __future__ import annotations

from typing import Any


class SipParseError(Exception):
    """Input that is not an acceptable SIP message or header value.

    `status` is the response code to answer with (400 Bad Request usually,
    505 for an unsupported SIP version, 513 for a message over the size
    limits, 413 for a body over them). `reason` is short and printable, fit
    for a reason phrase. `message` is the request or response when its start
    line and headers could be read, so that a 400 can still be built with
    `make_response` (it is None when nothing usable was read).
    """

    def __init__(self, status: int, reason: str, message: Any = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message
