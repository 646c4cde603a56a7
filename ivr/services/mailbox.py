"""Mailbox arithmetic shared by every voicemail store: is there room, how full is it."""

from __future__ import annotations

from dataclasses import dataclass

from ..flows.model import Mailbox

SHORTEST_SLOT_S = 1.0  # a slot shorter than this is no use to a caller, whatever min_message says
WARN_AT = 0.8  # the fill level that sends the first notification


@dataclass(frozen=True)
class Usage:
    """What a mailbox holds now: stored messages, and slots promised to callers."""

    messages: int = 0
    seconds: float = 0.0
    held: int = 0
    held_seconds: float = 0.0


def room(limits: Mailbox, usage: Usage) -> float | None:
    """Seconds a new caller may record, or None when the box must not be offered."""
    if usage.messages + usage.held >= limits.max_messages:
        return None
    left = limits.max_total - usage.seconds - usage.held_seconds
    seconds = min(limits.max_message, left)
    if seconds < max(limits.min_message, SHORTEST_SLOT_S):
        return None
    return seconds


def fill(limits: Mailbox, messages: int, seconds: float) -> float:
    """How full the box is, 0..1: the tighter of its two limits."""
    return max(messages / limits.max_messages, seconds / limits.max_total)


def crossings(limits: Mailbox, before: Usage, after: Usage) -> list[str]:
    """Levels reached by a change of stored messages: "80%" and/or "full" (each once per crossing)."""
    out = []
    if fill(limits, before.messages, before.seconds) < WARN_AT <= fill(limits, after.messages, after.seconds):
        out.append("80%")
    stored_only = Usage(after.messages, after.seconds)
    if room(limits, Usage(before.messages, before.seconds)) is not None and room(limits, stored_only) is None:
        out.append("full")
    return out
