"""The hangup node."""

from __future__ import annotations

from ...flows.model import Hangup
from ..context import CallContext, End


async def run_hangup(ctx: CallContext, node: Hangup) -> End:
    if node.prompt:
        await ctx.play(node.prompt)
    return End(ctx.resolution or "hangup")
