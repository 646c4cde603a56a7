"""Read flows.yaml into the model, reporting every problem with its line and column."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from .diagnostics import Report, did_you_mean
from .fields import INVALID, Ctx, ListOf, Struct, Target, build_struct, spec_fields
from .model import NODE_KINDS, Flow, Located, Node, Prompt, Subflow
from .yamlsrc import LMap, Pos, Scalar, YamlError, load, pos_of

_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def parse_file(path: str | Path, report: Report | None = None) -> tuple[Flow | None, Report]:
    """Read a flow file. The flow is None when the file cannot be read at all."""
    path = Path(path)
    report = report or Report(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        report.error("no-file", f"no such file: {path}", Pos(1, 1), "pass the path of a flows.yaml")
        return None, report
    except (OSError, UnicodeDecodeError) as exc:
        report.error("no-file", f"cannot read {path}: {exc}", Pos(1, 1))
        return None, report
    flow = parse_text(text, report)
    if flow is not None:
        flow.path = str(path)
        flow.media_dir = str(path.parent / "media")
    return flow, report


def parse_text(text: str, report: Report) -> Flow | None:
    """Read flow YAML text; problems go to `report`."""
    ctx = Ctx(report)
    try:
        root, problems = load(text)
    except YamlError as exc:
        report.error("yaml-syntax", exc.message, exc.pos, exc.hint)
        return None
    for p in problems:
        report.error("duplicate-key" if "duplicate" in p.message else "yaml-forbidden", p.message, p.pos, p.hint)
    if not isinstance(root, LMap):
        report.error("not-a-flow", "a flow file is a mapping with start:, escape: and nodes:", pos_of(root) if root else Pos(1, 1),
                     "see docs/FLOWS.md for a minimal flow")
        return None
    flow = build_struct(Flow, root, ctx, skip=("nodes", "subflows"))
    flow.digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    if "nodes" not in root:
        report.error("missing-field", "a flow needs 'nodes'", root.pos, "add nodes: with at least the start node")
    else:
        flow.field_pos["nodes"] = root.key_pos["nodes"]
        ctx.collect[Prompt] = flow.node_prompts = []
        _parse_nodes(root["nodes"], None, flow, ctx)
    if "subflows" in root:
        flow.field_pos["subflows"] = root.key_pos["subflows"]
        _parse_subflows(root["subflows"], flow, ctx)
    ctx.collect.pop(Prompt, None)
    _qualify_subflow_targets(flow)
    return flow


def _parse_nodes(v: Any, scope: str | None, flow: Flow, ctx: Ctx) -> None:
    if not isinstance(v, LMap):
        ctx.error("bad-value", "nodes: is a mapping of node ids to nodes", pos_of(v))
        return
    for node_id, raw in v.items():
        kpos = v.key_pos[node_id]
        if not _ID.fullmatch(node_id):
            ctx.error("bad-name", f"{node_id!r} is not a valid node id", kpos,
                      "use letters, digits, _ and -, starting with a letter")
            continue
        ctx.owner = f"{scope}.{node_id}" if scope else node_id
        node = parse_node(raw, ctx, kpos)
        if node is None:
            flow.broken.add(f"{scope}.{node_id}" if scope else node_id)
            continue
        node.id = f"{scope}.{node_id}" if scope else node_id
        node.scope = scope
        flow.nodes[node.id] = node


def parse_node(raw: Any, ctx: Ctx, where: Pos) -> Node | None:
    """One node mapping; its `kind` picks the dataclass."""
    if not isinstance(raw, LMap):
        ctx.error("bad-value", "a node is a mapping with a kind:", pos_of(raw) if pos_of(raw).line else where,
                  "for example  kind: say")
        return None
    kind_v = raw.get("kind")
    if not isinstance(kind_v, Scalar) or kind_v.kind == "null":
        guess = next((k for k in raw if k in NODE_KINDS), None)
        ctx.error("missing-kind", "node has no kind", raw.pos,
                  f"add 'kind: {guess}'" if guess else "add kind: (one of " + ", ".join(NODE_KINDS) + ")")
        return None
    cls = NODE_KINDS.get(kind_v.raw)
    if cls is None:
        ctx.error("unknown-kind", f"unknown node kind {kind_v.raw!r}", kind_v.pos,
                  did_you_mean(kind_v.raw, NODE_KINDS) or "kinds: " + ", ".join(NODE_KINDS))
        return None
    node = build_struct(cls, raw, ctx, skip=("kind",))
    node.kind = kind_v.raw
    return node


def _parse_subflows(v: Any, flow: Flow, ctx: Ctx) -> None:
    if not isinstance(v, LMap):
        ctx.error("bad-value", "subflows: is a mapping of names to subflows", pos_of(v))
        return
    for name, raw in v.items():
        if not _ID.fullmatch(name):
            ctx.error("bad-name", f"{name!r} is not a valid subflow name", v.key_pos[name],
                      "use letters, digits, _ and -, starting with a letter")
            continue
        sub = Struct(Subflow).parse(raw, ctx, skip=("nodes",))
        if sub is INVALID:
            continue
        flow.subflows[name] = sub
        if isinstance(raw, LMap) and "nodes" in raw:
            before = set(flow.nodes)
            _parse_nodes(raw["nodes"], name, flow, ctx)
            sub.nodes = {k: flow.nodes[k] for k in flow.nodes if k not in before}
        else:
            ctx.error("missing-field", f"subflow {name!r} needs 'nodes'", pos_of(raw))


def _qualify_subflow_targets(flow: Flow) -> None:
    """Inside a subflow, `goto: x` means that subflow's x when it has one."""
    for node in flow.nodes.values():
        if node.scope:
            _rewrite(node, lambda t, s=node.scope: f"{s}.{t}" if f"{s}.{t}" in flow.nodes
                     or f"{s}.{t}" in flow.broken else t)
    for name, sub in flow.subflows.items():
        if sub.start and f"{name}.{sub.start}" in flow.nodes:
            sub.start = sub.start  # kept as written; Flow.edges qualifies it


def _rewrite(obj: Located, fn) -> None:
    for f in spec_fields(type(obj)):
        ftype = f.metadata["ftype"]
        val = getattr(obj, f.name, None)
        if val is None:
            continue
        if isinstance(ftype, Target):
            setattr(obj, f.name, fn(val))
        elif isinstance(ftype, Struct) and isinstance(val, Located):
            _rewrite(val, fn)
        elif isinstance(ftype, ListOf) and isinstance(ftype.item, Struct):
            for item in val:
                if isinstance(item, Located):
                    _rewrite(item, fn)
    esc = getattr(obj, "escape", None)
    if isinstance(esc, Located) and not any(f.name == "escape" for f in spec_fields(type(obj))):
        _rewrite(esc, fn)
