"""A tiny libpcap reader and writer for UDP: captured RTP for tests and the harness.

Only the classic pcap format (not pcapng), which is what SIPp ships and what
`tcpdump -w` writes by default. Link layers: Ethernet (with 802.1Q tags), BSD
loopback, raw IP and Linux "cooked" captures (SLL, SLL2); network layers IPv4
and IPv6. Packets that are not UDP, or are IP fragments other than the first,
are skipped rather than rejected: a capture holds all sorts of traffic.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PcapError", "UdpDatagram", "read_pcap", "read_pcap_file", "write_pcap"]

_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),  # nanosecond timestamps
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_LINK_NULL, _LINK_ETHERNET, _LINK_RAW, _LINK_SLL = 0, 1, 101, 113
_LINK_IPV4, _LINK_IPV6, _LINK_SLL2 = 228, 229, 276
_ETH_IPV4, _ETH_IPV6, _ETH_VLAN = 0x0800, 0x86DD, {0x8100, 0x88A8}
_UDP = 17


class PcapError(ValueError):
    """The file is not a classic pcap capture, or is cut short."""


@dataclass(frozen=True)
class UdpDatagram:
    """One captured UDP datagram: when, from where, to where, and its payload."""

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def read_pcap_file(path: str | Path) -> list[UdpDatagram]:
    """All UDP datagrams of a pcap file, in capture order."""
    return list(read_pcap(Path(path).read_bytes()))


def read_pcap(data: bytes) -> Iterator[UdpDatagram]:
    """UDP datagrams from the bytes of a pcap capture."""
    if len(data) < 24 or data[:4] not in _MAGIC:
        raise PcapError("not a classic pcap file (pcapng is not supported)")
    order, unit = _MAGIC[data[:4]]
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    offset = 24
    while offset < len(data):
        if offset + 16 > len(data):
            raise PcapError(f"record header cut short at byte {offset}")
        sec, frac, caplen, _ = struct.unpack_from(order + "IIII", data, offset)
        offset += 16
        frame = data[offset : offset + caplen]
        if len(frame) < caplen:
            raise PcapError(f"record cut short at byte {offset}")
        offset += caplen
        datagram = _udp(_network(linktype, frame, order), sec + frac * unit)
        if datagram is not None:
            yield datagram


def _network(linktype: int, frame: bytes, order: str) -> tuple[int, bytes] | None:
    """(ethertype, IP packet) from a link-layer frame, or None if not IP."""
    if linktype == _LINK_ETHERNET:
        ethertype, pos = int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else 0, 14
        while ethertype in _ETH_VLAN and len(frame) >= pos + 4:
            ethertype, pos = int.from_bytes(frame[pos + 2 : pos + 4], "big"), pos + 4
        return ethertype, frame[pos:]
    if linktype == _LINK_SLL:
        return (int.from_bytes(frame[14:16], "big") if len(frame) >= 16 else 0), frame[16:]
    if linktype == _LINK_SLL2:
        return (int.from_bytes(frame[0:2], "big") if len(frame) >= 20 else 0), frame[20:]
    if linktype == _LINK_NULL:
        # The address family, in the byte order of the capturing host; 2 = AF_INET.
        family = struct.unpack_from(order + "I", frame)[0] if len(frame) >= 4 else 0
        return (_ETH_IPV4 if family == 2 else _ETH_IPV6), frame[4:]
    if linktype in (_LINK_RAW, _LINK_IPV4, _LINK_IPV6):
        version = frame[0] >> 4 if frame else 0
        return (_ETH_IPV4 if version == 4 else _ETH_IPV6), frame
    return None


def _udp(network: tuple[int, bytes] | None, when: float) -> UdpDatagram | None:
    if network is None:
        return None
    ethertype, packet = network
    if ethertype == _ETH_IPV4 and len(packet) >= 20 and packet[0] >> 4 == 4:
        header = (packet[0] & 0x0F) * 4
        fragment = int.from_bytes(packet[6:8], "big") & 0x1FFF
        if packet[9] != _UDP or fragment:
            return None
        src, dst = ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20])
        # A zero total length is what captures of offloaded segments show: use what is there.
        end = int.from_bytes(packet[2:4], "big") or len(packet)
        segment = packet[header:end]
    elif ethertype == _ETH_IPV6 and len(packet) >= 40 and packet[0] >> 4 == 6:
        if packet[6] != _UDP:  # extension headers before UDP: not worth following here
            return None
        src, dst = ipaddress.IPv6Address(packet[8:24]), ipaddress.IPv6Address(packet[24:40])
        segment = packet[40 : 40 + int.from_bytes(packet[4:6], "big")]
    else:
        return None
    if len(segment) < 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", segment)
    return UdpDatagram(when, (str(src), sport), (str(dst), dport), bytes(segment[8:length]))


def write_pcap(datagrams: Iterable[UdpDatagram]) -> bytes:
    """A pcap capture (raw IP link type) of the datagrams, for tests and saved media.

    Checksums are left at zero, which capture tools display as "not computed".
    """
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, _LINK_RAW)]
    for d in datagrams:
        src, dst = ipaddress.ip_address(d.src[0]), ipaddress.ip_address(d.dst[0])
        if src.version != dst.version:
            raise ValueError("source and destination must be the same IP version")
        udp = struct.pack("!HHHH", d.src[1], d.dst[1], 8 + len(d.payload), 0) + d.payload
        if src.version == 4:
            ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 0, 0, 64, _UDP, 0)
            ip += src.packed + dst.packed
        else:
            ip = struct.pack("!IHBB", 6 << 28, len(udp), _UDP, 64) + src.packed + dst.packed
        frame = ip + udp
        sec, usec = divmod(round(d.time * 1e6), 1_000_000)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    return b"".join(out)
