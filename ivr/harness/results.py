"""What a journey run found: per step and per journey, for reports and the command's summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class StepResult:
    """One step: passed, failed (with why) or skipped (an earlier step failed)."""

    index: int
    kind: str
    label: str
    line: int
    status: str = SKIPPED
    started_s: float | None = None  # seconds since the journey started
    elapsed_s: float | None = None
    detail: str = ""
    # How it was judged: {"via": "audio", "score": 0.83, "at_s": 4.1}, {"via": "transcript",
    # "heard": "...", "similarity": 0.7}, {"via": "event", "id": "main_menu"} (our engine only) ...
    evidence: dict[str, Any] = field(default_factory=dict)
    audio: bytes | None = field(default=None, repr=False)  # 8 kHz PCM heard during a failed step

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("audio")
        doc["audio_s"] = round(len(self.audio) / 16000, 2) if self.audio else 0
        return doc


@dataclass
class JourneyResult:
    """One journey over one call."""

    name: str
    file: str
    driver: str
    target: str
    steps: list[StepResult]
    passed: bool = False
    error: str | None = None  # a failure outside any step: no answer, the journey's own timeout
    call_id: str | None = None
    setup_s: float | None = None  # INVITE to answer
    duration_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # from the end of an input to the next prompt
    heard_s: float = 0.0  # how much audio the IVR sent
    mos: float | None = None  # a rough audio-quality proxy of what was heard (sounds.mos_estimate)
    # From our engine's event stream, when the harness could read it (for coverage).
    nodes: list[str] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, via)
    tags: list[str] = field(default_factory=list)

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.status == FAILED), None)

    def to_json(self) -> dict[str, Any]:
        doc = {k: v for k, v in asdict(self).items() if k != "steps"}
        doc["steps"] = [s.to_json() for s in self.steps]
        return doc
