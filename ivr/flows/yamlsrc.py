"""YAML to located values: every mapping, list and scalar keeps its line and column.

We compose the YAML node graph with the safe loader (libyaml when present) and
build our own values from it instead of letting PyYAML construct objects:

* no tag can construct a Python object (anything but the core tags is refused);
* duplicate mapping keys are reported (PyYAML silently keeps the last one);
* scalars keep their raw text, so `key: 0`, `open: 08:00` or `lang: no` mean
  what the designer typed (YAML 1.1 would turn them into 0, 480 and False);
* aliases are converted once and shared, so "billion laughs" documents stay linear.

The plain YAML that flows are written in goes through fastyaml first, which
gives the same values many times faster (see load).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

try:  # libyaml is ~10x faster on big flows; the pure-Python loader gives the same marks
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the wheel
    _Loader = yaml.SafeLoader

_SAFE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:timestamp",
}


@dataclass(frozen=True, order=True)
class Pos:
    """A 1-based line and column in a source file."""

    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.line}:{self.col}"


NOWHERE = Pos(0, 0)


class YamlError(Exception):
    """A document that cannot be read as YAML, or uses a forbidden feature."""

    def __init__(self, message: str, pos: Pos, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint


@dataclass
class Scalar:
    """A YAML scalar: its raw text, its YAML 1.1 type and where it stood."""

    raw: str
    kind: str  # str, int, float, bool, null, timestamp
    pos: Pos
    quoted: bool = False
    end: Pos | None = None  # where the scalar's text ends

    def at(self, offset: int) -> Pos:
        """Where character `offset` (0-based) of the raw text was written.

        Exact for a scalar on one line (escapes in double quotes aside); a
        scalar that spans lines (folded, block, or wrapped) gives its start,
        since folding has moved its characters.
        """
        if self.end is None or self.end.line != self.pos.line:
            return self.pos
        return Pos(self.pos.line, self.pos.col + offset + (1 if self.quoted else 0))

    @property
    def value(self) -> Any:
        """The scalar as YAML would type it (used where a number or bool is wanted)."""
        if self.kind == "null":
            return None
        if self.kind == "bool":
            return self.raw.lower() in ("true", "yes", "on", "y")
        if self.kind == "int":
            try:
                return int(self.raw.replace("_", ""), 0)
            except ValueError:
                return self.raw
        if self.kind == "float":
            try:
                return float(self.raw.replace("_", ""))
            except ValueError:
                return self.raw
        return self.raw


class _Deferred:
    """A position that fastyaml leaves as plain numbers until it is first read.

    Making a Pos costs more than reading the YAML line it comes from, and many
    are never read, so the fast reader stores ints in the instance's __dict__
    (`_line`, `_col`, `_end`, `_end_line` and, for a mapping's keys, a dict of
    `_key_lines` or `_key_cols`: ints only, which the garbage collector need
    not track) and the Pos objects are made here, once, when asked for. A
    non-data descriptor: what it makes is kept in the instance's __dict__ and
    shadows it from then on, and values built the ordinary way (with the
    attribute in their __dict__) never reach it.
    """

    def __init__(self, name: str, make: Callable[[dict[str, Any]], Any]) -> None:
        self._name = name
        self._make = make

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        fields = obj.__dict__
        if "_line" not in fields:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self._name!r}")
        value = self._make(fields)
        fields[self._name] = value
        return value


def _key_pos(fields: dict[str, Any]) -> dict[str, Pos]:
    if "_key_cols" in fields:  # a flow mapping, all on its first line
        line = fields["_line"]
        return {key: Pos(line, col) for key, col in fields["_key_cols"].items()}
    col = fields["_col"]  # a block mapping: every key in its column
    return {key: Pos(line, col) for key, line in fields["_key_lines"].items()}


def _start(fields: dict[str, Any]) -> Pos:
    return Pos(fields["_line"], fields["_col"])


# Set after @dataclass has run, so that they are not taken for field defaults
# (the __init__ it made keeps None as the default of `end`).
Scalar.pos = _Deferred("pos", _start)  # type: ignore[assignment]
Scalar.end = _Deferred("end", lambda f: Pos(f.get("_end_line", f["_line"]), f["_end"]))  # type: ignore[assignment]


class LMap(dict):
    """A mapping of str keys; `pos` is the mapping, `key_pos[k]` each key.

    `key_pos` also holds keys whose value was refused (a forbidden tag).
    """

    # Plain attributes when built by load_pyyaml; see _Deferred for fastyaml's.
    pos: Pos = _Deferred("pos", _start)  # type: ignore[assignment]
    key_pos: dict[str, Pos] = _Deferred("key_pos", _key_pos)  # type: ignore[assignment]


class LList(list):
    """A sequence with the position of its start."""

    pos: Pos = _Deferred("pos", _start)  # type: ignore[assignment]


Value = Scalar | LMap | LList


def _pos(node: yaml.Node) -> Pos:
    return Pos(node.start_mark.line + 1, node.start_mark.column + 1)


def pos_of(value: Any) -> Pos:
    """Where a located value stood, or NOWHERE."""
    return getattr(value, "pos", NOWHERE)


def load(text: str) -> tuple[Value | None, list[YamlError]]:
    """Parse one YAML document into located values (None for an empty document).

    A syntax error raises YamlError. Lesser problems (a duplicate key, a
    forbidden tag) are returned as a list so that all of them can be reported;
    the offending entry is left out of the result.

    The plain YAML that flows are written in is read by fastyaml, many times
    faster than PyYAML composes it and with the same result; everything else
    (and every error) is read by PyYAML, in load_pyyaml.
    """
    from . import fastyaml  # not at the top: fastyaml builds on this module's classes

    try:
        return fastyaml.load_fast(text)
    except fastyaml.Unsupported:
        return load_pyyaml(text)


def load_pyyaml(text: str) -> tuple[Value | None, list[YamlError]]:
    """load() by PyYAML alone: the reference that fastyaml must match exactly."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or str(exc)
        context = exc.context or ""
        mark = exc.problem_mark or exc.context_mark
        where = ""
        if exc.context_mark and exc.problem_mark and context.startswith(_AT_START):
            # An unclosed quote or bracket is noticed lines later (often at the end
            # of the file); the fix belongs where it was opened.
            mark = exc.context_mark
            if exc.problem_mark.line != mark.line:
                where = f", noticed at line {exc.problem_mark.line + 1}"
        pos = Pos(mark.line + 1, mark.column + 1) if mark else Pos(1, 1)
        ctx = f" ({context}{where})" if context else ""
        char = _char_at(text, exc.problem_mark)
        raise YamlError(f"YAML syntax: {problem}{ctx}", pos, _syntax_hint(problem, context, char)) from None
    except yaml.YAMLError as exc:  # composer errors without marks
        raise YamlError(f"YAML syntax: {exc}", Pos(1, 1)) from None
    if root is None:
        return None, []
    builder = _Builder()
    value = builder.build(root)
    return (None if value is _LEFT_OUT else value), builder.problems


# Contexts whose error is best shown where the construct starts: those that run
# on until closed, and an alias (`key: *` is a bare star, not a broken key).
_AT_START = ("while scanning a quoted scalar", "while parsing a flow sequence", "while parsing a flow mapping",
             "while scanning an alias")


def _char_at(text: str, mark) -> str:
    """The character under a mark (libyaml's messages do not name it)."""
    if mark is None:
        return ""
    lines = text.splitlines()
    if mark.line >= len(lines) or mark.column >= len(lines[mark.line]):
        return ""
    return lines[mark.line][mark.column]


def _syntax_hint(problem: str, context: str = "", char: str = "") -> str | None:
    if "tab" in problem or char == "\t":
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return "quote text that contains ': ' (for example prompt: \"Note: closed\")"
    if "could not find expected ':'" in problem:
        return "check the indentation of the line above, or a missing ':' after a key"
    if "alias" in context or "undefined alias" in problem:
        return "a bare * starts a YAML alias: quote keys like '*' and '#'"
    if "quoted scalar" in context:
        return "close the quote; inside \"...\" write \\\" for a quote, inside '...' write ''"
    if "flow sequence" in context or "flow mapping" in context:
        return "close the [ ] or { } opened here"
    return None


# What build() gives for a node with a forbidden tag: its entry is left out, so a
# refused value is reported once instead of again as an empty one.
_LEFT_OUT: Any = object()


class _Builder:
    def __init__(self) -> None:
        self._seen: dict[int, Value] = {}
        self.problems: list[YamlError] = []

    def _forbidden(self, node: yaml.Node) -> bool:
        tag = node.tag
        if tag in _SAFE_TAGS or (isinstance(node, yaml.ScalarNode) and tag == "!"):
            return False
        self.problems.append(YamlError(
            f"YAML tag {tag!r} is not allowed",
            _pos(node),
            "flows are plain data: remove the tag",
        ))
        return True

    def build(self, node: yaml.Node) -> Value:
        done = self._seen.get(id(node))
        if done is not None:
            return done
        tag = node.tag
        if self._forbidden(node):
            self._seen[id(node)] = _LEFT_OUT  # an alias to it is left out too, and reported once
            return _LEFT_OUT
        if isinstance(node, yaml.MappingNode):
            out = LMap()
            out.pos = _pos(node)
            out.key_pos = {}
            self._seen[id(node)] = out
            for knode, vnode in node.value:
                if knode.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(YamlError(
                        "YAML merge keys (<<) are not supported", _pos(knode),
                        "write the keys out, or use a subflow for shared steps"))
                    continue
                if not isinstance(knode, yaml.ScalarNode):
                    self.problems.append(YamlError("a mapping key must be plain text", _pos(knode)))
                    continue
                if self._forbidden(knode):
                    continue
                key = knode.value
                if key in out.key_pos:
                    first = out.key_pos[key]
                    self.problems.append(YamlError(
                        f"duplicate key {key!r} (first defined at line {first.line})",
                        _pos(knode),
                        "each key may appear once in a mapping; rename or merge them",
                    ))
                    continue
                # A key whose value was refused stays in key_pos (not in the mapping),
                # so readers can tell it was written and not report it missing.
                out.key_pos[key] = _pos(knode)
                value = self.build(vnode)
                if value is not _LEFT_OUT:
                    out[key] = value
            return out
        if isinstance(node, yaml.SequenceNode):
            seq = LList()
            seq.pos = _pos(node)
            self._seen[id(node)] = seq
            seq.extend(v for v in map(self.build, node.value) if v is not _LEFT_OUT)
            return seq
        kind = tag.rsplit(":", 1)[-1] if tag != "!" else "str"
        # An untagged plain scalar was resolved by the loader; a quoted one is a string.
        quoted = node.style in ("'", '"', "|", ">")
        end = Pos(node.end_mark.line + 1, node.end_mark.column + 1)
        scalar = Scalar(node.value, "str" if quoted else kind, _pos(node), quoted, end)
        self._seen[id(node)] = scalar
        return scalar
