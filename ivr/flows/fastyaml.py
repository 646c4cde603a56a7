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
error. When in doubt this reader refuses; tests/unit/test_fastyaml.py
compares both paths field by field on many generated documents.

The reader is split in three: this module checks the text and builds the
block structure line by line; fastyaml_inline reads the values that sit on
one line (plain and quoted scalars, flow collections); fastyaml_scalars holds
the scalar rules both use (kind resolution, double-quoted escapes, block
scalars) and Unsupported.
"""

from __future__ import annotations

import gc
import re

from .fastyaml_inline import _MAX_DEPTH, _MAX_KEY, _SPACES, _inline, _llist
from .fastyaml_scalars import Unsupported, _block_value, _Kinds, _new, _scalar, _unescape
from .yamlsrc import LMap, Scalar, Value, YamlError

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


def _block_map(line: int, col: int) -> LMap:
    """An empty block mapping at (line, col); its keys' lines go in _key_lines."""
    m = LMap()
    m._line = line
    m._col = col
    m._key_lines = {}
    return m


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
