"""Problems found in a flow, printed as `path:line:col: error: message`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from .yamlsrc import Pos


@dataclass(frozen=True)
class Diagnostic:
    """One problem at one place, with an optional hint on how to fix it."""

    severity: str  # "error" or "warning"
    code: str  # a stable rule name, e.g. "missing-target"
    message: str
    pos: Pos
    hint: str | None = None
    path: str = ""

    def format(self, path: str | None = None) -> str:
        where = path if path is not None else self.path
        line = f"{where}:{self.pos.line}:{self.pos.col}: {self.severity}: {self.message} [{self.code}]"
        if self.hint:
            line += f" (hint: {self.hint})"
        return line

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "line": self.pos.line,
            "col": self.pos.col,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass
class Report:
    """Collects diagnostics while a flow is read and checked."""

    path: str = "flows.yaml"
    items: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, pos: Pos, hint: str | None = None) -> None:
        self.items.append(Diagnostic("error", code, message, pos, hint, self.path))

    def warning(self, code: str, message: str, pos: Pos, hint: str | None = None) -> None:
        self.items.append(Diagnostic("warning", code, message, pos, hint, self.path))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=lambda d: (d.pos, d.severity != "error", d.message))


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to what was typed, when one is close enough."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean X?' hint when one choice is close to what was typed."""
    close = closest(word, choices)
    return f"did you mean {close!r}?" if close else None
