"""Router adapters: how a call reaches a person, with everything the IVR learned.

- `sip-refer` (default): the call is REFERred to the queue's SIP target. The
  REFER carries X-IVR-Intent/Queue/Reason/Priority/Skills headers and the whole
  payload as base64url JSON in X-IVR-Context; the short headers are also put
  in the Refer-To URI so the transferee copies them into its INVITE to the agent.
- `http`: the payload is POSTed to a router URL; the router answers where to
  send the call (`{"target": "sip:..."}`, then REFER) or that it took it
  (`{"accepted": true}`); any other answer refuses the hand-off.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any
from urllib.parse import quote

from ..engine.call import Call
from ..engine.handoff import summary_headers
from ..engine.services import QueueStatus, RouterResult

log = logging.getLogger("ivr.router")


def encode_context(payload: dict[str, Any]) -> str:
    """The payload as compact base64url JSON: safe in any SIP header value."""
    raw = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_context(value: str) -> dict[str, Any]:
    """The inverse of encode_context (for routers and tests)."""
    pad = "=" * (-len(value) % 4)
    return json.loads(base64.urlsafe_b64decode(value + pad))


def with_uri_headers(target: str, headers: dict[str, str]) -> str:
    """`sip:agents@host` plus `?X-IVR-Queue=billing&...` (RFC 3261 19.1.1 URI headers)."""
    pairs = [f"{quote(k, safe='-')}={quote(v, safe='')}" for k, v in headers.items() if v]
    if not pairs:
        return target
    return target + ("&" if "?" in target else "?") + "&".join(pairs)


class SipReferRouter:
    """Transfers the call with REFER to the queue's target (or a default)."""

    name = "sip-refer"

    def __init__(self, targets: dict[str, str] | None = None, default: str = "sip:agents@127.0.0.1:5070") -> None:
        self.targets = dict(targets or {})
        self.default = default
        self.sent: list[dict[str, Any]] = []

    def target_for(self, queue: str, override: str | None) -> str:
        return override or self.targets.get(queue) or self.default

    async def handoff(self, call: Call, payload: dict[str, Any], target: str | None) -> RouterResult:
        dest = self.target_for(payload["queue"], target)
        headers = summary_headers(payload)
        self.sent.append(payload)
        result = await call.transfer(with_uri_headers(dest, headers), headers, encode_context(payload))
        if not result.ok:
            log.info("hand-off of %s to %s refused: %s", payload["call_id"], dest, result.detail)
        return RouterResult(result.ok, result.detail, result)

    async def queue_status(self, queue: str, call_id: str) -> QueueStatus | None:
        """A REFER target knows nothing of queues."""
        return None


class HttpRouter:
    """Asks an HTTP router what to do with the call; transfers where it says."""

    name = "http"

    def __init__(self, url: str, timeout: float = 5.0, fallback: SipReferRouter | None = None,
                 status_url: str | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.fallback = fallback
        # GET template for a waiting caller's place: http://router/queues/{queue}?call_id={call_id}
        self.status_url = status_url

    async def queue_status(self, queue: str, call_id: str) -> QueueStatus | None:
        """Ask the router where the caller stands: `{"position": 3, "expected_wait_s": 240}`.
        Short timeout: an announcement is not worth more than a second of silence."""
        if not self.status_url:
            return None
        import aiohttp

        url = self.status_url.format(queue=quote(queue, safe=""), call_id=quote(call_id, safe=""))
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session, \
                    session.get(url) as resp:
                answer = await resp.json(content_type=None) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("queue status from %s failed: %s", url, exc)
            return None
        if not isinstance(answer, dict):
            return None
        pos, wait = answer.get("position"), answer.get("expected_wait_s")
        return QueueStatus(int(pos) if isinstance(pos, (int, float)) and pos >= 1 else None,
                           float(wait) if isinstance(wait, (int, float)) and wait >= 0 else None)

    async def handoff(self, call: Call, payload: dict[str, Any], target: str | None) -> RouterResult:
        import aiohttp

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session, \
                    session.post(self.url, json=payload) as resp:
                if resp.status >= 300:
                    return RouterResult(False, f"router answered {resp.status}")
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return RouterResult(False, f"router unreachable: {exc}")
        if not isinstance(answer, dict):
            return RouterResult(False, "router answer is not a JSON object")
        if answer.get("target"):
            headers = summary_headers(payload)
            result = await call.transfer(with_uri_headers(str(answer["target"]), headers), headers,
                                         encode_context(payload))
            return RouterResult(result.ok, result.detail, result)
        if answer.get("accepted") is True:
            return RouterResult(True, str(answer.get("detail") or "accepted by router"))
        return RouterResult(False, str(answer.get("detail") or "router refused"))
