"""Prometheus text metrics, fed by journey events (no client library needed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_esc(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters and gauges; gauges may be functions read at scrape time."""

    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.help: dict[str, str] = {}
        self.gauges: dict[str, Callable[[], float]] = {}
        self.kinds: dict[str, str] = {}  # gauge or counter, for values read at scrape time

    def describe(self, name: str, text: str) -> None:
        """Help text of a labelled counter; it is listed (with no samples) before its first count."""
        self.help[name] = text
        self.counters.setdefault(name, Counter())

    def inc(self, name: str, by: float = 1.0, **labels: str) -> None:
        self.counters.setdefault(name, Counter())[tuple(sorted(labels.items()))] += by

    def gauge(self, name: str, fn: Callable[[], float], text: str = "", kind: str = "gauge") -> None:
        """A value read at scrape time; kind="counter" for one that only grows (a total kept elsewhere)."""
        self.gauges[name] = fn
        self.kinds[name] = kind
        if text:
            self.help[name] = text

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get(name, Counter())[tuple(sorted(labels.items()))]

    def observer(self, event: str, data: dict[str, Any]) -> None:
        """A journey observer: count what calls do."""
        if event == "node":
            self.inc("ivr_node_visits_total", node=data["node"], kind=data["kind"])
        elif event == "input":
            if data["via"] in ("dtmf", "speech"):
                name = "ivr_dtmf_inputs_total" if data["via"] == "dtmf" else "ivr_speech_inputs_total"
                self.inc(name, result=data["result"])
        elif event == "end":
            self.inc("ivr_calls_total", outcome=data["outcome"])

    def render(self) -> str:
        """The Prometheus exposition text."""
        lines: list[str] = []
        for name in sorted(self.gauges):
            if name in self.help:
                lines.append(f"# HELP {name} {self.help[name]}")
            lines.append(f"# TYPE {name} {self.kinds.get(name, 'gauge')}")
            lines.append(f"{name} {float(self.gauges[name]()):g}")
        for name in sorted(self.counters):
            if name in self.help:
                lines.append(f"# HELP {name} {self.help[name]}")
            lines.append(f"# TYPE {name} counter")
            for labels, v in sorted(self.counters[name].items()):
                lines.append(f"{name}{_labels(labels)} {v:g}")
        return "\n".join(lines) + "\n"
