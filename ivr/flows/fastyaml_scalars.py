"""The scalar rules of the fast YAML reader (see fastyaml.py), and Unsupported.

How an untagged plain scalar's kind is resolved (with the loader's own
resolver), the escapes of a double-quoted scalar, the Scalar values the reader
makes with deferred positions, and block scalars (`|` and `>` with their
chomping indicators), read exactly as libyaml reads them.
"""

from __future__ import annotations

import re

from . import yamlsrc
from .yamlsrc import Scalar


class Unsupported(Exception):
    """The text uses YAML this reader does not handle; PyYAML must read it."""


_BLOCK_HEAD = re.compile(r"([|>])([-+]?)(?: +#.*)? *$")

# Double-quoted escapes exactly as libyaml decodes them.
_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\",
    "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029",
}
_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))")

_SAFE_KINDS = frozenset({"str", "int", "float", "bool", "null", "timestamp"})
_new = object.__new__


class _Kinds(dict):
    """Plain text -> kind, as the loader's resolver types an untagged plain scalar.

    One per document: each distinct text is resolved once (values repeat a lot
    in a flow), with the resolver's own regular expressions, in its order.
    Text whose first character has no resolver is a str without asking: read
    `kinds[raw] if raw[0] in kinds.typed else "str"`.
    """

    def __init__(self) -> None:
        super().__init__()
        implicit = yamlsrc._Loader.yaml_implicit_resolvers
        if implicit.get(None):
            raise Unsupported("a resolver for text of any first character")
        self.typed = frozenset(first for first in implicit if first)
        self._by_first = {first: [(tag.rsplit(":", 1)[-1], rx.match) for tag, rx in resolvers]
                          for first, resolvers in implicit.items()}

    def __missing__(self, raw: str) -> str:
        for kind, match in self._by_first.get(raw[:1], ()):
            if match(raw):
                if kind not in _SAFE_KINDS:  # `<<` (merge) or `=` (value): yamlsrc reports those
                    raise Unsupported(f"plain scalar {raw!r} resolves to {kind}")
                break
        else:
            kind = "str"
        self[raw] = kind
        return kind


def _unescape(body: str) -> str:
    """The text of a one-line double-quoted scalar, from between its quotes."""
    if "\\" not in body:
        return body

    def one(m: re.Match) -> str:
        if m.group(4) is not None:
            try:
                return _ESCAPES[m.group(4)]
            except KeyError:
                raise Unsupported(f"escape \\{m.group(4)}") from None
        code = int(m.group(1) or m.group(2) or m.group(3), 16)
        if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
            raise Unsupported("escape of an invalid code point")
        return chr(code)

    return _ESCAPE.sub(one, body)


def _scalar(raw: str, kind: str, quoted: bool, line: int, col: int, end_line: int, end_col: int) -> Scalar:
    """A Scalar whose positions are made on first read (see yamlsrc._Deferred)."""
    s = _new(Scalar)
    s.__dict__ = {"raw": raw, "kind": kind, "quoted": quoted, "_line": line, "_col": col, "_end": end_col}
    if end_line != line:
        s._end_line = end_line
    return s


def _block_value(lines: list[str], i: int, j: int, final_newline: bool, parent: int) -> tuple[Scalar, int]:
    """The block scalar whose header is at lines[i - 1][j], and the index of the line after it."""
    head = _BLOCK_HEAD.match(lines[i - 1], j)
    if head is None:
        raise Unsupported(f"line {i}: block scalar header")
    if i == len(lines) and not final_newline:  # the header ends the text: an empty scalar
        return _scalar("", "str", True, i, j + 1, i, len(lines[i - 1]) + 1), i
    raw, end_line, end_col, after = _block(lines, i, final_newline, parent, head.group(1) == ">", head.group(2))
    return _scalar(raw, "str", True, i, j + 1, end_line, end_col), after


def _block(lines: list[str], i: int, final_newline: bool, parent: int, folded: bool,
           chomp: str) -> tuple[str, int, int, int]:
    """Read a block scalar whose header ended line i (1-based); lines[i] is the next line.

    Returns its text, where it ends (line, column) and the index of the first
    line after it. A transcription of libyaml's scan_block_scalar for the cases
    it accepts: the content indentation is that of the first non-empty line,
    which must be deeper than `parent`, the column of the collection holding it.
    """
    n_lines = len(lines)
    end_line, end_col = i + 1, 1
    breaks = 0
    longest = 0  # the longest line of spaces before the content: libyaml indents to it
    while i < n_lines and not lines[i].strip(" "):
        if i == n_lines - 1 and not final_newline:
            break  # spaces at the very end, with no line break to consume
        longest = max(longest, len(lines[i]))
        breaks += 1
        i += 1
        end_line, end_col = i + 1, 1
    indent = -1
    if i < n_lines and lines[i].strip(" "):
        indent = len(lines[i]) - len(lines[i].lstrip(" "))
    if indent <= parent:  # no content: an empty scalar, whatever follows
        return ("\n" * breaks if chomp == "+" else ""), end_line, end_col, i
    if longest > indent:
        raise Unsupported("a block scalar with over-indented empty lines")
    parts: list[str] = []
    lead = ""  # the line break that ended the previous content line
    trail = "\n" * breaks  # the empty lines since then
    lead_more = False  # the previous content line was more indented than the rest
    while True:
        line = lines[i]
        more = line[indent] == " "
        # Folding joins two ordinary lines with a space (or, across empty lines,
        # drops the first break); breaks around more indented lines are kept.
        if folded and lead and not lead_more and not more:
            if not trail:
                parts.append(" ")
        else:
            parts.append(lead)
        parts.append(trail)
        lead_more = more
        parts.append(line[indent:])
        i += 1
        if i == n_lines and not final_newline:  # the text ends inside this line
            end_line, end_col = i, len(line) + 1
            lead = trail = ""
            break
        lead, trail = "\n", ""
        end_line, end_col = i + 1, 1
        while i < n_lines and not lines[i].strip(" "):
            if len(lines[i]) > indent:
                raise Unsupported("a block scalar line of spaces beyond its indentation")
            if i == n_lines - 1 and not final_newline:
                break
            trail += "\n"
            i += 1
            end_line, end_col = i + 1, 1
        if i == n_lines or not lines[i].strip(" "):
            break
        if len(lines[i]) - len(lines[i].lstrip(" ")) < indent:
            break
    if chomp != "-":
        parts.append(lead)
    if chomp == "+":
        parts.append(trail)
    return "".join(parts), end_line, end_col, i
