"""The flow language: flows.yaml to a checked model."""

from __future__ import annotations

import contextlib
import gc
from pathlib import Path

from .diagnostics import Diagnostic, Report
from .model import Flow
from .parse import parse_file, parse_text
from .validate import validate

__all__ = ["Diagnostic", "Flow", "FlowError", "Report", "check_file", "load_flow", "parse_text", "validate"]


class FlowError(Exception):
    """A flow that failed validation; `report` holds every problem."""

    def __init__(self, report: Report):
        self.report = report
        lines = [d.format() for d in report.sorted() if d.severity == "error"]
        super().__init__("\n".join(lines) or "invalid flow")


@contextlib.contextmanager
def _gc_paused():
    """Loading builds a large tree of objects that are all kept: cyclic garbage
    collection would only rescan them again and again (2/3 of the time on a
    10,000-node flow), so it waits until the flow is built."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def check_file(path: str | Path, *, check_media: bool = True) -> tuple[Flow | None, Report]:
    """Parse and validate a flow file; the flow is None when it cannot be used."""
    with _gc_paused():
        flow, report = parse_file(path)
        if flow is not None:
            validate(flow, report, check_media=check_media)
    if report.errors:
        return None, report
    return flow, report


def load_flow(path: str | Path) -> Flow:
    """A valid flow, or FlowError."""
    flow, report = check_file(path)
    if flow is None:
        raise FlowError(report)
    return flow
