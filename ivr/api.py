"""The admin HTTP API: voicemail messages and callback requests, behind a token.

    GET    /api/mailboxes                      every box: messages, seconds, held slots, limits
    GET    /api/mailboxes/{box}/messages       a box's messages, newest first
    GET    /api/messages/{id}                  one message
    GET    /api/messages/{id}/audio            its WAV (marks it heard)
    DELETE /api/messages/{id}                  delete it (the slot returns to the box)
    GET    /api/callbacks?status=pending       callback requests and their status
    GET    /api/callbacks/{id}                 one request
    POST   /api/callbacks/{id}/cancel          withdraw a pending request
    POST   /api/queues/{queue}/agent-free      the router says an agent is free: dial now
    GET    /voicemail                          a small page to list, play and delete messages

The token goes in `Authorization: Bearer TOKEN` (or `?token=TOKEN`, which the
page's audio player needs). Compared in constant time.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from .flows.model import Flow, Voicemail
from .live import CallEvents
from .services.callback_worker import CallbackWorker
from .services.callbacks import SqliteCallbacks
from .services.mailbox import fill
from .services.voicemail import SqliteVoicemail

PAGE = Path(__file__).with_name("voicemail.html")


def add_api(app: web.Application, *, token: str, voicemail: SqliteVoicemail, callbacks: SqliteCallbacks,
            worker: CallbackWorker | None, flow: Callable[[], Flow | None], live: CallEvents | None = None) -> None:
    """Register the API routes on `app`."""

    @web.middleware
    async def auth(request: web.Request, handler):
        if request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            given = given or request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.json_response({"error": "a valid token is needed"}, status=401)
        return await handler(request)

    app.middlewares.append(auth)

    def known_boxes() -> list[str]:
        f = flow()
        if f is None:
            return []
        used = {n.mailbox for n in f.nodes.values() if isinstance(n, Voicemail) and n.mailbox}
        return sorted(used | set(f.mailboxes))

    async def mailboxes(_req: web.Request) -> web.Response:
        f = flow()
        out = []
        for name in sorted(set(known_boxes()) | set(await voicemail.mailboxes())):
            limits = f.mailbox(name) if f else voicemail.limits_of(name)
            usage = await voicemail.usage(name)
            lim = {k: v for k, v in asdict(limits).items() if k != "pos"}
            out.append({"name": name, "messages": usage.messages, "seconds": round(usage.seconds, 1),
                        "held": usage.held, "fill": round(fill(limits, usage.messages, usage.seconds), 3),
                        "limits": lim})
        return web.json_response(out)

    async def box_messages(req: web.Request) -> web.Response:
        return web.json_response(await voicemail.messages(req.match_info["box"]))

    async def _message(req: web.Request) -> dict[str, Any]:
        msg = await voicemail.message(req.match_info["id"])
        if msg is None:
            raise web.HTTPNotFound(text='{"error": "no such message"}', content_type="application/json")
        return msg

    async def message(req: web.Request) -> web.Response:
        return web.json_response(await _message(req))

    async def audio(req: web.Request) -> web.StreamResponse:
        msg = await _message(req)
        await voicemail.mark_heard(msg["id"])
        return web.FileResponse(voicemail.audio_path(msg), headers={"Content-Type": "audio/wav"})

    async def delete(req: web.Request) -> web.Response:
        ok = await voicemail.delete(req.match_info["id"])
        return web.json_response({"deleted": ok}, status=200 if ok else 404)

    async def callback_list(req: web.Request) -> web.Response:
        return web.json_response(await callbacks.list(req.query.get("status") or None))

    async def callback_one(req: web.Request) -> web.Response:
        row = await callbacks.get(req.match_info["id"])
        return web.json_response(row or {"error": "no such callback"}, status=200 if row else 404)

    async def callback_cancel(req: web.Request) -> web.Response:
        ok = await callbacks.cancel(req.match_info["id"])
        return web.json_response({"cancelled": ok}, status=200 if ok else 409)

    async def agent_free(req: web.Request) -> web.Response:
        cb_id = await worker.agent_free(req.match_info["queue"]) if worker is not None else None
        return web.json_response({"dialling": cb_id})

    async def page(_req: web.Request) -> web.Response:
        return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")

    app.router.add_get("/api/mailboxes", mailboxes)
    app.router.add_get("/api/mailboxes/{box}/messages", box_messages)
    app.router.add_get("/api/messages/{id}", message)
    app.router.add_get("/api/messages/{id}/audio", audio)
    app.router.add_delete("/api/messages/{id}", delete)
    app.router.add_get("/api/callbacks", callback_list)
    app.router.add_get("/api/callbacks/{id}", callback_one)
    app.router.add_post("/api/callbacks/{id}/cancel", callback_cancel)
    app.router.add_post("/api/queues/{queue}/agent-free", agent_free)
    app.router.add_get("/voicemail", page)

    async def call_events(request: web.Request) -> web.StreamResponse:
        """A call's journey events over a WebSocket, from the first: {"event": ..., "data": ...},
        then {"event": "closed"} once its journey is written (or nothing came for 10 s)."""
        if live is None:
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        try:
            async for event, data in live.follow(request.match_info["call_id"]):
                await ws.send_str(json.dumps({"event": event, "data": data}, default=str))
            await ws.send_str(json.dumps({"event": "closed"}))
        except (ConnectionError, RuntimeError):
            pass  # the follower went away
        await ws.close()
        return ws

    app.router.add_get("/api/calls/{call_id}/events", call_events)
