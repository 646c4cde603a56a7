"""Pictures of a flow: Mermaid, Graphviz DOT, and a self-contained SVG drawn here.

All three are drawn from one description of the flow (`_describe`), so a node
kind looks alike everywhere: hand-offs are green hexagons with a double
border, escapes are red dashed edges, retries orange dotted, router failures
grey dashed. The SVG needs no Graphviz: `layout.py` places the boxes.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .layout import Placement, layered
from .model import Flow, Menu, Node

FONT = "DejaVu Sans, Verdana, Arial, Helvetica, sans-serif"


@dataclass(frozen=True)
class Look:
    """How one node kind is drawn in each format."""

    fill: str
    stroke: str
    shape: str  # the SVG shape, see _shape()
    mermaid: tuple[str, str]  # brackets around the label
    dot: str  # Graphviz shape


LOOKS: dict[str, Look] = {
    "menu": Look("#dbeafe", "#1d4ed8", "round", ("(", ")"), "box"),
    "gather": Look("#e0e7ff", "#4338ca", "round", ("(", ")"), "box"),
    "say": Look("#f8fafc", "#475569", "rect", ("[", "]"), "box"),
    "play": Look("#f8fafc", "#475569", "rect", ("[", "]"), "box"),
    "set": Look("#f1f5f9", "#94a3b8", "rect", ("[", "]"), "note"),
    "branch": Look("#fef9c3", "#a16207", "diamond", ("{", "}"), "diamond"),
    "goto": Look("#f1f5f9", "#94a3b8", "stadium", ("([", "])"), "oval"),
    "subflow": Look("#ede9fe", "#6d28d9", "subroutine", ("[[", "]]"), "component"),
    "return": Look("#ede9fe", "#6d28d9", "stadium", ("([", "])"), "oval"),
    "hold": Look("#fef3c7", "#b45309", "trapezoid", ("[/", "\\]"), "trapezium"),
    "voicemail": Look("#ffedd5", "#c2410c", "cylinder", ("[(", ")]"), "cylinder"),
    "callback": Look("#ccfbf1", "#0f766e", "parallelogram", ("[/", "/]"), "parallelogram"),
    "handoff": Look("#bbf7d0", "#15803d", "hexagon", ("{{", "}}"), "hexagon"),
    "hangup": Look("#fee2e2", "#b91c1c", "octagon", ("((", "))"), "octagon"),
    "missing": Look("#ffffff", "#dc2626", "missing", (">", "]"), "box"),
}


@dataclass(frozen=True)
class EdgeLook:
    """How one edge kind is drawn: legend text, colour, SVG dash pattern, width, Mermaid arrow, DOT style."""

    legend: str
    color: str
    dash: str = ""
    width: float = 1.3
    arrow: str = "-->"
    dot: str = "solid"


EDGE_LOOKS: dict[str, EdgeLook] = {
    "next": EdgeLook("next", "#334155"),
    "option": EdgeLook("option (key: phrase)", "#1d4ed8"),
    "case": EdgeLook("condition", "#a16207"),
    "else": EdgeLook("else", "#a16207"),
    "hold-option": EdgeLook("key on hold", "#b45309"),
    "full": EdgeLook("mailbox full", "#c2410c", "8 3"),
    "call": EdgeLook("calls subflow", "#6d28d9", "", 2.2, "==>", "bold"),
    "escape": EdgeLook("escape to a person", "#dc2626", "7 4", 1.4, "-.->", "dashed"),
    "retry": EdgeLook("retries used up", "#ea580c", "2 3", 1.8, "-.->", "dotted"),
    "failure": EdgeLook("router refused", "#6b7280", "5 4", 1.3, "-.->", "dashed"),
}
PLAIN_EDGE = EDGE_LOOKS["next"]


# ---- what is drawn: one description shared by the three formats ----------------

@dataclass
class Item:
    """A node as drawn: kind, a title, a few short detail lines, its subflow."""

    id: str
    kind: str
    title: str
    details: list[str] = field(default_factory=list)
    header: str = ""
    group: str | None = None
    tip: str = ""


@dataclass
class Link:
    """An edge as drawn."""

    src: str
    dst: str
    kind: str
    label: str


_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _clean(s: object) -> str:
    """One line of text: control characters gone, whitespace collapsed."""
    return " ".join(_CTRL.sub("", str(s)).split())


def _wrap(text: str, width: int = 30, lines: int = 2) -> list[str]:
    return textwrap.wrap(_clean(text), width, max_lines=lines, placeholder=" …") if text else []


def _said(prompts) -> str:
    return " ".join(p.label() for p in prompts or [])


def _dur(seconds: float) -> str:
    for unit, n in (("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{seconds / n:g}{unit}"
    return f"{seconds:g}s"


# Detail lines per node kind: a table, so a new kind adds one line here.
_DETAILS: dict[str, Callable[[Node], list[str]]] = {
    "menu": lambda n: _wrap(_said(n.prompt)),
    "gather": lambda n: _wrap(_said(n.prompt)) + [f"into {n.into}"],
    "say": lambda n: _wrap(_said(n.prompt)),
    "play": lambda n: _wrap(n.text or n.audio or ""),
    "set": lambda n: _wrap(", ".join(n.vars), 30, 1),
    "subflow": lambda n: [f"call {n.call}"],
    "hold": lambda n: [f"music {n.music}, up to {_dur(n.max_wait)}"],
    "voicemail": lambda n: [f"mailbox {n.mailbox}"],
    "callback": lambda n: [f"queue {n.queue}, within {_dur(n.within)}"],
    "handoff": lambda n: [f"queue: {n.queue}"] + _wrap("skills: " + ", ".join(n.skills), 30, 1) * bool(n.skills),
    "hangup": lambda n: _wrap(_said(n.prompt), 30, 1),
}


def _item(node: Node) -> Item:
    local = node.id[len(node.scope) + 1:] if node.scope else node.id
    title = _clean(node.label or local)
    header = node.kind.upper() + (f" · {local}" if title != local else "")
    details = [_clean(d) for d in _DETAILS.get(node.kind, lambda n: [])(node)]
    tip = f"{node.id} ({node.kind})"
    prompt = getattr(node, "prompt", None)
    if isinstance(prompt, list) and prompt:
        tip += ": " + _clean(_said(prompt))[:300]
    return Item(node.id, node.kind, title, details, header, node.scope, tip)


def _edge_label(e, paired, flow: Flow) -> str:
    if e.kind == "option" and paired is not None:
        name = _clean(paired.name())
        return f"{paired.key}: {name}" if paired.key and name != f"key {paired.key}" else name
    if e.kind == "retry" and paired is not None:
        what, retry = paired
        return f"{what.replace('_', ' ')} ×{retry.max or flow.defaults.max_retries}"
    if e.label in ("next", "goto"):
        return ""  # a plain arrow says it
    label = _clean(e.label)
    return label if len(label) <= 34 else label[:33] + "…"


def _describe(flow: Flow) -> tuple[list[Item], list[Link]]:
    """The nodes and edges to draw, with a dashed placeholder for any missing target."""
    items = [_item(n) for n in flow.nodes.values()]
    known = {i.id: i for i in items}
    links = []
    for node in flow.nodes.values():
        # Menus and gathers list their option and retry edges in field order, so
        # they pair up with the options and retries that go somewhere: fuller labels.
        retries = [(name, r) for name in ("no_input", "no_match") if (r := getattr(node, name, None)) and r.then]
        paired = {"option": iter([o for o in node.options if o.goto] if isinstance(node, Menu) else []),
                  "retry": iter(retries)}
        for e in flow.edges(node):
            extra = next(paired[e.kind], None) if e.kind in paired else None
            links.append(Link(node.id, e.target, e.kind, _edge_label(e, extra, flow)))
            if e.target not in known:
                known[e.target] = Item(e.target, "missing", _clean(e.target), ["no such node"],
                                       "MISSING", node.scope, f"{e.target}: no such node")
                items.append(known[e.target])
    return items, links


# ---- Mermaid ------------------------------------------------------------------

_MERMAID_ESC = {"#": "#35;", "&": "#amp;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "|": "#124;", "`": "#96;"}
_MERMAID_WORDS = {"end", "graph", "flowchart", "subgraph", "direction", "class", "classdef", "style",
                  "linkstyle", "click", "call", "href", "default", "interpolate"}


def _mq(s: str) -> str:
    """Text for inside a quoted Mermaid label (entity codes, not HTML)."""
    return re.sub(r'[#&"<>|`]', lambda m: _MERMAID_ESC[m.group()], _CTRL.sub("", s))


def _mermaid_ids(ids: list[str]) -> dict[str, str]:
    """Safe, unique Mermaid ids: dots and dashes become _, keywords get a prefix."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for i in ids:
        base = re.sub(r"[^A-Za-z0-9_]", "_", i) or "n"
        if base.lower() in _MERMAID_WORDS or not base[0].isalpha():
            base = "n_" + base
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        out[i] = name
    return out


def to_mermaid(flow: Flow, highlight: set[str] | None = None,
               edge_highlight: set[tuple[str, str]] | None = None) -> str:
    """A Mermaid `flowchart TD` of the flow: one line per node and one per edge.

    `highlight` (node ids) and `edge_highlight` ((src, dst) pairs) are drawn thick.
    """
    items, links = _describe(flow)
    mid = _mermaid_ids([i.id for i in items] + [f"subflow {g}" for g in flow.subflows])
    out = [f"%% {_clean(flow.name)}: drawn from {_clean(flow.path)}; edit that file, not this one", "flowchart TD"]
    if len(links) > 500:  # Mermaid's default limit, which a diagram cannot raise for itself
        out.insert(1, f"%% {len(links)} edges: the page must raise Mermaid's maxEdges (500) to draw this")
    for group in [None, *flow.subflows]:
        members = [i for i in items if i.group == group]
        pad = "    "
        if group is not None:
            if not members:
                continue
            out.append(f'    subgraph {mid[f"subflow {group}"]}["subflow {_mq(group)}"]')
            pad = "        "
        for i in members:
            text = "<br>".join(_mq(s) for s in [i.title, *i.details])
            left, right = LOOKS.get(i.kind, LOOKS["say"]).mermaid
            out.append(f'{pad}{mid[i.id]}{left}"{text}"{right}')
        if group is not None:
            out.append("    end")
    styles: dict[str, list[int]] = {}
    for n, e in enumerate(links):
        look = EDGE_LOOKS.get(e.kind, PLAIN_EDGE)
        label = f'|"{_mq(e.label)}"|' if e.label else ""
        out.append(f"    {mid[e.src]} {look.arrow}{label} {mid[e.dst]}")
        style = f"stroke:{look.color}" + (f",stroke-dasharray:{look.dash}" if look.dash else "")
        if edge_highlight and (e.src, e.dst) in edge_highlight:
            style += ",stroke-width:4px"
        styles.setdefault(style, []).append(n)
    out += [f"    linkStyle {','.join(map(str, ns))} {style}" for style, ns in styles.items()]
    for kind in dict.fromkeys(i.kind for i in items):
        look = LOOKS.get(kind, LOOKS["say"])
        dash = ",stroke-dasharray:5 3" if kind == "missing" else ""
        out.append(f"    classDef {kind} fill:{look.fill},stroke:{look.stroke},color:#111827{dash}")
        out.append(f"    class {','.join(mid[i.id] for i in items if i.kind == kind)} {kind}")
    visited = [mid[i.id] for i in items if highlight and i.id in highlight]
    if visited:
        out.append("    classDef visited stroke:#111827,stroke-width:4px")
        out.append(f"    class {','.join(visited)} visited")
    return "\n".join(out) + "\n"


# ---- Graphviz DOT -------------------------------------------------------------

def _dq(s: str) -> str:
    """A quoted DOT string; newlines become centred line breaks."""
    # Graphviz reads HTML entities in any label, so a literal & is written as one.
    s = _CTRL.sub("", s.replace("\r", "")).replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return '"' + s.replace("\n", "\\n") + '"'


def to_dot(flow: Flow, highlight: set[str] | None = None,
           edge_highlight: set[tuple[str, str]] | None = None) -> str:
    """A Graphviz `digraph` of the flow, subflows as clusters; `dot -Tsvg` draws it."""
    items, links = _describe(flow)
    out = [f"digraph {_dq(_clean(flow.name))} {{",
           f'  graph [rankdir=TB, labelloc=t, label={_dq(_clean(flow.name))}, fontname="Helvetica", '
           "nodesep=0.3, ranksep=0.45];",
           '  node [fontname="Helvetica", fontsize=11, style=filled, margin="0.12,0.06"];',
           '  edge [fontname="Helvetica", fontsize=9];']
    for group in [None, *flow.subflows]:
        members = [i for i in items if i.group == group]
        pad = "  "
        if group is not None:
            if not members:
                continue
            out.append(f"  subgraph {_dq('cluster_' + group)} {{")
            out.append(f'    label={_dq("subflow " + group)}; style="rounded,dashed"; color="#6d28d9";')
            pad = "    "
        for i in members:
            look = LOOKS.get(i.kind, LOOKS["say"])
            style = {"menu": "rounded,filled", "gather": "rounded,filled", "missing": "dashed"}.get(i.kind, "filled")
            attrs = [f"label={_dq(chr(10).join([i.title, *i.details]))}", f"shape={look.dot}",
                     f'style="{style}"', f'fillcolor="{look.fill}"', f'color="{look.stroke}"',
                     f"tooltip={_dq(i.tip)}"]
            if i.kind == "handoff":
                attrs.append("peripheries=2")
            if highlight and i.id in highlight:
                attrs.append("penwidth=3.5")
            out.append(f"{pad}{_dq(i.id)} [{', '.join(attrs)}];")
        if group is not None:
            out.append("  }")
    for e in links:
        look = EDGE_LOOKS.get(e.kind, PLAIN_EDGE)
        attrs = [f'color="{look.color}"', f'fontcolor="{look.color}"', f"style={look.dot}"]
        if e.label:
            attrs.insert(0, f"label={_dq(e.label)}")
        if edge_highlight and (e.src, e.dst) in edge_highlight:
            attrs.append("penwidth=3")
        out.append(f"  {_dq(e.src)} -> {_dq(e.dst)} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


# ---- SVG ----------------------------------------------------------------------
# No font files are read, so text widths are estimated, generously, from the
# character count; DejaVu Sans and Verdana are about this wide.
SIZES = {"header": 9.0, "title": 12.5, "detail": 10.5, "edge": 10.0}
LINE = 1.3
MARGIN = 20.0


def _tw(text: str, size: float, bold: bool = False) -> float:
    return len(text) * size * (0.66 if bold else 0.6)


def _x(s: object) -> str:
    """Text safe in XML content and attribute values."""
    s = _CTRL.sub("", str(s))
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _text_lines(i: Item) -> list[tuple[str, str]]:
    return [("header", i.header), ("title", i.title)] + [("detail", d) for d in i.details]


def _box(i: Item) -> tuple[float, float, float]:
    """Width, height and port span (how far along the top/bottom edges may attach) of a node."""
    lines = _text_lines(i)
    tw = max(_tw(t, SIZES[k], k == "title") for k, t in lines)
    th = sum(SIZES[k] * LINE for k, _ in lines)
    w, h = max(tw + 22, 70.0), th + 12
    shape = LOOKS.get(i.kind, LOOKS["say"]).shape
    if shape == "diamond":  # the text rectangle must fit inside: tw/W + th/H <= 1
        w = tw * 1.5 + 24
        return w, th / (1 - tw / w) + 6, 0.0
    extra = {"hexagon": h * 0.6 + 8, "octagon": h * 0.5, "parallelogram": 14, "trapezoid": 14,
             "stadium": h * 0.5, "subroutine": 12}.get(shape, 0.0)
    h += 10 if shape == "cylinder" else 0
    w += extra
    return w, h, max(min(w * 0.35, w / 2 - extra - 4), 0.0)  # keep edge ends off slanted sides


def _shape(shape: str, cx: float, cy: float, w: float, h: float, attrs: str) -> str:
    x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2

    def poly(*pts):
        return f'<polygon points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}" {attrs}/>'

    if shape in ("rect", "round", "missing", "stadium", "subroutine"):
        rx = {"round": 10, "stadium": h / 2}.get(shape, 3)
        out = f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{rx:.1f}" {attrs}/>'
        if shape == "subroutine":  # a box with inner side bars, as in flowchart notation
            out += "".join(f'<path d="M{x:.1f},{y0:.1f}V{y1:.1f}" {attrs}/>' for x in (x0 + 7, x1 - 7))
        return out
    if shape == "diamond":
        return poly((cx, y0), (x1, cy), (cx, y1), (x0, cy))
    if shape == "hexagon":
        i = h * 0.3
        return poly((x0 + i, y0), (x1 - i, y0), (x1, cy), (x1 - i, y1), (x0 + i, y1), (x0, cy))
    if shape == "octagon":
        c = h * 0.25
        return poly((x0 + c, y0), (x1 - c, y0), (x1, y0 + c), (x1, y1 - c), (x1 - c, y1), (x0 + c, y1),
                    (x0, y1 - c), (x0, y0 + c))
    slant = min(14.0, w / 5)
    if shape == "parallelogram":
        return poly((x0 + slant, y0), (x1, y0), (x1 - slant, y1), (x0, y1))
    if shape == "trapezoid":
        return poly((x0 + slant, y0), (x1 - slant, y0), (x1, y1), (x0, y1))
    if shape == "cylinder":
        r = f"A{w / 2:.1f},5 0 0 1"
        return (f'<path d="M{x0:.1f},{y0 + 5:.1f}{r} {x1:.1f},{y0 + 5:.1f}V{y1 - 5:.1f}{r} {x0:.1f},{y1 - 5:.1f}Z" '
                f'{attrs}/><path d="M{x0:.1f},{y0 + 5:.1f}A{w / 2:.1f},5 0 0 0 {x1:.1f},{y0 + 5:.1f}" {attrs}/>')
    raise ValueError(f"unknown shape {shape!r}")


def _node_svg(i: Item, cx: float, cy: float, w: float, h: float, highlight: set[str] | None) -> str:
    look = LOOKS.get(i.kind, LOOKS["say"])
    visited = highlight is not None and i.id in highlight
    fade = ' opacity="0.4"' if highlight is not None and not visited else ""
    attrs = f'fill="{look.fill}" stroke="{look.stroke}" stroke-width="{3.4 if visited else 1.4}"'
    attrs += ' stroke-dasharray="5 3"' if i.kind == "missing" else ""
    out = [f'<g class="node{" visited" * visited}" data-id="{_x(i.id)}" data-kind="{i.kind}"{fade}>',
           f"<title>{_x(i.tip)}</title>", _shape(look.shape, cx, cy, w, h, attrs)]
    if i.kind == "handoff":  # the double border: a person takes the call here
        out.append(_shape(look.shape, cx, cy, w - 9, h - 9, f'fill="none" stroke="{look.stroke}" stroke-width="1.2"'))
    lines = _text_lines(i)
    y = cy - sum(SIZES[k] * LINE for k, _ in lines) / 2 + (2.5 if look.shape == "cylinder" else 0)
    for k, t in lines:
        style = {"header": 'fill="#64748b" letter-spacing="0.4"', "title": 'font-weight="bold" fill="#0f172a"',
                 "detail": 'fill="#1e293b"'}[k]
        out.append(f'<text x="{cx:.1f}" y="{y + SIZES[k] * 0.98:.1f}" font-size="{SIZES[k]}" '
                   f'text-anchor="middle" {style}>{_x(t)}</text>')
        y += SIZES[k] * LINE
    return "".join(out) + "</g>"


def _curve(pts: list[tuple[float, float]]) -> str:
    """A smooth path through the points, leaving and entering each one vertically."""
    d = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        ym = (y0 + y1) / 2
        d.append(f"C{x0:.1f},{ym:.1f} {x1:.1f},{ym:.1f} {x1:.1f},{y1:.1f}")
    return "".join(d)


def _direct(a, b) -> tuple[str, tuple[float, float]]:
    """An edge the layout did not route (a loop, or too long for the waypoint budget): one curve, and its middle."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    if a == b:  # a loop on the right side
        x1 = ax + aw / 2
        return f"M{x1:.1f},{ay - 6:.1f}C{x1 + 40:.1f},{ay - 30:.1f} {x1 + 40:.1f},{ay + 30:.1f} {x1:.1f},{ay + 6:.1f}", \
            (x1 + 34, ay)
    if abs(bx - ax) > (aw + bw) / 2 + 20:  # side by side: leave and enter through the sides
        s = 1 if bx > ax else -1
        p0, p3 = (ax + s * aw / 2, ay), (bx - s * bw / 2, by)
        m = (p3[0] - p0[0]) / 2
        p1, p2 = (p0[0] + m, p0[1]), (p3[0] - m, p3[1])
    else:
        s = 1 if by > ay else -1
        p0, p3 = (ax, ay + s * ah / 2), (bx, by - s * bh / 2)
        m = (p3[1] - p0[1]) / 2
        p1, p2 = (p0[0], p0[1] + m), (p3[0], p3[1] - m)
    mid = tuple((p0[k] + 3 * p1[k] + 3 * p2[k] + p3[k]) / 8 for k in (0, 1))
    d = f"M{p0[0]:.1f},{p0[1]:.1f}C{p1[0]:.1f},{p1[1]:.1f} {p2[0]:.1f},{p2[1]:.1f} {p3[0]:.1f},{p3[1]:.1f}"
    return d, mid


def _place(flow: Flow, items: list[Item], links: list[Link], boxes) -> Placement:
    """One layered layout for the whole flow; each subflow is a group that gets its own box."""
    number = {name: n for n, name in enumerate(flow.subflows, 1)}
    edges = [(e.src, e.dst, (_tw(e.label, SIZES["edge"]) + 2 if e.label else 0.0, 14.0)) for e in links]
    starts = [f"{name}.{sub.start}" for name, sub in flow.subflows.items()]
    sizes = {i.id: boxes[i.id][:2] for i in items}
    for e in links:  # room beside a node for its loop and the loop's label, on both sides to keep it centred
        if e.src == e.dst:
            w, h = sizes[e.src]
            sizes[e.src] = (max(w, boxes[e.src][0] + 2 * (40 + _tw(e.label, SIZES["edge"]))), h)
    # The overflow entry is a second way into the main flow.
    entries = [flow.start or ""] + ([flow.overflow] if flow.overflow in flow.nodes else [])
    return layered(sizes, edges, [*entries, *starts],
                   port_span={i.id: boxes[i.id][2] for i in items},
                   groups={i.id: number.get(i.group, 0) for i in items})


def _legend(items: list[Item], links: list[Link], highlight, width: float) -> tuple[list[str], float]:
    """Swatches for the node kinds and edge kinds that appear, flowed into rows."""
    entries = []
    for kind in [k for k in LOOKS if any(i.kind == k for i in items)]:
        look = LOOKS[kind]
        attrs = f'fill="{look.fill}" stroke="{look.stroke}" stroke-width="1.2"'
        entries.append((kind, lambda x, y, s=look.shape, a=attrs: _shape(s, x + 16, y, 30, 16, a)))
    for kind in [k for k in EDGE_LOOKS if any(e.kind == k for e in links)]:
        look = EDGE_LOOKS[kind]
        entries.append((look.legend, lambda x, y, k=kind, lk=look: (
            f'<path d="M{x:.1f},{y:.1f}H{x + 30:.1f}" stroke="{lk.color}" stroke-width="{lk.width}" fill="none" '
            f'stroke-dasharray="{lk.dash or "none"}" marker-end="url(#arrow-{k})"/>')))
    if highlight is not None:
        entries.append(("visited", lambda x, y: _shape("round", x + 16, y, 30, 16,
                                                       'fill="#ffffff" stroke="#0f172a" stroke-width="3.4"')))
    out, x, y = [], 0.0, 10.0
    for name, draw in entries:
        step = 40 + _tw(name, 10) + 16
        if x and x + step > width:
            x, y = 0.0, y + 24
        out.append(draw(MARGIN + x, y) + f'<text x="{MARGIN + x + 38:.1f}" y="{y + 3.5:.1f}" font-size="10" '
                   f'fill="#334155">{_x(name)}</text>')
        x += step
    return out, y + 16


def _render_svg(flow, items, links, highlight, edge_highlight) -> str:
    boxes = {i.id: _box(i) for i in items}
    place = _place(flow, items, links, boxes)
    centers, routes = place.centers, place.routes
    names = list(flow.subflows)
    clusters = [(x0, y0, x1 - x0, y1 - y0, names[g - 1]) for g, (x0, y0, x1, y1) in sorted(place.boxes.items())]
    width, height = max(place.width, 500.0), place.height
    legend, legend_h = _legend(items, links, highlight, width)
    dy = 34 + legend_h + 20  # title, legend, then the drawing
    edges_svg, labels_svg = [], []
    for k, e in enumerate(links):
        look = EDGE_LOOKS.get(e.kind, PLAIN_EDGE)
        lit = bool(edge_highlight) and (e.src, e.dst) in edge_highlight
        fade = ' opacity="0.35"' if edge_highlight and not lit else ""
        if k in routes:
            d, at = _curve(routes[k].points), routes[k].label_at
            mid = None
        else:
            d, mid = _direct((*centers[e.src], *boxes[e.src][:2]), (*centers[e.dst], *boxes[e.dst][:2]))
            at = None
        dash = f' stroke-dasharray="{look.dash}"' if look.dash else ""
        edges_svg.append(f'<g class="edge" data-kind="{e.kind}" data-src="{_x(e.src)}" data-dst="{_x(e.dst)}"{fade}>'
                         f'<title>{_x(e.src)} → {_x(e.dst)}{": " + _x(e.label) if e.label else ""}</title>'
                         f'<path d="{d}" fill="none" '
                         f'stroke="{look.color}" stroke-width="{look.width * (2.4 if lit else 1)}"{dash} '
                         f'marker-end="url(#arrow-{e.kind if e.kind in EDGE_LOOKS else "next"})"/></g>')
        if e.label and (at or mid):
            lw = _tw(e.label, SIZES["edge"]) + 2
            x, y = at if at else (mid[0] - lw / 2, mid[1] - 7)
            labels_svg.append(f'<g{fade}><rect x="{x - 1:.1f}" y="{y:.1f}" width="{lw + 2:.1f}" height="14" '
                              f'fill="#ffffff" opacity="0.85"/><text x="{x:.1f}" y="{y + 10.5:.1f}" font-size="10" '
                              f'fill="{look.color}">{_x(e.label)}</text></g>')
    markers = "".join(
        f'<marker id="arrow-{k}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" '
        f'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0L10,5L0,10z" fill="{lk.color}"/></marker>'
        for k, lk in EDGE_LOOKS.items())
    boxes_svg = [f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="12" fill="#faf5ff" '
                 f'stroke="#6d28d9" stroke-dasharray="6 3"/><text x="{x + w - 10:.1f}" y="{y + 17:.1f}" font-size="11" '
                 f'font-weight="bold" fill="#6d28d9" text-anchor="end">subflow {_x(g)}</text>' for x, y, w, h, g in clusters]
    nodes_svg = [_node_svg(i, *centers[i.id], *boxes[i.id][:2], highlight) for i in items]
    total_w, total_h = width + 2 * MARGIN, height + dy + MARGIN
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
        f'viewBox="0 0 {total_w:.0f} {total_h:.0f}" font-family="{FONT}">',
        f"<title>{_x(_clean(flow.name))}</title><defs>{markers}</defs>",
        f'<rect width="{total_w:.0f}" height="{total_h:.0f}" fill="#ffffff"/>',
        f'<text x="{MARGIN}" y="24" font-size="16" font-weight="bold" fill="#0f172a">{_x(_clean(flow.name))}</text>',
        f'<g class="legend" transform="translate(0,34)">{"".join(legend)}</g>',
        f'<g class="drawing" transform="translate({MARGIN},{dy:.1f})">',
        *boxes_svg, *edges_svg, *nodes_svg, *labels_svg, "</g>", "</svg>", ""])


def to_svg(flow: Flow, highlight: set[str] | None = None,
           edge_highlight: set[tuple[str, str]] | None = None) -> str:
    """A self-contained SVG picture of the flow, laid out here (no Graphviz needed).

    Subflows sit in their own boxes to the right of the main flow; a legend
    explains the shapes and edge styles. With `highlight`, visited nodes are
    drawn thick and the others faded; with `edge_highlight`, so are edges.
    """
    items, links = _describe(flow)
    return _render_svg(flow, items, links, highlight, edge_highlight)


FORMATS: dict[str, Callable[..., str]] = {"mmd": to_mermaid, "dot": to_dot, "svg": to_svg}
_ALIASES = {"mermaid": "mmd", "gv": "dot"}


def write_graph(flow: Flow, path: str | Path, fmt: str | None = None,
                highlight: set[str] | None = None,
                edge_highlight: set[tuple[str, str]] | None = None) -> str:
    """Write a picture of `flow` to `path` and return the format used (mmd, dot or svg).

    The format is `fmt` when given, else the file's suffix; anything else is a ValueError.
    """
    path = Path(path)
    name = (fmt or path.suffix.lstrip(".")).lower()
    name = _ALIASES.get(name, name)
    if name not in FORMATS:
        what = f"format {fmt!r}" if fmt else f"suffix {path.suffix!r}" if path.suffix else "a file with no suffix"
        raise ValueError(f"cannot draw {what}: use .mmd (Mermaid), .dot (Graphviz) or .svg, or pass a format")
    path.write_text(FORMATS[name](flow, highlight, edge_highlight), encoding="utf-8")
    return name
