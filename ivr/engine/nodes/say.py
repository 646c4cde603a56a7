"""say and play: prompts without input (a key with barge-in is kept for the next menu)."""

from __future__ import annotations

from ...flows.model import Play, Say
from ..context import CallContext, Go
from .common import setting


async def run_say(ctx: CallContext, node: Say | Play) -> Go:
    await ctx.play(node.prompt, bargein=setting(ctx, node, "bargein"))
    return Go(node.next or "", "next")
