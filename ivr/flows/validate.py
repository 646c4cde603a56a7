"""The rules a flow must pass before any call is answered.

Each rule is a function in RULES; it reads the parsed flow and reports to the
Report. Rules are independent, so one broken node never hides another's problem.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from .diagnostics import Report, did_you_mean
from .expr import TEMPLATE_FORMATS, Expr, template_fields
from .fields import ListOf, Located, Struct, spec_fields, yaml_name
from .model import (
    HUMAN_PATH_KINDS,
    PERSON_KINDS,
    PROMPTS,
    QUEUE_WORDS,
    Branch,
    Callback,
    CallSubflow,
    Flow,
    Gather,
    Goto,
    Handoff,
    Hangup,
    Hold,
    Menu,
    Node,
    Play,
    Prompt,
    Retry,
    Return,
    Say,
    SetVars,
    Voicemail,
    queue_words,
)
from .yamlsrc import Pos

BUILTIN_VARS = {"caller", "dialled", "channel", "language", "intent", "call_id", "flow"}
AUDIO_EXT = {".wav", ".mp3", ".ogg", ".flac", ".ulaw", ".alaw", ".raw", ".au", ".m4a", ".aac", ".opus"}
PASS_THROUGH = (Say, Play, SetVars, Goto, Branch, CallSubflow)  # take no input from the caller

Rule = Callable[[Flow, Report], None]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def validate(flow: Flow, report: Report, *, check_media: bool = True) -> Report:
    """Run every rule on a parsed flow."""
    for r in RULES:
        if r is check_media_files and not check_media:
            continue
        r(flow, report)
    return report


# ---- targets and graph -------------------------------------------------------

def _missing(flow: Flow, target: str) -> bool:
    """A target that names no node (one that failed to parse was reported already)."""
    return target not in flow.nodes and target not in flow.broken


@rule
def check_targets(flow: Flow, report: Report) -> None:
    ids = flow.nodes
    if flow.start and _missing(flow, flow.start):
        report.error("missing-target", f"start node {flow.start!r} does not exist", flow.at("start"),
                     did_you_mean(flow.start, ids))
    if flow.overflow and _missing(flow, flow.overflow):
        report.error("missing-target", f"overflow node {flow.overflow!r} does not exist", flow.at("overflow"),
                     did_you_mean(flow.overflow, ids))
    if flow.escape and flow.escape.to and _missing(flow, flow.escape.to):
        report.error("missing-target", f"escape target {flow.escape.to!r} does not exist", flow.escape.at("to"),
                     did_you_mean(flow.escape.to, ids) or "add a handoff node that reaches a person")
    for node in ids.values():
        for e in flow.edges(node):
            if e.kind == "call":
                continue  # a subflow's missing start is reported once, at the subflow below
            if _missing(flow, e.target):
                # Suggest names as written: a subflow's own nodes, then the main flow's.
                local = [i.split(".", 1)[1] for i in ids if node.scope and i.startswith(node.scope + ".")]
                short = local + [i for i in ids if "." not in i]
                report.error("missing-target", f"{node.id}: {e.label} goes to {e.target!r}, which does not exist",
                             e.pos, did_you_mean(e.target.split(".")[-1], short))
        if isinstance(node, CallSubflow) and node.call and node.call not in flow.subflows:
            report.error("missing-target", f"{node.id}: no subflow named {node.call!r}", node.at("call"),
                         did_you_mean(node.call, flow.subflows) or "define it under subflows:")
        if isinstance(node, Return) and not node.scope:
            report.error("bad-return", f"{node.id}: return is only allowed inside a subflow", node.pos,
                         "use hangup or goto in the main flow")
    for name, sub in flow.subflows.items():
        if sub.start and _missing(flow, f"{name}.{sub.start}"):
            report.error("missing-target", f"subflow {name!r} starts at {sub.start!r}, which it does not define",
                         sub.at("start"), did_you_mean(sub.start, [i.split(".", 1)[1] for i in sub.nodes]))


def successors(flow: Flow) -> dict[str, list[str]]:
    """Adjacency lists over existing nodes (all edge kinds); computed once per flow."""
    got = flow.__dict__.get("_successors")
    if got is None:
        nodes = flow.nodes
        got = {nid: [e.target for e in flow.edges(n) if e.target in nodes] for nid, n in nodes.items()}
        flow.__dict__["_successors"] = got
    return got


@rule
def check_reachable(flow: Flow, report: Report) -> None:
    if not flow.start or flow.start not in flow.nodes or flow.broken:
        return  # a node that failed to parse may be the only way to others: wait for its fix
    if any(_missing(flow, e.target) for n in flow.nodes.values() for e in flow.edges(n)) or any(
            sub.start and _missing(flow, f"{name}.{sub.start}") for name, sub in flow.subflows.items()):
        # A misspelt link (reported by check_targets) leaves the node it meant
        # unreached; calling that node unreachable would invite deleting it.
        return
    succ = successors(flow)
    # The flow-wide escape target is an entry of its own: a caller can always ask for a person.
    roots = [flow.start] + [t for t in (flow.escape.to if flow.escape else None, flow.overflow) if t in flow.nodes]
    seen = set(roots)
    stack = list(roots)
    while stack:
        for t in succ[stack.pop()]:
            if t not in seen:
                seen.add(t)
                stack.append(t)
    for nid, node in flow.nodes.items():
        if nid not in seen:
            report.error("unreachable", f"node {nid!r} can never be reached", node.pos,
                         "link to it from another node, or delete it")


def _sccs(succ: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iterative (deep flows must not overflow)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in succ:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(succ[w])))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


def _ends_call(node: Node) -> bool:
    if isinstance(node, (Hangup, Handoff, Return)):
        return True
    return isinstance(node, (Voicemail, Callback)) and not node.next


@rule
def check_loops(flow: Flow, report: Report) -> None:
    succ = successors(flow)
    for comp in _sccs(succ):
        members = set(comp)
        if len(comp) == 1 and comp[0] not in succ[comp[0]]:
            continue
        if any(_ends_call(flow.nodes[n]) for n in comp):
            continue
        if any(t not in members for n in comp for t in succ[n]):
            continue
        if any(e.target in flow.broken for n in comp for e in flow.edges(flow.nodes[n])):
            continue  # it leads to a node that failed to parse: that node's problem was reported
        order = sorted(comp, key=lambda n: flow.nodes[n].pos)
        first = flow.nodes[order[0]]
        report.error("loop-no-exit", "loop with no exit: " + " -> ".join(order + [order[0]]), first.pos,
                     "give one of these nodes a way out (a menu option, an escape, a handoff or hangup)")


# ---- menus and the way to a human --------------------------------------------

def reaches_human(flow: Flow, target: str | None, _seen: set[str] | None = None) -> bool:
    """Every path from `target` that takes no input ends with a person (now or by callback)."""
    if target in flow.broken:
        return True  # failed to parse and was reported; do not report its callers too
    if not target or target not in flow.nodes:
        return False
    seen = _seen if _seen is not None else set()
    if target in seen:
        return False
    seen.add(target)
    node = flow.nodes[target]
    if node.kind in HUMAN_PATH_KINDS:
        return True
    if isinstance(node, PASS_THROUGH):
        nexts = [e.target for e in node.edges()]
        return bool(nexts) and all(reaches_human(flow, t, seen) for t in nexts)
    return False


def _input_modes(node: Node) -> set[str]:
    if isinstance(node, Menu):
        return {"dtmf", "speech"} if node.input == "both" else {node.input}
    if isinstance(node, Gather):
        modes = set()
        if node.digits or not node.speech:
            modes.add("dtmf")
        if node.speech:
            modes.add("speech")
        return modes
    return {"dtmf", "speech"}


@rule
def check_escape(flow: Flow, report: Report) -> None:
    if flow.escape and flow.escape.to in flow.nodes and flow.nodes[flow.escape.to].kind not in PERSON_KINDS:
        report.error("no-human", f"the flow-wide escape goes to {flow.escape.to!r}, a "
                     f"{flow.nodes[flow.escape.to].kind}, not a person", flow.escape.at("to"),
                     "point escape.to at a handoff node")
    for node in flow.nodes.values():
        if not node.LISTENS:
            continue
        keys, phrases, to = flow.escape_for(node)
        modes = _input_modes(node)
        where = node.at("escape") if node.escape else node.pos
        usable = (keys and "dtmf" in modes) or (phrases and "speech" in modes)
        if not usable:
            report.error("no-human", f"{node.id}: the caller cannot reach a human from this {node.kind}",
                         where, "give it escape keys or phrases that its input mode accepts")
        elif to in flow.nodes and not reaches_human(flow, to):
            report.error("no-human", f"{node.id}: its escape goes to {to!r}, which does not reach a person",
                         where, "escape to a handoff, or to a callback as the explicit alternative")


@rule
def check_retries(flow: Flow, report: Report) -> None:
    for node in flow.nodes.values():
        for name in ("no_input", "no_match"):
            r: Retry | None = getattr(node, name, None)
            if r is None or not r.then or r.then not in flow.nodes:
                continue
            _, _, esc_to = flow.escape_for(node)
            if r.then != esc_to and flow.nodes[r.then].kind not in PERSON_KINDS:
                report.error("retry-end", f"{node.id}: {name} gives up at {r.then!r} "
                             f"(a {flow.nodes[r.then].kind}); retry limits must end with a person",
                             r.at("then"), "leave 'then' out to use the escape target, or point it at a handoff")


@rule
def check_menu_choices(flow: Flow, report: Report) -> None:
    for node in flow.nodes.values():
        if not isinstance(node, Menu):
            continue
        keys, phrases, _ = flow.escape_for(node)
        seen_keys: dict[str, str] = {k: "the escape" for k in keys}
        key_pos: dict[str, Pos] = {}  # where each option key was written (escape keys: none)
        seen_phr: dict[str, str] = {p: "the escape" for p in phrases}
        for i, opt in enumerate(node.options, 1):
            name = f"option {i}"
            # A key or phrase that was written but refused was reported already;
            # the option is not empty for that.
            has_key = bool(opt.key) or "key" in opt.field_pos
            has_phrases = bool(opt.phrases) or "phrases" in opt.field_pos
            if not has_key and not has_phrases:
                report.error("empty-option", f"{node.id}: {name} has neither a key nor phrases", opt.pos,
                             "add key: or say:")
            elif node.input == "dtmf" and not has_key:
                report.error("empty-option", f"{node.id}: {name} has no key but the menu takes keys only",
                             opt.pos)
            elif node.input == "speech" and not has_phrases:
                report.error("empty-option", f"{node.id}: {name} has no phrases but the menu takes speech only",
                             opt.pos)
            if opt.key:
                if opt.key in seen_keys:
                    report.error("duplicate-choice", f"{node.id}: key {opt.key} is already used by "
                                 f"{seen_keys[opt.key]}", opt.at("key"),
                                 "each key may pick one thing" + (
                                     "; the escape keys are reserved (override them with escape: keys:)"
                                     if seen_keys[opt.key] == "the escape" else ""))
                else:
                    seen_keys[opt.key] = name
                    key_pos[opt.key] = opt.at("key")
            where = getattr(opt.phrases, "positions", [])
            for j, ph in enumerate(opt.phrases):
                if seen_phr.get(ph) == name:
                    continue  # the same synonym twice in one option is harmless
                if ph in seen_phr:
                    report.error("duplicate-choice", f"{node.id}: phrase {ph!r} is already used by "
                                 f"{seen_phr[ph]}", where[j] if j < len(where) else opt.at("phrases"),
                                 "each phrase may pick one thing")
                else:
                    seen_phr[ph] = name
        ks = [k for k in seen_keys]
        for a in ks:
            for b in ks:
                if a != b and b.startswith(a):
                    # Point at the longer option key (the one that makes the shorter wait).
                    pos = key_pos.get(b) or key_pos.get(a) or node.at("escape")
                    report.warning("key-prefix", f"{node.id}: key {a} is a prefix of {b}; "
                                   f"pressing {a} waits the inter-digit timeout", pos)


@rule
def check_gathers(flow: Flow, report: Report) -> None:
    for node in flow.nodes.values():
        if not isinstance(node, Gather):
            continue
        d = node.digits
        if d and d.min > d.max:
            report.error("bad-value", f"{node.id}: digits min {d.min} is more than max {d.max}", d.pos)
        if node.pattern:
            try:
                re.compile(node.pattern)
            except re.error as exc:
                report.error("bad-pattern", f"{node.id}: pattern is not a valid regular expression: {exc}",
                             node.at("pattern"), 'for example "^[0-9]{8}$"')
        if node.speech and not node.speech.free and not node.speech.phrases:
            report.error("bad-value", f"{node.id}: speech needs phrases or free: true", node.speech.pos)
        if "dtmf" in _input_modes(node):
            keys, _, _ = flow.escape_for(node)
            lo = d.min if d else 1
            term = d.terminator if d else "#"
            for k in keys:
                # Point at the digits setting that clashes (digits: itself when it is left out).
                if k == term:
                    report.error("escape-conflict", f"{node.id}: escape key {k} is also the terminator",
                                 d.at("terminator") if d else node.pos, "pick another terminator or escape key")
                elif len(k) >= lo and all(c.isdigit() for c in k):
                    report.error("escape-conflict", f"{node.id}: escape key {k} is also a valid entry "
                                 f"(min {lo} digit(s)), so the caller could not escape",
                                 d.at("min") if d else node.pos,
                                 "raise digits.min, or give this gather escape: {keys: ['*']}")


@rule
def check_callback_keys(flow: Flow, report: Report) -> None:
    # A callback confirms with 1 and changes the number with 2; an escape key
    # there would silently take those keys away from the caller.
    for node in flow.nodes.values():
        if isinstance(node, Callback):
            keys, _, _ = flow.escape_for(node)
            for k in keys:
                if k in ("1", "2"):
                    report.error("escape-conflict", f"{node.id}: escape key {k} is also the callback's "
                                 f"{'confirm' if k == '1' else 'change-number'} key",
                                 node.at("escape") if node.escape else node.pos,
                                 "use another escape key here, e.g. escape: {keys: ['0']}")


@rule
def check_hold_queue_words(flow: Flow, report: Report) -> None:
    for node in flow.nodes.values():
        if not isinstance(node, Hold) or node.queue:
            continue
        for ann in node.announcements:
            for p in ann.prompt:
                words = sorted(queue_words([p]))
                if words:
                    report.warning("hold-queue-words", f"{node.id}: an announcement says "
                                   f"{', '.join('{' + w + '}' for w in words)} but the hold names no queue, "
                                   "so it is never said", p.pos if p.pos.line else ann.pos,
                                   "add queue: (the router queue the caller waits in)")


@rule
def check_voicemail(flow: Flow, report: Report) -> None:
    for node in flow.nodes.values():
        if not isinstance(node, Voicemail):
            continue
        box = flow.mailbox(node.mailbox or "")
        if node.max_length > box.max_message:
            report.warning("voicemail-max-length", f"{node.id}: max_length {node.max_length:g}s is longer than "
                           f"mailbox {node.mailbox!r} keeps ({box.max_message:g}s): messages stop there",
                           node.at("max_length"), f"set max_length: {box.max_message:g}s, or raise the "
                           "mailbox's max_message")
        if box.min_message >= box.max_message:
            report.error("mailbox-limits", f"mailbox {node.mailbox!r}: min_message {box.min_message:g}s is not "
                         f"shorter than max_message {box.max_message:g}s, so no message could be kept",
                         box.pos if box.pos.line else node.at("mailbox"), "lower min_message")
        if not node.full or node.full not in flow.nodes:
            continue
        alt = flow.nodes[node.full]
        if alt is node or (isinstance(alt, Voicemail) and alt.mailbox == node.mailbox):
            report.error("voicemail-full", f"{node.id}: when mailbox {node.mailbox!r} is full it offers "
                         "the same mailbox again", node.at("full"), "send a full mailbox to a callback or a person")


@rule
def check_handoffs(flow: Flow, report: Report) -> None:
    for node in flow.nodes.values():
        if isinstance(node, Handoff) and not node.on_failure:
            report.warning("no-failure-path", f"{node.id}: if the router cannot take the call, the caller is "
                           "disconnected", node.pos, "add on_failure: (a callback or voicemail)")


# ---- prompts, media and variables --------------------------------------------

def iter_structs(obj: Located) -> Iterator[Located]:
    """Every struct inside `obj` (depth first), the node's escape override included."""
    yield obj
    for name, many in _struct_slots(type(obj)):
        val = getattr(obj, name, None)
        if val is None:
            continue
        if not many:
            if isinstance(val, Located):
                yield from iter_structs(val)
        else:
            for item in val:
                if isinstance(item, Located):
                    yield from iter_structs(item)


@functools.cache
def _struct_slots(cls) -> tuple[tuple[str, bool], ...]:
    """(field, is_list) for the fields of `cls` that can hold structs."""
    out = []
    for f in spec_fields(cls):
        ftype = f.metadata["ftype"]
        if isinstance(ftype, ListOf) and isinstance(ftype.item, Struct):
            out.append((f.name, True))
        elif isinstance(ftype, Struct) or not isinstance(ftype, ListOf):
            out.append((f.name, False))
    return tuple(out)


def iter_prompts(flow: Flow) -> Iterator[tuple[str, Prompt]]:
    """(owner, prompt) for every prompt in the flow."""
    roots: list = [("defaults", flow.defaults), ("escape", flow.escape)]
    if flow.node_prompts is None:  # a flow built in code: walk every node
        roots += [(n.id, n) for n in flow.nodes.values()]
    else:  # the loader listed them as it read the nodes
        yield from ((owner, p) for owner, p in flow.node_prompts if owner in flow.nodes)
    for owner, root in roots:
        if root is None:
            continue
        for s in iter_structs(root):
            if isinstance(s, Prompt):
                yield owner, s
    for node in flow.nodes.values():
        if isinstance(node, Play):
            yield node.id, node.prompt[0]


@rule
def check_prompts(flow: Flow, report: Report) -> None:
    known = known_variables(flow)
    for node in flow.nodes.values():
        # `prompt: []` passes as a list, yet the caller would hear nothing at all.
        for s in iter_structs(node):
            for f in spec_fields(type(s)):
                if f.metadata["required"] and f.metadata["ftype"] is PROMPTS and getattr(s, f.name) == []:
                    report.error("empty-prompt", f"{node.id}: {yaml_name(f)} is an empty list", s.at(f.name),
                                 "add at least one prompt with text: or audio:")
    # Hold announcements may also say the caller's place and wait, which the router gives
    # (a hold without a queue is reported by hold-queue-words instead).
    announced = {id(p) for n in flow.nodes.values() if isinstance(n, Hold)
                 for a in n.announcements for p in a.prompt}
    for owner, p in iter_prompts(flow):
        if not p.text and not p.audio:
            report.error("empty-prompt", f"{owner}: a prompt with neither text nor audio", p.pos,
                         "add text: (spoken by TTS) or audio: (a file under media/)")
        if p.text:
            for name, fmt, _ in template_fields(p.text):
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    report.error("bad-template", f"{owner}: {{{name}}} is not a variable name", p.at("text"),
                                 "write {account} or {account:digits}; use {{ }} nowhere")
                elif fmt and fmt not in TEMPLATE_FORMATS:
                    report.error("bad-template", f"{owner}: unknown format {fmt!r} in {{{name}:{fmt}}}",
                                 p.at("text"), "formats: " + ", ".join(TEMPLATE_FORMATS))
                elif name not in known and not (name in QUEUE_WORDS and id(p) in announced):
                    report.warning("unknown-variable", f"{owner}: prompt uses {{{name}}}, which is never set",
                                   p.at("text"), did_you_mean(name, known))


def known_variables(flow: Flow) -> set[str]:
    """Variables that some node sets, or that every call has."""
    known = set(BUILTIN_VARS) | set(flow.variables)
    for node in flow.nodes.values():
        if isinstance(node, SetVars):
            known |= set(node.vars)
        elif isinstance(node, Gather) and node.into:
            known.add(node.into)
        elif isinstance(node, Menu):
            for opt in node.options:
                known |= set(opt.set)
    return known


@rule
def check_conditions(flow: Flow, report: Report) -> None:
    known = known_variables(flow)
    for node in flow.nodes.values():
        exprs: list[tuple[Expr, Pos]] = []
        if isinstance(node, Branch):
            exprs = [(c.when, c.at("when")) for c in node.cases if isinstance(c.when, Expr)]
        elif isinstance(node, SetVars):
            exprs = [(v, v.pos or node.at("vars")) for v in node.vars.values() if isinstance(v, Expr)]
        for ex, pos in exprs:
            for h in sorted(ex.hours):
                if h not in flow.hours:
                    report.error("unknown-hours", f"{node.id}: open({h!r}) names no opening hours", pos,
                                 did_you_mean(h, flow.hours) or "define them under hours:")
            for name in sorted(ex.names - known):
                report.warning("unknown-variable", f"{node.id}: condition reads {name!r}, which is never set",
                               pos, did_you_mean(name, known))


def _media_path(flow: Flow, rel: str) -> tuple[Path | None, str | None]:
    """Resolve a media reference; (None, reason) when it may not be used."""
    if rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel) or "\\" in rel:
        return None, "must be a relative path under media/"
    root = Path(flow.media_dir).resolve()
    p = (root / rel).resolve()
    if root != p and root not in p.parents:
        return None, "leaves the media folder"
    return p, None


@rule
def check_media_files(flow: Flow, report: Report) -> None:
    for owner, p in iter_prompts(flow):
        if not p.audio:
            continue
        path, why = _media_path(flow, p.audio)
        if path is None:
            report.error("media-outside", f"{owner}: audio {p.audio!r} {why}", p.at("audio"),
                         "put the file in media/prompts/ and write prompts/NAME.wav")
        elif not path.is_file():
            report.error("missing-media", f"{owner}: audio file {p.audio!r} not found in {flow.media_dir}",
                         p.at("audio"), "check the name; paths are relative to media/")
        elif path.suffix.lower() not in AUDIO_EXT:
            report.warning("media-format", f"{owner}: {p.audio!r} does not look like audio", p.at("audio"))
    for node in flow.nodes.values():
        if isinstance(node, Hold):
            path, why = _media_path(flow, f"moh/{node.music}")
            if path is None or not path.is_dir() or not any(
                    f.suffix.lower() in AUDIO_EXT for f in path.iterdir() if f.is_file()):
                report.error("missing-media", f"{node.id}: music class {node.music!r} has no audio files "
                             f"in {Path(flow.media_dir) / 'moh' / node.music}", node.at("music"),
                             "add files to media/moh/CLASS/ or pick an existing class")


@rule
def check_subflows(flow: Flow, report: Report) -> None:
    for name, sub in flow.subflows.items():
        if any(b.startswith(f"{name}.") for b in flow.broken):
            continue  # its return may be the node that failed to parse
        if not any(isinstance(n, Return) for n in sub.nodes.values()):
            report.warning("no-return", f"subflow {name!r} never returns", sub.pos,
                           "add a node of kind return, or callers never come back from it")
