"""Reports of journey runs: JUnit XML for CI, one self-contained HTML page for people,
JSON for tools, a few lines for the terminal, and flow coverage.

Every report says how each step was judged: by lining the heard audio up with
the prompt ("audio match 0.83"), by transcribing it ("transcript '...' 0.70"),
or by this engine's own event stream ("engine event (exact prompt id ...)"). The
last is not a black-box check and is labelled as coming from the engine.

Coverage needs the engine's event stream too: the nodes and edges a journey
went through come from it. They are counted against the same description of
the flow the graph renderer draws (`ivr.flows.graph._describe`), so the numbers
and the picture agree.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import wave
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..flows.graph import _describe, to_svg
from ..flows.model import CallSubflow, Flow
from .results import FAILED, PASSED, SKIPPED, JourneyResult, StepResult

__all__ = ["Coverage", "coverage", "coverage_text", "describe_evidence", "html_report", "is_engine_evidence", "junit_xml",
           "percentile", "summary_text", "totals", "wav_bytes", "write_reports"]

SAMPLE_RATE = 8000  # the heard audio: 8 kHz, 16-bit, mono
MARKS = {PASSED: "✓", FAILED: "✗", SKIPPED: "–"}
ENGINE_NOTE = "from the engine's own event stream, not heard on the line (not a black-box check)"

# Characters XML 1.0 cannot hold at all, even escaped: a transcript or a SIP reason may carry them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


# ---- shared pieces -------------------------------------------------------------------------------

def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between ranks (numpy's default);
    None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    k = (len(xs) - 1) * min(max(q, 0.0), 100.0) / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _status(r: JourneyResult) -> str:
    """passed, failed (a step did not hold) or error (the journey could not run to the end)."""
    if r.error:
        return "error"
    return PASSED if r.passed and r.failed_step is None else FAILED


def totals(results: Sequence[JourneyResult]) -> dict[str, Any]:
    """Counts, total time and the latency and call-setup percentiles over all journeys."""
    lat = [x for r in results for x in r.latencies_s]
    setup = [r.setup_s for r in results if r.setup_s is not None]
    mos = [r.mos for r in results if r.mos is not None]
    statuses = [_status(r) for r in results]

    def rounded(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "journeys": len(results),
        "passed": statuses.count(PASSED),
        "failed": statuses.count(FAILED),
        "errors": statuses.count("error"),
        "duration_s": round(sum(r.duration_s for r in results), 3),
        "latency": {"n": len(lat), "p50": rounded(percentile(lat, 50)), "p95": rounded(percentile(lat, 95)),
                    "max": rounded(max(lat, default=None))},
        "setup": {"n": len(setup), "p50": rounded(percentile(setup, 50)), "p95": rounded(percentile(setup, 95))},
        # Rough (see sounds.mos_estimate): to spot broken audio among calls, not to quote.
        "audio": {"n": len(mos), "mos_mean": round(sum(mos) / len(mos), 2) if mos else None,
                  "mos_min": min(mos, default=None), "heard_s": round(sum(r.heard_s for r in results), 1)},
    }


def _secs(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2f} s" if x < 1 else f"{x:.1f} s"


def _where(r: JourneyResult, s: StepResult) -> str:
    if r.file and s.line:
        return f"{r.file}:{s.line}"
    return r.file or (f"line {s.line}" if s.line else "")


def _step_ref(r: JourneyResult, s: StepResult) -> str:
    where = _where(r, s)
    return f"step {s.index + 1} '{s.label}'" + (f" ({where})" if where else "")


def _why(r: JourneyResult) -> str:
    """Why a journey did not pass, in one line: the failed step, where it is written, and what was found."""
    s = r.failed_step
    if r.error:
        return r.error + (f" (during {_step_ref(r, s)})" if s is not None else "")
    if s is not None:
        return f"{_step_ref(r, s)}: {s.detail}" if s.detail else _step_ref(r, s)
    return "the journey did not pass"


def _num(x: Any, fmt: str = ".2f") -> str:
    return format(x, fmt) if isinstance(x, int | float) and not isinstance(x, bool) else str(x)


def is_engine_evidence(evidence: dict[str, Any]) -> bool:
    """Whether the engine's event stream took part in judging the step."""
    return evidence.get("via") == "event" or evidence.get("event") is True


def describe_evidence(evidence: dict[str, Any]) -> str:
    """How a step was judged, in a few words: 'audio match 0.83', "transcript 'xyz' 0.70",
    'engine event (exact prompt id 'main_menu')' ..."""
    if not evidence:
        return ""
    ev = dict(evidence)
    via = ev.pop("via", None)
    ev.pop("latency_s", None)
    ev.pop("at_s", None)
    if via == "audio":
        if "score" in ev:
            out = f"audio match {_num(ev['score'])}"
            if ev.get("event") is True:
                out += ", confirmed by engine event"
            elif ev.get("event") is False:
                out += ", no matching engine event"
            return out
        if "music_s" in ev:
            return f"audio: hold music {_num(ev['music_s'], '.1f')} s"
        if "beep_at_s" in ev:
            return f"audio: beep at {_num(ev['beep_at_s'])} s"
        return "audio"
    if via == "transcript":
        return f"transcript '{ev.get('heard', '')}' {_num(ev.get('similarity', ''))}"
    if via == "event":
        if ev.get("id"):
            return f"engine event (exact prompt id '{ev['id']}')"
        if ev.get("text"):
            return f"engine event (prompt text '{ev['text']}')"
        return "engine event"
    if via == "refer":
        return f"SIP REFER to {ev.get('target', '?')}"
    rest = ", ".join(f"{k} {_num(v)}" for k, v in ev.items() if not isinstance(v, dict | list))
    return " ".join(x for x in (str(via) if via else "", rest) if x)


def _step_line(s: StepResult) -> str:
    mark = MARKS.get(s.status, "?")
    if s.status == SKIPPED:
        return f"{mark} {s.label} (skipped)"
    parts = [f"{mark} {s.label}", f"({_secs(s.elapsed_s)})"]
    if s.detail:
        parts.append(s.detail)
    judged = describe_evidence(s.evidence)
    if judged:
        parts.append(f"[{judged}]")
    return " ".join(parts)


def _step_log(r: JourneyResult) -> str:
    head = [f"{r.name} ({r.file})" if r.file else r.name,
            f"driver {r.driver}, target {r.target or '–'}, call id {r.call_id or '–'}, "
            f"setup {_secs(r.setup_s)}, duration {_secs(r.duration_s)}, heard {_secs(r.heard_s)}"
            + (f", MOS~ {r.mos:.2f}" if r.mos is not None else "")]
    if r.latencies_s:
        head.append("latencies " + ", ".join(_secs(x) for x in r.latencies_s))
    if r.error:
        head.append(f"error: {r.error}")
    return "\n".join(head + [_step_line(s) for s in r.steps]) + "\n"


# ---- JUnit XML -----------------------------------------------------------------------------------

def _xs(s: object) -> str:
    return _NOT_XML.sub("", str(s))


def junit_xml(results: Sequence[JourneyResult], suite: str = "ivr journeys") -> str:
    """JUnit XML: one testcase per journey (classname = the journey file's stem). A failed
    journey has <failure>, one that could not run <error>; <system-out> has the step log."""
    t = totals(results)
    counts = {"tests": str(t["journeys"]), "failures": str(t["failed"]), "errors": str(t["errors"]),
              "skipped": "0", "time": f"{t['duration_s']:.3f}"}
    root = ET.Element("testsuites", {"name": _xs(suite), **counts})
    ts = ET.SubElement(root, "testsuite", {"name": _xs(suite), **counts})
    for r in results:
        case = ET.SubElement(ts, "testcase", {
            "classname": _xs(Path(r.file).stem if r.file else suite), "name": _xs(r.name),
            "time": f"{r.duration_s:.3f}"})
        status = _status(r)
        log = _step_log(r)
        if status == "error":
            el = ET.SubElement(case, "error", {"message": _xs(_why(r)), "type": "JourneyError"})
            el.text = _xs(log)
        elif status == FAILED:
            s = r.failed_step
            el = ET.SubElement(case, "failure", {"message": _xs(_why(r)),
                                                 "type": f"step {s.kind}" if s else "JourneyFailed"})
            el.text = _xs(log)
        ET.SubElement(case, "system-out").text = _xs(log)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---- coverage ------------------------------------------------------------------------------------

@dataclass
class Coverage:
    """Which nodes and edges of a flow the journeys went through (from the engine's event stream).

    Edges are (from, to) pairs as the graph draws them; two links between the same
    pair of nodes (two options to one node) are one edge here, as in the picture.
    """

    nodes_total: int
    nodes_hit: int
    edges_total: int
    edges_hit: int
    missed_nodes: list[str]
    missed_edges: list[tuple[str, str]]
    svg: str = field(default="", repr=False)
    flow: str = ""  # the flow's name
    journeys: int = 0  # journeys counted
    traced: int = 0  # of them, those with the engine's event stream (the others add nothing)
    unknown_nodes: list[str] = field(default_factory=list)  # visited ids the flow does not have

    @property
    def nodes_pct(self) -> float:
        return 100.0 * self.nodes_hit / self.nodes_total if self.nodes_total else 0.0

    @property
    def edges_pct(self) -> float:
        return 100.0 * self.edges_hit / self.edges_total if self.edges_total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"flow": self.flow, "nodes_total": self.nodes_total, "nodes_hit": self.nodes_hit,
                "nodes_pct": round(self.nodes_pct, 1), "edges_total": self.edges_total,
                "edges_hit": self.edges_hit, "edges_pct": round(self.edges_pct, 1),
                "missed_nodes": list(self.missed_nodes), "missed_edges": [list(e) for e in self.missed_edges],
                "journeys": self.journeys, "traced": self.traced, "unknown_nodes": list(self.unknown_nodes)}


def _taken(flow: Flow, r: JourneyResult) -> set[tuple[str, str]]:
    """The (from, to) pairs one journey went along. A subflow's return is drawn as the
    calling node's edge to its `next`, so a return step counts for that edge."""
    steps = [(a, b) for a, b, *_ in r.edges]
    if not steps and len(r.nodes) > 1:  # only the visits are known: consecutive ones are the steps
        steps = list(zip(r.nodes, r.nodes[1:], strict=False))
    out: set[tuple[str, str]] = set()
    calls: list[CallSubflow] = []
    for a, b in steps:
        out.add((a, b))
        node = flow.nodes.get(a)
        if isinstance(node, CallSubflow) and node.call in flow.subflows \
                and b == f"{node.call}.{flow.subflows[node.call].start}":
            calls.append(node)
        elif node is not None and node.kind == "return":
            caller = calls.pop() if calls else None
            if caller is not None and caller.next == b:
                out.add((caller.id, b))
            else:  # the call was not seen: any caller of this subflow that goes on to b
                out.update((n.id, b) for n in flow.nodes.values()
                           if isinstance(n, CallSubflow) and n.call == node.scope and n.next == b)
    return out


def coverage(flow: Flow, results: Iterable[JourneyResult]) -> Coverage:
    """The flow's nodes and edges the journeys exercised (the union over all of them),
    with the flow drawn: visited nodes and edges thick, the others faded."""
    results = list(results)
    items, links = _describe(flow)
    nodes = [i.id for i in items if i.kind != "missing"]
    node_set = set(nodes)
    edges = list(dict.fromkeys((e.src, e.dst) for e in links))
    edge_set = set(edges)
    seen_nodes: set[str] = set()
    seen_edges: set[tuple[str, str]] = set()
    unknown: dict[str, None] = {}
    for r in results:
        for n in r.nodes:
            if n in node_set:
                seen_nodes.add(n)
            else:
                unknown[n] = None
        seen_edges |= _taken(flow, r) & edge_set
    # A step along an edge visits both its ends, even if a node event was missed.
    seen_nodes |= {n for e in seen_edges for n in e if n in node_set}
    svg = to_svg(flow, highlight=seen_nodes, edge_highlight=seen_edges)
    return Coverage(
        nodes_total=len(nodes), nodes_hit=len(seen_nodes), edges_total=len(edges), edges_hit=len(seen_edges),
        missed_nodes=[n for n in nodes if n not in seen_nodes],
        missed_edges=[e for e in edges if e not in seen_edges], svg=svg, flow=flow.name,
        journeys=len(results), traced=sum(1 for r in results if r.nodes or r.edges),
        unknown_nodes=list(unknown))


def _pct(hit: int, total: int) -> str:
    if not total:
        return "–"
    p = 100 * hit / total
    return f"{math.floor(p) if hit < total else 100}%"  # 100% only when complete


def _some(names: list[str], limit: int) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" … and {len(names) - limit} more" if len(names) > limit else "")


def coverage_text(cov: Coverage, limit: int = 20) -> str:
    """A few lines for the terminal: the numbers, then what was never reached (at most `limit` each)."""
    lines = [f"nodes {cov.nodes_hit}/{cov.nodes_total} ({_pct(cov.nodes_hit, cov.nodes_total)}), "
             f"edges {cov.edges_hit}/{cov.edges_total} ({_pct(cov.edges_hit, cov.edges_total)})"
             + (f" of {cov.flow}" if cov.flow else "")]
    if cov.journeys and cov.traced < cov.journeys:
        lines.append(f"from {cov.traced} of {cov.journeys} journeys: the others had no engine event stream")
    if cov.missed_nodes:
        lines.append("never reached: " + _some(cov.missed_nodes, limit))
    if cov.missed_edges:
        lines.append("never taken: " + _some([f"{a} → {b}" for a, b in cov.missed_edges], limit))
    if cov.unknown_nodes:
        lines.append("not in this flow: " + _some(cov.unknown_nodes, limit))
    return "\n".join(lines) + "\n"


# ---- terminal summary ----------------------------------------------------------------------------

def _totals_line(t: dict[str, Any]) -> str:
    lat, setup = t["latency"], t["setup"]
    line = (f"{t['journeys']} journeys: {t['passed']} passed, {t['failed']} failed, {t['errors']} could not run"
            f" ({_secs(t['duration_s'])})")
    if lat["n"]:
        line += (f"; latency p50 {_secs(lat['p50'])}, p95 {_secs(lat['p95'])}, max {_secs(lat['max'])}"
                 f" (n={lat['n']})")
    if setup["n"]:
        line += f"; setup p50 {_secs(setup['p50'])}, p95 {_secs(setup['p95'])}"
    audio = t["audio"]
    if audio["n"]:
        line += f"; audio MOS~ mean {audio['mos_mean']:.2f}, min {audio['mos_min']:.2f} (rough)"
    return line


def summary_text(results: Sequence[JourneyResult]) -> str:
    """One line per journey, then the totals with latency percentiles."""
    lines = []
    for r in results:
        status = _status(r)
        if status == PASSED:
            lines.append(f"PASS {r.name} ({_secs(r.duration_s)})")
        else:
            lines.append(f"{'FAIL' if status == FAILED else 'ERROR'} {r.name}: {_why(r)}")
    lines.append(_totals_line(totals(results)))
    return "\n".join(lines) + "\n"


# ---- HTML ----------------------------------------------------------------------------------------

def wav_bytes(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    """A WAV file of 16-bit mono PCM (an odd trailing byte is dropped)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm[: len(pcm) // 2 * 2])
    return buf.getvalue()


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1e293b;margin:24px;max-width:1200px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:28px 0 6px}h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0}th,td{border:1px solid #e2e8f0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f5f9;font-weight:600}td.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;font-weight:700;color:#fff;margin-right:6px}
.b-passed{background:#15803d}.b-failed{background:#b91c1c}.b-error{background:#c2410c}
tr.failed td{background:#fef2f2}tr.skipped td{color:#94a3b8}tr.audio td{background:#fff7ed}
.mark-passed{color:#15803d}.mark-failed{color:#b91c1c}.mark-skipped{color:#94a3b8}
.meta{color:#64748b;font-size:13px}.why{color:#b91c1c;font-weight:600}
.engine{background:#ede9fe;color:#5b21b6;border-radius:3px;padding:0 4px}
.graph{overflow:auto;border:1px solid #e2e8f0;padding:6px}code{font-size:12px}
ul.index{padding-left:18px}summary{cursor:pointer;margin:4px 0}
"""


def _judged_html(evidence: dict[str, Any]) -> str:
    text = describe_evidence(evidence)
    if not text:
        return ""
    if is_engine_evidence(evidence):
        return f'<span class="engine" title="{_e(ENGINE_NOTE)}">{_e(text)}</span>'
    return _e(text)


def _summary_html(results: Sequence[JourneyResult]) -> str:
    t = totals(results)
    lat, setup = t["latency"], t["setup"]
    engine = sum(1 for r in results for s in r.steps if s.status != SKIPPED and is_engine_evidence(s.evidence))
    rows = [("Journeys", t["journeys"]), ("Passed", t["passed"]), ("Failed", t["failed"]),
            ("Could not run", t["errors"]), ("Total time", _secs(t["duration_s"])),
            ("Latency, input to next prompt", f"p50 {_secs(lat['p50'])} · p95 {_secs(lat['p95'])} · "
                                              f"max {_secs(lat['max'])} (n={lat['n']})"),
            ("Call setup, INVITE to answer", f"p50 {_secs(setup['p50'])} · p95 {_secs(setup['p95'])} "
                                             f"(n={setup['n']})")]
    out = ['<section class="summary"><h2>Summary</h2><table>']
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    out.append("</table>")
    if engine:
        out.append(f'<p class="meta">{engine} step(s) were judged with <span class="engine">engine events</span>: '
                   f"{_e(ENGINE_NOTE)}.</p>")
    if results:
        out.append('<ul class="index">')
        for n, r in enumerate(results, 1):
            st = _status(r)
            out.append(f'<li><span class="badge b-{st}">{st.upper()}</span><a href="#j{n}">{_e(r.name)}</a>'
                       + (f' <span class="why">{_e(_why(r))}</span>' if st != PASSED else "") + "</li>")
        out.append("</ul>")
    return "\n".join(out) + "</section>"


def _coverage_html(cov: Coverage) -> str:
    out = ['<section class="coverage"><h2>Flow coverage' + (f": {_e(cov.flow)}" if cov.flow else "") + "</h2>",
           f"<p>Nodes <b>{cov.nodes_hit}/{cov.nodes_total}</b> ({_pct(cov.nodes_hit, cov.nodes_total)}), "
           f"edges <b>{cov.edges_hit}/{cov.edges_total}</b> ({_pct(cov.edges_hit, cov.edges_total)}). "
           f'<span class="meta">From the engine\'s event stream of {cov.traced} of {cov.journeys} journeys.</span></p>']
    for what, names in (("Nodes never reached", cov.missed_nodes),
                        ("Edges never taken", [f"{a} → {b}" for a, b in cov.missed_edges]),
                        ("Visited but not in this flow", cov.unknown_nodes)):
        if names:
            out.append(f"<details><summary>{_e(what)} ({len(names)})</summary><p>"
                       + ", ".join(f"<code>{_e(n)}</code>" for n in names) + "</p></details>")
    if cov.svg:
        svg = re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", cov.svg)  # inline in HTML: no XML declaration
        out.append(f'<div class="graph">{svg}</div>')
    return "\n".join(out) + "</section>"


def _journey_html(n: int, r: JourneyResult) -> str:
    st = _status(r)
    meta = [f"file {r.file}" if r.file else "", f"driver {r.driver}", f"target {r.target or '–'}",
            f"call id {r.call_id}" if r.call_id else "", f"setup {_secs(r.setup_s)}",
            f"duration {_secs(r.duration_s)}", f"heard {_secs(r.heard_s)}",
            f"MOS~ {r.mos:.2f} (rough)" if r.mos is not None else "",
            "tags " + ", ".join(r.tags) if r.tags else "",
            "latencies " + ", ".join(_secs(x) for x in r.latencies_s) if r.latencies_s else ""]
    out = [f'<section class="journey {st}" id="j{n}">',
           f'<h3><span class="badge b-{st}">{st.upper()}</span>{_e(r.name)}</h3>',
           f'<p class="meta">{_e(" · ".join(m for m in meta if m))}</p>']
    if st != PASSED:
        out.append(f'<p class="why">{_e(_why(r))}</p>')
    out.append("<table class=\"steps\"><tr><th>#</th><th></th><th>Step</th><th>Line</th><th>Started</th>"
               "<th>Elapsed</th><th>Detail</th><th>Judged by</th></tr>")
    for s in r.steps:
        started = _secs(s.started_s) if s.started_s is not None else ""
        elapsed = _secs(s.elapsed_s) if s.elapsed_s is not None else ""
        out.append(f'<tr class="{_e(s.status)}"><td class="num">{s.index + 1}</td>'
                   f'<td class="mark-{_e(s.status)}" title="{_e(s.status)}">{_e(MARKS.get(s.status, "?"))}</td>'
                   f"<td>{_e(s.label)}</td><td class=\"num\">{_e(s.line or '')}</td>"
                   f'<td class="num">{_e(started)}</td><td class="num">{_e(elapsed)}</td>'
                   f"<td>{_e(s.detail)}</td><td>{_judged_html(s.evidence)}</td></tr>")
        if s.status == FAILED and s.audio:
            data = base64.b64encode(wav_bytes(s.audio)).decode("ascii")
            secs = len(s.audio) / (2 * SAMPLE_RATE)
            out.append(f'<tr class="audio"><td></td><td colspan="7">What the line said during this step '
                       f'({_e(_secs(secs))}):<br><audio controls preload="none" '
                       f'src="data:audio/wav;base64,{data}"></audio></td></tr>')
    out.append("</table></section>")
    return "\n".join(out)


def html_report(results: Sequence[JourneyResult], coverage: Coverage | None = None,
                title: str = "Journey report") -> str:
    """One self-contained HTML page: the summary, a table of steps per journey (with the audio
    of each failed step inline), then the flow coverage and its picture (when given)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>", _summary_html(results)]
    if results:
        parts.append("<h2>Journeys</h2>")
    parts += [_journey_html(n, r) for n, r in enumerate(results, 1)]
    if coverage is not None:
        parts.append(_coverage_html(coverage))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---- files ---------------------------------------------------------------------------------------

def write_reports(results: Sequence[JourneyResult], *, junit: str | Path | None = None,
                  html: str | Path | None = None, json_path: str | Path | None = None,
                  coverage: Coverage | None = None, suite: str = "ivr journeys",
                  title: str = "Journey report") -> list[Path]:
    """Write the reports asked for (parent folders are made); returns the paths written.

    The JSON is {"summary": totals, "journeys": [JourneyResult.to_json()...], "coverage": numbers or null}.
    """
    written = []

    def put(path: str | Path, text: str) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        written.append(p)

    if junit is not None:
        put(junit, junit_xml(results, suite))
    if html is not None:
        put(html, html_report(results, coverage, title))
    if json_path is not None:
        doc = {"summary": totals(results), "journeys": [r.to_json() for r in results],
               "coverage": coverage.to_json() if coverage is not None else None}
        put(json_path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return written
