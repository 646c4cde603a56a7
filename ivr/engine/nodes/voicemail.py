"""The voicemail node: reserve a slot first, never offer a full mailbox."""

from __future__ import annotations

from ...flows.model import Voicemail
from ..call import PromptAudio
from ..context import CallContext, End, Go

MIN_MESSAGE_S = 1.0
BEEP = PromptAudio(id="tone:beep", text=None)
SAVED = "Thank you, your message has been saved. Goodbye."
NOTHING = "No message was recorded."


async def run_voicemail(ctx: CallContext, node: Voicemail) -> Go | End:
    vm = ctx.services.voicemail
    reservation = await vm.reserve(node.mailbox, ctx.call.call_id)
    if reservation is None:
        ctx.note("mailbox-full", mailbox=node.mailbox)
        return Go(node.full or "", "full")
    committed = False
    try:
        await ctx.play(node.greeting)
        await ctx.play([BEEP])
        ctx.recording = True
        try:
            rec = await ctx.call.record(node.max_length, end_keys="#")
        finally:
            ctx.recording = False
        ctx.note("recorded", seconds=round(rec.duration_s, 2), ended_by=rec.ended_by)
        if rec.duration_s < MIN_MESSAGE_S and not rec.text:
            if not ctx.hung_up:
                await ctx.play([PromptAudio(text=NOTHING, language=ctx.flow.language)])
            return Go(node.next, "next") if node.next and not ctx.hung_up else End(ctx.resolution or "hangup")
        meta = {"caller": ctx.call.caller, "dialled": ctx.call.dialled, "call_id": ctx.call.call_id,
                "intent": ctx.intent, "variables": dict(ctx.variables), "text": rec.text}
        msg_id = await vm.commit(reservation, rec, meta)
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
    await ctx.play([PromptAudio(text=SAVED, language=ctx.flow.language)])
    return End("voicemail")
