"""YAML to located values: every mapping, list and scalar keeps its line and column.

We compose the YAML node graph with the safe loader (libyaml when present) and
build our own values from it instead of letting PyYAML construct objects:

* no tag can construct a Python object (anything but the core tags is refused);
* duplicate mapping keys are reported (PyYAML silently keeps the last one);
* scalars keep their raw text, so `key: 0`, `open: 08:00` or `lang: no` mean
  what the designer typed (YAML 1.1 would turn them into 0, 480 and False);
* aliases are converted once and shared, so "billion laughs" documents stay linear.
"""

from __future__ import annotations

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


class LMap(dict):
    """A mapping of str keys; `pos` is the mapping, `key_pos[k]` each key."""

    pos: Pos
    key_pos: dict[str, Pos]


class LList(list):
    """A sequence with the position of its start."""

    pos: Pos


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
    """
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(mark.line + 1, mark.column + 1) if mark else Pos(1, 1)
        problem = exc.problem or str(exc)
        ctx = f" ({exc.context})" if exc.context else ""
        raise YamlError(f"YAML syntax: {problem}{ctx}", pos, _syntax_hint(problem)) from None
    except yaml.YAMLError as exc:  # composer errors without marks
        raise YamlError(f"YAML syntax: {exc}", Pos(1, 1)) from None
    if root is None:
        return None, []
    builder = _Builder()
    return builder.build(root), builder.problems


def _syntax_hint(problem: str) -> str | None:
    if "tab" in problem:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return "quote text that contains ': ' (for example prompt: \"Note: closed\")"
    if "could not find expected ':'" in problem:
        return "check the indentation of the line above, or a missing ':' after a key"
    return None


class _Builder:
    def __init__(self) -> None:
        self._seen: dict[int, Value] = {}
        self.problems: list[YamlError] = []

    def build(self, node: yaml.Node) -> Value:
        done = self._seen.get(id(node))
        if done is not None:
            return done
        tag = node.tag
        if tag not in _SAFE_TAGS and not (isinstance(node, yaml.ScalarNode) and tag == "!"):
            self.problems.append(YamlError(
                f"YAML tag {tag!r} is not allowed",
                _pos(node),
                "flows are plain data: remove the tag",
            ))
            return Scalar("", "null", _pos(node))
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
                key = knode.value
                if key in out:
                    first = out.key_pos[key]
                    self.problems.append(YamlError(
                        f"duplicate key {key!r} (first defined at line {first.line})",
                        _pos(knode),
                        "each key may appear once in a mapping; rename or merge them",
                    ))
                    continue
                out.key_pos[key] = _pos(knode)
                out[key] = self.build(vnode)
            return out
        if isinstance(node, yaml.SequenceNode):
            seq = LList()
            seq.pos = _pos(node)
            self._seen[id(node)] = seq
            seq.extend(self.build(item) for item in node.value)
            return seq
        kind = tag.rsplit(":", 1)[-1] if tag != "!" else "str"
        # An untagged plain scalar was resolved by the loader; a quoted one is a string.
        quoted = node.style in ("'", '"', "|", ">")
        scalar = Scalar(node.value, "str" if quoted else kind, _pos(node), quoted)
        self._seen[id(node)] = scalar
        return scalar
