"""News: one poke wakes every waiter of that moment, and no later one."""

from __future__ import annotations

import asyncio

from ivr.news import News


def test_a_poke_wakes_every_waiter_and_a_wait_without_one_times_out() -> None:
    async def run() -> tuple[list[bool], bool]:
        news = News()
        waiters = [asyncio.ensure_future(news.wait(5.0)) for _ in range(3)]
        await asyncio.sleep(0)
        news.poke()
        woken = await asyncio.gather(*waiters)
        # The poke is spent: a task that starts waiting now waits for the next one.
        return woken, await news.wait(0.01)

    assert asyncio.run(run()) == ([True, True, True], False)
