"""Matching what a caller said against the phrases a node accepts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from ..flows.fields import normalise_phrase

T = TypeVar("T")


def best_match(utterance: str, candidates: Iterable[tuple[str, T]]) -> T | None:
    """The candidate whose phrase occurs as whole words in the utterance; the
    longest phrase wins ("technical support" over "support"), the first on ties."""
    words = normalise_phrase(utterance).split()
    if not words:
        return None
    padded = " " + " ".join(words) + " "
    best: tuple[int, T] | None = None
    for phrase, value in candidates:
        if phrase and f" {phrase} " in padded and (best is None or len(phrase) > best[0]):
            best = (len(phrase), value)
    return best[1] if best else None
