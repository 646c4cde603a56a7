"""docs/FLOWS.md stays true to the code.

The designers' guide is checked against the engine, so it cannot drift:

* every ```yaml block that is a complete flow (top-level `start:` and `nodes:`)
  passes `check_file`, with the media it uses created next to it; a block
  marked `<!-- invalid: CODE ... -->` must fail with those codes;
* every other ```yaml block (nodes, or top-level keys such as `hours:`) is read
  by the flow loader inside a minimal flow and must load without problems;
* every node kind has a section, every `](#link)` points at a heading, and
  every field table (`<!-- fields: X -->`) lists exactly the keys of the
  model, with the same ones required;
* every rule code the loader and validator can emit is in the rule table, and
  the table names no code that no longer exists;
* the tables of hand-off fields, reasons, outcomes, journey keys, functions and
  built-in variables match the code;
* every ```text block marked `<!-- script -->` parses as a simulator script;
  with `flow="..." at="..."` it also runs against that flow, and its `expect`
  lines must hold.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
import wave
from dataclasses import dataclass, fields
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import pytest
import yaml

from ivr.engine.handoff import HANDOFF_SCHEMA, REASONS
from ivr.engine.journey import OUTCOMES, Journey
from ivr.flows import Report, check_file, load_flow, parse_text
from ivr.flows.expr import FUNCTIONS
from ivr.flows.fields import ListOf, MapOf, Struct, spec_fields, yaml_name
from ivr.flows.model import NODE_KINDS, Flow, Subflow
from ivr.flows.validate import BUILTIN_VARS
from ivr.simulator import Simulation, parse_script

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "FLOWS.md"
FLOWS_SRC = ROOT / "ivr" / "flows"

# Keys a table may list that are not `spec` fields (the loader reads them itself).
EXTRA_KEYS = {"Flow": {"nodes", "subflows"}, "Subflow": {"nodes"}}
FLOW_KEYS = {yaml_name(f) for f in spec_fields(Flow)} | EXTRA_KEYS["Flow"]


# ---- reading the document ------------------------------------------------------

@dataclass
class Block:
    """A fenced code block and the HTML comment just before it (if any)."""

    lang: str
    text: str
    line: int  # 1-based line of the opening fence
    marker: str  # the comment's inside, e.g. "invalid: missing-target", or ""

    def __str__(self) -> str:
        return f"FLOWS.md:{self.line}"


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _blocks() -> list[Block]:
    lines = _doc().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang = lines[i][3:].strip()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            m = re.fullmatch(r"\s*<!--\s*(.*?)\s*-->\s*", lines[k]) if k >= 0 else None
            out.append(Block(lang, "\n".join(lines[i + 1:j]) + "\n", i + 1, m.group(1) if m else ""))
            i = j + 1
        else:
            i += 1
    return out


BLOCKS = _blocks()
YAML_BLOCKS = [b for b in BLOCKS if b.lang == "yaml"]
SCRIPT_BLOCKS = [b for b in BLOCKS if b.lang == "text" and b.marker.startswith("script")]


def _is_complete(text: str) -> bool:
    return bool(re.search(r"^start:", text, re.M) and re.search(r"^nodes:", text, re.M))


def _expected(block: Block, word: str) -> set[str]:
    """The codes after `word:` in the block's marker (`invalid: a b`)."""
    m = re.fullmatch(rf"{word}:\s*(.+)", block.marker)
    return set(m.group(1).replace(",", " ").split()) if m else set()


def _codes(report: Report) -> set[str]:
    return {d.code for d in report.items}


def _formatted(report: Report) -> list[str]:
    return [d.format() for d in report.sorted()]


# ---- the examples ----------------------------------------------------------------

def _write_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)  # 0.1 s of silence


def _make_media(text: str, folder: Path) -> None:
    """media/moh/default/ plus every audio file and music class the flow names."""
    media = folder / "media"
    _write_wav(media / "moh" / "default" / "x.wav")
    for rel in re.findall(r"""^\s*(?:-\s*)?audio:\s*["']?([^"'\s#]+)""", text, re.M):
        if rel.startswith(("/", "\\")) or ".." in rel or ":" in rel:
            continue  # a path the example means to be refused
        path = media / rel
        if path.suffix.lower() == ".wav":
            _write_wav(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x00" * 16)
    for music in re.findall(r"""^\s*music:\s*["']?([A-Za-z0-9_\-]+)""", text, re.M):
        _write_wav(media / "moh" / music / "x.wav")


def _check_complete(block: Block, tmp_path: Path) -> Report:
    expected = _expected(block, "invalid")
    if not expected & {"missing-media", "media-outside", "media-format"}:
        _make_media(block.text, tmp_path)
    path = tmp_path / "flows.yaml"
    path.write_text(block.text, encoding="utf-8")
    _, report = check_file(path)
    return report


def _check_fragment(block: Block) -> Report:
    """Load a piece of a flow inside a minimal flow (parse only: links are not checked)."""
    try:
        data = yaml.safe_load(block.text)
    except yaml.YAMLError:
        data = None
    text = block.text
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "kind" in v for v in data.values()):
        text = "start: _doc\nescape: {to: _doc}\nnodes:\n" + textwrap.indent(block.text, "  ")
    elif isinstance(data, dict) and set(data) <= FLOW_KEYS:
        if "start" not in data:
            text += "start: _doc\n"
        if "escape" not in data:
            text += "escape: {to: _doc}\n"
        if "nodes" not in data:
            text += "nodes: {}\n"
    elif data is not None:
        pytest.fail(f"{block}: a yaml block that is neither a flow, nodes, nor top-level keys "
                    f"({sorted(data) if isinstance(data, dict) else type(data).__name__}); "
                    "make it one of those, or mark it <!-- unchecked -->")
    report = Report(f"FLOWS.md:{block.line}")
    parse_text(text, report)
    return report


@pytest.mark.parametrize("block", [b for b in YAML_BLOCKS if b.marker != "unchecked"], ids=str)
def test_yaml_example(block: Block, tmp_path: Path) -> None:
    report = _check_complete(block, tmp_path) if _is_complete(block.text) else _check_fragment(block)
    invalid, warns = _expected(block, "invalid"), _expected(block, "warns")
    if invalid:
        assert report.errors, f"{block} is marked invalid but passes"
        missing = invalid - _codes(report)
        assert not missing, f"{block} should fail with {sorted(missing)}; got {_formatted(report)}"
    else:
        assert not report.errors, f"{block} does not pass: {_formatted(report)}"
        assert {d.code for d in report.warnings} == warns, f"{block} warnings: {_formatted(report)}"


def test_some_examples_are_complete_flows() -> None:
    complete = [b for b in YAML_BLOCKS if _is_complete(b.text)]
    assert len([b for b in complete if not _expected(b, "invalid")]) >= 2
    assert len([b for b in complete if _expected(b, "invalid")]) >= 1


# ---- sections and field tables -----------------------------------------------------

def test_every_node_kind_has_a_section() -> None:
    doc = _doc()
    missing = [k for k in NODE_KINDS if not re.search(rf"^### `{re.escape(k)}`", doc, re.M)]
    assert not missing, f"docs/FLOWS.md has no '### `kind`' section for {missing}"


def _tables() -> dict[str, list[list[str]]]:
    """`<!-- fields: X -->` -> the rows (cells) of the table that follows it."""
    lines = _doc().splitlines()
    out: dict[str, list[list[str]]] = {}
    for i, line in enumerate(lines):
        m = re.fullmatch(r"<!--\s*fields:\s*(\S+)\s*-->", line.strip())
        if not m:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("|"):
            j += 1
        rows = []
        while j < len(lines) and lines[j].startswith("|"):
            rows.append([c.strip() for c in lines[j].strip().strip("|").split("|")])
            j += 1
        assert m.group(1) not in out, f"two field tables for {m.group(1)}"
        out[m.group(1)] = rows[2:]  # skip the header and the |---| line
    return out


def _structs_in_language() -> dict[str, type]:
    """Every struct a flow file can contain, found by walking the field types."""
    found: dict[str, type] = {}

    def walk(ft) -> None:
        if isinstance(ft, Struct):
            visit(ft.cls)
        elif isinstance(ft, ListOf):
            walk(ft.item)
        elif isinstance(ft, MapOf):
            walk(ft.value)

    def visit(cls) -> None:
        if cls.__name__ in found:
            return
        found[cls.__name__] = cls
        for f in spec_fields(cls):
            walk(f.metadata["ftype"])

    for cls in (Flow, Subflow, *NODE_KINDS.values()):
        visit(cls)
    return found


def _documented_classes() -> dict[str, type]:
    out = {kind: cls for kind, cls in NODE_KINDS.items()}
    out.update({name: cls for name, cls in _structs_in_language().items() if not hasattr(cls, "KIND")
                or not cls.KIND})
    return out


def test_every_field_table_matches_the_model() -> None:
    tables = _tables()
    classes = _documented_classes()
    missing = sorted(set(classes) - set(tables))
    assert not missing, f"docs/FLOWS.md has no <!-- fields: X --> table for {missing}"
    unknown = sorted(set(tables) - set(classes))
    assert not unknown, f"field tables for things the model does not have: {unknown}"
    problems = []
    for name, rows in tables.items():
        cls = classes[name]
        spec = {yaml_name(f): f for f in spec_fields(cls)}
        extra = EXTRA_KEYS.get(name, set())
        keys = []
        for row in rows:
            m = re.fullmatch(r"`([A-Za-z_]+)`", row[0])
            assert m, f"{name}: first cell {row[0]!r} is not a `key`"
            keys.append(m.group(1))
        if set(keys) != set(spec) | extra or len(keys) != len(set(keys)):
            problems.append(f"{name}: table keys {sorted(keys)} != model keys {sorted(set(spec) | extra)}")
            continue
        for key, row in zip(keys, rows, strict=True):
            if key in extra:
                continue
            documented = "**required**" in row[2]
            if documented != spec[key].metadata["required"]:
                problems.append(f"{name}.{key}: required is {spec[key].metadata['required']} in the model")
    assert not problems, "\n".join(problems)


def _slug(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub style) gives a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_internal_links_resolve() -> None:
    doc = _doc()
    outside = re.sub(r"^```.*?^```", "", doc, flags=re.M | re.S)
    anchors = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", outside, re.M)}
    broken = sorted({a for a in re.findall(r"\]\(#([^)]+)\)", doc) if a not in anchors})
    assert not broken, f"links to headings that do not exist: {broken}"


# ---- the rule table ---------------------------------------------------------------

_CALL = re.compile(
    r"\.(error|warning)\(\s*\"([a-z]+(?:-[a-z]+)*)\""
    r"(?:\s+if\s+[^,]+?\s+else\s+\"([a-z]+(?:-[a-z]+)*)\")?")


def _source_codes() -> dict[str, set[str]]:
    """code -> severities, from every report.error/report.warning/ctx.error call."""
    out: dict[str, set[str]] = {}
    for path in sorted(FLOWS_SRC.glob("*.py")):
        for severity, code, other in _CALL.findall(path.read_text(encoding="utf-8")):
            for c in (code, other):
                if c:
                    out.setdefault(c, set()).add(severity)
    return out


def _rule_rows() -> dict[str, str]:
    doc = _doc()
    start = doc.index("### Every rule")
    end = doc.find("\n## ", start)
    section = doc[start:end if end != -1 else None]
    rows = re.findall(r"^\|\s*`([a-z]+(?:-[a-z]+)*)`\s*\|\s*(error|warning)\s*\|", section, re.M)
    return dict(rows)


def test_source_codes_are_found() -> None:
    codes = _source_codes()
    # A sanity check of the regular expression against codes known to exist.
    assert {"missing-target", "no-human", "escape-conflict", "yaml-syntax", "duplicate-key",
            "yaml-forbidden", "bad-duration", "bad-hours", "bad-condition", "key-prefix"} <= set(codes)


def test_every_rule_code_is_in_the_rule_table() -> None:
    codes, rows = _source_codes(), _rule_rows()
    missing = sorted(set(codes) - set(rows))
    assert not missing, f"rule codes missing from the table in docs/FLOWS.md: {missing}"
    stale = sorted(set(rows) - set(codes))
    assert not stale, f"the rule table names codes the code no longer emits: {stale}"
    wrong = sorted(c for c, sev in rows.items() if sev not in codes[c])
    assert not wrong, f"rule table severity differs from the code for: {wrong}"


# ---- other tables that mirror the code ---------------------------------------------

def _table_after(heading_text: str) -> list[list[str]]:
    """The first table after the line that contains `heading_text`."""
    lines = _doc().splitlines()
    i = next(n for n, line in enumerate(lines) if heading_text in line)
    while not lines[i].startswith("|"):
        i += 1
    rows = []
    while i < len(lines) and lines[i].startswith("|"):
        rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
        i += 1
    return rows[2:]


def _first_cell_names(rows: list[list[str]]) -> set[str]:
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row[0])}


def _same(documented: set[str], actual: set[str], what: str) -> None:
    assert documented == actual, (f"{what} in docs/FLOWS.md: missing {sorted(actual - documented)}, "
                                  f"not in the code {sorted(documented - actual)}")


def test_handoff_fields_table_matches_the_schema() -> None:
    _same(_first_cell_names(_table_after("| Field | Meaning |")), set(HANDOFF_SCHEMA["properties"]),
          "hand-off payload fields")


def test_handoff_reasons_table_matches_the_code() -> None:
    _same(_first_cell_names(_table_after("| Reason | Meaning |")), set(REASONS), "hand-off reasons")


def test_outcomes_table_matches_the_code() -> None:
    _same(_first_cell_names(_table_after("| Outcome | When |")), set(OUTCOMES), "call outcomes")


def test_journey_keys_table_matches_the_record() -> None:
    keys = {f.name for f in fields(Journey) if f.name != "observers"} | {"script_failures"}
    _same(_first_cell_names(_table_after("| Key | Holds |")), keys, "journey record keys")


def test_functions_table_matches_the_language() -> None:
    rows = _table_after("| Function | Gives |")
    names = {m.group(1) for row in rows if (m := re.match(r"`([a-z_]+)\(", row[0]))}
    _same(names, set(FUNCTIONS), "condition functions")


def test_builtin_variables_table_matches_the_code() -> None:
    _same(_first_cell_names(_table_after("| Name | Value |")), set(BUILTIN_VARS), "built-in variables")


def test_handoff_example_conforms_to_the_schema() -> None:
    payloads = [json.loads(b.text) for b in BLOCKS
                if b.lang == "json" and '"schema": "ivr.handoff/v1"' in b.text]
    assert payloads, "docs/FLOWS.md shows no hand-off payload"
    for p in payloads:
        jsonschema.validate(p, HANDOFF_SCHEMA)


# ---- simulator scripts ---------------------------------------------------------------

def _marker_attrs(marker: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', marker))


def _at(text: str) -> dt.datetime:
    stamp, _, zone = text.partition(" ")
    when = dt.datetime.fromisoformat(stamp)
    return when if when.tzinfo else when.replace(tzinfo=ZoneInfo(zone) if zone else dt.UTC)


def test_doc_has_scripts() -> None:
    assert SCRIPT_BLOCKS, "docs/FLOWS.md has no <!-- script --> block"


@pytest.mark.parametrize("block", SCRIPT_BLOCKS, ids=str)
def test_script_example(block: Block) -> None:
    steps = parse_script(block.text)
    assert steps, f"{block}: the script has no steps"
    attrs = _marker_attrs(block.marker)
    if "flow" in attrs:
        flow = load_flow(ROOT / attrs["flow"])
        at = _at(attrs["at"]) if "at" in attrs else None
        sim = Simulation(flow, steps, at=at)
        sim.run()
        assert not sim.failures, f"{block}: {sim.failures}"
