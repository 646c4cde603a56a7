"""A prompt: what the line says, as text for TTS and/or a recorded audio file.

Shared by the nodes (model.py) and the flow-wide settings (settings.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .fields import NAME_RE, ListOf, Located, Struct, Text, spec


@dataclass
class Prompt(Located):
    """A prompt: text spoken by TTS and/or an audio file under media/."""

    text: str | None = spec(Text(), "words to speak; {var} fills in a variable, {var:digits} reads digits")
    audio: str | None = spec(Text(), "an audio file under media/ (e.g. prompts/welcome.wav)")
    id: str | None = spec(Text(NAME_RE, "a prompt id"), "a stable name for reports and tests")

    def label(self) -> str:
        return self.text or self.audio or self.id or ""


PROMPT = Struct(Prompt, shorthand=Text(), shorthand_field="text")
PROMPTS = ListOf(PROMPT, single_ok=True)


def text_prompt(text: str) -> Prompt:
    """A prompt that speaks `text` (for defaults written in the model)."""
    return Prompt(text=text)
