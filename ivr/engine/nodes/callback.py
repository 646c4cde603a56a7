"""The callback node: capture and confirm a number, store the promise durably."""

from __future__ import annotations

import datetime as dt
import re

from ...flows.model import Callback, Handoff
from ..call import PromptAudio
from ..context import CallContext, End, Go
from ..matching import best_match
from ..services import CallbackRequest
from ..turn import KeyRules
from .common import ask, escape, failed, record_input, succeeded
from .handoff import payload_for

YES = ["yes", "confirm", "correct", "that's right", "yes please"]
NO = ["no", "different number", "another number", "change"]
NUMBER = re.compile(r"^\+?[0-9]{6,15}$")
STORE_FAILED = "Sorry, we could not book your callback."


def _say(ctx: CallContext, text: str) -> PromptAudio:
    return PromptAudio(text=text, language=ctx.flow.language)


def _digits(number: str) -> str:
    spoken = " ".join(number.lstrip("+"))
    return f"plus {spoken}" if number.startswith("+") else spoken


def _when(seconds: float) -> str:
    if seconds < 3600:
        return f"{round(seconds / 60)} minutes"
    if seconds < 2 * 86400:
        hours = round(seconds / 3600)
        return "1 hour" if hours == 1 else f"{hours} hours"
    return f"{round(seconds / 86400)} days"


async def run_callback(ctx: CallContext, node: Callback) -> Go | End:
    # Only a caller id that is a phone number (not an address such as webrtc:127.0.0.1).
    caller = re.sub(r"^(sips?|tel):|@.*$", "", ctx.call.caller or "")
    number = re.sub(r"[\s\-().]", "", caller)
    if node.number == "ask" or not NUMBER.match(number):
        number = None
    keys, esc_phrases, _ = ctx.flow.escape_for(node)
    intro = list(node.prompt or [])
    while True:
        if number is None:
            got = await _ask_number(ctx, node, keys, esc_phrases)
            if isinstance(got, (Go, End)):
                return got
            number = got
        prompts = [ctx.render(p) for p in intro] + [_say(
            ctx, f"We can call you back on {_digits(number)}. Press 1 to confirm, or 2 to give a different number.")]
        intro = []
        by_key = {"1": "yes", "2": "no", **{k: "escape" for k in keys}}
        res = await ask(ctx, node, prompts, keys=KeyRules(menu_keys=frozenset(by_key)),
                        phrases=YES + NO + list(esc_phrases), bargein=True)
        choice = by_key.get(res.value) if res.via == "dtmf" else best_match(
            res.value, [(p, "yes") for p in YES] + [(p, "no") for p in NO] + [(p, "escape") for p in esc_phrases]
        ) if res.via == "speech" else None
        if choice == "escape":
            record_input(ctx, res, "escape")
            return escape(ctx, node)
        if choice == "yes":
            record_input(ctx, res, "confirm")
            succeeded(ctx)
            return await _store(ctx, node, number)
        if choice == "no":
            record_input(ctx, res, "change-number")
            succeeded(ctx)
            number = None
            continue
        kind = "no_input" if res.via == "nothing" else "no_match"
        record_input(ctx, res, kind.replace("_", "-"))
        out = await failed(ctx, node, kind)
        if out is not None:
            return out


async def _ask_number(ctx: CallContext, node: Callback, keys, esc_phrases) -> str | Go | End:
    while True:
        res = await ask(ctx, node, [_say(ctx, "Please enter the number we should call, followed by the hash key.")],
                        keys=KeyRules(min_digits=6, max_digits=15, terminator="#"),
                        phrases=list(esc_phrases) or None, bargein=True)
        if (res.via == "dtmf" and res.value in keys) or (
                res.via == "speech" and best_match(res.value, [(p, True) for p in esc_phrases])):
            record_input(ctx, res, "escape")
            return escape(ctx, node)
        if res.via == "dtmf" and NUMBER.match(res.value):
            record_input(ctx, res, "valid")
            succeeded(ctx)
            return res.value
        kind = "no_input" if res.via == "nothing" else "no_match"
        record_input(ctx, res, kind.replace("_", "-"))
        out = await failed(ctx, node, kind)
        if out is not None:
            return out


async def _store(ctx: CallContext, node: Callback, number: str) -> Go | End:
    probe = Handoff(queue=node.queue)
    probe.id = node.id
    context = payload_for(ctx, probe, reason=ctx.reason)
    now = ctx.services.clock.now()
    due = now + dt.timedelta(seconds=node.within)
    dial_at = now + dt.timedelta(seconds=node.dial_after) if node.dial_after is not None else None
    greeting = " ".join(a.text for a in (ctx.render(p) for p in node.greeting) if a.text)
    try:
        cb_id = await ctx.services.callbacks.store(CallbackRequest(
            number=number, queue=node.queue or "", due_by=due, context=context, call_id=ctx.call.call_id,
            dial_at=dial_at, attempts=node.attempts, retry_after=node.retry_after, greeting=greeting,
            language=ctx.flow.language))
    except Exception as exc:  # the promise could not be kept: say so and offer a person
        ctx.journey.errors.append(f"callback store failed: {exc}")
        await ctx.play([_say(ctx, STORE_FAILED)])
        return escape(ctx, node)
    ctx.resolution = "callback"
    ctx.journey.callback = {"id": cb_id, "number": number, "queue": node.queue,
                            "due_by": due.astimezone(dt.UTC).isoformat(timespec="seconds")}
    ctx.note("callback-stored", id=cb_id, number=number)
    await ctx.play([_say(ctx, f"Thank you. We will call you back on {_digits(number)} within {_when(node.within)}.")])
    if node.next:
        return Go(node.next, "next")
    await ctx.play([_say(ctx, "Goodbye.")])
    return End("callback")
