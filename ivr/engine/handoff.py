"""The hand-off payload: what the router (and the agent) learn about a call.

Versioned: consumers check `schema`. Fields are only ever added within a
version; a rename or removal makes a new version.
"""

from __future__ import annotations

from typing import Any

SCHEMA_ID = "ivr.handoff/v1"
REASONS = ("choice", "escape", "failures", "overflow")

HANDOFF_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://ivr-engine.dev/schemas/handoff-v1.json",
    "title": "IVR hand-off payload, version 1",
    "description": "Sent to the router when a call is handed to a person (and stored with callbacks).",
    "type": "object",
    "required": ["schema", "call_id", "caller", "dialled", "queue", "reason", "intent", "variables",
                 "path", "attempts", "wait_s", "language"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_ID, "description": "payload schema and version"},
        "call_id": {"type": "string", "description": "the call's id (SIP Call-ID for SIP calls)"},
        "channel": {"type": "string", "description": "sip, webrtc, text ..."},
        "caller": {"type": "string", "description": "caller id as received"},
        "dialled": {"type": "string", "description": "the number or user that was called"},
        "language": {"type": "string", "description": "language of the call (BCP 47 tag)"},
        "queue": {"type": "string", "description": "the router queue asked for"},
        "skills": {"type": "array", "items": {"type": "string"}, "description": "skills the agent needs"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 10},
        "target": {"type": ["string", "null"], "description": "router address given by the flow, if any"},
        "intent": {"type": ["string", "null"], "description": "what the caller wants, from their choices"},
        "reason": {"enum": list(REASONS),
                   "description": "choice: the caller picked it; escape: asked for a person; "
                                  "failures: too many failed inputs; overflow: the line was over capacity"},
        "variables": {"type": "object", "description": "data collected (gathers, set nodes)"},
        "path": {"type": "array", "items": {"type": "string"}, "description": "node ids visited, in order"},
        "attempts": {
            "type": "object",
            "description": "failed inputs per node",
            "additionalProperties": {
                "type": "object",
                "properties": {"no_input": {"type": "integer", "minimum": 0},
                               "no_match": {"type": "integer", "minimum": 0}},
                "additionalProperties": False,
            },
        },
        "wait_s": {"type": "number", "minimum": 0, "description": "seconds since the call was answered"},
        "started_at": {"type": "string", "description": "when the call was answered (ISO 8601, UTC)"},
        "node": {"type": "string", "description": "the handoff node"},
        "flow": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
                 "description": "the flow and its version (content hash)"},
    },
}


def build_payload(*, call_id: str, channel: str, caller: str, dialled: str, language: str, queue: str,
                  skills: list[str], priority: int, target: str | None, intent: str | None, reason: str,
                  variables: dict[str, Any], path: list[str], attempts: dict[str, dict[str, int]],
                  wait_s: float, started_at: str, node: str, flow_name: str, flow_version: str) -> dict[str, Any]:
    """A payload that conforms to HANDOFF_SCHEMA."""
    if reason not in REASONS:
        raise ValueError(f"unknown hand-off reason {reason!r}")
    return {
        "schema": SCHEMA_ID,
        "call_id": call_id,
        "channel": channel,
        "caller": caller,
        "dialled": dialled,
        "language": language,
        "queue": queue,
        "skills": list(skills),
        "priority": priority,
        "target": target,
        "intent": intent,
        "reason": reason,
        "variables": {k: v for k, v in variables.items()},
        "path": list(path),
        "attempts": {k: dict(v) for k, v in attempts.items()},
        "wait_s": round(wait_s, 3),
        "started_at": started_at,
        "node": node,
        "flow": {"name": flow_name, "version": flow_version},
    }


def summary_headers(payload: dict[str, Any]) -> dict[str, str]:
    """The short form routers read without parsing JSON (e.g. SIP X- headers)."""
    return {
        "X-IVR-Intent": payload.get("intent") or "",
        "X-IVR-Queue": payload["queue"],
        "X-IVR-Reason": payload["reason"],
        "X-IVR-Priority": str(payload.get("priority", 5)),
        "X-IVR-Skills": ",".join(payload.get("skills", [])),
    }
