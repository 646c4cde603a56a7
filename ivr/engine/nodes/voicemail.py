"""The voicemail node: reserve a slot first, never offer a full mailbox.

The slot is reserved before a word is said, so a caller who hears the
greeting always has room, and two callers cannot both be promised the last
place. The slot goes back to the box however the call ends without a message.
"""

from __future__ import annotations

from ...flows.model import Voicemail
from ..call import PromptAudio, Recording
from ..context import CallContext, End, Go
from ..services import Reservation, VoicemailFull
from ..turn import KeyRules
from .common import ask

BEEP = PromptAudio(id="tone:beep", text=None)
SAVED = "Thank you, your message has been saved. Goodbye."
NOTHING = "No message was recorded."
REVIEW = "To listen to your message, press 1. To record it again, press 2. To save it, press hash."
LOST = "Sorry, the mailbox filled up while you were recording, so your message could not be kept."
REVIEW_KEYS = {"1": "listen", "2": "again", "3": "save", "#": "save"}
MAX_TAKES = 3  # recordings a caller may make in one visit (the last one is kept)


async def run_voicemail(ctx: CallContext, node: Voicemail) -> Go | End:
    vm = ctx.services.voicemail
    limits = ctx.flow.mailbox(node.mailbox)
    reservation = await vm.reserve(node.mailbox, ctx.call.call_id, limits)
    if reservation is None:
        ctx.note("mailbox-full", mailbox=node.mailbox)
        return Go(node.full or "", "full")
    committed = False
    try:
        await ctx.play(node.greeting)
        rec = await _take(ctx, node, reservation, limits.min_message)
        if rec is None:
            if not ctx.hung_up:
                await ctx.play([_say(ctx, NOTHING)])
            return Go(node.next, "next") if node.next and not ctx.hung_up else End(ctx.resolution or "hangup")
        meta = {"caller": ctx.call.caller, "dialled": ctx.call.dialled, "call_id": ctx.call.call_id,
                "intent": ctx.intent, "variables": dict(ctx.variables), "text": rec.text,
                "ended_by": rec.ended_by}
        try:
            msg_id = await vm.commit(reservation, rec, meta)
        except VoicemailFull:
            ctx.note("voicemail-lost", mailbox=node.mailbox)
            if not ctx.hung_up:
                await ctx.play([_say(ctx, LOST)])
            return Go(node.full or "", "full") if not ctx.hung_up else End("hangup")
        committed = True
        ctx.resolution = "voicemail"
        ctx.journey.voicemail = {"mailbox": node.mailbox, "message_id": msg_id,
                                 "seconds": round(rec.duration_s, 2), "ended_by": rec.ended_by}
        ctx.note("voicemail-saved", mailbox=node.mailbox, message_id=msg_id)
    finally:
        if not committed:
            await vm.release(reservation)
    if ctx.hung_up:
        return End("voicemail")
    if node.next:
        return Go(node.next, "next")
    await ctx.play([_say(ctx, SAVED)])
    return End("voicemail")


async def _take(ctx: CallContext, node: Voicemail, reservation: Reservation, min_s: float) -> Recording | None:
    """Beep and record, then let the caller listen, record again or save. The
    message to keep, or None when nothing long enough was said."""
    max_s = min(node.max_length, reservation.seconds)
    for take in range(1, MAX_TAKES + 1):
        await ctx.play([BEEP])
        ctx.recording = True
        try:
            rec = await ctx.call.record(max_s, end_keys="#", silence_s=node.end_silence)
        finally:
            ctx.recording = False
        ctx.note("recorded", seconds=round(rec.duration_s, 2), ended_by=rec.ended_by, take=take)
        if rec.duration_s < max(min_s, 0.001) and not rec.text:
            return None
        if not node.review or ctx.hung_up or take == MAX_TAKES:
            return rec  # a caller who hangs up after speaking still has the message kept
        while True:
            choice = await _review(ctx, node)
            if choice == "listen":
                await ctx.play([PromptAudio(pcm=rec.pcm, id="your message", text=rec.text)], bargein=True)
                continue
            if choice == "again":
                break
            return rec
    return None  # not reached: the last take is always returned


async def _review(ctx: CallContext, node: Voicemail) -> str:
    res = await ask(ctx, node, [_say(ctx, REVIEW)], keys=KeyRules(menu_keys=frozenset(REVIEW_KEYS)),
                    phrases=None, bargein=True)
    # Silence, another key or a hangup keep the message: it is what the caller said.
    choice = REVIEW_KEYS.get(res.value, "save") if res.via == "dtmf" else "save"
    ctx.note("review", choice=choice, via=res.via)
    return choice


def _say(ctx: CallContext, text: str) -> PromptAudio:
    return PromptAudio(text=text, language=ctx.flow.language)
