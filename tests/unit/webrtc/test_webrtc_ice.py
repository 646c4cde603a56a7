"""ICE settings: the host addresses offered (loopback included when asked), servers, candidates."""

from __future__ import annotations

import aioice.ice
import pytest

from ivr.webrtc import ice
from ivr.webrtc.protocol import Candidate


@pytest.fixture
def hosts():
    yield ice.offer_hosts
    ice.offer_hosts(None)


def test_named_host_addresses_are_the_ones_offered_loopback_too(hosts):
    hosts(["127.0.0.1", "::1", "192.0.2.7"])
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1", "192.0.2.7"]
    assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1", "192.0.2.7"]
    assert aioice.ice.get_host_addresses(False, True) == ["::1"]


def test_without_addresses_aioice_chooses_as_before(hosts):
    hosts([])
    chosen = aioice.ice.get_host_addresses(True, False)
    assert "127.0.0.1" not in chosen
    hosts(None)
    assert aioice.ice.get_host_addresses(True, False) == chosen


def test_a_gathering_connection_offers_loopback(hosts):
    import asyncio

    hosts(["127.0.0.1"])

    async def gather():
        conn = aioice.Connection(ice_controlling=False)
        await conn.gather_candidates()
        try:
            return [(c.host, c.type) for c in conn.local_candidates]
        finally:
            await conn.close()

    assert asyncio.run(gather()) == [("127.0.0.1", "host")]


def test_the_configuration_names_its_servers_and_never_falls_back_to_a_public_one():
    assert ice.configuration([]).iceServers == []
    conf = ice.configuration(["stun:stun.example.org:3478"])
    assert [s.urls for s in conf.iceServers] == ["stun:stun.example.org:3478"]


def test_ice_server_urls_are_checked():
    assert ice.check_ice_server("stun:stun.example.org:3478") == "stun:stun.example.org:3478"
    assert ice.check_ice_server("turn:turn.example.org?transport=tcp")
    for bad in ("http://stun.example.org", "stun:", "stun.example.org:3478"):
        with pytest.raises(ValueError):
            ice.check_ice_server(bad)


def test_remote_candidates():
    line = "candidate:842163049 1 udp 1677729535 203.0.113.9 46154 typ srflx raddr 10.0.0.2 rport 46154"
    cand = ice.remote_candidate(Candidate(line, "0", 0))
    assert (cand.ip, cand.port, cand.type, cand.protocol, cand.priority) == \
        ("203.0.113.9", 46154, "srflx", "udp", 1677729535)
    assert (cand.relatedAddress, cand.sdpMid, cand.sdpMLineIndex) == ("10.0.0.2", "0", 0)
    assert ice.remote_candidate(Candidate(None)) is None
    for bad in ("candidate:1 1 udp", "candidate:a b c d e f g h"):
        with pytest.raises(ValueError, match="unreadable candidate"):
            ice.remote_candidate(Candidate(bad, "0", 0))
