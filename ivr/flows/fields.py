"""Field types of the flow language: each parses a located YAML value and
describes itself as JSON Schema, so the loader and `ivr schema` share one source."""

from __future__ import annotations

import functools
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .diagnostics import Report, closest, did_you_mean
from .yamlsrc import LList, LMap, Pos, Scalar, pos_of


class Invalid:
    """Marks a value that failed to parse (a diagnostic was already reported)."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID = Invalid()


class Ctx:
    """What a parser needs while reading: where to report problems."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.owner = ""  # the node being read
        # Struct classes whose instances are listed as they are built, with their
        # owner (the loader collects prompts this way instead of walking the flow).
        self.collect: dict[type, list[tuple[str, Any]]] = {}

    def error(self, code: str, message: str, pos: Pos, hint: str | None = None) -> Invalid:
        self.report.error(code, message, pos, hint)
        return INVALID


def _kind_name(v: Any) -> str:
    if isinstance(v, LMap):
        return "a mapping"
    if isinstance(v, LList):
        return "a list"
    if isinstance(v, Scalar):
        return "nothing" if v.kind == "null" else repr(v.raw)
    return type(v).__name__


class FieldType:
    """Base of the field types; `name` is how docs and errors call it."""

    name = "value"

    def parse(self, v: Any, ctx: Ctx) -> Any:
        raise NotImplementedError

    def schema(self) -> dict:
        raise NotImplementedError

    def _scalar(self, v: Any, ctx: Ctx) -> Scalar | Invalid:
        if not isinstance(v, Scalar) or v.kind == "null":
            return ctx.error("bad-value", f"expected {self.name}, got {_kind_name(v)}", pos_of(v))
        return v


class Text(FieldType):
    """Any text; numbers and words are kept exactly as typed."""

    name = "text"

    def __init__(self, pattern: str | None = None, what: str | None = None, hint: str | None = None):
        self.pattern = re.compile(pattern) if pattern else None
        self.what = what
        self.hint = hint
        if what:
            self.name = what

    def parse(self, v, ctx):
        s = self._scalar(v, ctx)
        if s is INVALID:
            return s
        if self.pattern and not self.pattern.fullmatch(s.raw):
            return ctx.error("bad-value", f"{s.raw!r} is not {self.name}", s.pos, self.hint)
        return s.raw

    def schema(self):
        out: dict = {"type": ["string", "number", "boolean"] if not self.pattern else ["string", "integer"]}
        if self.pattern:
            out["pattern"] = "^(?:" + self.pattern.pattern + ")$"
        return out


NAME_RE = r"[A-Za-z_][A-Za-z0-9_\-]*"
VAR_RE = r"[A-Za-z_][A-Za-z0-9_]*"


class Key(FieldType):
    """One DTMF key sequence such as 1, 0, *, #, or 12."""

    name = "a key (0-9, *, #, A-D)"
    pattern = re.compile(r"[0-9*#A-Da-d]{1,8}")

    def parse(self, v, ctx):
        if isinstance(v, Scalar) and v.kind == "null" and not v.quoted:
            # `key: #` is a YAML comment, so the key arrives empty.
            return ctx.error("bad-key", "no key given", v.pos, "quote keys like '*' and '#' in YAML")
        s = self._scalar(v, ctx)
        if s is INVALID:
            return s
        raw = s.raw
        if not self.pattern.fullmatch(raw):
            hint = "quote keys like '*' and '#' in YAML" if raw == "" else None
            return ctx.error("bad-key", f"{raw!r} is not a key (use 0-9, *, #, A-D)", s.pos, hint)
        return raw.upper()

    def schema(self):
        return {"type": ["string", "integer"], "pattern": "^[0-9*#A-Da-d]{1,8}$", "minimum": 0}


_DUR = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)?\s*")
_UNIT = {"ms": 0.001, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
         "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600}


class Duration(FieldType):
    """A length of time: 5s, 500ms, 2m, 1h, or a number of seconds."""

    name = "a duration (5s, 500ms, 2m)"

    def __init__(self, minimum: float = 0.0, maximum: float | None = None):
        self.minimum = minimum
        self.maximum = maximum

    def parse(self, v, ctx):
        s = self._scalar(v, ctx)
        if s is INVALID:
            return s
        m = _DUR.fullmatch(s.raw)
        if not m:
            return ctx.error("bad-duration", f"{s.raw!r} is not a duration", s.pos,
                             "write a number with a unit: 5s, 500ms, 2m, 1h")
        secs = float(m.group(1)) * _UNIT[m.group(2) or "s"]
        if secs < self.minimum or (self.maximum is not None and secs > self.maximum):
            top = f" and {self.maximum:g}s" if self.maximum is not None else ""
            return ctx.error("bad-duration", f"{s.raw} is out of range (between {self.minimum:g}s{top})", s.pos)
        return secs

    def schema(self):
        return {"type": ["string", "number"],
                "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)?\s*$"}


class Integer(FieldType):
    """A whole number within bounds."""

    def __init__(self, minimum: int | None = None, maximum: int | None = None):
        self.minimum = minimum
        self.maximum = maximum
        self.name = "a whole number"

    def parse(self, v, ctx):
        s = self._scalar(v, ctx)
        if s is INVALID:
            return s
        try:
            n = int(s.raw)
        except ValueError:
            return ctx.error("bad-value", f"expected a whole number, got {s.raw!r}", s.pos)
        if (self.minimum is not None and n < self.minimum) or (self.maximum is not None and n > self.maximum):
            return ctx.error("bad-value", f"{n} is out of range ({self.minimum}..{self.maximum})", s.pos)
        return n

    def schema(self):
        out: dict = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


class Number(FieldType):
    """A decimal number within bounds."""

    def __init__(self, minimum: float, maximum: float):
        self.minimum, self.maximum = minimum, maximum
        self.name = f"a number from {minimum:g} to {maximum:g}"

    def parse(self, v, ctx):
        s = self._scalar(v, ctx)
        if s is INVALID:
            return s
        try:
            n = float(s.raw)
        except ValueError:
            return ctx.error("bad-value", f"expected {self.name}, got {s.raw!r}", s.pos)
        if not self.minimum <= n <= self.maximum:
            return ctx.error("bad-value", f"{n:g} is out of range ({self.name})", s.pos)
        return n

    def schema(self):
        return {"type": "number", "minimum": self.minimum, "maximum": self.maximum}


class Boolean(FieldType):
    """true or false (yes/no/on/off also accepted)."""

    name = "true or false"
    _MAP = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}

    def parse(self, v, ctx):
        s = self._scalar(v, ctx)
        if s is INVALID:
            return s
        b = self._MAP.get(s.raw.lower())
        if b is None:
            return ctx.error("bad-value", f"expected true or false, got {s.raw!r}", s.pos)
        return b

    def schema(self):
        return {"type": "boolean"}


class Choice(FieldType):
    """One word out of a fixed set."""

    def __init__(self, *values: str):
        self.values = values
        self.name = "one of " + ", ".join(values)

    def parse(self, v, ctx):
        s = self._scalar(v, ctx)
        if s is INVALID:
            return s
        if s.raw not in self.values:
            return ctx.error("bad-value", f"{s.raw!r} is not {self.name}", s.pos,
                             did_you_mean(s.raw, self.values))
        return s.raw

    def schema(self):
        return {"enum": list(self.values)}


class Target(Text):
    """The id of another node."""

    def __init__(self):
        super().__init__(NAME_RE, "a node id")

    def schema(self):
        return {"type": "string", "pattern": "^" + NAME_RE + "$"}


class Phrases(FieldType):
    """One phrase or a list of phrases (synonyms), compared case-insensitively."""

    name = "a phrase or a list of phrases"

    def parse(self, v, ctx):
        items = v if isinstance(v, LList) else [v]
        out = PhraseList()
        out.positions = []
        for item in items:
            s = self._scalar(item, ctx)
            if s is INVALID:
                continue
            norm = normalise_phrase(s.raw)
            if not norm:
                ctx.error("bad-value", "an empty phrase", s.pos)
                continue
            out.append(norm)
            out.positions.append(s.pos)
        return out

    def schema(self):
        return {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


class PhraseList(list):
    """Normalised phrases; `positions[i]` is where phrase i was written."""

    positions: list[Pos]


def normalise_phrase(text: str) -> str:
    """Lower case, letters, digits and single spaces: how phrases are compared."""
    return " ".join(re.sub(r"[^\w' ]+", " ", text.lower()).split())


class ListOf(FieldType):
    """A list of items; `single_ok` lets a lone item stand for a list of one."""

    def __init__(self, item: FieldType, single_ok: bool = False, min_items: int = 0):
        self.item = item
        self.single_ok = single_ok
        self.min_items = min_items
        self.name = f"a list of {item.name}"

    def parse(self, v, ctx):
        if not isinstance(v, LList):
            if self.single_ok and not (isinstance(v, Scalar) and v.kind == "null"):
                v = _as_list(v)
            else:
                return ctx.error("bad-value", f"expected {self.name}, got {_kind_name(v)}", pos_of(v))
        out = [self.item.parse(x, ctx) for x in v]
        out = [x for x in out if x is not INVALID]
        if len(v) < self.min_items:
            return ctx.error("bad-value", f"needs at least {self.min_items} item(s)", pos_of(v))
        return out

    def schema(self):
        arr: dict = {"type": "array", "items": self.item.schema()}
        if self.min_items:
            arr["minItems"] = self.min_items
        return {"anyOf": [self.item.schema(), arr]} if self.single_ok else arr


def _as_list(v):
    lst = LList([v])
    lst.pos = pos_of(v)
    return lst


class MapOf(FieldType):
    """A mapping from names to values of one type."""

    def __init__(self, value: FieldType, key_pattern: str = NAME_RE, key_what: str = "a name"):
        self.value = value
        self.key_re = re.compile(key_pattern)
        self.key_what = key_what
        self.name = f"a mapping of {key_what} to {value.name}"

    def parse(self, v, ctx):
        if not isinstance(v, LMap):
            return ctx.error("bad-value", f"expected {self.name}, got {_kind_name(v)}", pos_of(v))
        out = {}
        for k, item in v.items():
            if not self.key_re.fullmatch(k):
                # Variable names (VAR_RE) cannot hold '-': they are read in conditions.
                allowed = "letters, digits, _ and -" if "\\-" in self.key_re.pattern else "letters, digits and _"
                ctx.error("bad-name", f"{k!r} is not {self.key_what}", v.key_pos[k],
                          f"use {allowed}, starting with a letter")
                continue
            parsed = self.value.parse(item, ctx)
            if parsed is not INVALID:
                out[k] = parsed
        return out

    def schema(self):
        return {"type": "object", "propertyNames": {"pattern": "^" + self.key_re.pattern + "$"},
                "additionalProperties": self.value.schema()}


class Literal(FieldType):
    """A plain value: text, number or true/false, typed as YAML reads it."""

    name = "a value"

    def parse(self, v, ctx):
        s = self._scalar(v, ctx) if not (isinstance(v, Scalar) and v.kind == "null") else v
        if s is INVALID:
            return s
        return s.raw if s.quoted or s.kind not in ("int", "float", "bool", "null") else s.value

    def schema(self):
        return {"type": ["string", "number", "boolean", "null"]}


# ---- structs --------------------------------------------------------------

def spec(ftype: FieldType, doc: str, *, required: bool = False, default: Any = None,
         yaml: str | None = None, factory: Any = None):
    """A dataclass field that is also a flow-language field (type, doc, YAML name)."""
    meta = {"ftype": ftype, "doc": doc, "required": required, "yaml": yaml}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Located:
    """Base of every struct read from YAML: where it stood and where each field stood."""

    pos: Pos = field(default=Pos(0, 0), repr=False, compare=False, metadata={"internal": True})
    field_pos: dict[str, Pos] = field(default_factory=dict, repr=False, compare=False,
                                      metadata={"internal": True})

    def at(self, name: str) -> Pos:
        """Where field `name` was written (or the struct itself when it was left out)."""
        got = self.field_pos.get(name)
        if got is None:
            return self.pos
        if isinstance(got, Pos):
            return got
        # The loader leaves (value, mapping, key): most positions are never asked
        # for, and making them all would cost a third of loading a big flow.
        item, mapping, key = got
        pos = pos_of(item)
        if not pos.line:
            pos = mapping.key_pos[key]
        self.field_pos[name] = pos
        return pos


@functools.cache
def spec_fields(cls) -> tuple:
    """The language fields of a struct class, in declaration order (cached: classes don't change)."""
    return tuple(f for f in fields(cls) if not f.metadata.get("internal") and "ftype" in f.metadata)


@functools.cache
def _specs_by_yaml(cls) -> dict:
    return {yaml_name(f): f for f in spec_fields(cls)}


def yaml_name(f) -> str:
    return f.metadata.get("yaml") or f.name


class Struct(FieldType):
    """A nested mapping read into the dataclass `cls` (fields declared with `spec`)."""

    def __init__(self, cls, shorthand: FieldType | None = None, shorthand_field: str | None = None):
        self.cls = cls
        self.name = cls.__doc__.split("\n")[0].rstrip(".").lower() if cls.__doc__ else cls.__name__
        self.shorthand = shorthand
        self.shorthand_field = shorthand_field

    def parse(self, v, ctx, skip: tuple[str, ...] = ()):
        if not isinstance(v, LMap):
            if self.shorthand is not None and isinstance(v, Scalar) and v.kind != "null":
                val = self.shorthand.parse(v, ctx)
                if val is INVALID:
                    return val
                obj = self.cls(**{self.shorthand_field: val})
                obj.pos = v.pos
                obj.field_pos = {self.shorthand_field: v.pos}
                bucket = ctx.collect.get(self.cls)
                if bucket is not None:
                    bucket.append((ctx.owner, obj))
                return obj
            return ctx.error("bad-value", f"expected a mapping ({self.name}), got {_kind_name(v)}", pos_of(v))
        return build_struct(self.cls, v, ctx, skip)

    def schema(self):
        props, req = {}, []
        for f in spec_fields(self.cls):
            sch = dict(f.metadata["ftype"].schema())
            sch["description"] = f.metadata["doc"]
            props[yaml_name(f)] = sch
            if f.metadata["required"]:
                req.append(yaml_name(f))
        obj: dict = {"type": "object", "properties": props, "additionalProperties": False}
        if req:
            obj["required"] = req
        if self.shorthand is not None:
            return {"anyOf": [self.shorthand.schema(), obj]}
        return obj


def build_struct(cls, v: LMap, ctx: Ctx, skip: tuple[str, ...] = ()):
    """Read mapping `v` into `cls`, reporting unknown keys, missing and bad fields."""
    specs = _specs_by_yaml(cls)
    values: dict[str, Any] = {}
    fpos: dict[str, Pos] = {}
    bad = False
    guessed: set[str] = set()  # fields an unknown key was probably meant to be
    for key, item in v.items():
        if key in skip:
            continue
        f = specs.get(key)
        if f is None:
            guess = closest(key, specs)
            ctx.error("unknown-key", f"unknown key {key!r} in {_struct_name(cls)}", v.key_pos[key],
                      f"did you mean {guess!r}?" if guess else "allowed: " + ", ".join(specs))
            if guess:
                guessed.add(guess)
            continue
        parsed = f.metadata["ftype"].parse(item, ctx)
        fpos[f.name] = (item, v, key)  # resolved by Located.at() when needed
        if parsed is INVALID:
            bad = True
            continue
        values[f.name] = parsed
    for name, f in specs.items():
        # A field that was written (even if its value was refused) or misspelt is
        # not missing: that problem was reported already, once.
        if f.metadata["required"] and name not in v.key_pos and name not in guessed:
            ctx.error("missing-field", f"{_struct_name(cls)} needs '{name}'", v.pos,
                      f"add '{name}:' ({f.metadata['doc']})")
            bad = True
    for f in spec_fields(cls):
        if f.name not in values and f.metadata["required"]:
            values[f.name] = None  # keep going so later rules can still look at the rest
        elif f.name not in values:
            continue
    obj = cls(**values)
    obj.pos = v.pos
    obj.field_pos = fpos
    obj._bad = bad  # type: ignore[attr-defined]
    bucket = ctx.collect.get(cls)
    if bucket is not None:
        bucket.append((ctx.owner, obj))
    return obj


def _struct_name(cls) -> str:
    kind = getattr(cls, "KIND", None)
    if kind:
        return f"a {kind} node"
    return getattr(cls, "TITLE", None) or (cls.__doc__ or cls.__name__).split("\n")[0].split(":")[0].rstrip(".").lower()


def defaults_of(cls) -> dict[str, Any]:
    """Field defaults of a struct, for the docs."""
    out = {}
    for f in spec_fields(cls):
        if f.default is not MISSING:
            out[yaml_name(f)] = f.default
    return out
