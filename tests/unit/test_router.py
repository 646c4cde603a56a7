"""Router adapters: the HTTP router is asked over real HTTP (loopback), REFER goes where it says."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ivr.engine.handoff import build_payload
from ivr.services.router import HttpRouter, SipReferRouter, decode_context, with_uri_headers


class FakeCall:
    """Records the transfer the router asks for."""

    call_id = "c1"

    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.transfers: list[tuple[str, dict, str | None]] = []

    async def transfer(self, target, headers, body=None):
        from ivr.engine.call import TransferResult
        self.transfers.append((target, headers, body))
        return TransferResult(self.ok, "202 Accepted" if self.ok else "486 Busy Here")


def payload(queue: str = "billing") -> dict:
    return build_payload(call_id="c1", channel="sip", caller="+441632960001", dialled="ivr", language="en-GB",
                         queue=queue, skills=["billing"], priority=5, target=None, intent="billing_query",
                         reason="choice", variables={"account": "12345678"}, path=["main_menu", "billing"],
                         attempts={}, wait_s=12.5, started_at="2026-11-23T10:00:00+00:00", node="billing",
                         flow_name="t", flow_version="abc")


async def _with_router(answer, fn):
    seen: list[dict] = []

    async def handle(request):
        seen.append(await request.json())
        status, body = answer
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/route", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        return await fn(f"http://127.0.0.1:{port}/route"), seen
    finally:
        await runner.cleanup()


def test_http_router_target_is_transferred_with_the_context():
    call = FakeCall()

    async def go(url):
        return await HttpRouter(url).handoff(call, payload(), None)

    result, seen = asyncio.run(_with_router((200, {"target": "sip:expert@127.0.0.1:5070"}), go))
    assert result.accepted
    assert seen == [payload()]  # the router got the whole payload
    target, headers, body = call.transfers[0]
    assert target.startswith("sip:expert@127.0.0.1:5070?") and "X-IVR-Intent=billing_query" in target
    assert headers["X-IVR-Queue"] == "billing" and headers["X-IVR-Reason"] == "choice"
    assert decode_context(body) == payload()


def test_http_router_refusal_and_errors():
    call = FakeCall()

    async def go(url):
        return await HttpRouter(url).handoff(call, payload(), None)

    refused, _ = asyncio.run(_with_router((200, {"accepted": False, "detail": "queue closed"}), go))
    assert not refused.accepted and refused.detail == "queue closed"
    failed, _ = asyncio.run(_with_router((503, {}), go))
    assert not failed.accepted and "503" in failed.detail
    accepted, _ = asyncio.run(_with_router((200, {"accepted": True}), go))
    assert accepted.accepted and not call.transfers

    async def unreachable():
        return await HttpRouter("http://127.0.0.1:9/route", timeout=2).handoff(call, payload(), None)

    down = asyncio.run(unreachable())
    assert not down.accepted and "unreachable" in down.detail


def test_sip_refer_router_targets_per_queue_and_refusal():
    router = SipReferRouter({"billing": "sip:billing@127.0.0.1:5070"}, default="sip:agents@127.0.0.1:5070")
    call = FakeCall()
    ok = asyncio.run(router.handoff(call, payload("billing"), None))
    assert ok.accepted and call.transfers[0][0].startswith("sip:billing@127.0.0.1:5070?")
    busy = FakeCall(ok=False)
    refused = asyncio.run(router.handoff(busy, payload("other"), None))
    assert not refused.accepted and busy.transfers[0][0].startswith("sip:agents@127.0.0.1:5070?")
    assert with_uri_headers("sip:a@b", {"X-A": "x y", "X-B": ""}) == "sip:a@b?X-A=x%20y"
