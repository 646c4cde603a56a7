"""The browser-call flags of `ivr serve`: parsed, checked, and their defaults."""

from __future__ import annotations

import pytest

from ivr.cli import build_parser


def parse(*argv: str):
    return build_parser().parse_args(["serve", *argv])


def test_defaults():
    a = parse()
    assert (a.webrtc_max_calls, a.webrtc_origin, a.webrtc_token, a.ice_server, a.webrtc_host) == \
        (50, None, None, None, None)


def test_repeatable_flags():
    a = parse("--webrtc-max-calls", "3", "--webrtc-origin", "https://a.example.org",
              "--webrtc-origin", "http://localhost:3000", "--webrtc-token", "t",
              "--ice-server", "stun:stun.example.org:3478", "--ice-server", "turn:turn.example.org",
              "--webrtc-host", "127.0.0.1", "--webrtc-host", "::1")
    assert a.webrtc_max_calls == 3 and a.webrtc_token == "t"
    assert a.webrtc_origin == ["https://a.example.org", "http://localhost:3000"]
    assert a.ice_server == ["stun:stun.example.org:3478", "turn:turn.example.org"]
    assert a.webrtc_host == ["127.0.0.1", "::1"]


@pytest.mark.parametrize("flag, value", [
    ("--webrtc-origin", "example.org"),
    ("--webrtc-origin", "https://example.org/page"),
    ("--ice-server", "https://stun.example.org"),
    ("--webrtc-host", "localhost"),
    ("--webrtc-max-calls", "many"),
])
def test_bad_values_are_refused(flag, value, capsys):
    with pytest.raises(SystemExit):
        parse(flag, value)
    assert flag in capsys.readouterr().err
