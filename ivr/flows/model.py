"""The checked model of a flow: one dataclass per node kind.

Each field is declared with `spec(type, doc)`, which makes the dataclass the
single source of the YAML loader, the JSON Schema and the docs' field tables.
The prompt (prompt.py) and the flow-wide settings `Flow` holds (settings.py)
have modules of their own; they are re-exported here, so
`from .model import Prompt, Escape, Mailbox ...` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .expr import Expr, ExprError, compile_expr, template_fields
from .fields import (
    INVALID,
    NAME_RE,
    VAR_RE,
    Boolean,
    Choice,
    Ctx,
    Duration,
    FieldType,
    Integer,
    Key,
    ListOf,
    Literal,
    Located,
    MapOf,
    Number,
    Phrases,
    Struct,
    Target,
    Text,
    spec,
)
from .hours import Hours
from .prompt import PROMPT, PROMPTS, Prompt, text_prompt  # noqa: F401
from .settings import (  # noqa: F401
    DEFAULT_ESCAPE_PHRASES,
    Defaults,
    Escape,
    EscapeOverride,
    Mailbox,
    MusicClass,
    Speech,
)
from .yamlsrc import Pos, Scalar

# Words a hold announcement may say that the router fills in: the caller's place and wait.
QUEUE_WORDS = ("position", "wait")


class Condition(FieldType):
    """A condition such as `open("office") and tier == "gold"`."""

    name = "a condition"

    def parse(self, v, ctx: Ctx):
        s = self._scalar(v, ctx)
        if s is INVALID:
            return s
        try:
            expr = compile_expr(s.raw)
        except ExprError as exc:
            # Point at the offending character when the scalar sits on one line.
            return ctx.error("bad-condition", exc.message, s.at(exc.col - 1), exc.hint)
        expr.pos = s.pos
        return expr

    def schema(self):
        return {"type": "string"}


class SetValue(FieldType):
    """A literal value, or an expression when it starts with '=' (`= count + 1`)."""

    name = "a value or an = expression"

    def parse(self, v, ctx: Ctx):
        if isinstance(v, Scalar) and v.raw.startswith("="):
            try:
                expr = compile_expr(v.raw[1:])
            except ExprError as exc:
                # exc.col counts from just after the '=', which is raw offset 1.
                return ctx.error("bad-condition", exc.message, v.at(exc.col), exc.hint)
            expr.pos = v.pos
            return expr
        return Literal().parse(v, ctx)

    def schema(self):
        return {"type": ["string", "number", "boolean", "null"]}


@dataclass
class Retry(Located):
    """What happens when the caller says nothing (no_input) or something unexpected (no_match)."""

    prompts: list = spec(PROMPTS, "said before asking again; the nth failure plays the nth prompt", factory=list)
    max: int | None = spec(Integer(1, 10), "failures of this kind before `then` (default 3)")
    then: str | None = spec(Target(), "where to go after `max` failures: a handoff (default: the escape target)")


@dataclass
class Edge:
    """A way from one node to another, for checks and pictures."""

    target: str
    kind: str  # next, option, case, else, retry, escape, full, failure, call, hold-option
    label: str
    pos: Pos


# ---- nodes ------------------------------------------------------------------

@dataclass
class Node(Located):
    """Fields every node has."""

    KIND: ClassVar[str] = ""
    LISTENS: ClassVar[bool] = False  # takes caller input, so the escape applies

    kind: str = spec(Text(), "the node kind", required=True)
    label: str | None = spec(Text(), "a short name for pictures and reports")
    id: str = field(default="", metadata={"internal": True})
    scope: str | None = field(default=None, metadata={"internal": True})  # subflow name
    escape: EscapeOverride | None = field(default=None, metadata={"internal": True})

    def edges(self) -> list[Edge]:
        """Targets this node can go to (the escape is added by the flow)."""
        return []

    def _e(self, name: str, kind: str, label: str | None = None) -> list[Edge]:
        target = getattr(self, name)
        return [Edge(target, kind, label or name, self.at(name))] if target else []


ESCAPE_FIELD = spec(Struct(EscapeOverride), "this node's own escape (keys, phrases, where it goes)")


@dataclass
class Say(Node):
    """Speak a prompt, then go on."""

    KIND: ClassVar[str] = "say"
    prompt: list = spec(PROMPTS, "what to say (text, audio, or a list played in turn)", required=True)
    next: str | None = spec(Target(), "the node after the prompt", required=True)
    bargein: bool | None = spec(Boolean(), "a key stops the prompt (kept for the next menu)")

    def edges(self):
        return self._e("next", "next")


@dataclass
class Play(Node):
    """Play an audio file from media/, then go on."""

    KIND: ClassVar[str] = "play"
    audio: str | None = spec(Text(), "the audio file under media/", required=True)
    text: str | None = spec(Text(), "what the audio says (for the simulator, reports and captions)")
    next: str | None = spec(Target(), "the node after the audio", required=True)
    bargein: bool | None = spec(Boolean(), "a key stops the audio (kept for the next menu)")

    @property
    def prompt(self) -> list[Prompt]:
        p = Prompt(text=self.text, audio=self.audio)
        p.pos, p.field_pos = self.pos, {"audio": self.at("audio"), "text": self.at("text")}
        return [p]

    def edges(self):
        return self._e("next", "next")


@dataclass
class SetVars(Node):
    """Set variables; a value starting with '=' is an expression."""

    KIND: ClassVar[str] = "set"
    vars: dict = spec(MapOf(SetValue(), VAR_RE, "a variable name"), "variables to set", required=True)
    next: str | None = spec(Target(), "the node after", required=True)

    def edges(self):
        return self._e("next", "next")


@dataclass
class Case(Located):
    """One case of a branch: a condition and where to go when it holds."""

    when: Expr | None = spec(Condition(), "the condition", required=True)
    goto: str | None = spec(Target(), "where to go when it holds", required=True)


@dataclass
class Branch(Node):
    """Go to the first case whose condition holds, else to `else`."""

    KIND: ClassVar[str] = "branch"
    cases: list = spec(ListOf(Struct(Case), min_items=1), "conditions tried in order", required=True)
    otherwise: str | None = spec(Target(), "where to go when no case holds", required=True, yaml="else")

    def edges(self):
        out = [Edge(c.goto, "case", c.when.source if c.when else "?", c.at("goto")) for c in self.cases if c.goto]
        return out + self._e("otherwise", "else", "else")


@dataclass
class Goto(Node):
    """Jump to another node."""

    KIND: ClassVar[str] = "goto"
    to: str | None = spec(Target(), "the node to go to", required=True)

    def edges(self):
        return self._e("to", "next", "goto")


@dataclass
class CallSubflow(Node):
    """Run a subflow, then continue at `next` when it returns."""

    KIND: ClassVar[str] = "subflow"
    call: str | None = spec(Text(NAME_RE, "a subflow name"), "the subflow to run", required=True)
    next: str | None = spec(Target(), "where to continue after the subflow returns", required=True)

    def edges(self):
        return self._e("next", "next", "returns")


@dataclass
class Return(Node):
    """End a subflow and continue after the node that called it."""

    KIND: ClassVar[str] = "return"


@dataclass
class Option(Located):
    """A menu choice: a key and/or phrases, and where it goes."""

    key: str | None = spec(Key(), "the key that picks it")
    phrases: list = spec(Phrases(), "words that pick it (synonyms)", factory=list, yaml="say")
    goto: str | None = spec(Target(), "where it goes", required=True)
    intent: str | None = spec(Text(), "the caller's intent, passed to the router")
    set: dict = spec(MapOf(SetValue(), VAR_RE, "a variable name"), "variables to set when chosen", factory=dict)
    label: str | None = spec(Text(), "a short name for pictures and reports")

    def name(self) -> str:
        return self.label or (self.phrases[0] if self.phrases else f"key {self.key}")


@dataclass
class Menu(Node):
    """Offer choices by key and/or speech, with retries and the escape."""

    KIND: ClassVar[str] = "menu"
    LISTENS: ClassVar[bool] = True
    prompt: list = spec(PROMPTS, "the menu prompt", required=True)
    options: list = spec(ListOf(Struct(Option), min_items=1), "the choices", required=True)
    reprompt: list | None = spec(PROMPTS, "said instead of the full prompt when asking again")
    no_input: Retry | None = spec(Struct(Retry), "handling of silence")
    no_match: Retry | None = spec(Struct(Retry), "handling of an answer that is not an option")
    timeout: float | None = spec(Duration(0.5, 120), "silence after the prompt that counts as no input")
    inter_digit_timeout: float | None = spec(Duration(0.2, 30), "pause that ends a multi-key choice")
    bargein: bool | None = spec(Boolean(), "a key or speech stops the prompt")
    input: str = spec(Choice("both", "dtmf", "speech"), "how the caller may answer", default="both")
    confidence: float | None = spec(Number(0, 1), "speech results below this count as no match")
    escape: EscapeOverride | None = ESCAPE_FIELD

    def edges(self):
        out = [Edge(o.goto, "option", o.name(), o.at("goto")) for o in self.options if o.goto]
        for r, name in ((self.no_input, "no_input"), (self.no_match, "no_match")):
            if r and r.then:
                out.append(Edge(r.then, "retry", f"{name} x{r.max or 'max'}", r.at("then")))
        return out


@dataclass
class Digits(Located):
    """Rules for keyed entry."""

    min: int = spec(Integer(1, 64), "fewest keys", default=1)
    max: int = spec(Integer(1, 64), "most keys (entry ends when reached)", default=20)
    terminator: str | None = spec(Key(), "key that ends the entry (not stored)", default="#")


@dataclass
class SpeechInput(Located):
    """Rules for spoken entry."""

    phrases: list = spec(Phrases(), "the phrases expected (or set free: true)", factory=list)
    free: bool = spec(Boolean(), "accept any words", default=False)


@dataclass
class Gather(Node):
    """Collect digits or speech into a variable, checked against a pattern."""

    KIND: ClassVar[str] = "gather"
    LISTENS: ClassVar[bool] = True
    prompt: list = spec(PROMPTS, "what to ask", required=True)
    into: str | None = spec(Text(VAR_RE, "a variable name"), "the variable that receives the answer", required=True)
    next: str | None = spec(Target(), "where to go with a valid answer", required=True)
    digits: Digits | None = spec(Struct(Digits), "accept keys (default when speech is not set)")
    speech: SpeechInput | None = spec(Struct(SpeechInput), "accept speech")
    pattern: str | None = spec(Text(), "a regular expression the whole answer must match")
    reprompt: list | None = spec(PROMPTS, "said instead of the prompt when asking again")
    no_input: Retry | None = spec(Struct(Retry), "handling of silence")
    no_match: Retry | None = spec(Struct(Retry), "handling of an answer that fails the rules")
    timeout: float | None = spec(Duration(0.5, 120), "silence after the prompt that counts as no input")
    inter_digit_timeout: float | None = spec(Duration(0.2, 30), "pause between keys that ends the entry")
    bargein: bool | None = spec(Boolean(), "a key or speech stops the prompt")
    escape: EscapeOverride | None = ESCAPE_FIELD

    def edges(self):
        out = self._e("next", "next", f"{self.into} ok")
        for r, name in ((self.no_input, "no_input"), (self.no_match, "no_match")):
            if r and r.then:
                out.append(Edge(r.then, "retry", f"{name} x{r.max or 'max'}", r.at("then")))
        return out


@dataclass
class Announcement(Located):
    """A message that interrupts the music on hold, then the music resumes."""

    prompt: list = spec(PROMPTS, "what to say", required=True)
    every: float | None = spec(Duration(5, 3600), "repeat interval", default=None)
    after: float = spec(Duration(0, 3600), "first time it is said, from the start of hold", default=0.0)


@dataclass
class HoldOption(Located):
    """A key the caller may press while on hold."""

    key: str | None = spec(Key(), "the key", required=True)
    goto: str | None = spec(Target(), "where it goes", required=True)
    label: str | None = spec(Text(), "a short name for pictures and reports")


@dataclass
class Hold(Node):
    """Music on hold with announcements and keys, for up to `max_wait`."""

    KIND: ClassVar[str] = "hold"
    music: str = spec(Text(NAME_RE, "a music class"), "music class: a folder under media/moh/", default="default")
    queue: str | None = spec(Text(NAME_RE, "a queue name"), "the router queue the caller waits in: "
                             "announcements may then say {position} and {wait}")
    mode: str | None = spec(Choice("resume", "stream"), "resume: continue where this caller left off; "
                            "stream: join the running stream (default: the class's mode under music:, else resume)")
    max_wait: float = spec(Duration(1, 4 * 3600), "how long to hold before `next`", default=60.0)
    announcements: list = spec(ListOf(Struct(Announcement)), "messages during the hold", factory=list)
    options: list = spec(ListOf(Struct(HoldOption)), "keys accepted during the hold", factory=list)
    next: str | None = spec(Target(), "where to go when the wait is over", required=True)

    def edges(self):
        out = [Edge(o.goto, "hold-option", f"key {o.key}", o.at("goto")) for o in self.options if o.goto]
        return out + self._e("next", "next", f"after {self.max_wait:g}s")


def queue_words(prompts: list) -> set[str]:
    """Which of the router-given words ({position}, {wait}) hold announcements use."""
    return {name for p in prompts for name, _, _ in template_fields(p.text or "") if name in QUEUE_WORDS}


@dataclass
class Voicemail(Node):
    """Record a message, after checking the mailbox has room."""

    KIND: ClassVar[str] = "voicemail"
    mailbox: str | None = spec(Text(NAME_RE, "a mailbox name"), "the mailbox", required=True)
    full: str | None = spec(Target(), "where to go when the mailbox has no room (never offer a full box)",
                            required=True)
    greeting: list = spec(PROMPTS, "said before the beep",
                          factory=lambda: [text_prompt("Please leave a message after the tone. Press hash when you are done.")])
    max_length: float = spec(Duration(1, 3600), "longest message (at most the mailbox's max_message)",
                             default=120.0)
    end_silence: float = spec(Duration(1, 60), "silence that ends the message", default=5.0)
    review: bool = spec(Boolean(), "after the message, offer to listen to it, record it again or save it",
                        default=True)
    next: str | None = spec(Target(), "where to go after the message (default: thank and hang up)")

    def edges(self):
        return self._e("full", "full", "mailbox full") + self._e("next", "next", "recorded")


@dataclass
class Callback(Node):
    """Capture and confirm a number, store a callback request, and say when to expect it."""

    KIND: ClassVar[str] = "callback"
    LISTENS: ClassVar[bool] = True
    queue: str | None = spec(Text(NAME_RE, "a queue name"), "the queue whose agents will call back", required=True)
    number: str = spec(Choice("caller", "ask"), "use the caller's number (confirmed) or ask for one", default="caller")
    within: float = spec(Duration(60, 7 * 24 * 3600), "when the caller can expect the call: the promise "
                         "is kept by then at the latest", default=3600.0)
    dial_after: float | None = spec(Duration(0, 7 * 24 * 3600), "dial this long after the request; without it "
                                    "the call is made when the router says an agent of the queue is free, or "
                                    "when `within` runs out")
    attempts: int = spec(Integer(1, 10), "calls made before the callback counts as failed", default=3)
    retry_after: float = spec(Duration(10, 24 * 3600), "wait between attempts that were not answered",
                              default=300.0)
    greeting: list = spec(PROMPTS, "said when the callee answers, before the call goes to the queue",
                          factory=lambda: [text_prompt("Hello, this is your callback from {flow}. "
                                                   "Please hold while we connect you.")])
    prompt: list | None = spec(PROMPTS, "said before the number is confirmed")
    next: str | None = spec(Target(), "where to go after the request is stored (default: thank and hang up)")
    escape: EscapeOverride | None = ESCAPE_FIELD

    def edges(self):
        return self._e("next", "next", "stored")


@dataclass
class Handoff(Node):
    """Hand the call to the router (a person), with everything learned so far."""

    KIND: ClassVar[str] = "handoff"
    queue: str | None = spec(Text(NAME_RE, "a queue name"), "the router queue", required=True)
    skills: list = spec(ListOf(Text(NAME_RE, "a skill"), single_ok=True), "skills the agent needs", factory=list)
    priority: int = spec(Integer(0, 10), "0 lowest .. 10 highest", default=5)
    intent: str | None = spec(Text(), "the intent passed on (default: the last chosen)")
    context: list | None = spec(ListOf(Text(VAR_RE, "a variable name"), single_ok=True),
                                "variables passed on (default: all)")
    prompt: list | None = spec(PROMPTS, "said before the transfer")
    target: str | None = spec(Text(), "router address overriding the queue's (e.g. sip:agents@host)")
    on_failure: str | None = spec(Target(), "where to go when the router cannot take the call")

    def edges(self):
        return self._e("on_failure", "failure", "router refused")


@dataclass
class Hangup(Node):
    """Say goodbye and end the call."""

    KIND: ClassVar[str] = "hangup"
    prompt: list | None = spec(PROMPTS, "said before hanging up")


NODE_KINDS: dict[str, type[Node]] = {
    cls.KIND: cls
    for cls in (Menu, Gather, Say, Play, SetVars, Branch, Goto, CallSubflow, Return,
                Hold, Voicemail, Callback, Handoff, Hangup)
}

PERSON_KINDS = ("handoff",)  # nodes where a person takes the call
HUMAN_PATH_KINDS = ("handoff", "callback")  # a person now, or a person who will call back


@dataclass
class Subflow(Located):
    """Reusable steps, called with a `subflow` node and ended with `return`."""

    start: str | None = spec(Target(), "the first node of the subflow", required=True)
    nodes: dict = field(default_factory=dict, metadata={"internal": True})


@dataclass
class Flow(Located):
    """A whole flow file."""

    version: int = spec(Integer(1, 1), "the language version (1)", default=1)
    name: str = spec(Text(), "the line's name", default="IVR")
    language: str = spec(Text(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", "a language tag (en-GB)"), "language of the prompts",
                         default="en-US")
    start: str | None = spec(Target(), "the first node", required=True)
    overflow: str | None = spec(Target(), "the first node for callers who arrive while the line is over "
                                "its soft capacity (a short message and a callback offer)")
    escape: Escape | None = spec(Struct(Escape), "the way to a human from every input", required=True)
    defaults: Defaults = spec(Struct(Defaults), "defaults for every node", factory=Defaults)
    speech: Speech = spec(Struct(Speech), "speech recognition settings", factory=Speech)
    music: dict = spec(MapOf(Struct(MusicClass)), "music-on-hold classes and their mode (a class "
                       "not listed plays in resume mode)", factory=dict)
    mailboxes: dict = spec(MapOf(Struct(Mailbox)), "voicemail boxes and their limits (a box not listed "
                           "has the default limits)", factory=dict)
    hours: dict = spec(MapOf(Struct(Hours)),
                       "named opening hours for open() in conditions", factory=dict)
    variables: dict = spec(MapOf(Literal(), VAR_RE, "a variable name"), "variables every call starts with",
                           factory=dict)
    nodes: dict = field(default_factory=dict, metadata={"internal": True})
    subflows: dict = field(default_factory=dict, metadata={"internal": True})
    # Ids of nodes that were written but could not be read (no kind, unknown kind):
    # already reported, so rules treat them as present rather than as missing targets.
    broken: set = field(default_factory=set, metadata={"internal": True})
    # (node id, prompt) for every prompt written in a node, listed by the loader.
    node_prompts: list | None = field(default=None, metadata={"internal": True}, repr=False)
    path: str = field(default="flows.yaml", metadata={"internal": True})
    media_dir: str = field(default="media", metadata={"internal": True})
    digest: str = field(default="", metadata={"internal": True})

    def escape_for(self, node: Node) -> tuple[list[str], list[str], str | None]:
        """The escape that applies at `node`: (keys, phrases, target)."""
        base = self.escape or Escape()
        keys, phrases, to = base.keys, base.phrases, base.to
        ov = node.escape
        if ov is not None:
            keys = ov.keys if ov.keys is not None else keys
            phrases = ov.phrases if ov.phrases is not None else phrases
            to = ov.to or to
        return keys, phrases, to

    def hold_mode(self, node: Hold) -> str:
        """The music mode of a hold node: its own, else its class's, else resume."""
        cls = self.music.get(node.music)
        return node.mode or (cls.mode if cls is not None else "resume")

    def mailbox(self, name: str) -> Mailbox:
        """A mailbox's limits (the defaults for a box not listed under mailboxes:)."""
        return self.mailboxes.get(name) or Mailbox()

    def edges(self, node: Node) -> list[Edge]:
        """All edges of a node, including its escape and subflow call (computed once:
        a loaded flow does not change, and every rule walks the graph)."""
        cache = self.__dict__.setdefault("_edges", {})
        got = cache.get(id(node))
        if got is not None and got[0] is node:
            return got[1]
        out = self._edges_of(node)
        cache[id(node)] = (node, out)
        return out

    def _edges_of(self, node: Node) -> list[Edge]:
        out = list(node.edges())
        if isinstance(node, CallSubflow) and node.call in self.subflows:
            sub = self.subflows[node.call]
            out.append(Edge(f"{node.call}.{sub.start}", "call", f"call {node.call}", node.at("call")))
        if node.LISTENS:
            keys, phrases, to = self.escape_for(node)
            if to and (keys or phrases):
                out.append(Edge(to, "escape", "escape", node.at("escape") if node.escape else node.pos))
        return out


def qualify(scope: str | None, target: str, flow: Flow) -> str:
    """A target as written inside a subflow resolves there first, then in the main flow."""
    if scope and f"{scope}.{target}" in flow.nodes:
        return f"{scope}.{target}"
    return target

