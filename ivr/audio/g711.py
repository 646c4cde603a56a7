"""G.711 mu-law (PCMU) and A-law (PCMA) between PCM16 and 8-bit payloads.

Inside the engine audio is PCM16 little-endian mono at 8 kHz; G.711 lives at
the RTP edge. The conversion follows ITU-T G.711 bit for bit as implemented by
the ITU's own reference software (G.191, `g711.c`): negative samples take
their magnitude by one's complement (`~x`), so the 16-bit range is quantised
symmetrically about -0.5 and no code is favoured by the sign.

Python's deprecated `audioop` (from Sun's `g711.c`) agrees for A-law and for
both decoders, but its mu-law encoder negates instead (`-(x >> 2)`), which
puts every negative input one 14-bit step further from zero: for negative x,
`audioop.lin2ulaw(x) == ulaw_encode(x - 4)`. Only samples sitting on a
decision boundary differ, by one code; the tests pin this down exactly.

Speed comes from lookup tables built once at import: 65,536 entries per
encoder (indexed by the sample's unsigned 16-bit pattern) and 256 per decoder,
so a 160-sample frame costs one numpy gather (a few microseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ALAW_DECODE_TABLE",
    "ALAW_ENCODE_TABLE",
    "ULAW_DECODE_TABLE",
    "ULAW_ENCODE_TABLE",
    "G711Codec",
    "PCMA",
    "PCMU",
    "alaw_decode",
    "alaw_encode",
    "codec_by_name",
    "codec_by_payload_type",
    "ulaw_decode",
    "ulaw_encode",
]

_PCM = np.dtype("<i2")  # the engine's sample format, whatever the host's byte order
_PCM_U = np.dtype("<u2")  # the same bytes read as table indices


def _all_samples() -> np.ndarray:
    """Every 16-bit sample value, ordered by its unsigned bit pattern (0, 1, ..., -1)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> np.ndarray:
    # G.191 ulaw_compress: 14-bit magnitude plus the bias of 33, clipped to 13 bits.
    x = _all_samples()
    magnitude = np.where(x < 0, ~x, x) >> 2
    biased = np.minimum(magnitude + 33, 0x1FFF)
    # Segment = position of the highest set bit above bit 5 (1..8).
    segment = np.ones_like(biased)
    rest = biased >> 6
    while rest.any():
        segment += rest != 0
        rest >>= 1
    high = 8 - segment
    low = 0x0F - ((biased >> segment) & 0x0F)
    code = (high << 4) | low
    code = np.where(x >= 0, code | 0x80, code)
    return code.astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    # G.191 ulaw_expand: undo the inversion, rebuild the segment midpoint, remove the bias.
    code = np.arange(256, dtype=np.int32)
    inverted = ~code
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    value = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return np.where(code < 0x80, -value, value).astype(_PCM)


def _build_alaw_encode() -> np.ndarray:
    # G.191 alaw_compress: 12-bit magnitude, segments of 16 steps, even bits inverted.
    x = _all_samples()
    ix = np.where(x < 0, ~x, x) >> 4
    exponent = np.zeros_like(ix)
    big = ix > 15
    shifted = ix.copy()
    exponent[big] = 1
    while True:
        more = shifted > 31
        if not more.any():
            break
        shifted = np.where(more, shifted >> 1, shifted)
        exponent += more
    code = np.where(big, (shifted - 16) + (exponent << 4), ix)
    code = np.where(x >= 0, code | 0x80, code)
    return (code ^ 0x55).astype(np.uint8)


def _build_alaw_decode() -> np.ndarray:
    # G.191 alaw_expand.
    code = np.arange(256, dtype=np.int32)
    ix = (code ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = ix & 0x0F
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    mantissa = (mantissa << 4) + 0x08
    mantissa = np.where(exponent > 1, mantissa << np.maximum(exponent - 1, 0), mantissa)
    return np.where(code > 127, mantissa, -mantissa).astype(_PCM)


def _frozen(table: np.ndarray) -> np.ndarray:
    table.flags.writeable = False  # shared by every call: nobody may patch it
    return table


ULAW_ENCODE_TABLE = _frozen(_build_ulaw_encode())
"""uint8[65536]: mu-law code for each PCM16 sample, indexed by its unsigned bit pattern."""
ULAW_DECODE_TABLE = _frozen(_build_ulaw_decode())
"""int16[256] (little-endian): PCM16 sample for each mu-law code."""
ALAW_ENCODE_TABLE = _frozen(_build_alaw_encode())
"""uint8[65536]: A-law code for each PCM16 sample, indexed by its unsigned bit pattern."""
ALAW_DECODE_TABLE = _frozen(_build_alaw_decode())
"""int16[256] (little-endian): PCM16 sample for each A-law code."""


def _indices(pcm: bytes | bytearray | memoryview) -> np.ndarray:
    if len(pcm) % 2:
        raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype=_PCM_U)


def ulaw_encode(pcm: bytes | bytearray | memoryview) -> bytes:
    """PCM16 little-endian bytes -> mu-law payload (one byte per sample)."""
    return ULAW_ENCODE_TABLE[_indices(pcm)].tobytes()


def ulaw_decode(payload: bytes | bytearray | memoryview) -> bytes:
    """Mu-law payload -> PCM16 little-endian bytes (two bytes per code)."""
    return ULAW_DECODE_TABLE[np.frombuffer(payload, dtype=np.uint8)].tobytes()


def alaw_encode(pcm: bytes | bytearray | memoryview) -> bytes:
    """PCM16 little-endian bytes -> A-law payload (one byte per sample)."""
    return ALAW_ENCODE_TABLE[_indices(pcm)].tobytes()


def alaw_decode(payload: bytes | bytearray | memoryview) -> bytes:
    """A-law payload -> PCM16 little-endian bytes (two bytes per code)."""
    return ALAW_DECODE_TABLE[np.frombuffer(payload, dtype=np.uint8)].tobytes()


@dataclass(frozen=True)
class G711Codec:
    """One G.711 law as the RTP edge sees it: its SDP name, static payload type, converters."""

    name: str
    payload_type: int
    encode: Callable[[bytes], bytes]
    decode: Callable[[bytes], bytes]
    clock_rate: int = 8000
    silence: int = 0  # the code for a zero sample, for comfort padding without a table lookup


PCMU = G711Codec("PCMU", 0, ulaw_encode, ulaw_decode, silence=0xFF)
PCMA = G711Codec("PCMA", 8, alaw_encode, alaw_decode, silence=0xD5)

_BY_NAME = {codec.name: codec for codec in (PCMU, PCMA)}
_BY_PT = {codec.payload_type: codec for codec in (PCMU, PCMA)}


def codec_by_name(name: str) -> G711Codec:
    """The codec for an SDP encoding name ("PCMU"/"pcmu", "PCMA"); KeyError if not G.711."""
    return _BY_NAME[name.upper()]


def codec_by_payload_type(payload_type: int) -> G711Codec:
    """The codec for a static RTP payload type (0 or 8); KeyError otherwise."""
    return _BY_PT[payload_type]
