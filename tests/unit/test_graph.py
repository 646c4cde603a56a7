"""Pictures of flows: Mermaid, DOT and the pure-Python SVG.

The default flows.yaml is drawn in every format; small flows written here
probe the awkward cases: ids with dashes and dots, prompts with quotes and
angle brackets, missing targets, loops, and a flow of 2,000 nodes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ivr.flows import Report, load_flow, parse_text
from ivr.flows.graph import to_dot, to_mermaid, to_svg, write_graph
from ivr.flows.layout import layered

REPO = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"
ARROW = re.compile(r"^\s+(\S+) (-->|-\.->|==>)(\|\"(.*)\"\|)? (\S+)$")
DOT = shutil.which("dot")


@pytest.fixture(scope="module")
def flow():
    return load_flow(REPO / "flows.yaml")


def parse(text: str):
    report = Report("test.yaml")
    parsed = parse_text(text, report)
    assert parsed is not None and not report.errors, [d.format() for d in report.errors]
    return parsed


def edge_count(f) -> int:
    return sum(len(f.edges(n)) for n in f.nodes.values())


def svg_groups(svg: str, cls: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if cls in (g.get("class") or "").split()]


def texts(el: ET.Element) -> list[str]:
    return [t.text or "" for t in el.iter(f"{SVG}text")]


HOSTILE = """
version: 1
name: 'A "quoted" <line> & co'
start: main-menu
escape: {to: agent-desk}
nodes:
  main-menu:
    kind: menu
    label: 'Main "menu" | `x` #35;'
    prompt: 'Say "yes" or press <1> & then #'
    options:
      - {key: 1, say: [end], goto: end}
      - {key: 2, say: [other], goto: a_b}
      - {key: 3, say: [sub], goto: call-it}
  a_b: {kind: say, prompt: "a_b node", next: a-b}
  a-b: {kind: say, prompt: "arrows --> and ;semicolons; \\\\ back", next: end}
  call-it: {kind: subflow, call: sub-flow, next: end}
  end: {kind: hangup, prompt: "Bye </text> ]]> --> end"}
  agent-desk: {kind: handoff, queue: q-1}
subflows:
  sub-flow:
    start: ask-it
    nodes:
      ask-it:
        kind: gather
        prompt: 'Enter <digits> "now"'
        into: x
        digits: {min: 2}
        next: fin
        no_match: {then: agent-desk}
      fin: {kind: return}
"""


# ---- Mermaid --------------------------------------------------------------------

def test_mermaid_has_one_line_per_node_and_per_edge(flow):
    text = to_mermaid(flow)
    lines = text.splitlines()
    assert "flowchart TD" in lines[:3]
    arrows = [m for line in lines if (m := ARROW.match(line))]
    assert len(arrows) == edge_count(flow) == 48
    nodes = [line for line in lines if re.match(r'^\s+\w+[(\[{>/]+"', line)]
    assert len(nodes) == len(flow.nodes)
    assert any(line.strip().startswith("subgraph") and "subflow identify" in line for line in lines)


def test_mermaid_styles_escapes_retries_and_failures(flow):
    text = to_mermaid(parse(HOSTILE)) + to_mermaid(flow)
    for part in text.split("flowchart TD")[1:]:
        arrows = [m for line in part.splitlines() if (m := ARROW.match(line))]
        styles = {}
        for line in part.splitlines():
            if line.strip().startswith("linkStyle"):
                _, nums, style = line.split(maxsplit=2)
                styles.update(dict.fromkeys(map(int, nums.split(",")), style))
        assert len(styles) == len(arrows)
        for n, m in enumerate(arrows):
            if m[4] == "escape":
                assert m[2] == "-.->" and "#dc2626" in styles[n] and "dasharray" in styles[n]
    assert "no match ×3" in text  # retries used up, with the flow's default count
    assert '-.->|"router refused"|' in text


def test_mermaid_ids_are_safe_unique_and_keep_their_labels():
    text = to_mermaid(parse(HOSTILE))
    ids = [m[1] for line in text.splitlines() if (m := re.match(r'^\s+(\w+?)[(\[{>/]+"', line))]
    assert len(ids) == len(set(ids)) == 8
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", i) for i in ids), ids
    assert "end" not in ids  # a Mermaid keyword
    assert {"a_b", "a_b_2", "sub_flow_ask_it"} <= set(ids)  # a-b and a_b stay apart
    assert '"a-b<br>' in text and '"ask-it<br>' in text


def test_mermaid_escapes_quotes_and_angle_brackets():
    text = to_mermaid(parse(HOSTILE))
    for line in text.splitlines():
        m = re.match(r'^\s+\S+?[(\[{>/]+"(.*)"[)\]}/\\]+$', line) or re.match(r'^.*\|"(.*)"\|.*$', line)
        if m:
            label = m[1]
            assert '"' not in label and "|" not in label and "`" not in label, line
            assert "<" not in label.replace("<br>", ""), line
    assert "Say #quot;yes#quot; or press #lt;1#gt; #amp; then" in text


# ---- DOT ------------------------------------------------------------------------

def test_dot_has_every_edge_and_a_cluster_per_subflow(flow):
    text = to_dot(flow)
    edges = re.findall(r'^\s+"[^"]+" -> "[^"]+" \[', text, re.M)
    assert len(edges) == edge_count(flow)
    assert 'subgraph "cluster_identify"' in text
    agent = next(line for line in text.splitlines() if line.strip().startswith('"agent" ['))
    assert "shape=hexagon" in agent and "peripheries=2" in agent and "queue: general" in agent
    assert re.search(r'"main_menu" -> "agent" \[label="escape", [^]]*style=dashed', text)
    assert re.search(r'"billing_agent" -> "billing_callback" \[label="router refused", [^]]*style=dashed', text)
    assert '"main_menu" -> "identify_billing" [label="1: billing"' in text


def test_dot_quotes_ids_and_escapes_text():
    text = to_dot(parse(HOSTILE))
    assert '"sub-flow.ask-it" -> "sub-flow.fin"' in text
    assert 'Say \\"yes\\" or press <1> &amp; then #' in text
    assert "\\\\ back" in text  # a backslash stays a backslash
    assert all(line.count('"') % 2 == 0 for line in text.splitlines())


@pytest.mark.skipif(DOT is None, reason="graphviz `dot` is not installed; DOT syntax not checked")
def test_dot_output_is_accepted_by_graphviz(flow):
    for f in (flow, parse(HOSTILE)):
        run = subprocess.run([DOT, "-Tplain"], input=to_dot(f), capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and not run.stderr, run.stderr
    assert '<1> & then' in run.stdout  # the entity written for & reads back as &


# ---- SVG ------------------------------------------------------------------------

def test_svg_is_well_formed_and_draws_every_node_and_edge(flow):
    svg = to_svg(flow)
    nodes = svg_groups(svg, "node")
    assert sorted(g.get("data-id") for g in nodes) == sorted(flow.nodes)
    edges = svg_groups(svg, "edge")
    assert len(edges) == edge_count(flow)
    escapes = sum(e.kind == "escape" for n in flow.nodes.values() for e in flow.edges(n))
    assert sum(g.get("data-kind") == "escape" for g in edges) == escapes >= 10
    escape_path = next(g for g in edges if g.get("data-kind") == "escape").find(f"{SVG}path")
    assert escape_path.get("stroke") == "#dc2626" and escape_path.get("stroke-dasharray")
    legend = svg_groups(svg, "legend")[0]
    assert {"handoff", "escape to a person", "router refused"} <= set(texts(legend))
    agent = next(g for g in nodes if g.get("data-id") == "agent")
    assert len(agent.findall(f"{SVG}polygon")) == 2  # the double border of a hand-off
    assert {"Any adviser", "queue: general"} <= set(texts(agent))
    assert "1: billing" in svg and "subflow identify" in svg


def test_svg_keeps_hostile_text_intact():
    svg = to_svg(parse(HOSTILE))
    root = ET.fromstring(svg)  # raises on broken XML
    words = " ".join(t.text for t in root.iter(f"{SVG}text"))
    assert 'Say "yes" or press <1> & then #' in words
    assert "Bye </text> ]]> --> end" in words
    tips = [t.text for t in root.iter(f"{SVG}title")]
    assert 'main-menu (menu): Say "yes" or press <1> & then #' in tips
    assert root.find(f"{SVG}title").text == 'A "quoted" <line> & co'


def boxes_of(svg: str) -> dict[str, tuple[float, float, float, float]]:
    """Each node's bounding box, from its shape's outline."""
    out = {}
    for g in svg_groups(svg, "node"):
        xs, ys = [], []
        for el in g:
            if el.tag == f"{SVG}rect":
                x, y, w, h = (float(el.get(k)) for k in ("x", "y", "width", "height"))
                xs += [x, x + w]
                ys += [y, y + h]
            elif el.tag == f"{SVG}polygon":
                pts = [tuple(map(float, p.split(","))) for p in el.get("points").split()]
                xs += [p[0] for p in pts]
                ys += [p[1] for p in pts]
            elif el.tag == f"{SVG}path":
                nums = [float(n) for n in re.findall(r"-?\d+\.?\d*", el.get("d"))]
                xs += nums[0::2][:1]
                ys += nums[1::2][:1]
        out[g.get("data-id")] = (min(xs), min(ys), max(xs), max(ys))
    return out


def test_svg_nodes_do_not_overlap_and_edges_pass_between_them(flow):
    svg = to_svg(flow)
    boxes = boxes_of(svg)
    items = list(boxes.items())
    for n, (a, (ax0, ay0, ax1, ay1)) in enumerate(items):
        for b, (bx0, by0, bx1, by1) in items[n + 1:]:
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (a, b)
    # Points along every edge's curves stay out of every box but its own two ends.
    for g in svg_groups(svg, "edge"):
        nums = [float(n) for n in re.findall(r"-?\d+\.?\d*", g.find(f"{SVG}path").get("d"))]
        pts = list(zip(nums[0::2], nums[1::2], strict=False))
        for k in range(0, len(pts) - 1, 3):
            p0, p1, p2, p3 = pts[k:k + 4]
            for t in (0.2, 0.4, 0.5, 0.6, 0.8):
                x, y = (((1 - t) ** 3 * p0[i] + 3 * (1 - t) ** 2 * t * p1[i] + 3 * (1 - t) * t * t * p2[i]
                         + t ** 3 * p3[i]) for i in (0, 1))
                for node, (x0, y0, x1, y1) in boxes.items():
                    if node not in (g.get("data-src"), g.get("data-dst")):
                        assert not (x0 < x < x1 and y0 < y < y1), (g.find(f"{SVG}title").text, node, x, y)


def test_svg_ranks_follow_the_flow_and_subflows_sit_in_their_box(flow):
    boxes = boxes_of(to_svg(flow))

    def top(n):
        return boxes[n][1]

    assert top("check_hours") < top("welcome") < top("main_menu") < top("tech_menu") < top("heating_agent")
    assert top("billing_callback") < top("goodbye")  # the hang-up is below what leads to it
    assert top("agent") < top("agent_busy")
    # The subflow's nodes sit to the right of every main node they share rows with.
    for n, b in boxes.items():
        if not n.startswith("identify."):
            continue
        beside = [m for name, m in boxes.items() if "." not in name and m[1] < b[3] and b[1] < m[3]]
        assert beside and all(b[0] > m[2] for m in beside), n


def test_highlight_marks_visited_nodes_and_edges(flow):
    seen = {"check_hours", "welcome", "main_menu", "agent"}
    walked = {("main_menu", "agent")}
    svg = to_svg(flow, highlight=seen, edge_highlight=walked)
    nodes = {g.get("data-id"): g for g in svg_groups(svg, "node")}
    assert {n for n, g in nodes.items() if "visited" in g.get("class")} == seen
    assert nodes["tech_menu"].get("opacity") == "0.4" and nodes["main_menu"].get("opacity") is None
    widths = {g.find(f"{SVG}title").text: float(g.find(f"{SVG}path").get("stroke-width"))
              for g in svg_groups(svg, "edge")}
    assert widths["main_menu → agent: escape"] > widths["tech_menu → agent: escape"]
    mmd = to_mermaid(flow, highlight=seen, edge_highlight=walked)
    assert set(re.search(r"^\s+class (\S+) visited$", mmd, re.M)[1].split(",")) == seen
    assert "stroke-width:4px" in mmd
    dot = to_dot(flow, highlight=seen, edge_highlight=walked)
    assert dot.count("penwidth=3.5") == len(seen) and dot.count("penwidth=3]") == 1


def test_missing_targets_loops_and_unreachable_nodes_are_drawn():
    f = parse("""
version: 1
start: a
escape: {to: b}
nodes:
  a: {kind: goto, to: a}
  b: {kind: say, prompt: hi, next: nowhere}
  lonely: {kind: hangup}
""")
    svg = to_svg(f)
    kinds = {g.get("data-id"): g.get("data-kind") for g in svg_groups(svg, "node")}
    assert kinds == {"a": "goto", "b": "say", "lonely": "hangup", "nowhere": "missing"}
    assert len(svg_groups(svg, "edge")) == 2
    assert '"nowhere" [label="nowhere\\nno such node"' in to_dot(f)
    assert re.search(r"^\s+a --> a$", to_mermaid(f), re.M)


def test_layout_puts_loops_upward_and_spreads_a_row():
    sizes = {n: (40.0, 20.0) for n in "abcd"}
    edges = [("a", "b", (0.0, 0.0)), ("a", "c", (30.0, 14.0)), ("b", "d", (0.0, 0.0)),
             ("c", "d", (0.0, 0.0)), ("d", "a", (0.0, 0.0))]
    p = layered(sizes, edges, ["a"])
    y = {n: p.centers[n][1] for n in sizes}
    assert y["a"] < y["b"] == y["c"] < y["d"]
    assert abs(p.centers["b"][0] - p.centers["c"][0]) >= 40 + 10
    loop = p.routes[4].points
    assert loop[0][1] < y["d"] and loop[-1][1] > y["a"]  # leaves d's top, enters a's bottom
    assert p.routes[1].label_at is not None and p.routes[0].label_at is None


def test_layout_keeps_a_group_clear_of_the_rest():
    # A wide group box hangs off the root beside a main flow with wide edge labels.
    sizes = {"root": (60.0, 20.0), "g1": (200.0, 20.0), "g2": (60.0, 20.0)}
    edges = [("root", "g1", (0.0, 0.0)), ("g1", "g2", (0.0, 0.0))]
    for k in range(6):
        sizes[f"a{k}"] = sizes[f"b{k}"] = (90.0, 20.0)
        edges += [("root", f"a{k}", (0.0, 0.0)), (f"a{k}", f"b{k}", (150.0, 14.0))]
    p = layered(sizes, edges, ["root"], groups={"g1": 1, "g2": 1})
    x0, y0, x1, y1 = p.boxes[1]
    assert x0 <= p.centers["g1"][0] - 100 and p.centers["g2"][0] + 30 <= x1
    outside = [(cx - sizes[n][0] / 2, cy - sizes[n][1] / 2, cx + sizes[n][0] / 2, cy + sizes[n][1] / 2)
               for n, (cx, cy) in p.centers.items() if n not in ("g1", "g2")]
    outside += [(r.label_at[0], r.label_at[1], r.label_at[0] + 150, r.label_at[1] + 14)
                for r in p.routes.values() if r.label_at]
    for bx0, by0, bx1, by1 in outside:
        assert bx1 <= x0 or by1 <= y0 or by0 >= y1, (bx0, by0, bx1, by1)


def big_flow(n: int) -> str:
    """A tree of menus, three options each, leaves to a hand-off or a hang-up, some loops back."""
    menus, leaves = n // 2, n - n // 2 - 2
    out = ["version: 1", "start: m0", "escape: {to: agent}", "nodes:"]
    for i in range(menus):
        kids = [f"m{c}" if c < menus else f"s{c % leaves}" for c in (3 * i + 1, 3 * i + 2, 3 * i + 3)]
        opts = ", ".join(f"{{key: {k}, goto: {t}}}" for k, t in enumerate(kids, 1))
        if i % 7 == 3:
            opts += ", {key: 9, goto: m0}"
        out.append(f"  m{i}: {{kind: menu, prompt: menu {i}, options: [{opts}]}}")
    out += [f"  s{j}: {{kind: say, prompt: leaf {j}, next: {'bye' if j % 2 else 'agent'}}}" for j in range(leaves)]
    out += ["  agent: {kind: handoff, queue: q}", "  bye: {kind: hangup}"]
    return "\n".join(out) + "\n"


def test_a_2000_node_flow_is_drawn_in_seconds():
    f = parse(big_flow(2000))
    assert len(f.nodes) == 2000
    started = time.perf_counter()
    svg = to_svg(f)
    took = time.perf_counter() - started
    assert took < 20, f"{took:.1f}s"
    assert len(svg_groups(svg, "node")) == 2000
    assert len(svg_groups(svg, "edge")) == edge_count(f)


def test_a_deep_flow_that_escapes_everywhere_stays_linear():
    # Every step of a 400-step chain escapes to one hand-off at the bottom: waypoints
    # for all of those edges would be quadratic, so the long ones are drawn directly.
    n = 400
    steps = [f"  m{i}: {{kind: menu, prompt: step {i}, options: [{{key: 1, goto: {f'm{i + 1}' if i + 1 < n else 'agent'}}}]}}"
             for i in range(n)]
    f = parse("\n".join(["version: 1", "start: m0", "escape: {to: agent}", "nodes:", *steps,
                          "  agent: {kind: handoff, queue: q}"]) + "\n")
    svg = to_svg(f)
    assert len(svg_groups(svg, "edge")) == 2 * n
    assert len(svg) < 3000 * n


# ---- write_graph ----------------------------------------------------------------

def test_write_graph_picks_the_format_from_the_suffix(flow, tmp_path):
    for suffix, fmt, start in ((".mmd", "mmd", "%%"), (".dot", "dot", "digraph"), (".svg", "svg", "<?xml")):
        path = tmp_path / f"flow{suffix}"
        assert write_graph(flow, path) == fmt
        assert path.read_text(encoding="utf-8").startswith(start)
    assert write_graph(flow, tmp_path / "picture.txt", fmt="svg") == "svg"
    assert write_graph(flow, tmp_path / "flow.gv") == "dot"


def test_write_graph_refuses_an_unknown_format(flow, tmp_path):
    with pytest.raises(ValueError, match=r"suffix '\.png'.*\.mmd.*\.dot.*\.svg"):
        write_graph(flow, tmp_path / "flow.png")
    with pytest.raises(ValueError, match="format 'pdf'"):
        write_graph(flow, tmp_path / "flow.svg", fmt="pdf")
    with pytest.raises(ValueError, match="no suffix"):
        write_graph(flow, tmp_path / "flow")
    assert list(tmp_path.iterdir()) == []
