"""Who may open the softphone socket: the Origin check and the token."""

from __future__ import annotations

import pytest

from ivr.webrtc.access import origin_allowed, origin_key, token_ok


@pytest.mark.parametrize("origin, host", [
    ("http://127.0.0.1:8080", "127.0.0.1:8080"),
    ("http://ivr.example.org", "ivr.example.org"),
    ("http://ivr.example.org:80", "ivr.example.org"),
    ("https://ivr.example.org", "ivr.example.org"),  # behind a TLS proxy: Host has no port
    ("https://ivr.example.org", "ivr.example.org:443"),
    ("https://IVR.Example.org", "ivr.example.org"),
    ("http://[::1]:8080", "[::1]:8080"),
])
def test_the_servers_own_origin_is_allowed(origin, host):
    assert origin_allowed(origin, host)


@pytest.mark.parametrize("origin, host", [
    ("http://evil.example.com", "ivr.example.org"),
    ("http://ivr.example.org:8081", "ivr.example.org:8080"),
    ("http://127.0.0.1:8080", "localhost:8080"),
    ("https://ivr.example.org", "ivr.example.org:80"),
    ("null", "ivr.example.org"),  # a file or a sandboxed page
    ("", "ivr.example.org"),
    ("ftp://ivr.example.org", "ivr.example.org"),
    ("http://ivr.example.org:99999", "ivr.example.org"),
])
def test_other_origins_are_refused(origin, host):
    assert not origin_allowed(origin, host)


def test_listed_origins_are_allowed_exactly():
    listed = ["https://phone.example.org", "http://localhost:3000/"]
    assert origin_allowed("https://phone.example.org", "ivr.internal:8080", listed)
    assert origin_allowed("https://phone.example.org:443", "ivr.internal:8080", listed)
    assert origin_allowed("http://localhost:3000", "ivr.internal:8080", listed)
    assert not origin_allowed("http://phone.example.org", "ivr.internal:8080", listed)  # scheme differs
    assert not origin_allowed("https://phone.example.org.evil.com", "ivr.internal:8080", listed)


def test_a_client_that_sends_no_origin_is_not_a_browser_and_passes_this_check():
    assert origin_allowed(None, "ivr.example.org")


def test_origin_keys():
    assert origin_key("https://A.example:8443/x") == ("https", "a.example", 8443)
    assert origin_key("http://a.example") == ("http", "a.example", 80)
    assert origin_key("null") is None


def test_tokens():
    assert token_ok(None, None) and token_ok("anything", None) and token_ok(None, "")
    assert token_ok("s3cret", "s3cret")
    assert not token_ok(None, "s3cret")
    assert not token_ok("", "s3cret")
    assert not token_ok("s3cre", "s3cret")
    assert not token_ok("ünï", "s3cret")
