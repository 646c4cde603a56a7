"""CallEvents: a call's journey events for followers, from the first, bounded."""

from __future__ import annotations

import asyncio

from ivr.live import CallEvents


def test_a_follower_gets_the_events_so_far_then_the_rest_until_the_end():
    async def run():
        live = CallEvents()
        obs = live.observer("c1")
        obs("start", {"call_id": "c1"})
        got = []

        async def follow():
            async for event, _data in live.follow("c1"):
                got.append(event)

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.01)
        obs("node", {"node": "main_menu"})
        obs("prompt", {"id": "welcome"})
        await asyncio.sleep(0.01)
        live.ended("c1")
        await asyncio.wait_for(task, 1)
        return got

    assert asyncio.run(run()) == ["start", "node", "prompt"]


def test_a_follower_quicker_than_the_call_waits_for_it_and_gives_up_on_a_call_that_never_comes():
    async def run():
        live = CallEvents()
        early = asyncio.ensure_future(_collect(live.follow("c2", wait_s=1.0)))
        await asyncio.sleep(0.05)
        live.observer("c2")("start", {})
        live.ended("c2")
        never = await asyncio.wait_for(_collect(live.follow("nobody", wait_s=0.05)), 1)
        return await asyncio.wait_for(early, 1), never

    early, never = asyncio.run(run())
    assert early == ["start"] and never == []


def test_calls_and_events_are_bounded():
    async def run():
        live = CallEvents(keep_calls=2, per_call=3)
        for i in range(5):
            live.observer("c")("e", {"i": i})
        live.ended("c")
        capped = await asyncio.wait_for(_collect(live.follow("c")), 1)
        for name in ("a", "b"):
            live.observer(name)("e", {})
        gone = await asyncio.wait_for(_collect(live.follow("c", wait_s=0.05)), 1)  # pushed out: a new, empty one
        return capped, gone, len(live._calls)

    capped, gone, kept = asyncio.run(run())
    assert capped == ["e", "e", "e"] and gone == [] and kept == 2


async def _collect(it) -> list[str]:
    return [event async for event, _ in it]
