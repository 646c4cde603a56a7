"""The prompt matcher the interop tests use, on synthetic audio whose answer is known.

A "prompt" here is noise in syllable-like bursts: broadband like speech, and
unlike any other draw of the generator, so a different prompt must score low.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest


def _load_audio_match():
    """tests/interop/audio_match.py by path: `tests` is not a package, so plain `pytest` (without
    `python -m`, which puts the project root on sys.path) could not import it by name."""
    path = Path(__file__).resolve().parents[2] / "interop" / "audio_match.py"
    spec = importlib.util.spec_from_file_location("interop_audio_match", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


_am = _load_audio_match()
RATE, find, find_pieces, ncc, score_at = _am.RATE, _am.find, _am.find_pieces, _am.ncc, _am.score_at
pcm_array, through_ulaw = _am.pcm_array, _am.through_ulaw


def syllables(seconds: float, seed: int) -> np.ndarray:
    """Bursts of shaped noise (150-250 ms) with short gaps, at a speaking level."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * RATE))
    pos = 0
    while pos < out.size:
        burst = int(rng.uniform(0.15, 0.25) * RATE)
        gap = int(rng.uniform(0.03, 0.12) * RATE)
        n = min(burst, out.size - pos)
        envelope = np.sin(np.linspace(0, np.pi, n))
        noise = np.convolve(rng.normal(0, 1, n), np.ones(3) / 3, mode="same")  # a little low-pass
        out[pos:pos + n] = 6000 * envelope * noise
        pos += burst + gap
    return out


def pcm(x: np.ndarray) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def recording(prompt: np.ndarray, at: float, total: float, seed: int = 99, noise: float = 30.0) -> np.ndarray:
    """`prompt` placed `at` seconds into `total` seconds of faint noise (a line is never silent)."""
    rng = np.random.default_rng(seed)
    rec = rng.normal(0, noise, int(total * RATE))
    start = int(at * RATE)
    end = min(rec.size, start + prompt.size)
    rec[start:end] += prompt[: end - start]
    return rec


PROMPT = syllables(2.0, seed=1)
OTHER = syllables(2.0, seed=2)


def test_finds_the_prompt_where_it_was_put():
    m = find(recording(PROMPT, 0.73, 4.0), PROMPT)
    assert m.score > 0.99
    assert m.offset == pytest.approx(0.73, abs=1 / RATE)


def test_a_different_prompt_scores_low():
    rec = recording(PROMPT, 0.73, 4.0)
    assert find(rec, OTHER).score < 0.2
    assert find_pieces(rec, OTHER).score < 0.3


def test_score_ignores_the_level():
    rec = recording(PROMPT, 1.0, 4.0)
    loud, quiet = find(rec, PROMPT), find(rec * 0.05, PROMPT)
    assert quiet.score == pytest.approx(loud.score, abs=0.02)
    assert quiet.offset == loud.offset


def test_bytes_and_arrays_are_the_same_input():
    rec = recording(PROMPT, 0.5, 3.0)
    assert find(pcm(rec), pcm(PROMPT)) == find(np.round(rec).clip(-32768, 32767), np.round(PROMPT))
    assert pcm_array(pcm(PROMPT)).size == PROMPT.size


def test_mu_law_costs_next_to_nothing():
    """The expected audio is passed through G.711 like the line; even without it the match holds."""
    line = pcm_array(through_ulaw(pcm(PROMPT)))
    assert find(line, PROMPT).score > 0.99
    assert find(recording(line, 0.2, 3.0), line).score > 0.99


def test_a_prompt_cut_by_the_end_of_the_recording_scores_by_what_is_there():
    """A call cut while the prompt plays: the overlap scores sqrt(share of the prompt's energy)."""
    rec = recording(PROMPT, 1.0, 2.5)  # the last 0.5 s of the prompt is missing
    share = float(np.sum(PROMPT[: int(1.5 * RATE)] ** 2) / np.sum(PROMPT**2))
    m = find(rec, PROMPT)
    assert m.offset == pytest.approx(1.0, abs=1 / RATE)
    assert m.score == pytest.approx(np.sqrt(share), abs=0.02)


def test_a_prompt_already_under_way_when_recording_starts():
    rec = recording(PROMPT, 0.0, 3.0)[int(0.3 * RATE):]  # the first 0.3 s were never recorded
    m = find(rec, PROMPT)
    assert m.offset == pytest.approx(-0.3, abs=1 / RATE)
    assert m.score > 0.9


def test_pieces_absorb_a_lost_frame_that_breaks_the_whole_match():
    """A receiver dropping one 20 ms frame mid-prompt: whole-prompt score falls, pieces hold."""
    cut = int(1.0 * RATE)
    slipped = np.concatenate([PROMPT[:cut], PROMPT[cut + 160:]])
    rec = recording(slipped, 0.5, 4.0)
    whole = find(rec, PROMPT)
    pieces = find_pieces(rec, PROMPT)
    assert whole.score < 0.85
    assert pieces.score > 0.9
    shifts = sorted({round(shift, 3) for _, _, shift in pieces.pieces})
    assert shifts[0] == pytest.approx(-0.02, abs=0.003) or shifts[-1] == pytest.approx(0.02, abs=0.003)
    assert find_pieces(rec, OTHER).score < 0.3


def test_pieces_skip_the_pauses():
    gappy = np.concatenate([PROMPT[:4000], np.zeros(RATE), PROMPT[4000:8000]])
    m = find_pieces(recording(gappy, 0.4, 4.0), gappy)
    assert m.score > 0.95
    assert all(start < 0.5 or start >= 1.5 for start, _, _ in m.pieces)


def test_an_imposed_anchor_asks_whether_the_prompt_is_there():
    """Anchored where a prompt was heard, only that prompt scores high."""
    rec = recording(PROMPT, 0.73, 4.0)
    assert score_at(rec, PROMPT, 0.73) == pytest.approx(find(rec, PROMPT).score, abs=1e-9)
    assert find_pieces(rec, PROMPT, anchor=0.73).score > 0.99
    assert find_pieces(rec, PROMPT, anchor=0.78).score > 0.99  # within the slack of each piece
    assert find_pieces(rec, PROMPT, anchor=1.5).score < 0.3  # the right sound, in the wrong place
    assert find_pieces(rec, OTHER, anchor=0.73).score < 0.3
    assert score_at(rec, PROMPT, 10.0) == 0.0  # past the end: nothing there


def test_silence_and_empty_input_score_zero_without_nan():
    assert find(np.zeros(3 * RATE), PROMPT).score == 0.0
    assert find(b"", PROMPT).score == 0.0
    assert find(recording(PROMPT, 0.1, 3.0), np.zeros(RATE)).score == 0.0
    scores = ncc(np.zeros(RATE), PROMPT)
    assert scores.size == RATE + PROMPT.size - 1 and not np.isnan(scores).any()
    assert find_pieces(np.zeros(RATE), PROMPT).score == 0.0


def test_ncc_index_is_the_start_position_shifted_by_the_padding():
    tpl = syllables(0.2, seed=5)
    rec = recording(tpl, 0.25, 1.0, noise=0.0)
    scores = ncc(rec, tpl)
    k = int(np.argmax(scores))
    assert k - (tpl.size - 1) == int(0.25 * RATE)
    assert scores[k] == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.abs(scores) <= 1.0 + 1e-9)  # Cauchy-Schwarz: a cosine, whatever the window
