"""The hold node: music on hold with announcements and keys, for a bounded wait."""

from __future__ import annotations

import asyncio

from ...flows.model import Hold, queue_words
from ..call import Dtmf
from ..context import CallContext, Go
from ..journey import InputRecord


async def run_hold(ctx: CallContext, node: Hold) -> Go:
    start = ctx.loop.time()
    end = start + node.max_wait
    # When each announcement is next due, relative to the start of the hold.
    due = [(a.after, i) for i, a in enumerate(node.announcements)]
    by_key = {o.key: o for o in node.options}
    mode = ctx.flow.hold_mode(node)
    await ctx.call.start_hold(node.music, mode)
    ctx.note("hold-start", music=node.music, mode=mode)
    ctx.journey.emit("listen", node=node.id, keys=bool(by_key), speech=False, bargein=True)
    try:
        while True:
            now = ctx.loop.time()
            if now >= end:
                return Go(node.next or "", "next")
            nxt = min((start + t for t, _ in due), default=end)
            if nxt <= now:
                t, i = min(due)
                ann = node.announcements[i]
                due.remove((t, i))
                if ann.every:
                    due.append((t + ann.every, i))
                prompts = await _announcement(ctx, node, ann.prompt)
                if prompts is None:
                    continue
                await ctx.call.stop_hold()
                await ctx.play(prompts, bargein=bool(by_key))
                while ctx.typeahead:
                    key = ctx.typeahead.popleft()
                    if key.digit in by_key:
                        return _chosen(ctx, node, key.digit)
                await ctx.call.start_hold(node.music, mode)
                continue
            try:
                ev = await asyncio.wait_for(ctx.inbox.get(), min(nxt, end) - now)
            except TimeoutError:
                continue
            if isinstance(ev, Dtmf) and ev.digit in by_key:
                return _chosen(ctx, node, ev.digit)
            ctx.ignored(ev)
    finally:
        ctx.journey.emit("listen-end", node=node.id)
        await ctx.call.stop_hold()
        ctx.note("hold-end", waited_s=round(ctx.loop.time() - start, 3))


async def _announcement(ctx: CallContext, node: Hold, prompts: list) -> list | None:
    """The announcement rendered with the caller's place in the queue, or None when it
    speaks of a place or wait the router cannot give (better unsaid than said blank)."""
    wanted = queue_words(prompts)
    if not wanted:
        return prompts
    status = await ctx.services.router.queue_status(node.queue, ctx.call.call_id) if node.queue else None
    extra = {"position": status.position if status else None,
             "wait": _minutes(status.expected_wait_s) if status and status.expected_wait_s is not None else None}
    missing = sorted(w for w in wanted if extra[w] is None)
    if missing:
        ctx.note("announcement-skipped", unknown=missing)
        return None
    ctx.note("queue-status", position=extra["position"], wait=extra["wait"])
    return [ctx.render(p, **extra) for p in prompts]


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return "less than a minute"
    minutes = round(seconds / 60)
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _chosen(ctx: CallContext, node: Hold, key: str) -> Go:
    ctx.journey.input(InputRecord(node.id, ctx.t(), "dtmf", key, "option"))
    return Go(next(o.goto for o in node.options if o.key == key) or "", "option")
