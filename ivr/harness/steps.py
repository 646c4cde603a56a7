"""Journeys as the harness runs them: the steps a tester expects of a call, and the journey.

Each step kind is a frozen dataclass (`Dial`, `ExpectPrompt`, `Press`, `Say`,
`Silence`, `Wait`, `ExpectHoldMusic`, `ExpectHandoff`, `ExpectVoicemail`,
`ExpectHangup`, `Hangup`) with `describe()` for reports, and a `Journey` holds
them in order with the call's settings. This is the model only: reading it
from YAML, with every problem reported, is `ivr.harness.journey`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# A journey's defaults, and the values some steps' fields may take.
DEFAULT_LANGUAGE = "en-US"
DEFAULT_TIMEOUT = 120.0  # seconds, the whole journey
MATCHES = ("auto", "audio", "transcript", "event")
METHODS = ("rfc4733", "info", "inband")
KEY_CHARS = "0123456789*#ABCD"


# ---- the model -------------------------------------------------------------------

def _secs(seconds: float) -> str:
    """A duration as a tester would write it: 300ms, 5s, 2m, 90s."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _quote(text: str, limit: int = 40) -> str:
    """Text for a one-line label: white space folded, cut at `limit` characters."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "\u2026"
    return f'"{text}"'


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a journey; `line` and `col` are where its kind was written.

    `within` is how long the step may wait for what it expects (seconds), or
    None for a step that only does something.
    """

    kind: str = field(init=False, default="")
    line: int = 0
    col: int = 0
    within: float | None = None

    def describe(self) -> str:
        """A one-line human label for reports."""
        return self.kind


@dataclass(frozen=True, kw_only=True)
class Dial(Step):
    """Place the call (only as the first step; without it the call is dialled anyway).

    `caller` and `headers` add to (and override) the journey's own. Without
    `telephone_event` the call offers no RFC 4733 keys, so an IVR has to hear tones.
    """

    kind: str = field(init=False, default="dial")
    caller: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    telephone_event: bool = True

    def describe(self) -> str:
        text = f"dial as {self.caller}" if self.caller else "dial"
        return text if self.telephone_event else text + " (keys as tones only)"


@dataclass(frozen=True, kw_only=True)
class ExpectPrompt(Step):
    """Hear a prompt: by its text, a recording of it (`wav`) and/or its prompt id.

    `match` picks the evidence (auto, audio, transcript, event); `threshold` is
    the score it must reach (None: the matcher's default); `whole` asks for the
    prompt to be heard to its end rather than recognised from its start.
    """

    kind: str = field(init=False, default="expect_prompt")
    within: float | None = 15.0
    text: str | None = None
    wav: Path | None = None
    id: str | None = None
    match: str = "auto"
    threshold: float | None = None
    whole: bool = False

    def describe(self) -> str:
        if self.text:
            what = _quote(self.text)
        elif self.id:
            what = self.id
        else:
            what = self.wav.name if self.wav else "?"
        return f"expect prompt {what}" + (f" ({self.match})" if self.match != "auto" else "")


@dataclass(frozen=True, kw_only=True)
class Press(Step):
    """Press keys (0-9, *, #, A-D), one tone of `duration` every `gap`, sent by `method`."""

    kind: str = field(init=False, default="press")
    keys: str = ""
    method: str = "rfc4733"
    gap: float = 0.3
    duration: float = 0.1

    def describe(self) -> str:
        return f"press {self.keys} ({self.method})"


@dataclass(frozen=True, kw_only=True)
class Say(Step):
    """Speak to the IVR: `text` through TTS, or a recording (`wav`); exactly one of them."""

    kind: str = field(init=False, default="say")
    text: str | None = None
    wav: Path | None = None

    def describe(self) -> str:
        return f"say {_quote(self.text)}" if self.text else f"say {self.wav.name if self.wav else '?'}"


@dataclass(frozen=True, kw_only=True)
class Silence(Step):
    """Send silence for `seconds`."""

    kind: str = field(init=False, default="silence")
    seconds: float = 0.0

    def describe(self) -> str:
        return f"silence {_secs(self.seconds)}"


@dataclass(frozen=True, kw_only=True)
class Wait(Step):
    """Do nothing (but listen) for `seconds`."""

    kind: str = field(init=False, default="wait")
    seconds: float = 0.0

    def describe(self) -> str:
        return f"wait {_secs(self.seconds)}"


@dataclass(frozen=True, kw_only=True)
class ExpectHoldMusic(Step):
    """Hear music (not speech, not silence) for `seconds`, starting `within`."""

    kind: str = field(init=False, default="expect_hold_music")
    within: float | None = 10.0
    seconds: float = 2.0

    def describe(self) -> str:
        return f"expect hold music for {_secs(self.seconds)}"


@dataclass(frozen=True, kw_only=True)
class ExpectHandoff(Step):
    """The IVR hands the call to a person; each field given must match the hand-off.

    `target` is compared with the start of the address the call goes to
    (sip:agents@ matches sip:agents@10.0.0.5); `context` entries must be in
    the hand-off's data with these values.
    """

    kind: str = field(init=False, default="expect_handoff")
    within: float | None = 30.0
    target: str | None = None
    queue: str | None = None
    intent: str | None = None
    reason: str | None = None
    context: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{name} {value}" for name, value in (("to", self.target), ("queue", self.queue),
                                                       ("intent", self.intent), ("reason", self.reason))
                 if value]
        parts += [f"{k}={v}" for k, v in self.context.items()]
        return "expect handoff" + (f" ({', '.join(parts)})" if parts else "")


@dataclass(frozen=True, kw_only=True)
class ExpectVoicemail(Step):
    """Hear the beep that starts a voicemail recording."""

    kind: str = field(init=False, default="expect_voicemail")
    within: float | None = 20.0

    def describe(self) -> str:
        return "expect voicemail beep"


@dataclass(frozen=True, kw_only=True)
class ExpectHangup(Step):
    """The IVR ends the call."""

    kind: str = field(init=False, default="expect_hangup")
    within: float | None = 10.0

    def describe(self) -> str:
        return "expect hangup"


@dataclass(frozen=True, kw_only=True)
class Hangup(Step):
    """We end the call."""

    kind: str = field(init=False, default="hangup")

    def describe(self) -> str:
        return "hang up"


@dataclass(frozen=True)
class Journey:
    """One call a tester expects to go a certain way.

    `file` is the journey file as it was named, `line` where `journey:` was
    written; `timeout` (seconds) bounds the whole call. `target` is None when
    the file leaves it to the command line. `steps` never starts with anything
    but a Dial, if it has one.
    """

    name: str
    file: Path
    line: int
    steps: tuple[Step, ...]
    description: str | None = None
    target: str | None = None
    caller: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    language: str = DEFAULT_LANGUAGE
    timeout: float = DEFAULT_TIMEOUT
    tags: tuple[str, ...] = ()

    @property
    def dial(self) -> Dial | None:
        """The explicit dial step, if the journey starts with one."""
        return self.steps[0] if self.steps and isinstance(self.steps[0], Dial) else None

    @property
    def call_caller(self) -> str | None:
        """The caller id to dial with: the dial step's, else the journey's."""
        dial = self.dial
        return dial.caller if dial and dial.caller else self.caller

    @property
    def call_headers(self) -> dict[str, str]:
        """The extra INVITE headers: the journey's, then the dial step's over them."""
        dial = self.dial
        return {**self.headers, **(dial.headers if dial else {})}


# ---- how each kind is written --------------------------------------------------

# One example per kind, for hints.
EXAMPLES = {
    "dial": 'dial: {caller: "+441632960001"}',
    "expect_prompt": 'expect_prompt: "Welcome to Acme Energy"',
    "press": 'press: "12#" (quote keys: a bare # starts a comment)',
    "say": 'say: "billing please"',
    "silence": "silence: 5s",
    "wait": "wait: 2s",
    "expect_hold_music": "expect_hold_music: {within: 10s, for: 3s}",
    "expect_handoff": "expect_handoff: {queue: billing}",
    "expect_voicemail": "expect_voicemail: {within: 20s}",
    "expect_hangup": "expect_hangup: {within: 10s}",
    "hangup": "- hangup",
}
