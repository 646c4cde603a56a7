"""The YAML loader: located values, raw scalars, and the YAML features a flow
file may not use (object tags, merge keys, duplicate keys)."""

from __future__ import annotations

import time

import pytest
import yaml

from ivr.flows import Report, parse_text
from ivr.flows.yamlsrc import LList, LMap, Pos, Scalar, YamlError, load


def load_ok(text: str):
    value, problems = load(text)
    assert problems == []
    return value


# ---- positions -------------------------------------------------------------

def test_positions_are_one_based_line_and_column():
    doc = load_ok("name: Acme\nnodes:\n  welcome:\n    kind: say\n    next: [a, b]\n")
    assert doc.pos == Pos(1, 1)
    assert doc.key_pos == {"name": Pos(1, 1), "nodes": Pos(2, 1)}
    assert doc["name"].pos == Pos(1, 7)
    welcome = doc["nodes"]["welcome"]
    assert isinstance(welcome, LMap)
    assert welcome.key_pos["kind"] == Pos(4, 5)
    assert welcome["kind"].pos == Pos(4, 11)
    nxt = welcome["next"]
    assert isinstance(nxt, LList)
    assert nxt.pos == Pos(5, 11)
    assert [s.pos for s in nxt] == [Pos(5, 12), Pos(5, 15)]


def test_block_list_items_keep_their_own_lines():
    doc = load_ok("say:\n  - sales\n  - buying\n")
    assert [(s.raw, s.pos) for s in doc["say"]] == [("sales", Pos(2, 5)), ("buying", Pos(3, 5))]


def test_scalar_at_maps_offsets_on_one_line():
    doc = load_ok('a: x == 1\nb: "x == 1"\nc: >-\n  x ==\n  1\nd: x ==\n  1\n')
    assert doc["a"].at(2) == Pos(1, 6)
    assert doc["b"].at(2) == Pos(2, 7)  # past the opening quote
    # Folded or wrapped text has moved: the start is the honest answer.
    assert doc["c"].at(2) == doc["c"].pos
    assert doc["d"].at(2) == doc["d"].pos


# ---- raw scalars -----------------------------------------------------------

@pytest.mark.parametrize(("text", "raw", "kind"), [
    ("key: 0", "0", "int"),
    ("key: 010", "010", "int"),  # YAML 1.1 octal 8
    ("opens: 08:00", "08:00", "str"),
    ("opens: 8:30", "8:30", "int"),  # YAML 1.1 base 60: 510
    ("lang: no", "no", "bool"),  # YAML 1.1 false
    ("answer: yes", "yes", "bool"),
    ("size: 1_000", "1_000", "int"),
    ("day: 2026-12-25", "2026-12-25", "timestamp"),
    ("ratio: .5", ".5", "float"),
    ("empty: ~", "~", "null"),
    ('quoted: "yes"', "yes", "str"),
    ("quoted: '0'", "0", "str"),
])
def test_scalars_keep_the_text_that_was_typed(text, raw, kind):
    [(_, value)] = load_ok(text + "\n").items()
    assert isinstance(value, Scalar)
    assert (value.raw, value.kind) == (raw, kind)


def test_typed_value_is_there_when_a_number_is_wanted():
    doc = load_ok("a: 0x1F\nb: 2.5\nc: on\nd: ~\ne: 8:30\n")
    assert [doc[k].value for k in "abcd"] == [31, 2.5, True, None]
    assert doc["e"].value == "8:30"  # no base-60 surprise even here


def test_flow_keeps_raw_text_where_text_is_expected():
    # Through the whole parser: keys, names, language tags and hours stay as typed.
    report = Report()
    flow = parse_text(
        "name: no\n"
        "language: no\n"
        "start: menu\n"
        "escape: {to: agent, keys: [0, 00]}\n"
        "hours:\n"
        "  office: {timezone: UTC, weekly: {mon-fri: 8:00-18:00}}\n"
        "nodes:\n"
        "  menu:\n"
        "    kind: menu\n"
        "    label: off\n"
        "    prompt: yes\n"
        "    options: [{key: 010, goto: agent}]\n"
        "  agent: {kind: handoff, queue: general, on_failure: menu}\n", report)
    assert report.items == []
    assert (flow.name, flow.language) == ("no", "no")
    assert flow.escape.keys == ["0", "00"]
    menu = flow.nodes["menu"]
    assert menu.label == "off"
    assert menu.prompt[0].text == "yes"
    assert menu.options[0].key == "010"
    assert flow.hours["office"].weekly[0] == [(8 * 60, 18 * 60)]


def test_messages_quote_the_text_not_a_base_60_number():
    report = Report()
    parse_text("start: a\nescape: {to: a}\nhours:\n  h: {timezone: UTC, weekly: {sat: 8:30}}\n"
               "nodes:\n  a: {kind: handoff, queue: q, on_failure: a}\n", report)
    [d] = report.items
    assert d.code == "bad-hours" and "'8:30'" in d.message


def test_empty_document_is_none():
    assert load("# only a comment\n") == (None, [])


# ---- duplicate keys ----------------------------------------------------------

def test_duplicate_key_is_reported_at_the_second_and_the_first_is_kept():
    doc, problems = load("a: 1\nb: 2\na: 3\n")
    assert doc["a"].raw == "1"
    [p] = problems
    assert p.pos == Pos(3, 1)
    assert "duplicate key 'a'" in p.message and "line 1" in p.message


def test_duplicate_keys_in_nested_and_flow_mappings():
    _, problems = load("x:\n  y: 1\n  y: 2\nz: {k: 1, k: 2}\n")
    assert [p.pos for p in problems] == [Pos(3, 3), Pos(4, 11)]


# ---- aliases -----------------------------------------------------------------

def test_aliases_are_shared_not_copied():
    doc = load_ok("a: &x [1, 2]\nb: *x\nc: &s hello\nd: *s\n")
    assert doc["a"] is doc["b"]
    assert doc["c"] is doc["d"]


def _laughs(levels: int) -> str:
    lines = ['lol0: &lol0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _unique_values(value, seen: set[int]) -> int:
    if id(value) in seen:
        return 0
    seen.add(id(value))
    children = value.values() if isinstance(value, LMap) else value if isinstance(value, LList) else []
    return 1 + sum(_unique_values(c, seen) for c in children)


def test_billion_laughs_loads_quickly_and_linearly():
    # Expanded, nine levels of nine are 387 million strings.
    start = time.perf_counter()
    doc = load_ok(_laughs(9))
    elapsed = time.perf_counter() - start
    assert doc["lol9"][0] is doc["lol8"]
    assert all(item is doc["lol8"] for item in doc["lol9"])
    assert _unique_values(doc, set()) == 1 + 10  # the root, one string, nine lists
    assert elapsed < 1.0


def test_billion_laughs_flow_is_refused_quickly():
    # The parser reads shared lists once per place they are used, not once per copy.
    text = _laughs(9) + "start: a\nescape: {to: a}\nnodes:\n  a: {kind: say, prompt: *lol9, next: a}\n"
    report = Report()
    start = time.perf_counter()
    parse_text(text, report)
    assert time.perf_counter() - start < 1.0
    assert 0 < len(report.items) < 50


# ---- refused YAML features ---------------------------------------------------

@pytest.mark.parametrize("tagged", [
    '!!python/object/apply:os.system ["echo hacked"]',
    "!!python/name:os.system",
    "!!python/object/new:dict {}",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!include other.yaml",
    "!Ref agent",
])
def test_forbidden_tags_are_reported_and_left_out(tagged):
    doc, problems = load(f"before: 1\nvalue: {tagged}\nafter: 2\n")
    [p] = problems
    assert p.pos == Pos(2, 8)
    assert "is not allowed" in p.message
    assert "value" not in doc  # left out, not turned into something else
    assert doc["after"].raw == "2"
    # Still known as written, so a required field is not reported missing as well.
    assert "value" in doc.key_pos


def test_forbidden_tag_on_a_key_or_the_root_or_a_list_item():
    _, problems = load("!!python/name:os.system : x\nb: 1\n")
    assert [p.pos for p in problems] == [Pos(1, 1)]
    value, problems = load("--- !!python/object:os.Foo {a: 1}\n")
    assert value is None and [p.pos for p in problems] == [Pos(1, 5)]
    value, problems = load("- a\n- !!python/none ''\n- b\n")
    assert [s.raw for s in value] == ["a", "b"] and len(problems) == 1


def test_an_alias_to_a_forbidden_node_is_reported_once():
    doc, problems = load("a: &x !!python/name:os.system\nb: *x\n")
    assert len(problems) == 1
    assert "a" not in doc and "b" not in doc


def test_core_tags_are_allowed():
    doc = load_ok("a: !!str 0\nb: !!int '12'\nc: ! 7\n")
    assert [doc[k].raw for k in "abc"] == ["0", "12", "7"]


def test_safe_loading_constructs_nothing(tmp_path, monkeypatch):
    # The control shows the document is really dangerous with an unsafe loader;
    # ours must leave no trace of it.
    monkeypatch.chdir(tmp_path)
    text = 'x: !!python/object/apply:os.system ["echo hacked > hacked.txt"]\n'
    load(text)
    assert not (tmp_path / "hacked.txt").exists()
    yaml.unsafe_load(text)
    assert (tmp_path / "hacked.txt").exists()


def test_merge_keys_are_refused():
    doc, problems = load("base: &b {kind: say}\nnode:\n  <<: *b\n  next: x\n")
    [p] = problems
    assert p.pos == Pos(3, 3)
    assert "merge keys" in p.message
    assert set(doc["node"]) == {"next"}  # nothing merged in


def test_complex_keys_are_refused():
    _, problems = load("? [a, b]\n: 1\n")
    [p] = problems
    assert "plain text" in p.message


# ---- syntax errors -------------------------------------------------------------

def syntax_error(text: str) -> YamlError:
    with pytest.raises(YamlError) as err:
        load(text)
    assert err.value.message.startswith("YAML syntax:")
    return err.value


def test_tab_indent_gets_a_hint():
    # libyaml's message does not name the tab; the hint must still be given.
    err = syntax_error("a:\n\tb: 1\n")
    assert err.pos == Pos(2, 1)
    assert err.hint == "indent with spaces, not tabs"


def test_unclosed_quote_is_reported_where_it_opens():
    err = syntax_error('a: 1\nb: "open\nc: 2\nd: 3\n')
    assert err.pos == Pos(2, 4)
    assert "noticed at line 5" in err.message
    assert "close the quote" in err.hint


def test_unclosed_bracket_is_reported_where_it_opens():
    err = syntax_error("a: [1, 2\nb: 3\n")
    assert err.pos == Pos(1, 4)


def test_colon_in_text_points_at_the_colon():
    err = syntax_error("prompt: Note: closed\n")
    assert err.pos == Pos(1, 13)
    assert "quote text" in err.hint


def test_bare_star_key_gets_a_hint():
    err = syntax_error("key: *\n")
    assert err.pos == Pos(1, 6)
    assert "quote keys like '*'" in err.hint


def test_undefined_alias():
    err = syntax_error("a: *nothing\n")
    assert err.pos == Pos(1, 4)


def test_two_documents_are_refused():
    err = syntax_error("a: 1\n---\nb: 2\n")
    assert err.pos == Pos(2, 1)
