"""G.711 against a plain per-sample transcription of the ITU reference code (G.191 g711.c).

Every one of the 65,536 PCM16 inputs is encoded and every one of the 256 codes
decoded, for both laws; `audioop` (deprecated, still in 3.11/3.12) is a second,
independent check where it is importable.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from ivr.audio import g711

ALL_SAMPLES = range(-32768, 32768)
ALL_PCM = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_CODES = bytes(range(256))


# --- reference: the G.191 loops, one sample at a time, no tables ------------------------------


def ref_ulaw_compress(x: int) -> int:
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    code = (high_nibble << 4) | low_nibble
    if x >= 0:
        code |= 0x0080
    return code


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_compress(x: int) -> int:
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x0080
    return ix ^ 0x0055


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x0055) & 0x007F
    iexp = ix >> 4
    mant = ix & 0x000F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x0008
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def _pcm(samples) -> bytes:
    return np.asarray(list(samples), dtype="<i2").tobytes()


def _samples(pcm: bytes) -> list[int]:
    return np.frombuffer(pcm, dtype="<i2").tolist()


# --- exhaustive agreement with the reference -------------------------------------------------


def test_ulaw_encode_all_inputs():
    assert list(g711.ulaw_encode(ALL_PCM)) == [ref_ulaw_compress(x) for x in ALL_SAMPLES]


def test_alaw_encode_all_inputs():
    assert list(g711.alaw_encode(ALL_PCM)) == [ref_alaw_compress(x) for x in ALL_SAMPLES]


def test_ulaw_decode_all_codes():
    assert _samples(g711.ulaw_decode(ALL_CODES)) == [ref_ulaw_expand(c) for c in range(256)]


def test_alaw_decode_all_codes():
    assert _samples(g711.alaw_decode(ALL_CODES)) == [ref_alaw_expand(c) for c in range(256)]


# --- known values from G.711 itself ----------------------------------------------------------


def test_landmarks():
    # Zero: mu-law 0xFF (all ones) / 0x7F for the smallest negative; A-law 0xD5 / 0x55.
    assert g711.ulaw_encode(_pcm([0, -1])) == b"\xff\x7f"
    assert g711.alaw_encode(_pcm([0, -1])) == b"\xd5\x55"
    # Full scale: no zero-code suppression, as in G.711 itself.
    assert g711.ulaw_encode(_pcm([32767, -32768])) == b"\x80\x00"
    assert g711.alaw_encode(_pcm([32767, -32768])) == b"\xaa\x2a"
    # Largest decoded magnitudes: 8031 (14-bit) and 4032 (13-bit), on the 16-bit scale.
    assert _samples(g711.ulaw_decode(b"\x80\x00")) == [32124, -32124]
    assert _samples(g711.alaw_decode(b"\xaa\x2a")) == [32256, -32256]
    assert _samples(g711.ulaw_decode(b"\xff\x7f")) == [0, 0]
    assert _samples(g711.alaw_decode(b"\xd5\x55")) == [8, -8]


def test_decode_then_encode_is_identity_on_codes():
    # Each decoded value lies inside its own quantisation interval.
    assert g711.ulaw_encode(g711.ulaw_decode(ALL_CODES)) == bytes(
        c if c != 0x7F else 0xFF
        for c in range(256)  # -0 and +0 decode to the same 0
    )
    assert g711.alaw_encode(g711.alaw_decode(ALL_CODES)) == ALL_CODES


def test_symmetry_about_minus_half():
    # One's-complement magnitudes: x and ~x differ only in the sign bit.
    for table in (g711.ULAW_ENCODE_TABLE, g711.ALAW_ENCODE_TABLE):
        enc = table[np.arange(65536)]  # indexed by the unsigned pattern: ~x is 65535 - index
        assert np.array_equal(enc ^ enc[::-1], np.full(65536, 0x80, dtype=np.uint8))


def test_monotonic():
    x = np.arange(-32768, 32768, dtype="<i2").tobytes()
    for enc, dec in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        y = np.frombuffer(dec(enc(x)), dtype="<i2")
        assert np.all(np.diff(y.astype(np.int32)) >= 0)
        # Quantisation error stays within half a step of the top segment.
        assert np.abs(y.astype(np.int32) - np.arange(-32768, 32768)).max() <= 1024


# --- API details -----------------------------------------------------------------------------


def test_frame_sizes_and_types():
    frame = bytes(320)
    assert len(g711.ulaw_encode(frame)) == 160
    assert len(g711.alaw_encode(bytearray(frame))) == 160
    assert len(g711.ulaw_decode(memoryview(b"\xff" * 160))) == 320
    assert g711.ulaw_encode(b"") == b"" and g711.alaw_decode(b"") == b""
    with pytest.raises(ValueError):
        g711.ulaw_encode(b"\x00\x00\x00")


def test_little_endian_regardless_of_host():
    assert g711.ulaw_encode(b"\x00\x80") == b"\x00"  # 0x8000 little-endian = -32768
    assert g711.ulaw_decode(b"\x80") == (32124).to_bytes(2, "little", signed=True)


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        g711.ULAW_ENCODE_TABLE[0] = 1


def test_codec_lookup():
    assert g711.codec_by_name("pcmu") is g711.PCMU
    assert g711.codec_by_payload_type(8) is g711.PCMA
    assert g711.PCMU.encode(bytes(2)) == bytes([g711.PCMU.silence])
    assert g711.PCMA.encode(bytes(2)) == bytes([g711.PCMA.silence])
    with pytest.raises(KeyError):
        g711.codec_by_name("G722")


# --- cross-check with audioop ----------------------------------------------------------------


@pytest.fixture(scope="module")
def audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            pytest.skip("audioop is gone from this Python")


def test_audioop_decoders_agree(audioop):
    assert audioop.ulaw2lin(ALL_CODES, 2) == g711.ulaw_decode(ALL_CODES)
    assert audioop.alaw2lin(ALL_CODES, 2) == g711.alaw_decode(ALL_CODES)


def test_audioop_alaw_encoder_agrees(audioop):
    assert audioop.lin2alaw(ALL_PCM, 2) == g711.alaw_encode(ALL_PCM)


def test_audioop_ulaw_encoder_differs_only_by_its_negation(audioop):
    # audioop negates negative samples (Sun's code) where G.191 takes the one's complement,
    # so for x < 0 it encodes x as G.711 encodes x - 4; non-negative samples agree exactly.
    x = np.arange(-32768, 32768)
    theirs = np.frombuffer(audioop.lin2ulaw(ALL_PCM, 2), dtype=np.uint8)
    ours = np.frombuffer(g711.ulaw_encode(ALL_PCM), dtype=np.uint8)
    assert np.array_equal(theirs[x >= 0], ours[x >= 0])
    shifted = np.clip(x - 4, -32768, 32767).astype("<i2").tobytes()
    ours_shifted = np.frombuffer(g711.ulaw_encode(shifted), dtype=np.uint8)
    assert np.array_equal(theirs[x < 0], ours_shifted[x < 0])
    # ...and that is rare: only inputs on a decision boundary move, by one code.
    differ = theirs != ours
    assert 0 < differ.sum() < 1000
    assert np.abs(theirs[differ].astype(int) - ours[differ].astype(int)).max() == 1
