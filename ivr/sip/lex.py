"""Lexical pieces of RFC 3261's grammar shared by the header parsers.

Character classes are compiled once as negated regex classes: a `search` for
a forbidden character is one linear pass in C, and none of the patterns here
can backtrack more than a fixed amount (no nested quantifiers), so hostile
input costs time proportional to its length.
"""

from __future__ import annotations

import re

from .errors import SipParseError

WSP = " \t"

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# word adds ( ) < > : \ DQUOTE / [ ] ? { } to token (Call-ID is word ["@" word])
_WORD = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+")

# quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE, with
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII and
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F). The two alternatives start
# with different characters, so the repetition cannot backtrack.
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')

_LIST_SPECIALS = re.compile(r'[",<>\\]')


def is_token(text: str) -> bool:
    """True when `text` is a non-empty RFC 3261 token."""
    return _TOKEN.fullmatch(text) is not None


def is_word(text: str) -> bool:
    """True when `text` is a non-empty RFC 3261 word (the pieces of a Call-ID)."""
    return _WORD.fullmatch(text) is not None


def match_quoted(text: str, pos: int = 0) -> tuple[str, int]:
    """Read the quoted-string starting at `text[pos]` (a double quote).

    Returns the unescaped content and the index just past the closing quote.
    """
    m = _QUOTED.match(text, pos)
    if m is None:
        raise SipParseError(400, "Unterminated quoted string")
    inner = m.group(1)
    if "\\" in inner:
        inner = _QUOTED_PAIR.sub(r"\1", inner)
    return inner, m.end()


def quote(text: str) -> str:
    """`text` as a quoted-string, escaping what qdtext cannot carry raw."""
    if "\r" in text or "\n" in text:
        # quoted-pair cannot carry CR or LF: refuse rather than emit a broken header.
        raise ValueError("CR or LF cannot be quoted in a SIP header")
    if _NEEDS_ESCAPE.search(text):
        text = _NEEDS_ESCAPE.sub(lambda m: "\\" + m.group(0), text)
    return f'"{text}"'


def split_commas(value: str) -> list[str]:
    """Split a header value on the commas that separate list elements.

    Commas inside quoted strings and inside <...> are not separators. Elements
    are stripped of LWS; empty elements are kept (so "a,,b" shows as three
    elements and a strict parser can refuse it), but an empty or blank value
    gives no elements at all (an empty `Supported:` lists nothing).
    """
    if "," not in value:
        value = value.strip(WSP)
        return [value] if value else []
    if not value.strip(WSP):
        return []
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    skip_until = -1  # index after a backslash-escaped character inside quotes
    for m in _LIST_SPECIALS.finditer(value):
        i = m.start()
        if i < skip_until:
            continue
        c = value[i]
        if in_quotes:
            if c == "\\":
                skip_until = i + 2
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            parts.append(value[start:i].strip(WSP))
            start = i + 1
    parts.append(value[start:].strip(WSP))
    return parts
