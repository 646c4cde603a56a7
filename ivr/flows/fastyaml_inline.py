"""The values the fast YAML reader (see fastyaml.py) finds on one line.

After `key:` or `-`: a plain or quoted scalar, or a flow sequence or mapping
(`[a, b]`, `{a: 1}`, nested) that opens and closes on the same line; and the
limits past which such values, and nesting in general, are left to PyYAML.
"""

from __future__ import annotations

import re

from .fastyaml_scalars import Unsupported, _Kinds, _new, _scalar, _unescape
from .yamlsrc import LList, LMap, Scalar, Value

# Deeper nesting goes to PyYAML (and its limits), not to a recursion here.
_MAX_DEPTH = 50
# libyaml refuses a key whose ':' is more than 1024 characters (or bytes) after
# its start; keys in flows are short, so anything near that is left to it.
_MAX_KEY = 200

# Only the space counts as white space in these expressions: tabs and the other
# line breaks were refused up front, and to YAML a no-break space is text.

_DQ = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SQ = re.compile(r"'((?:[^']|'')*)'")
# What may follow a finished value on its line.
_TAIL = re.compile(r"(?: +#.*)? *$")
# A plain scalar inside [ ] or { }: no ':' or '?' at all (libyaml's rules for
# them there are subtle, and PyYAML's own scanner differs), no ' #', and it
# ends before spaces that lead to a separator.
_FLOW_PLAIN_RE = r"""(?:[^ ?:,\[\]{}#&*!|>'"%@`-]|-(?=[^ ,\[\]{}:?]))(?:[^ ,\[\]{}:?]| +(?=[^ ,\[\]{}:?#]))*"""
_FLOW_PLAIN = re.compile(_FLOW_PLAIN_RE)
# The usual flow collections, `[a, b]` and `{a: 1, b: 2}` of plain scalars made of
# ordinary characters, checked whole (with what may follow them) by one
# expression and then split on ',' (and ':') without further search.
_ORDINARY = r"""[^\[\]{}#:'"&*!|>%@`?,]"""
_SIMPLE_SEQ = re.compile(rf"\[({_ORDINARY}*(?:,{_ORDINARY}*)*)\](?: +#.*)? *$")
_SIMPLE_MAP = re.compile(rf"\{{({_ORDINARY}*: +{_ORDINARY}*(?:,{_ORDINARY}*: +{_ORDINARY}*)*)\}}(?: +#.*)? *$")
_SPACES = re.compile(" *")
_NOT_PLAIN = frozenset("?:,[]{}#&*!|>'\"%@`")


def _flow_map(line: int, col: int) -> LMap:
    """An empty `{ }` mapping at (line, col); its keys' columns go in _key_cols."""
    m = LMap()
    m._line = line
    m._col = col
    m._key_cols = {}
    return m


def _llist(line: int, col: int) -> LList:
    """An empty LList at (line, col) whose position is made on first read."""
    s = LList()
    s._line = line
    s._col = col
    return s


def _inline(line: str, j: int, ln: int, kinds: _Kinds, depth: int) -> Value:
    """The one-line value starting at line[j] (not empty, not a comment)."""
    ch = line[j]
    if ch == '"' or ch == "'":
        m = (_DQ if ch == '"' else _SQ).match(line, j)
        if m is None:
            raise Unsupported(f"line {ln}: a quoted scalar that does not end on its line")
        end = m.end()
        raw = _unescape(m.group(1)) if ch == '"' else m.group(1).replace("''", "'")
        value: Value = _scalar(raw, "str", True, ln, j + 1, ln, end + 1)
    elif ch == "[" or ch == "{":
        simple = (_SIMPLE_SEQ if ch == "[" else _SIMPLE_MAP).match(line, j)
        if simple is not None:
            return _simple_flow(simple, ln, kinds)
        value, end = _flow(line, j, ln, kinds, depth)
    else:
        if ch in _NOT_PLAIN or (ch == "-" and line[j + 1:j + 2] in ("", " ")):
            raise Unsupported(f"line {ln}: {ch!r} starts the value")
        k = line.find(" #", j)
        raw = (line[j:k] if k >= 0 else line[j:]).rstrip(" ")
        if ": " in raw or raw[-1] == ":":
            raise Unsupported(f"line {ln}: ': ' inside a plain value")
        return _scalar(raw, kinds[raw], False, ln, j + 1, ln, j + len(raw) + 1)
    if _TAIL.match(line, end) is None:
        raise Unsupported(f"line {ln}: text after a value")
    return value


def _simple_flow(m: re.Match, ln: int, kinds: _Kinds) -> Value:
    """The flow collection matched by _SIMPLE_SEQ or _SIMPLE_MAP (group 1: between the brackets).

    Its entries hold no indicator, so each is a plain scalar from its first to
    its last non-space character, if it has one and does not start with '- '.
    """
    typed = kinds.typed
    inner = m.group(1)
    k = m.start(1)  # where the current entry starts
    if m.group()[0] == "[":
        out: Value = _llist(ln, k)
        if not inner.strip(" "):
            return out
        for part in inner.split(","):
            raw = part.strip(" ")
            if not raw or (raw[0] == "-" and (len(raw) == 1 or raw[1] == " ")):
                raise Unsupported("an empty or '- ' entry in a flow sequence")
            at = k + part.index(raw[0]) + 1
            s = _new(Scalar)
            s.__dict__ = {"raw": raw, "kind": kinds[raw] if raw[0] in typed else "str", "quoted": False,
                          "_line": ln, "_col": at, "_end": at + len(raw)}
            out.append(s)
            k += len(part) + 1
        return out
    out = _flow_map(ln, k)
    kat = out._key_cols
    for part in inner.split(","):
        key_text, value_text = part.split(":")
        key = key_text.strip(" ")
        raw = value_text.strip(" ")
        if (not key or not raw or len(key_text) > _MAX_KEY or (key[0] == "-" and (len(key) == 1 or key[1] == " "))
                or (raw[0] == "-" and (len(raw) == 1 or raw[1] == " "))):
            raise Unsupported(f"line {ln}: an empty, '- ' or very long entry in a flow mapping")
        if key in out:
            raise Unsupported("duplicate key")
        if key[0] in typed:
            kinds[key]  # noqa: B018 - refuses `<<` and `=`, whose tags yamlsrc reports
        kat[key] = k + key_text.index(key[0]) + 1
        at = k + len(key_text) + 1 + value_text.index(raw[0]) + 1
        s = _new(Scalar)
        s.__dict__ = {"raw": raw, "kind": kinds[raw] if raw[0] in typed else "str", "quoted": False,
                      "_line": ln, "_col": at, "_end": at + len(raw)}
        out[key] = s
        k += len(part) + 1
    return out


def _flow_scalar(line: str, k: int, kinds: _Kinds) -> tuple[str, str, bool, int]:
    """Raw text, kind, quoted and end index of the scalar at line[k] inside [ ] or { }."""
    ch = line[k]
    if ch == '"' or ch == "'":
        m = (_DQ if ch == '"' else _SQ).match(line, k)
        if m is None:
            raise Unsupported("a quoted scalar that does not end on its line")
        raw = _unescape(m.group(1)) if ch == '"' else m.group(1).replace("''", "'")
        return raw, "str", True, m.end()
    m = _FLOW_PLAIN.match(line, k)
    if m is None:
        raise Unsupported(f"{ch!r} inside a flow collection")
    raw = m.group()
    return raw, kinds[raw], False, m.end()


def _flow(line: str, j: int, ln: int, kinds: _Kinds, depth: int) -> tuple[Value, int]:
    """The flow collection opening at line[j], and the index just after its close."""
    if depth >= _MAX_DEPTH:
        raise Unsupported("nesting too deep")
    is_map = line[j] == "{"
    close = "}" if is_map else "]"
    out: LMap | LList
    if is_map:
        out = _flow_map(ln, j + 1)
        kat = out._key_cols
    else:
        out = _llist(ln, j + 1)
    size = len(line)
    k = _SPACES.match(line, j + 1).end()
    if line.startswith(close, k):
        return out, k + 1
    while True:
        if k == size:
            raise Unsupported(f"line {ln}: a flow collection that does not end on its line")
        if is_map:
            if line[k] in "[{":
                raise Unsupported(f"line {ln}: a collection as a key")
            key, _, _, end = _flow_scalar(line, k, kinds)
            if key in out:
                raise Unsupported(f"line {ln}: duplicate key")
            kat[key] = k + 1
            colon = _SPACES.match(line, end).end()
            if colon - k > _MAX_KEY:
                raise Unsupported(f"line {ln}: a very long key")
            if not line.startswith(": ", colon):
                raise Unsupported(f"line {ln}: a flow mapping entry that is not 'key: value'")
            k = _SPACES.match(line, colon + 2).end()
            if k == size:
                raise Unsupported(f"line {ln}: a flow collection that does not end on its line")
        if line[k] in "[{":
            value, end = _flow(line, k, ln, kinds, depth + 1)
        else:
            raw, kind, quoted, end = _flow_scalar(line, k, kinds)
            value = _scalar(raw, kind, quoted, ln, k + 1, ln, end + 1)
        if is_map:
            out[key] = value
        else:
            out.append(value)
        k = _SPACES.match(line, end).end()
        if k == size:
            raise Unsupported(f"line {ln}: a flow collection that does not end on its line")
        if line[k] == close:
            return out, k + 1
        if line[k] != ",":
            raise Unsupported(f"line {ln}: {line[k]!r} after an entry of a flow collection")
        k = _SPACES.match(line, k + 1).end()
        if k < size and line[k] in "]}":
            raise Unsupported(f"line {ln}: a trailing comma")
