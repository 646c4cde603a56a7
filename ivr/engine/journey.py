"""The journey record: what happened on one call, written as it happens.

Everything the runner notes goes through here, and every note is also sent to
observers (the simulator's transcript, metrics, the softphone page's live view).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

OUTCOMES = ("handoff", "voicemail", "callback", "hangup", "abandoned", "error")

Observer = Callable[[str, dict[str, Any]], None]


@dataclass
class Visit:
    node: str
    kind: str
    t: float  # seconds since the call started
    via: str = "next"  # how we got here: next, option, case, else, escape, failures, retry ...


@dataclass
class PromptRecord:
    node: str
    t: float
    text: str | None
    audio: str | None
    id: str | None
    played_s: float = 0.0
    interrupted: bool = False


@dataclass
class InputRecord:
    node: str
    t: float
    via: str  # dtmf or speech (or timeout for no-input)
    value: str
    result: str  # option / valid / no-match / no-input / escape / ignored / confirm ...
    confidence: float | None = None
    reason: str | None = None  # dtmf-terminator-key, dtmf-num-digits, inter-digit-timeout, timeout, speech


@dataclass
class Journey:
    """One call's record; `to_dict()` is the JSON form."""

    call_id: str
    caller: str
    dialled: str
    channel: str
    flow: str
    flow_version: str
    language: str
    started_at: str
    ended_at: str | None = None
    duration_s: float = 0.0
    outcome: str | None = None
    detail: str | None = None
    path: list[str] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    prompts: list[PromptRecord] = field(default_factory=list)
    inputs: list[InputRecord] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    intent: str | None = None
    handoff: dict[str, Any] | None = None
    voicemail: dict[str, Any] | None = None
    callback: dict[str, Any] | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    observers: list[Observer] = field(default_factory=list, repr=False)

    def emit(self, event: str, /, **data: Any) -> None:
        for obs in self.observers:
            obs(event, data)

    def enter(self, node: str, kind: str, t: float, via: str) -> None:
        self.path.append(node)
        self.visits.append(Visit(node, kind, round(t, 3), via))
        self.emit("node", node=node, kind=kind, t=t, via=via)

    def prompt_started(self, node: str, t: float, text: str | None, audio: str | None,
                       pid: str | None) -> PromptRecord:
        rec = PromptRecord(node, round(t, 3), text, audio, pid)
        self.prompts.append(rec)
        self.emit("prompt", node=node, t=t, text=text, audio=audio, id=pid)
        return rec

    def prompt_ended(self, rec: PromptRecord, played_s: float, interrupted: bool) -> None:
        rec.played_s = round(played_s, 3)
        rec.interrupted = interrupted
        self.emit("prompt-end", node=rec.node, played_s=played_s, interrupted=interrupted)

    def input(self, rec: InputRecord) -> None:
        rec.t = round(rec.t, 3)
        self.inputs.append(rec)
        self.emit("input", **asdict(rec))

    def note(self, node: str, t: float, what: str, **data: Any) -> None:
        entry = {"node": node, "t": round(t, 3), "what": what, **data}
        self.notes.append(entry)
        self.emit("note", **entry)

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data (observers left out)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "observers"}


def _plain(v: Any) -> Any:
    if is_dataclass(v):
        return asdict(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v
