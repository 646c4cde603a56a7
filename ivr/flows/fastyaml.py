"""A fast reader for the plain YAML that flow files are written in.

PyYAML makes a Node and two Marks for every value, even with libyaml, so a
10,000-node flow takes seconds to compose. Flow files use a small, regular
part of YAML, and this module reads exactly that part, line by line with one
regular expression per kind of line, into the same located values
(yamlsrc.LMap, LList, Scalar) as the PyYAML path, positions included:

* an optional leading `---`, comments, blank lines, LF or CRLF line ends;
* block mappings whose keys are plain or quoted one-line scalars, block
  sequences (`- item`, `- key: value`, `- - item`), indentless sequences;
* one-line plain, single-quoted and double-quoted scalars (the escapes
  libyaml knows);
* flow sequences and mappings that open and close on one line, nested;
* block scalars `|` and `>` with `-`, `+` or no chomping indicator.

Positions are kept as ints and become Pos objects when first read (see
yamlsrc._Deferred): making them all would cost more than reading the file.

Anything else raises Unsupported and yamlsrc hands the text to PyYAML, whose
result (or syntax error, with its message and position) is the reference:
anchors, aliases, tags, merge keys, `?` keys, directives, a second document,
tabs, multi-line plain or quoted scalars, flow collections over several
lines, explicit indentation indicators, duplicate keys, and every syntax
error. When in doubt this module refuses; tests/unit/test_fastyaml.py
compares both paths field by field on many generated documents.
"""

from __future__ import annotations

import gc
import re

from . import yamlsrc
from .yamlsrc import LList, LMap, Scalar, Value, YamlError


class Unsupported(Exception):
    """The text uses YAML this reader does not handle; PyYAML must read it."""


# Deeper nesting goes to PyYAML (and its limits), not to a recursion here.
_MAX_DEPTH = 50
# libyaml refuses a key whose ':' is more than 1024 characters (or bytes) after
# its start; keys in flows are short, so anything near that is left to it.
_MAX_KEY = 200

# Characters YAML accepts in a document, less tab (indentation trouble), the
# BOM and the line breaks Python's str.split would not see (NEL, LS, PS).
_BAD_CHAR = re.compile("[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_DOC_MARK = re.compile(r"^(?:---|\.\.\.)(?: |$)", re.M)
_DOC_START = re.compile(r"---(?: +#.*)? *$")

# Only the space counts as white space in these expressions: tabs and the other
# line breaks were refused up front, and to YAML a no-break space is text.

# The common line of a flow: `key: value`, `key:` or `- key: value`, with a simple
# plain key, and a plain value free of ':' and '#', a quoted one without escapes,
# or (group 8) anything else that starts like a flow collection or block scalar.
_FAST = re.compile(
    r"( *)(- +)?(?=[^:]{0,200}:)([A-Za-z_][\w./-]*(?: +[\w./-]+)*) *(:)"
    r"""(?: +(?:([^ ?:,\[\]{}#&*!|>'"%@`-](?:[^:#]*[^ :#])?)|"([^"\\]*)"|'([^']*)'|([\[{|>](?:.*[^ ])?)))? *$""")
# Any other key at a given column: plain (the shortest text before ': ' or ':' at
# the end, and before any ' #', which starts a comment) or quoted. The value, if
# any, starts at match.end().
_KEY = re.compile(r"""((?:[^ ?:,\[\]{}#&*!|>'"%@`-]|-(?=[^ ]))(?:(?! #).)*?|"(?:[^"\\]|\\.)*"|'(?:[^']|'')*') *(:)(?: +|$)""")
_DQ = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SQ = re.compile(r"'((?:[^']|'')*)'")
# What may follow a finished value on its line.
_TAIL = re.compile(r"(?: +#.*)? *$")
_BLOCK_HEAD = re.compile(r"([|>])([-+]?)(?: +#.*)? *$")
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

# Double-quoted escapes exactly as libyaml decodes them.
_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\",
    "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029",
}
_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))")

_SAFE_KINDS = frozenset({"str", "int", "float", "bool", "null", "timestamp"})
_NOT_PLAIN = frozenset("?:,[]{}#&*!|>'\"%@`")
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


def _block_map(line: int, col: int) -> LMap:
    """An empty block mapping at (line, col); its keys' lines go in _key_lines."""
    m = LMap()
    m._line = line
    m._col = col
    m._key_lines = {}
    return m


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


def load_fast(text: str) -> tuple[Value | None, list[YamlError]]:
    """Read `text` like yamlsrc.load_pyyaml, or raise Unsupported.

    Never raises YamlError: a document with a syntax error is Unsupported,
    so that PyYAML gives the message. Problems are always an empty list,
    since duplicate keys and refused tags are left to PyYAML too.
    """
    if not isinstance(text, str):
        raise Unsupported("not a str")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise Unsupported("a carriage return that does not end a line")
    bad = _BAD_CHAR.search(text)
    if bad:
        raise Unsupported(f"character {bad.group()!r}")
    lines = text.split("\n")
    final_newline = lines[-1] == ""
    if final_newline:
        lines.pop()
    first = 0
    # (The substring test spares a slower search of every line start in the usual case.)
    mark = _DOC_MARK.search(text) if text.startswith(("---", "...")) or "\n---" in text or "\n..." in text else None
    if mark:
        first = text.count("\n", 0, mark.start())
        if (_DOC_MARK.search(text, mark.end()) or not _DOC_START.match(lines[first])
                or any(s and s[0] != "#" for s in (x.lstrip(" ") for x in lines[:first]))):
            raise Unsupported("directives, document markers or more than one document")
        if first == len(lines) - 1 and not final_newline:
            raise Unsupported("a lone --- at the end")
        first += 1
    # The values form a tree, so collecting garbage while they are made frees
    # nothing: it only walks the growing tree again and again (40% of the time).
    # The collector takes them in its stride afterwards.
    collecting = gc.isenabled()
    gc.disable()
    try:
        root = _read(lines, first, final_newline)
    finally:
        if collecting:
            gc.enable()
    if root is None and mark:
        raise Unsupported("an empty document after ---")  # PyYAML makes it a null scalar
    return root, []


def _read(lines: list[str], i: int, final_newline: bool) -> Value | None:
    """Read the block structure of lines[i:]; the root value, or None if there is none.

    One loop over the lines with an explicit stack of open collections: the
    top one is kept in locals (`ind`, `cont`, `is_map`, `indentless`, `kat`)
    because this loop runs once per line of a flow of tens of thousands.
    """
    n_lines = len(lines)
    kinds = _Kinds()
    typed = kinds.typed
    holder: list[Value] = []  # the root value lands here, like an item of a sequence
    stack: list[tuple] = []
    # The open collection lines go into: its column, itself, whether it is a
    # mapping, whether it is a sequence at its parent key's column (it ends at
    # the next key), and for a mapping the dict of its keys' lines.
    ind, cont, is_map, indentless, kat = -1, holder, False, False, None
    # A value still to come: after `key:` or `-` with nothing else on the line it is
    # a block on the next lines, or a null scalar at (pline, pcol).
    pending, pkey, pline, pcol = True, None, 0, 0
    while i < n_lines:
        line = lines[i]
        i += 1
        m = _FAST.match(line)
        if m is not None:
            spaces, dash_text, key, _, raw, dq, sq, rest = m.groups()
            n = len(spaces)
            # The most common line of all: the next key of the current mapping.
            simple = n == ind and is_map and not pending and dash_text is None
            dash = dash_text is not None
        else:
            stripped = line.lstrip(" ")
            if not stripped or stripped[0] == "#":
                continue
            n = len(line) - len(stripped)
            dash = stripped[0] == "-" and (len(stripped) == 1 or stripped[1] == " ")
            simple = False
        if not simple:
            # Where does this line go: into the pending value, or up to an open collection?
            new = pending and (n > ind or (n == ind and dash and is_map))
            if pending and not new:
                if is_map:
                    cont[pkey] = _scalar("", "null", False, pline, pcol, pline, pcol)
                else:
                    cont.append(_scalar("", "null", False, pline, pcol, pline, pcol))
                pending = False
            if not new:
                while n < ind or (n == ind and indentless and not dash):
                    ind, cont, is_map, indentless, kat = stack.pop()
                if n != ind:
                    raise Unsupported(f"line {i}: unexpected indentation")
            if m is None or (new and dash):
                # Everything else, one event at a time: a line may open several collections
                # (`- - key: value`), each at its own column c.
                c = n
                while True:
                    if c != n:
                        dash = line[c] == "-" and (len(line) == c + 1 or line[c + 1] == " ")
                    km = None if dash else _KEY.match(line, c)
                    if not dash and km is None:
                        raise Unsupported(f"line {i}: not a key or a list item")
                    if new:
                        if len(stack) >= _MAX_DEPTH:
                            raise Unsupported("nesting too deep")
                        child = _llist(i, c + 1) if dash else _block_map(i, c + 1)
                        if is_map:
                            cont[pkey] = child
                        else:
                            cont.append(child)
                        stack.append((ind, cont, is_map, indentless, kat))
                        if dash:
                            ind, cont, is_map, indentless, kat = c, child, False, is_map and c == ind, None
                        else:
                            ind, cont, is_map, indentless, kat = c, child, True, False, child._key_lines
                        new = pending = False
                    if dash:
                        if is_map:
                            raise Unsupported(f"line {i}: a list item among keys")
                        j = _SPACES.match(line, c + 1).end()
                        if j == len(line) or line[j] == "#":
                            pending, pkey, pline, pcol = True, None, i, c + 2
                            break
                        if (line[j] == "-" and (len(line) == j + 1 or line[j + 1] == " ")) or _KEY.match(line, j):
                            c, new, pending = j, True, True  # a compact collection is the item
                            continue
                        key = None
                    else:
                        if not is_map:
                            raise Unsupported(f"line {i}: a key among list items")
                        key = _key(km, i, kinds)
                        if key in cont:
                            raise Unsupported(f"line {i}: duplicate key")
                        kat[key] = i
                        j = km.end()
                        if j == len(line) or line[j] == "#":
                            pending, pkey, pline, pcol = True, key, i, km.end(2) + 1
                            break
                    # The value is on this line, or is a block scalar on the following ones.
                    if line[j] in "|>":
                        value, i = _block_value(lines, i, j, final_newline, ind)
                    else:
                        value = _inline(line, j, i, kinds, len(stack))
                    if key is None:
                        cont.append(value)
                    else:
                        cont[key] = value
                    break
                continue
            if new or dash:  # `key:` opens a mapping, or `- key:` one as a list item
                if len(stack) >= _MAX_DEPTH:
                    raise Unsupported("nesting too deep")
                if dash and is_map:
                    raise Unsupported(f"line {i}: a list item among keys")
                c = m.start(3)
                child = LMap()
                child._line = i
                child._col = c + 1
                if is_map:
                    cont[pkey] = child
                else:
                    cont.append(child)
                stack.append((ind, cont, is_map, indentless, kat))
                child._key_lines = kat = {}
                ind, cont, is_map, indentless = c, child, True, False
                pending = False
            elif not is_map:
                raise Unsupported(f"line {i}: a key among list items")
        if key in cont:
            raise Unsupported(f"line {i}: duplicate key")
        kat[key] = i
        if raw is not None:
            s = _new(Scalar)
            j = m.start(5)
            s.__dict__ = {"raw": raw, "kind": kinds[raw] if raw[0] in typed else "str", "quoted": False,
                          "_line": i, "_col": j + 1, "_end": j + len(raw) + 1}
            cont[key] = s
        elif dq is not None or sq is not None:
            j = m.start(6 if sq is None else 7)
            s = _new(Scalar)
            s.__dict__ = {"raw": dq if sq is None else sq, "kind": "str", "quoted": True,
                          "_line": i, "_col": j, "_end": m.end(6 if sq is None else 7) + 2}
            cont[key] = s
        elif rest is not None:
            j = m.start(8)
            if rest[0] in "|>":
                cont[key], i = _block_value(lines, i, j, final_newline, ind)
            else:
                cont[key] = _inline(line, j, i, kinds, len(stack))
        else:
            pending, pkey, pline, pcol = True, key, i, m.end(4) + 1
    if pending and holder:
        if is_map:
            cont[pkey] = _scalar("", "null", False, pline, pcol, pline, pcol)
        else:
            cont.append(_scalar("", "null", False, pline, pcol, pline, pcol))
    return holder[0] if holder else None


def _key(km: re.Match, ln: int, kinds: _Kinds) -> str:
    """The key a block mapping stores for the key matched by _KEY (plain or quoted) on line `ln`."""
    if km.end(2) - km.start(1) > _MAX_KEY:
        raise Unsupported(f"line {ln}: a very long key")
    text = km.group(1)
    first = text[0]
    if first == '"':
        return _unescape(text[1:-1])
    if first == "'":
        return text[1:-1].replace("''", "'")
    kinds[text]  # noqa: B018 - refuses `<<` and `=`, whose tags yamlsrc reports
    return text


def _block_value(lines: list[str], i: int, j: int, final_newline: bool, parent: int) -> tuple[Scalar, int]:
    """The block scalar whose header is at lines[i - 1][j], and the index of the line after it."""
    head = _BLOCK_HEAD.match(lines[i - 1], j)
    if head is None:
        raise Unsupported(f"line {i}: block scalar header")
    if i == len(lines) and not final_newline:  # the header ends the text: an empty scalar
        return _scalar("", "str", True, i, j + 1, i, len(lines[i - 1]) + 1), i
    raw, end_line, end_col, after = _block(lines, i, final_newline, parent, head.group(1) == ">", head.group(2))
    return _scalar(raw, "str", True, i, j + 1, end_line, end_col), after


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
