"""Find a known prompt in what a softphone heard, by normalised cross-correlation.

The matcher is the harness's (ivr/harness/listen.py, which explains how it
works); the interop tests use it under the names they have always used:
`find` scores the whole prompt at one offset (strict: a slipped 20 ms frame
halves it), `find_pieces` scores it half a second at a time around that
anchor (tolerant of a receiver's playout slips), `line_prompt` renders a text
prompt as the server sends it on a PCMU line.
"""

from __future__ import annotations

from ivr.harness.listen import (
    RATE,
    PieceMatch,
    find_pieces,
    line_prompt,
    ncc,
    pcm_array,
    score_at,
    through_ulaw,
)
from ivr.harness.listen import Alignment as Match
from ivr.harness.listen import align as find

__all__ = ["RATE", "Match", "PieceMatch", "find", "find_pieces", "line_prompt", "ncc", "pcm_array",
           "score_at", "through_ulaw"]
