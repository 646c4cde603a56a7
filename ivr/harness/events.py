"""This engine's own account of a call, read by the harness when it tests `ivr serve`.

Black-box checks (audio, transcripts, REFERs) work against any IVR. When the
target is this engine, its admin API also streams each call's journey events
(`GET /api/calls/{call_id}/events`, a WebSocket, with the API token): the
harness follows its own call by SIP Call-ID, so a prompt's id can be checked
exactly, and the nodes and edges taken give the flow coverage. Reports mark
what was judged this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import quote

import aiohttp

log = logging.getLogger("ivr.harness")


class EngineEvents:
    """Where the engine's API is (`http://host:port`) and its token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http: aiohttp.ClientSession | None = None
        self.streams: list[CallStream] = []

    async def open(self, call_id: str) -> CallStream:
        """Start following one call's events (they are collected in the background)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"})
        url = self.base_url.replace("http", "ws", 1) + f"/api/calls/{quote(call_id, safe='')}/events"
        stream = CallStream(call_id)
        try:
            ws = await self._http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5.0))
        except (aiohttp.ClientError, OSError) as exc:
            stream.error = f"cannot follow the engine's events at {url}: {exc}"
            log.warning("%s", stream.error)
            return stream
        stream.start(ws)
        self.streams.append(stream)
        return stream

    async def close(self) -> None:
        for s in self.streams:
            await s.close()
        if self._http is not None:
            await self._http.close()


class CallStream:
    """One call's events as they arrive."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.closed = asyncio.Event()
        self.error: str | None = None
        self._used: set[int] = set()  # prompt events already matched by a step
        self._task: asyncio.Task | None = None
        self._ws = None

    def start(self, ws) -> None:
        self._ws = ws
        self._task = asyncio.ensure_future(self._read(ws))

    async def _read(self, ws) -> None:
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                doc = json.loads(msg.data)
                if doc.get("event") == "closed":
                    break
                self.events.append((doc["event"], doc.get("data") or {}))
        except (aiohttp.ClientError, ValueError, KeyError) as exc:
            self.error = f"the engine's event stream broke: {exc}"
        finally:
            self.closed.set()

    def prompt(self, pid: str | None, text: str | None) -> dict[str, Any] | None:
        """The first prompt event not matched before whose id is `pid` (or whose text is
        `text`, when no id is given); it counts as matched from now on."""
        for i, (event, data) in enumerate(self.events):
            if event != "prompt" or i in self._used:
                continue
            if (pid and data.get("id") == pid) or (not pid and text and data.get("text") == text):
                self._used.add(i)
                return data
        return None

    def nodes(self) -> list[str]:
        """The nodes the call went through, in order."""
        return [d["node"] for e, d in self.events if e == "node" and "node" in d]

    def edges(self) -> list[tuple[str, str, str]]:
        """(from, to, via) for each step from one node to the next."""
        out = []
        prev = None
        for e, d in self.events:
            if e == "node" and "node" in d:
                if prev is not None:
                    out.append((prev, d["node"], str(d.get("via") or "")))
                prev = d["node"]
        return out

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.closed.wait(), 2.0)  # the end of the journey, usually
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
