"""Runs one flow for one call: a task per call, a table of node handlers.

A second task reads the call's events. A hangup cancels the flow wherever it
is waiting (except during a recording, which it ends), so no node needs a
special case for it; every other event goes to the inbox the handlers read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from ..flows.model import Flow
from .call import Call, Dtmf, Hangup, PromptAudio
from .context import CallContext, End, Go, Services
from .journey import Journey, Observer
from .nodes import HANDLERS

log = logging.getLogger("ivr.engine")

# Nodes visited without any time passing before we call it a runaway loop.
MAX_INSTANT_STEPS = 1000
APOLOGY = "Sorry, something went wrong on our side. Please call again later."


async def run_call(flow: Flow, call: Call, services: Services, *, overflow: bool = False,
                   observers: list[Observer] | None = None, start: str | None = None) -> Journey:
    """Run `flow` on `call` to the end and return its journey record."""
    ctx = CallContext(flow, call, services, overflow=overflow, observers=observers)
    flow_task = asyncio.ensure_future(_walk(ctx, start or flow.start or ""))
    pump = asyncio.ensure_future(_pump(ctx, flow_task))
    ctx.journey.emit("start", call_id=call.call_id, caller=call.caller, dialled=call.dialled)
    outcome: End
    try:
        outcome = await flow_task
    except asyncio.CancelledError:
        if not ctx.hung_up:
            pump.cancel()
            raise
        outcome = End(ctx.resolution or "abandoned", "caller hung up")
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
    if ctx.hung_up and outcome.outcome == "hangup":
        outcome = End(ctx.resolution or "abandoned", outcome.detail or "caller hung up")
    return await _finish(ctx, outcome)


async def _pump(ctx: CallContext, flow_task: asyncio.Future) -> None:
    while True:
        ev = await ctx.call.next_event()
        if isinstance(ev, Hangup):
            ctx.hung_up = True
            ctx.note("hangup", by=ev.reason)
            if not ctx.recording:
                flow_task.cancel()
                return
            ctx.call.stop_playback()
            continue
        if ctx.recording and isinstance(ev, Dtmf):
            # The recorder's end key: it ended the message and is no input for the next node.
            ctx.note("key-while-recording", digit=ev.digit)
            continue
        ctx.inbox.put_nowait(ev)


async def _walk(ctx: CallContext, node_id: str) -> End:
    flow = ctx.flow
    via = "start"
    instant = 0
    last_t = ctx.t()
    try:
        while True:
            node = flow.nodes.get(node_id)
            if node is None:
                raise RuntimeError(f"no node {node_id!r} (reached via {via})")
            ctx.node = node
            ctx.journey.enter(node.id, node.kind, ctx.t(), via)
            step = await HANDLERS[node.kind](ctx, node)
            if isinstance(step, End):
                return step
            assert isinstance(step, Go)
            node_id, via = step.target, step.via
            if ctx.hung_up:
                return End(ctx.resolution or "abandoned", "caller hung up")
            now = ctx.t()
            instant = instant + 1 if now == last_t else 0
            last_t = now
            if instant > MAX_INSTANT_STEPS:
                raise RuntimeError(f"flow looped {MAX_INSTANT_STEPS} times without waiting (at {node_id})")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a failing call still ends cleanly, with its journey
        log.exception("call %s failed at %s", ctx.call.call_id, node_id)
        ctx.journey.errors.append(f"{type(exc).__name__}: {exc}")
        if not ctx.hung_up:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ctx.play([PromptAudio(text=APOLOGY, language=flow.language)]), 30)
        return End(ctx.resolution or "error", str(exc))


async def _finish(ctx: CallContext, outcome: End) -> Journey:
    j = ctx.journey
    j.outcome = outcome.outcome
    j.detail = outcome.detail
    j.intent = ctx.intent
    j.variables = dict(ctx.variables)
    j.duration_s = round(ctx.t(), 3)
    j.ended_at = (ctx.started_at + dt.timedelta(seconds=ctx.t())).astimezone(dt.UTC).isoformat(
        timespec="milliseconds")
    if not ctx.hung_up:
        # After a hand-off too: once the transfer target answered, the IVR leaves
        # the call (RFC 5589: the transferor ends its own leg).
        with contextlib.suppress(Exception):
            await ctx.call.hangup("normal")
    j.emit("end", outcome=j.outcome, detail=j.detail, duration_s=j.duration_s)
    return j


__all__ = ["Services", "run_call"]
