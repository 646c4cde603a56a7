"""The gather node: digits or speech into a variable, checked by a pattern."""

from __future__ import annotations

import re

from ...flows.model import Gather
from ..context import CallContext, Go
from ..matching import best_match
from ..turn import KeyRules
from .common import ask, confirm, escape, failed, record_input, setting, succeeded


async def run_gather(ctx: CallContext, node: Gather) -> Go:
    keys, esc_phrases, _ = ctx.flow.escape_for(node)
    digits = node.digits if (node.digits or not node.speech) else None
    d_min, d_max = (digits.min, digits.max) if digits else (1, 20)
    term = digits.terminator if digits else "#"
    speech_phrases = list(node.speech.phrases) if node.speech else []
    pattern = re.compile(node.pattern) if node.pattern else None
    first = True
    while True:
        prompts = node.prompt if first or not node.reprompt else node.reprompt
        first = False
        res = await ask(
            ctx, node, prompts,
            keys=KeyRules(min_digits=d_min, max_digits=d_max, terminator=term) if digits or keys else None,
            phrases=_listen_for(node, speech_phrases, esc_phrases))
        value = res.value.strip()
        if res.via == "dtmf" and value in keys and not _valid_digits(value, d_min, d_max, pattern, digits):
            record_input(ctx, res, "escape")
            return escape(ctx, node)
        if res.via == "speech":
            threshold = setting(ctx, node, "confidence")
            confident = res.confidence is None or res.confidence >= threshold
            if not confident and value:
                # Unsure: ask rather than store a wrong answer.
                answer = await confirm(ctx, node, value)
                if answer == "escape":
                    record_input(ctx, res, "escape")
                    return escape(ctx, node)
                confident = answer == "yes"
            if confident and best_match(value, [(p, True) for p in esc_phrases]) \
                    and not (node.speech and best_match(value, [(p, True) for p in speech_phrases])):
                record_input(ctx, res, "escape")
                return escape(ctx, node)
            if confident and node.speech:
                if speech_phrases and not node.speech.free:
                    value = best_match(value, [(p, p) for p in speech_phrases]) or ""
                if value and (pattern is None or pattern.fullmatch(value)):
                    return _store(ctx, node, res, value)
        elif res.via == "dtmf" and digits and _valid_digits(value, d_min, d_max, pattern, digits):
            return _store(ctx, node, res, value)
        kind = "no_input" if res.via == "nothing" else "no_match"
        record_input(ctx, res, kind.replace("_", "-"))
        out = await failed(ctx, node, kind)
        if out is not None:
            return out


def _listen_for(node: Gather, speech_phrases: list[str], esc_phrases: list[str]) -> list[str] | None:
    """What the recogniser listens for: [] is free speech (which hears the escape
    phrases too), None is no speech at all."""
    if node.speech and node.speech.free:
        return []
    if node.speech:
        return speech_phrases + list(esc_phrases)
    return list(esc_phrases) or None


def _valid_digits(value, d_min, d_max, pattern, digits) -> bool:
    if not digits or not d_min <= len(value) <= d_max:
        return False
    return pattern is None or pattern.fullmatch(value) is not None


def _store(ctx: CallContext, node: Gather, res, value: str) -> Go:
    record_input(ctx, res, "valid")
    succeeded(ctx)
    ctx.variables[node.into] = value
    ctx.journey.emit("set", name=node.into, value=value)
    return Go(node.next or "", "next")
