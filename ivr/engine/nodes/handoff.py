"""The handoff node: give the call to a person, with everything learned."""

from __future__ import annotations

from ...flows.model import Handoff
from ..call import PromptAudio
from ..context import CallContext, End, Go
from ..handoff import build_payload

SORRY = "Sorry, nobody can take your call right now. Please call again later. Goodbye."


def payload_for(ctx: CallContext, node: Handoff, reason: str | None = None) -> dict:
    variables = dict(ctx.variables)
    if node.context is not None:
        variables = {k: v for k, v in variables.items() if k in node.context}
    return build_payload(
        call_id=ctx.call.call_id, channel=ctx.call.channel, caller=ctx.call.caller,
        dialled=ctx.call.dialled, language=ctx.flow.language, queue=node.queue or "",
        skills=node.skills, priority=node.priority, target=node.target,
        intent=node.intent or ctx.intent, reason=reason or ctx.reason, variables=variables,
        path=ctx.journey.path, attempts=ctx.attempts, wait_s=ctx.t(),
        started_at=ctx.journey.started_at, node=node.id, flow_name=ctx.flow.name,
        flow_version=ctx.flow.digest,
    )


async def run_handoff(ctx: CallContext, node: Handoff) -> Go | End:
    if node.prompt:
        await ctx.play(node.prompt)
    payload = payload_for(ctx, node)  # after the prompt: wait_s is the wait the router sees
    ctx.journey.emit("handoff", payload=payload)
    result = await ctx.services.router.handoff(ctx.call, payload, node.target)
    if result.accepted:
        ctx.resolution = "handoff"
        ctx.journey.handoff = payload
        return End("handoff", result.detail or None)
    ctx.note("handoff-refused", queue=node.queue, detail=result.detail)
    if node.on_failure:
        return Go(node.on_failure, "failure")
    await ctx.play([PromptAudio(text=SORRY, language=ctx.flow.language)])
    return End(ctx.resolution or "hangup", "router refused: " + (result.detail or "no reason given"))
