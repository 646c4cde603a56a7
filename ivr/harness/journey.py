"""Journeys: what a tester expects of a call, read from YAML (docs/TESTING.md, "Journeys").

A journey file holds one journey (a mapping with `journey:` and `steps:`) or
several under `journeys:`. Each step is one key, its kind, and a value:

    steps:
      - expect_prompt: "Welcome to Acme Energy"
      - press: "1"
      - expect_handoff: {queue: billing}

The YAML is read by the flow loader's located reader (ivr.flows.yamlsrc), so
every problem is reported as `file:line:col: error: message [code] (hint: ...)`,
all of them at once, and a file with any problem gives no journey at all.

This module reads and checks; what it gives (the step dataclasses and `Journey`)
is in `ivr.harness.steps`, and every name of it is importable from here as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ivr.engine.handoff import REASONS
from ivr.flows.diagnostics import Diagnostic, Report, did_you_mean
from ivr.flows.fields import INVALID, Boolean, Choice, Duration, FieldType, Number, Text
from ivr.flows.yamlsrc import LList, LMap, Pos, Scalar, YamlError, load, pos_of

from .located import _Ctx, _Located, _mapping, _missing, _what
from .steps import (
    DEFAULT_LANGUAGE,
    DEFAULT_TIMEOUT,
    EXAMPLES,
    KEY_CHARS,
    MATCHES,
    METHODS,
    Dial,
    ExpectHandoff,
    ExpectHangup,
    ExpectHoldMusic,
    ExpectPrompt,
    ExpectVoicemail,
    Hangup,
    Journey,
    Press,
    Say,
    Silence,
    Step,
    Wait,
)

# Headers the dialer writes itself; a journey may not set them.
_RESERVED_HEADERS = {
    "from": "set the caller id with caller:",
    "f": "set the caller id with caller:",
    **dict.fromkeys(("to", "t", "call-id", "i", "cseq", "via", "v", "contact", "m", "content-length", "l",
                     "content-type", "c", "max-forwards"), "the dialer sets this header itself"),
}
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_LANGUAGE = r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*"


class JourneyError(Exception):
    """Journey files that cannot be used: every problem found, one line each.

    `problems` are formatted `file:line:col: error: message [code] (hint: ...)`;
    `diagnostics` are the same as Diagnostic objects.
    """

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        self.problems = [d.format() for d in self.diagnostics]
        super().__init__("\n".join(self.problems))


# ---- reading values ----------------------------------------------------------------

_TEXT = Text()
_DURATION = Duration()
_BOOL = Boolean()


class _Fields:
    """The keys of one mapping, read one by one; those never asked for are reported unknown."""

    def __init__(self, r: _Reader, m: LMap, owner: str = "") -> None:
        self.r = r
        self.m = m
        self.owner = owner  # "press", or "" for the journey's own keys
        self.asked: list[str] = []

    def has(self, key: str) -> bool:
        self.asked.append(key)
        return key in self.m.key_pos

    def _label(self, key: str) -> str:
        return f"{self.owner} {key}" if self.owner else key

    def _typed(self, key: str, ftype: FieldType, default: Any = None) -> Any:
        """The value of `key` read by a flow field type; INVALID after an error."""
        if not self.has(key) or key not in self.m:
            return default
        self.r.ctx.owner = self._label(key)
        try:
            return ftype.parse(self.m[key], self.r.ctx)
        finally:
            self.r.ctx.owner = ""

    def error(self, code: str, key: str, message: str, hint: str | None = None) -> Any:
        return self.r.error(code, f"{self._label(key)}: {message}", pos_of(self.m[key]), hint)

    def text(self, key: str, ftype: FieldType = _TEXT) -> Any:
        v = self._typed(key, ftype)
        if v == "":
            return self.error("bad-value", key, "is empty")
        return v

    def duration(self, key: str, default: float | None, *, zero: bool = False) -> Any:
        v = self._typed(key, _DURATION, default)
        if v is not INVALID and key in self.m and v == 0 and not zero:
            return self.error("bad-duration", key, "must be longer than 0", "for example 5s, 500ms, 2m")
        return v

    def choice(self, key: str, values: Iterable[str], default: str | None) -> Any:
        return self._typed(key, Choice(*values), default)

    def number(self, key: str, low: float, high: float) -> Any:
        return self._typed(key, Number(low, high))

    def boolean(self, key: str, default: bool) -> Any:
        return self._typed(key, _BOOL, default)

    def strmap(self, key: str, headers: bool = False) -> Any:
        """A mapping of names to text (SIP headers when `headers`)."""
        if not self.has(key) or key not in self.m:
            return {}
        v = self.m[key]
        if not isinstance(v, LMap):
            example = '{X-Test-Run: "42"}' if headers else '{account: "12345678"}'
            return self.error("bad-value", key, f"expected a mapping of names to values, got {_what(v)}",
                              f"for example {key}: {example}")
        out: dict[str, str] = {}
        bad = False
        for name, value in v.items():
            npos = v.key_pos[name]
            if headers:
                reserved = _RESERVED_HEADERS.get(name.lower())
                if not _TOKEN.fullmatch(name):
                    bad = self.r.error("bad-header", f"{name!r} is not a SIP header name", npos,
                                       "use letters, digits and -, for example X-Test-Run")
                    continue
                if reserved:
                    bad = self.r.error("bad-header", f"the {name} header cannot be set here", npos, reserved)
                    continue
            if not isinstance(value, Scalar) or _missing(value):
                bad = self.r.error("bad-value", f"{self._label(key)} {name}: expected text, got {_what(value)}",
                                   npos if _missing(value) else pos_of(value),
                                   'quote the value: "..."' if not isinstance(value, Scalar) else None)
                continue
            if headers and ("\n" in value.raw or "\r" in value.raw):
                bad = self.r.error("bad-header", f"header {name} spans lines", value.pos,
                                   "write a header's value on one line")
                continue
            out[name] = value.raw
        return INVALID if bad else out

    def wav(self, key: str) -> Any:
        """A recording: a path, relative to the journey file's folder, that must exist."""
        v = self.text(key)
        if v is None or v is INVALID:
            return v
        path = Path(v).expanduser()
        if not path.is_absolute():
            path = self.r.folder / path
        path = path.resolve()
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            return self.error("no-wav", key, f"{v} {what} (looked for {path})",
                              "relative paths are read from the journey file's folder")
        return path

    def finish(self) -> None:
        """Report every key that was not asked for."""
        known = list(dict.fromkeys(self.asked))
        for key, kpos in self.m.key_pos.items():
            if key in known:
                continue
            where = f" in {self.owner}" if self.owner else ""
            self.r.error("unknown-key", f"unknown key {key!r}{where}", kpos,
                         did_you_mean(key, known) or ("keys: " + ", ".join(known) if known else None))


# ---- steps ---------------------------------------------------------------------------

class _Reader:
    """Reads the journeys of one file; problems go to one Report."""

    def __init__(self, path: Path, report: Report) -> None:
        self.path = path
        self.folder = path.parent
        self.report = report
        self.ctx = _Ctx(report)

    def error(self, code: str, message: str, pos: Pos, hint: str | None = None) -> Any:
        self.report.error(code, message, pos, hint)
        return INVALID

    def fields(self, step: _Located, value: Any, short: str | None = None) -> _Fields | None:
        """The fields of a step: its mapping, its short form (a value for `short`), or none (bare)."""
        kind = step.kind
        if _missing(value):  # only kinds in BARE_KINDS get here
            return _Fields(self, _mapping(step.pos), kind)
        if isinstance(value, LMap):
            return _Fields(self, value, kind)
        if short and isinstance(value, Scalar):
            return _Fields(self, _mapping(value.pos, {short: value}), kind)
        takes = "no value" if kind == "hangup" else "a mapping of fields"
        self.error("bad-value", f"{kind} takes {takes}, got {_what(value)}", pos_of(value),
                   f"for example {EXAMPLES[kind]}")
        return None


def _dial(r: _Reader, step: _Located, value: Any) -> Step | None:
    f = r.fields(step, value)
    if f is None:
        return None
    caller, headers = f.text("caller"), f.strmap("headers", headers=True)
    telephone_event = f.boolean("telephone_event", True)
    f.finish()
    return Dial(**step.at, caller=caller, headers=headers, telephone_event=telephone_event)


def _expect_prompt(r: _Reader, step: _Located, value: Any) -> Step | None:
    f = r.fields(step, value, short="text")
    if f is None:
        return None
    text, wav = f.text("text"), f.wav("wav")
    prompt_id = f.text("id", Text(r"[A-Za-z_][A-Za-z0-9_.\-]*", "a prompt id"))
    match = f.choice("match", MATCHES, "auto")
    threshold = f.number("threshold", 0.0, 1.0)
    within = f.duration("within", 15.0)
    whole = f.boolean("whole", False)
    f.finish()
    given = {k for k in ("text", "wav", "id") if k in f.m.key_pos}
    if not given:
        r.error("missing-field", "expect_prompt needs text, wav or id", step.pos,
                f"for example {EXAMPLES['expect_prompt']}")
    needs = {"event": ({"id", "text"}, "id or text", "the IVR reports which prompt it plays, by id or text"),
             "audio": ({"text", "wav"}, "text or wav", "audio is compared with a recording (wav) or the text spoken"),
             "transcript": ({"text"}, "text", "what is heard is transcribed and compared with text")}
    if given and match in needs and not given & needs[match][0]:
        r.error("missing-field", f"match: {match} needs {needs[match][1]}", pos_of(f.m["match"]), needs[match][2])
    return ExpectPrompt(**step.at, text=text, wav=wav, id=prompt_id, match=match, threshold=threshold,
                        within=within, whole=whole)


def _keys(r: _Reader, f: _Fields) -> Any:
    """The keys to press: a string of 0-9, *, #, A-D; each wrong character is reported where it is."""
    if not f.has("keys"):
        return None
    v = f.m.get("keys")
    if _missing(v):
        return r.error("bad-key", "press: no keys given", pos_of(v),
                       "quote the keys: a bare # starts a YAML comment, for example press: \"#\"")
    if not isinstance(v, Scalar):
        return r.error("bad-key", f"press keys: expected keys like \"12#\", got {_what(v)}", pos_of(v))
    if v.raw == "":
        return r.error("bad-key", "press: no keys given", v.pos, 'for example press: "1"')
    bad = False
    for i, ch in enumerate(v.raw):
        if ch not in KEY_CHARS:
            hint = "write the keys A-D in capitals" if ch in "abcd" else "keys are 0-9, *, #, A-D"
            bad = r.error("bad-key", f"press: {ch!r} is not a key", v.at(i), hint)
    return INVALID if bad else v.raw


def _press(r: _Reader, step: _Located, value: Any) -> Step | None:
    f = r.fields(step, value, short="keys")
    if f is None:
        return None
    keys = _keys(r, f)
    method = f.choice("method", METHODS, "rfc4733")
    gap = f.duration("gap", 0.3, zero=True)
    duration = f.duration("duration", 0.1)
    f.finish()
    if "keys" not in f.m.key_pos:
        r.error("missing-field", "press needs keys", step.pos, 'for example press: {keys: "1", method: info}')
    return Press(**step.at, keys=keys or "", method=method, gap=gap, duration=duration)


def _say(r: _Reader, step: _Located, value: Any) -> Step | None:
    f = r.fields(step, value, short="text")
    if f is None:
        return None
    text, wav = f.text("text"), f.wav("wav")
    f.finish()
    given = [k for k in ("text", "wav") if k in f.m.key_pos]
    if not given:
        r.error("missing-field", "say needs text or wav", step.pos, f"for example {EXAMPLES['say']}")
    elif len(given) == 2:
        r.error("conflict", "say takes text or wav, not both", f.m.key_pos["wav"],
                "use two say steps to send both")
    return Say(**step.at, text=text, wav=wav)


def _seconds(cls: type[Step]) -> Callable[[_Reader, _Located, Any], Step | None]:
    """The parser of a step whose value is one duration (silence: 5s)."""

    def parse(r: _Reader, step: _Located, value: Any) -> Step | None:
        if not isinstance(value, Scalar):
            r.error("bad-value", f"{step.kind} takes a duration, got {_what(value)}", pos_of(value),
                    f"for example {EXAMPLES[step.kind]}")
            return None
        r.ctx.owner = step.kind
        try:
            seconds = _DURATION.parse(value, r.ctx)
        finally:
            r.ctx.owner = ""
        if seconds == 0:
            r.error("bad-duration", f"{step.kind}: must be longer than 0", value.pos,
                    f"for example {EXAMPLES[step.kind]}")
        return cls(**step.at, seconds=seconds)

    return parse


def _expect_hold_music(r: _Reader, step: _Located, value: Any) -> Step | None:
    f = r.fields(step, value, short="for")
    if f is None:
        return None
    within, seconds = f.duration("within", 10.0), f.duration("for", 2.0)
    f.finish()
    return ExpectHoldMusic(**step.at, within=within, seconds=seconds)


def _expect_handoff(r: _Reader, step: _Located, value: Any) -> Step | None:
    f = r.fields(step, value)
    if f is None:
        return None
    target, queue, intent = f.text("target"), f.text("queue"), f.text("intent")
    reason = f.choice("reason", REASONS, None)
    context = f.strmap("context")
    within = f.duration("within", 30.0)
    f.finish()
    return ExpectHandoff(**step.at, target=target, queue=queue, intent=intent, reason=reason,
                         context=context, within=within)


def _within_only(cls: type[Step], default: float | None) -> Callable[[_Reader, _Located, Any], Step | None]:
    """The parser of a step whose only field is `within` (none at all when `default` is None)."""

    def parse(r: _Reader, step: _Located, value: Any) -> Step | None:
        f = r.fields(step, value)
        if f is None:
            return None
        within = f.duration("within", default) if default is not None else None
        f.finish()
        return cls(**step.at, within=within) if default is not None else cls(**step.at)

    return parse


# The step kinds: each key is read by its parser, given the step's value (None
# for a bare `- kind`). Kinds in BARE_KINDS may be written bare.
STEP_KINDS: dict[str, Callable[[_Reader, _Located, Any], Step | None]] = {
    "dial": _dial,
    "expect_prompt": _expect_prompt,
    "press": _press,
    "say": _say,
    "silence": _seconds(Silence),
    "wait": _seconds(Wait),
    "expect_hold_music": _expect_hold_music,
    "expect_handoff": _expect_handoff,
    "expect_voicemail": _within_only(ExpectVoicemail, 20.0),
    "expect_hangup": _within_only(ExpectHangup, 10.0),
    "hangup": _within_only(Hangup, None),
}
BARE_KINDS = ("dial", "expect_hold_music", "expect_handoff", "expect_voicemail", "expect_hangup", "hangup")

def _parse_step(r: _Reader, item: Any, index: int) -> Step | None:
    """One entry of steps: `- kind` or `- kind: value`."""
    if isinstance(item, Scalar) and not _missing(item):
        kind, value, pos = item.raw, None, item.pos
    elif isinstance(item, LMap) and item:
        keys = list(item)
        kind = next((k for k in keys if k in STEP_KINDS), keys[0])
        value, pos = item[kind], item.key_pos[kind]
        for other in keys:
            if other == kind:
                continue
            if other in STEP_KINDS:
                hint = f"start another step with '- {other}:'"
            elif kind in STEP_KINDS:
                hint = f"indent {other} under {kind}:, or write {kind}: {{..., {other}: ...}}"
            else:
                hint = None
            r.error("bad-step", f"a step has one key, its kind; {other!r} is a second key", item.key_pos[other],
                    hint)
    elif isinstance(item, LMap) and item.key_pos:
        return None  # its only key was refused by the YAML reader, which said why
    else:
        r.error("bad-step", f"a step is a kind and its value, got {_what(item)}", pos_of(item),
                'for example - press: "1", or - hangup')
        return None
    parse = STEP_KINDS.get(kind)
    if parse is None:
        r.error("unknown-kind", f"unknown step kind {kind!r}", pos,
                did_you_mean(kind, STEP_KINDS) or "step kinds: " + ", ".join(STEP_KINDS))
        return None
    if _missing(value) and kind not in BARE_KINDS:
        r.error("missing-value", f"{kind} needs a value", pos, f"for example {EXAMPLES[kind]}")
        return None
    if kind == "dial" and index != 0:
        r.error("dial-not-first", "dial can only be the first step", pos,
                "move it to the top, or leave it out: the call is dialled before the first step anyway")
    return parse(r, _Located(kind, pos), value)


# ---- journeys -------------------------------------------------------------------------

# The keys of a journey, in the order they are read.
JOURNEY_KEYS = ("journey", "description", "target", "caller", "headers", "language", "timeout", "tags", "steps")


def _tags(f: _Fields) -> Any:
    if not f.has("tags") or f.m.get("tags") is None:
        return ()
    v = f.m["tags"]
    items = list(v) if isinstance(v, LList) else [v]
    out: list[str] = []
    bad = False
    for tag in items:
        if not isinstance(tag, Scalar) or _missing(tag) or not re.fullmatch(r"[^\s,]+", tag.raw):
            bad = f.r.error("bad-value", f"tags: {_what(tag)} is not a tag", pos_of(tag) if pos_of(tag).line
                            else f.m.key_pos["tags"], "tags are single words, for example tags: [smoke, billing]")
        elif tag.raw not in out:
            out.append(tag.raw)
    return INVALID if bad else tuple(out)


def _target(f: _Fields) -> Any:
    v = f.text("target")
    if isinstance(v, str) and not re.fullmatch(r"sips?:[^\s@]+@?[^\s]*", v):
        return f.error("bad-value", "target", f"{v!r} is not a SIP address", "for example sip:ivr@127.0.0.1:5060")
    return v


def _journey(r: _Reader, m: LMap) -> tuple[Journey | None, Pos]:
    """One journey mapping, and where its name was written."""
    f = _Fields(r, m)
    name = f.text("journey")
    name_pos = pos_of(m["journey"]) if "journey" in m else m.pos
    if "journey" not in m.key_pos:
        r.error("missing-field", "a journey needs a name", m.pos, "add journey: <a short name>")
    description = f.text("description")
    target = _target(f)
    caller = f.text("caller")
    headers = f.strmap("headers", headers=True)
    language = f.text("language", Text(_LANGUAGE, "a language tag (en-US, en-GB, fr-FR)"))
    timeout = f.duration("timeout", DEFAULT_TIMEOUT)
    tags = _tags(f)
    steps: list[Step] = []
    if not f.has("steps"):
        r.error("missing-field", "a journey needs steps", m.pos, 'add steps: with at least one step, e.g. - press: "1"')
    elif "steps" in m:
        raw = m["steps"]
        if not isinstance(raw, LList) or not raw:
            got = "an empty list" if isinstance(raw, LList) else _what(raw)
            r.error("bad-value", f"steps is a list of steps, got {got}",
                    m.key_pos["steps"] if _missing(raw) else pos_of(raw),
                    "write each step on its own line, starting with '- '")
        else:
            for i, item in enumerate(raw):
                step = _parse_step(r, item, i)
                if step is not None:
                    steps.append(step)
    f.finish()
    line = m.key_pos["journey"].line if "journey" in m.key_pos else m.pos.line
    if not isinstance(name, str):
        return None, name_pos
    journey = Journey(name=name, file=r.path, line=line, steps=tuple(steps), description=description,
                      target=target, caller=caller, headers=headers, language=language or DEFAULT_LANGUAGE,
                      timeout=timeout, tags=tags)
    return journey, name_pos


def _read_file(path: Path, report: Report) -> list[tuple[Journey, Pos]]:
    """The journeys of one file with the positions of their names; problems go to `report`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        report.error("no-file", f"no such file: {path}", Pos(1, 1), "pass a journey file or a folder of them")
        return []
    except (OSError, UnicodeDecodeError) as exc:
        report.error("no-file", f"cannot read {path}: {exc}", Pos(1, 1))
        return []
    try:
        root, yaml_problems = load(text)
    except YamlError as exc:
        report.error("yaml-syntax", exc.message, exc.pos, exc.hint)
        return []
    for p in yaml_problems:
        # The reader's hints speak of flows; these are journeys.
        hint = {"YAML merge keys (<<) are not supported": "write the keys out"}.get(p.message, p.hint)
        if hint and hint.startswith("flows are plain data"):
            hint = "journeys are plain data: remove the tag"
        report.error("duplicate-key" if "duplicate" in p.message else "yaml-forbidden", p.message, p.pos, hint)
    r = _Reader(path, report)
    if root is None:
        r.error("not-a-journey", "the journey file is empty", Pos(1, 1), "start with journey: <name> and steps:")
        return []
    if not isinstance(root, LMap) or not {"journey", "journeys", "steps"} & set(root.key_pos):
        r.error("not-a-journey",
                "a journey file is a mapping with journey: and steps:, or journeys: and a list of them",
                pos_of(root) if pos_of(root).line else Pos(1, 1), "see docs/TESTING.md, Journeys")
        return []
    if "journeys" not in root.key_pos:
        journey, name_pos = _journey(r, root)
        return [(journey, name_pos)] if journey else []
    f = _Fields(r, root)
    f.has("journeys")
    f.finish()
    items = root.get("journeys")
    if not isinstance(items, LList) or not items:
        empty = ", and it is empty" if isinstance(items, LList) else ""
        r.error("bad-value", f"journeys is a list of journeys{empty}",
                root.key_pos["journeys"] if _missing(items) else pos_of(items),
                "write each journey as a list item: - journey: <name>")
        return []
    out = []
    for item in items:
        if not isinstance(item, LMap):
            r.error("bad-value", f"a journey is a mapping with journey: and steps:, got {_what(item)}", pos_of(item),
                    "write each journey as a list item: - journey: <name>")
            continue
        journey, name_pos = _journey(r, item)
        if journey:
            out.append((journey, name_pos))
    return out


def _files(paths: Iterable[str | Path], report: Report) -> list[Path]:
    """The journey files named, folders replaced by their *.yaml and *.yml files (sorted), each once."""
    out: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                report.items.append(Diagnostic("error", "no-file", f"no journey files (*.yaml, *.yml) in {path}",
                                               Pos(1, 1), None, str(path)))
        else:
            found = [path]
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def load_many(paths: Iterable[str | Path]) -> list[Journey]:
    """The journeys of files and folders (a folder's *.yaml and *.yml, not its subfolders).

    Every file is read and every problem collected before JourneyError is
    raised; two journeys with the same name anywhere in the set are an error.
    """
    top = Report("")
    files = _files(paths, top)
    diagnostics = list(top.items)
    journeys: list[Journey] = []
    first: dict[str, Journey] = {}
    for path in files:
        report = Report(str(path))
        for journey, name_pos in _read_file(path, report):
            other = first.get(journey.name)
            if other is not None:
                report.error("duplicate-journey",
                             f"journey {journey.name!r} is already defined at {other.file}:{other.line}",
                             name_pos, "give each journey its own name")
                continue
            first[journey.name] = journey
            journeys.append(journey)
        diagnostics += report.sorted()
    if diagnostics:
        raise JourneyError(diagnostics)
    return journeys


def load_journeys(path: str | Path) -> list[Journey]:
    """The journeys of one file, in order; raises JourneyError listing every problem."""
    path = Path(path)
    if path.is_dir():
        raise JourneyError([Diagnostic("error", "no-file", f"{path} is a folder, not a journey file", Pos(1, 1),
                                       "name one file, or use load_many for a folder", str(path))])
    return load_many([path])
