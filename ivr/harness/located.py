"""Located YAML values as the journey reader handles them.

The journey reader (`ivr.harness.journey`) reads files with the flow loader's
located reader (`ivr.flows.yamlsrc`), whose values remember where they were
written. Here are the small helpers it reads them with: whether a value is
absent, how to name one in a message, a mapping made up on the spot (a bare
step, or a short form), field-type errors prefixed with their field, and a
step's kind with where it was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivr.flows.fields import Ctx
from ivr.flows.yamlsrc import LList, LMap, Pos, Scalar, pos_of


class _Ctx(Ctx):
    """Field-type errors, prefixed with the field they are about (`press method: ...`)."""

    def error(self, code: str, message: str, pos: Pos, hint: str | None = None):
        if self.owner:
            message = f"{self.owner}: {message}"
        return super().error(code, message, pos, hint)


def _missing(v: Any) -> bool:
    """An absent value: nothing written (`key:`), not an empty quoted string."""
    return v is None or (isinstance(v, Scalar) and v.kind == "null" and not v.quoted)


def _what(v: Any) -> str:
    if isinstance(v, LMap):
        return "a mapping" if v else "an empty mapping"
    if isinstance(v, LList):
        return "a list"
    return "nothing" if _missing(v) else repr(v.raw)


def _mapping(pos: Pos, items: dict[str, Any] | None = None) -> LMap:
    """A located mapping made here (a bare step, or the short form of one)."""
    m = LMap(items or {})
    m.pos = pos
    m.key_pos = {k: pos_of(v) for k, v in m.items()}
    return m


@dataclass
class _Located:
    """A step's kind and where it was written."""

    kind: str
    pos: Pos

    @property
    def at(self) -> dict[str, int]:
        return {"line": self.pos.line, "col": self.pos.col}
