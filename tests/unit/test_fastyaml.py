"""The fast YAML reader against PyYAML: the same located values, or a fallback.

fastyaml.load_fast must either raise Unsupported or return exactly what
yamlsrc.load_pyyaml returns: the same structure and key order, raw text,
kinds, quoting and positions (start, end, every key's), and the same
problems. These tests compare the two field by field on every YAML file in
the repository, on generated documents written in many styles (and on
mangled copies of them), and on the features the fast reader leaves to PyYAML.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import pickle
import random
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.flows import yamlsrc
from ivr.flows.fastyaml import Unsupported, load_fast
from ivr.flows.yamlsrc import LList, LMap, Pos, Scalar, YamlError, load, load_pyyaml, pos_of

REPO = Path(__file__).resolve().parents[2]


def big_flow(nodes: int) -> str:
    """The benchmark's generated flow (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bigflow", REPO / "bench" / "bigflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.big_flow(nodes)


# ---- the differential harness ------------------------------------------------

def picture(value):
    """Every field of a located value as plain nested data, for an exact ==."""
    if value is None:
        return None
    if type(value) is LMap:
        return ("map", value.pos, list(value.key_pos.items()), [(k, picture(v)) for k, v in value.items()])
    if type(value) is LList:
        return ("seq", value.pos, [picture(v) for v in value])
    assert type(value) is Scalar, type(value)
    return ("scalar", value.raw, value.kind, value.quoted, value.pos, value.end)


def _outcome(read, text):
    try:
        value, problems = read(text)
    except YamlError as exc:
        return ("error", exc.message, exc.pos, exc.hint)
    return ("ok", picture(value), [(p.message, p.pos, p.hint) for p in problems])


def reference(text: str):
    """What PyYAML makes of `text`: a picture and the problems, or the syntax error."""
    return _outcome(load_pyyaml, text)


def fast(text: str):
    """The same for the fast reader, or None when it leaves `text` to PyYAML."""
    try:
        return _outcome(load_fast, text)
    except Unsupported:
        return None


def agree(text: str, *, fast_path: bool | None = True) -> bool:
    """Assert that the fast reader gives what PyYAML gives, and so does load().

    fast_path=True also asserts the fast reader read `text` itself, False that
    it left it to PyYAML, None either. Returns whether it read it.
    """
    want = reference(text)
    got = fast(text)
    if got is not None:
        assert got[0] != "error", "the fast reader must never report a syntax error itself"
        assert got == want, f"fast reader differs from PyYAML on {text!r}"
    if fast_path is not None:
        assert (got is not None) == fast_path, (
            f"expected the {'fast reader' if fast_path else 'PyYAML'} to read {text!r}")
    assert _outcome(load, text) == want
    return got is not None


def clean(text: str) -> bool:
    """PyYAML reads `text` without a syntax error or a problem."""
    want = reference(text)
    return want[0] == "ok" and not want[2]


# ---- 1. every YAML file of the project -----------------------------------------

YAML_FILES = sorted([REPO / "flows.yaml", *(REPO / "tests" / "flows").rglob("*.yaml")])


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_project_files(path):
    text = path.read_text(encoding="utf-8")
    # Every file PyYAML reads cleanly is in the fast reader's part of YAML; the
    # rest (syntax errors, tags, duplicate keys) must be left to PyYAML.
    agree(text, fast_path=clean(text))


def test_project_files_include_both_kinds():
    texts = [p.read_text(encoding="utf-8") for p in YAML_FILES]
    assert sum(map(clean, texts)) > 30
    errors = [t for t in texts if reference(t)[0] == "error"]
    assert len(errors) >= 3, "the syntax-error flows are gone?"
    for text in errors:
        with pytest.raises(Unsupported):
            load_fast(text)
        with pytest.raises(YamlError):
            load(text)


def _guide_examples() -> list[str]:
    text = (REPO / "docs" / "FLOWS.md").read_text(encoding="utf-8")
    return re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)


@pytest.mark.parametrize("n", range(len(_guide_examples())))
def test_guide_examples(n):
    text = _guide_examples()[n]
    agree(text, fast_path=clean(text))


@pytest.mark.parametrize("nodes", [10, 300, 1500])
def test_big_generated_flows(nodes):
    agree(big_flow(nodes))


def test_big_flow_in_crlf_and_with_comments():
    text = big_flow(200)
    agree(text.replace("\n", "\r\n"))
    agree(text.replace(":\n", ":  # a comment\n").replace("\n  ", "\n\n   # note\n  ", 50))


# ---- 2. generated documents ---------------------------------------------------

TRICKY = [
    "yes", "no", "Yes", "NO", "on", "Off", "y", "n", "Y", "~", "null", "Null", "NULL", "true", "False",
    "0", "08", "010", "0o7", "0x1F", "0b101", "1_000", "-1", "+1", "-0", "8:30", "190:20:30", "1:60",
    "1e3", "1.5e-3", "6.8523015e+5", "1_2.5", ".inf", "-.Inf", ".nan", ".NaN", ".5", "1.", "+.5",
    "2026-12-25", "2026-1-5", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5",
    "08:00-18:00", "-", "--", "---", "...", "-x", "- x", "?x", "? x", ":x", "x:", "x:y", "x: y", "x :y",
    "a #b", "a#b", "#", "# c", "&a", "*a", "!t", "!!str", "%x", "@x", "`x", "|", ">", "|-", "'q'", '"q"',
    "it's", 'say "hi"', "a, b", "[a]", "{a}", "a]", "}", "<<", "=", "<", "x = 1", 'open("office") and x == 1',
    "Thanks {x}.", "é", "naïve café", "😀 ok", "a\\b", "\\", "  lead", "trail  ", "", " ", "a  b", "a\xa0b",
    "key", "kind", "next", "mon-fri", "goto", "a.b/c", "x_1", "tab\there", "new\nline",
]
ALPHABET = "abcxyzXYZ0189 -_.:#'\",[]{}&*!|>%@`?~=<\\/()+é😀\xa0"
KEYS = ["a", "b", "c", "kind", "next", "mon-fri", "on_failure", "key", "x y", "yes", "no", "1", "08", "~",
        "null", "-a", "a.b", "é", "😀", "a#b", "a:b", "'q'", "<<", "=", "", " ", "x: y", "a #b"]


def _pick(items: list[str]) -> st.SearchStrategy[str]:
    """sampled_from, with a short repr (Hypothesis warns about long ones)."""
    return st.integers(0, len(items) - 1).map(lambda n: items[n])


text_values = st.one_of(_pick(TRICKY), st.text(ALPHABET, max_size=12))
key_values = st.one_of(_pick(KEYS), st.text(ALPHABET, min_size=1, max_size=8))


@st.composite
def flow_nodes(draw, depth: int = 0):
    """A [ ] or { } collection, or (inside one) a scalar: ("fseq", [...]), ("fmap", [(key, node)])."""
    kind = draw(st.integers(0, 5)) if depth else draw(st.integers(4, 5))
    if kind < 4:
        return ("scalar", draw(text_values))
    size = draw(st.integers(0, 3))
    if kind == 4 or depth > 2:
        return ("fseq", [draw(flow_nodes(depth + 1)) for _ in range(size)])
    keys = draw(st.lists(key_values, min_size=size, max_size=size, unique=True))
    return ("fmap", [(key, draw(flow_nodes(depth + 1))) for key in keys])


@st.composite
def block_nodes(draw, depth: int = 0, root: bool = False):
    """A tree of ("map", [(key, node)]), ("seq", [node]), ("scalar", text) and flow nodes.

    Written out by hand rather than with st.recursive: a few draws per node
    keep 300 examples quick.
    """
    kind = draw(st.integers(7, 11)) if root else draw(st.integers(0, 11))
    if kind < 5 or depth > 3:
        return ("scalar", draw(text_values))
    if kind < 7:
        return draw(flow_nodes())
    size = draw(st.integers(1 if root else 0, 4))
    if kind < 10:
        keys = draw(st.lists(key_values, min_size=size, max_size=size, unique=True))
        return ("map", [(key, draw(block_nodes(depth + 1))) for key in keys])
    return ("seq", [draw(block_nodes(depth + 1)) for _ in range(size)])


_INDICATORS = set("-?:,[]{}#&*!|>'\"%@`")


def plain_ok(text: str, flow: bool) -> bool:
    """Roughly: `text` may be written without quotes (the test does not rely on it)."""
    if not text or text != text.strip(" ") or text[0] in _INDICATORS or text in ("<<", "="):
        return False
    if ": " in text or text.endswith(":") or " #" in text or any(c in text for c in "\t\n\x85"):
        return False
    return not (flow and any(c in text for c in ",[]{}:#"))


def double_quoted(text: str, fancy: bool) -> str:
    """`text` in double quotes; `fancy` writes every character but spaces as an escape."""
    out = []
    for c in text:
        code = ord(c)
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif code < 0x20 or 0x7F <= code < 0xA0 or (fancy and c != " "):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


BLOCK_LINES = ["x", "a b", "", "", "  more", "# hash", "- dash", "key: v", "end  ", "é 😀", "  ", "'q'"]
DANGER = ["a: &x 1", "b: *x", "c: !!str 1", "<<: {a: 1}", "? k", ": v", "---", "...", "%YAML 1.1", "\tt: 1",
          "d: [1,", "  2]", "e: 'open", "f: x\n  continued", "- - -", "g: |2", "  h: 1", "i: {a: 1", "j: k: l"]


class Writer:
    """Writes a generated tree as YAML text, in styles picked as it goes.

    Hypothesis draws the tree; the many small choices of style come from a
    seeded Random it also draws (one choice instead of hundreds, which keeps
    300 examples quick; the tree still shrinks).
    """

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.step = rnd.randint(1, 4)
        self.dash_gap = rnd.choice([1, 1, 2, 3])
        self.indentless = rnd.random() < 0.5
        self.noise = rnd.choice([0, 0, 0.1, 0.3])  # how often comments and blank lines come
        self.trailing = rnd.choice([0, 0, 0, 0.1])  # how often a line ends in spaces
        self.lines: list[str] = []

    def chance(self, p: float) -> bool:
        return self.rnd.random() < p

    def emit(self, line: str, noisy: bool = True) -> None:
        if self.chance(self.trailing):
            line += " " * self.rnd.randint(1, 2)
        self.lines.append(line)
        while noisy and self.chance(self.noise):
            if self.chance(0.5):
                self.lines.append(" " * self.rnd.randint(0, 8) + "# " + self.rnd.choice(TRICKY))
            else:
                self.lines.append(" " * self.rnd.randint(0, 3))

    def comment(self) -> str:
        return "  # note: it's #1" if self.chance(self.noise) else ""

    def scalar(self, text: str, flow: bool = False) -> str:
        style = self.rnd.choices(["auto", "single", "double", "plain"], [88, 4, 4, 4])[0]
        if style == "plain" and (flow or not plain_ok(text, flow=False)):
            # Plain by force (`a: x,y`) only where the document stays valid YAML;
            # the mangled documents below try the rest.
            style = "auto"
        if style == "auto":
            style = "plain" if plain_ok(text, flow) else self.rnd.choice(["single", "double"])
        if "\t" in text or "\n" in text:  # fine in YAML, but the fast reader leaves them to PyYAML
            style = "double"
        if style == "plain":
            return text
        if style == "single":
            return "'" + text.replace("'", "''") + "'"
        return double_quoted(text, self.chance(0.15))

    def key(self, text: str, flow: bool = False) -> str:
        return self.scalar(text, flow=flow or not self.chance(0.1))

    def flow(self, node) -> str:
        def gap() -> str:
            return " " * self.rnd.randint(0, 1)
        if node[0] == "scalar":
            return self.scalar(node[1], flow=True)
        if node[0] == "fseq":
            return "[" + gap() + ("," + gap() + " ").join(self.flow(v) for v in node[1]) + gap() + "]"
        entries = (f"{self.key(k, flow=True)}{gap()}: {self.flow(v)}" for k, v in node[1])
        return "{" + gap() + ", ".join(entries) + gap() + "}"

    def value(self, head: str, node, indent: int) -> None:
        """The value `node` after `head` (`key:` or `-`), for a collection at column `indent`."""
        kind = node[0]
        if kind in ("map", "seq") and node[1]:
            self.emit(head + self.comment())
            deeper = indent if kind == "seq" and head.endswith(":") and self.indentless else indent + self.step
            self.block(node, deeper)
        elif kind in ("map", "seq"):
            self.emit(f"{head} {'{}' if kind == 'map' else '[]'}")
        elif kind != "scalar":
            self.emit(f"{head} {self.flow(node)}{self.comment()}")
        elif self.chance(0.2):
            self.block_scalar(head, indent)
        else:
            text = self.scalar(node[1])
            self.emit(f"{head}{' ' * self.rnd.randint(1, 2)}{text}{self.comment()}" if text else head)

    def block_scalar(self, head: str, indent: int) -> None:
        style = self.rnd.choice("|>") + self.rnd.choice(["", "-", "+"])
        self.emit(f"{head} {style}{self.comment()}", noisy=False)
        body = indent + self.step + self.rnd.randint(0, 2)
        lines = self.rnd.choices(BLOCK_LINES, k=self.rnd.randint(0, 6))
        first = next((n for n, line in enumerate(lines) if line.strip()), None)
        if first is not None:  # the first line sets the indentation: not a more indented one
            lines[first] = lines[first].lstrip(" ")
        for line in lines:
            self.emit(" " * body + line if line.strip() else " " * self.rnd.randint(0, body), noisy=False)

    def block(self, node, indent: int, lead: str | None = None) -> None:
        """A non-empty mapping or sequence at column `indent`; `lead` starts its first line."""
        for n, entry in enumerate(node[1]):
            start = lead if n == 0 and lead is not None else " " * indent
            if node[0] == "map":
                key, value = entry
                self.value(f"{start}{self.key(key)}{' ' * self.chance(0.1)}:", value, indent)
            else:
                self.item(start, entry, indent)

    def item(self, start: str, node, indent: int) -> None:
        dash = start + "-" + " " * self.dash_gap
        if node[0] in ("map", "seq") and node[1] and self.chance(0.5):
            self.block(node, len(dash), lead=dash)  # compact: `- key: value`, `- - item`
        else:
            self.value(start + "-", node, indent)

    def document(self, root) -> str:
        if self.chance(0.2):
            self.emit("---" + self.comment())
        self.block(root, self.rnd.choice([0, 0, 0, 2]))
        if self.chance(0.05):  # something the fast reader must leave to PyYAML
            self.lines.insert(self.rnd.randint(0, len(self.lines)), self.rnd.choice(DANGER))
        eol = "\r\n" if self.chance(0.2) else "\n"
        return eol.join(self.lines) + (eol if self.chance(0.9) else "")


@st.composite
def documents(draw) -> str:
    return Writer(draw(st.randoms(use_true_random=True))).document(draw(block_nodes(root=True)))


FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_generated_documents_agree_with_pyyaml():
    seen = {"all": 0, "fast": 0}

    @FUZZ
    @given(documents())
    def check(text):
        seen["all"] += 1
        seen["fast"] += agree(text, fast_path=None)

    check()
    # The comparison means something only if the fast reader reads most of them.
    assert seen["fast"] >= 0.8 * seen["all"], seen


@settings(FUZZ, max_examples=100)
@given(documents())
def test_generated_documents_agree_with_pure_python_pyyaml(text):
    # Without libyaml, yamlsrc reads with PyYAML's own scanner, which differs
    # from libyaml in corners (a '?' inside [ ]): the fast reader keeps out of them.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(yamlsrc, "_Loader", yaml.SafeLoader)
        agree(text, fast_path=None)


def test_project_files_agree_with_pure_python_pyyaml(monkeypatch):
    monkeypatch.setattr(yamlsrc, "_Loader", yaml.SafeLoader)
    for text in [p.read_text(encoding="utf-8") for p in YAML_FILES] + _guide_examples():
        agree(text, fast_path=None)


MANGLES = list(" -:#'\"[]{},|>&*!?\t\r\n\\") + ["  ", ": ", "- ", " #", "\n  ", "\n- ", "---", "~", "é"]


@FUZZ
@given(documents(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 2), st.sampled_from(MANGLES)),
                             min_size=1, max_size=3))
def test_mangled_documents_agree_or_fall_back(text, edits):
    # Insert, replace or delete characters at random: many results are broken YAML,
    # which the fast reader must leave to PyYAML, never misread.
    for at, how, piece in edits:
        at %= len(text) + 1
        text = text[:at] + (piece if how < 2 else "") + text[at + (how > 0):]
    agree(text, fast_path=None)


# ---- 3. what must be left to PyYAML, and what must not ------------------------

@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n",  # anchor and alias
    "a: *x\n",  # undefined alias: PyYAML's error
    "a: !!str 1\n", "a: !local x\n", "!!map {a: 1}\n",  # tags
    "base: {a: 1}\nuse:\n  <<: {a: 1}\n",  # merge key
    "a: =\n",  # the value tag, which yamlsrc refuses
    "? a\n: 1\n", "? [a, b]\n: 1\n",  # complex keys
    "%YAML 1.1\n---\na: 1\n", "a: 1\n---\nb: 2\n", "a: 1\n...\n", "---\n",  # directives, documents
    "a:\n\tb: 1\n", "a:\tb\n", "a: [1,\t2]\n",  # tabs
    "a: b\n  c\n", "- a\n  b\n", "a: 'b\n  c'\n", 'a: "b\n  c"\n', 'a: "b\\\n  c"\n',  # multi-line scalars
    "a: [1,\n  2]\n", "a: {x: 1,\n  y: 2}\n",  # flow over lines
    "a: |2\n   x\n", "a: >1\n  x\n",  # explicit indentation
    "a: 1\na: 2\n", "a: {x: 1, x: 2}\n",  # duplicate keys (PyYAML reports them)
    "a: b: c\n", "a: 'x' y\n", "a:\n  b: 1\n c: 2\n", "- a\nb: 1\n", "a: [b\n", "a: {b\n",  # syntax errors
    "a: \x85\n", "\ufeffa: 1\n", "a: \x01\n", "a: \u2028\n",  # breaks and characters outside plain text
    "a: 1\rb: 2\n",  # a lone carriage return is a line break too
    "hello\n", "[a, b]\n", "|\n  x\n",  # a root that is not a block mapping or sequence
    "k" * 250 + ": 1\n", "k" * 1100 + ": 1\n", "k" * 150 + " " * 100 + ": 1\n",  # libyaml limits keys
    "a: {" + "k" * 1100 + ": 1}\n", "- " + '"' + "k" * 1100 + '": 1\n',
    "- " * 60 + "x\n", "a: " + "[" * 60 + "]" * 60 + "\n",  # deep nesting
])
def test_left_to_pyyaml(text):
    agree(text, fast_path=False)


@pytest.mark.parametrize("text", [
    "a: 1\n", "a:\n", "a:  # nothing\nb: ~\n", "a :  b\n", '"q k": 1\n', "'it''s': 1\n",
    "- a\n- - b\n  - c\n- d: 1\n  e: 2\n", "a:\n- x\n-\n- z\nb: 1\n", "-\n  a: 1\n",
    'a: "tab\\there \\x41\\u00e9\\U0001F600 \\"q\\" \\\\"\n', "a: 'x '' y'\n", "a: [1, 'b', \"c\", [d], {e: f}]\n",
    "a: {min: 8, max: 8}\n", "a: [ ]\nb: { }\n", "a: |\n  x\n\n  y\n\nb: 1\n", "a: >-\n  x\n  y\n\n  z\n   w\n",
    "a: |+\n  x\n\n", "- |\n x\n- >\n  y\n", "a: |\n  x\n  y", "é: 😀 ok\n", "a: 1\r\nb: 2\r\n",
    "---\na: 1\n", "# only a comment\n", "", "  a: 1\n  b: 2\n",
])
def test_read_by_the_fast_reader(text):
    agree(text, fast_path=True)


@pytest.mark.parametrize(("text", "raw", "kind"), [
    ("v: yes", "yes", "bool"), ("v: no", "no", "bool"), ("v: ~", "~", "null"), ("v: 0", "0", "int"),
    ("v: 08", "08", "str"), ("v: 010", "010", "int"), ("v: 8:30", "8:30", "int"), ("v: 1e3", "1e3", "str"),
    ("v: 1.0e+3", "1.0e+3", "float"), ("v: .inf", ".inf", "float"), ("v: 0x1F", "0x1F", "int"),
    ("v: 1_000", "1_000", "int"), ("v: 2026-12-25", "2026-12-25", "timestamp"), ("v: -x", "-x", "str"),
    ("v: '0'", "0", "str"), ('v: "a: b"', "a: b", "str"), ("v: [on]", "on", "bool"),
])
def test_kinds_follow_yaml_1_1(text, raw, kind):
    agree(text)
    value, _ = load_fast(text)
    scalar = value["v"] if isinstance(value["v"], Scalar) else value["v"][0]
    assert (scalar.raw, scalar.kind) == (raw, kind)


def test_load_takes_the_fast_path(monkeypatch):
    def refuse(text):
        raise AssertionError("PyYAML was asked")

    monkeypatch.setattr("ivr.flows.yamlsrc.load_pyyaml", refuse)
    value, problems = load("a: [1, 2]\n")
    assert problems == [] and value["a"][1].pos == Pos(1, 8)


def test_load_falls_back_with_pyyaml_messages():
    with pytest.raises(YamlError) as err:
        load("a:\n\tb: 1\n")
    assert err.value.hint == "indent with spaces, not tabs"
    value, problems = load("a: 1\na: 2\n")
    assert value["a"].raw == "1"
    assert [(p.message, p.pos) for p in problems] == [("duplicate key 'a' (first defined at line 1)", Pos(2, 1))]


# ---- the positions it leaves for later behave like the ones PyYAML gives ------

def test_deferred_positions_behave_like_plain_attributes():
    text = "a: x\nb: [1, {c: d}]\nd: |\n  e\n"
    got, _ = load_fast(text)
    want, _ = load_pyyaml(text)
    assert got == want and got["a"] == want["a"] and repr(got["a"]) == repr(want["a"])
    for read in (copy.copy, copy.deepcopy, lambda v: pickle.loads(pickle.dumps(v))):
        assert picture(read(load_fast(text)[0])) == picture(want)
    again = dataclasses.replace(load_fast(text)[0]["a"], raw="y")
    assert (again.raw, again.pos, again.end) == ("y", Pos(1, 4), Pos(1, 5))
    assert pos_of(got["b"]) == Pos(2, 4) and got["b"][1].key_pos == {"c": Pos(2, 9)}
    assert got["d"].at(0) == got["d"].pos  # a block scalar spans lines
    assert got["a"].at(0) == Pos(1, 4)
    assert pos_of(LMap()) == Pos(0, 0)
    with pytest.raises(AttributeError):
        LList().pos  # noqa: B018


def test_scalars_made_by_hand_are_unchanged():
    s = Scalar("x", "str", Pos(1, 1))
    assert s.end is None and s.quoted is False and s.pos == Pos(1, 1)
    assert [f.default for f in dataclasses.fields(Scalar)][3:] == [False, None]


def test_bytes_are_left_to_pyyaml():
    with pytest.raises(Unsupported):
        load_fast(b"a: 1\n")
    assert load(b"a: 1\n")[0]["a"].raw == "1"
