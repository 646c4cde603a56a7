"""Bad-input tests: every flow in tests/flows/bad/ breaks one rule, and its
`# expect: LINE:COL SEVERITY CODE [TEXT]` lines say exactly what the loader
and the validator must report. Nothing more may be reported, so a bad flow
also proves that one mistake does not cause a pile of follow-on errors.
"""

from __future__ import annotations

import re
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr.flows import FlowError, Report, check_file, load_flow
from ivr.flows.parse import parse_file
from ivr.flows.validate import RULES

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
BAD_DIR = TESTS / "flows" / "bad"
BAD_FLOWS = sorted(BAD_DIR.glob("*.yaml"))

_EXPECT = re.compile(r"#\s*expect:\s*(\d+):(\d+)\s+(error|warning)\s+([a-z]+(?:-[a-z]+)*)(?:\s+(.*?))?\s*$")


@dataclass(frozen=True)
class Expect:
    line: int
    col: int
    severity: str
    code: str
    text: str | None  # must appear in the message or the hint

    @property
    def key(self) -> tuple[int, int, str, str]:
        return (self.line, self.col, self.severity, self.code)


def expectations(path: Path) -> list[Expect]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _EXPECT.match(line)
        if m:
            out.append(Expect(int(m[1]), int(m[2]), m[3], m[4], m[5] or None))
        elif "expect:" in line:
            raise AssertionError(f"{path.name}: malformed expectation {line!r}")
    return out


def tiny_wav(path: Path) -> None:
    """A 10 ms silent WAV: enough for the media checks, which look at files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 80)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder laid out like the project: the flow is copied next to media/."""
    tiny_wav(tmp_path / "media" / "moh" / "default" / "x.wav")
    tiny_wav(tmp_path / "media" / "prompts" / "hello.wav")
    (tmp_path / "media" / "prompts" / "readme.txt").write_text("not audio\n")
    # A real audio file outside media/, and a link inside media/ that points at
    # it: a flow must not reach it through either.
    tiny_wav(tmp_path / "secret.wav")
    (tmp_path / "media" / "prompts" / "link.wav").symlink_to(tmp_path / "secret.wav")
    return tmp_path


def place(project: Path, bad: Path) -> Path:
    dest = project / bad.name
    shutil.copyfile(bad, dest)
    return dest


def test_bad_flows_are_there():
    # A glob that found nothing would make the parametrised test pass vacuously.
    assert len(BAD_FLOWS) >= 30


@pytest.mark.parametrize("bad", BAD_FLOWS, ids=lambda p: p.stem)
def test_every_bad_flow_declares_what_it_breaks(bad: Path):
    assert expectations(bad), f"{bad.name} has no '# expect:' lines"


@pytest.mark.parametrize("bad", BAD_FLOWS, ids=lambda p: p.stem)
def test_bad_flow_reports_exactly_what_it_expects(bad: Path, project: Path, monkeypatch):
    monkeypatch.chdir(project)  # anything a flow managed to run would write here
    expected = expectations(bad)
    path = place(project, bad)
    flow, report = check_file(path)

    got = {(d.pos.line, d.pos.col, d.severity, d.code) for d in report.items}
    want = {e.key for e in expected}
    listing = "\n".join(d.format() for d in report.sorted())
    assert got == want, f"reported:\n{listing}"
    for e in expected:
        if e.text:
            at = [d for d in report.items if (d.pos.line, d.pos.col, d.severity, d.code) == e.key]
            assert any(e.text in d.message or e.text in (d.hint or "") for d in at), (
                f"{e.code} at {e.line}:{e.col} does not mention {e.text!r}:\n{listing}")

    if any(e.severity == "error" for e in expected):
        assert flow is None, "a flow with errors must be refused"
    else:
        assert flow is not None, "warnings alone must not refuse a flow"
    for d in report.items:
        assert d.format().startswith(f"{path}:{d.pos.line}:{d.pos.col}: {d.severity}: ")


def _codes_in_source() -> set[str]:
    """Every diagnostic code the loader and the rules can emit, read from their source."""
    codes: set[str] = set()
    call = re.compile(r"\.(?:error|warning)\(\s*\"([a-z]+(?:-[a-z]+)+)\"")
    literal = re.compile(r"\"((?:yaml|duplicate)-[a-z]+)\"")  # picked by a conditional in parse.py
    for name in ("yamlsrc", "fields", "model", "hours", "expr", "parse", "validate"):
        text = (REPO / "ivr" / "flows" / f"{name}.py").read_text(encoding="utf-8")
        codes |= set(call.findall(text)) | set(literal.findall(text))
    return codes


def test_every_diagnostic_code_has_a_bad_flow():
    covered = {e.code for bad in BAD_FLOWS for e in expectations(bad)}
    emitted = _codes_in_source()
    # no-file needs a path that does not exist, so it is tested on its own below.
    assert emitted - covered == {"no-file"}
    assert {"missing-target", "unreachable", "loop-no-exit", "no-human", "retry-end",
            "voicemail-full", "missing-media", "media-outside", "empty-prompt"} <= covered


def test_every_rule_is_exercised(project):
    # A rule that no bad flow triggers is either dead or untested.
    fired: set[str] = set()
    for bad in BAD_FLOWS:
        flow, _ = parse_file(place(project, bad))
        if flow is None:
            continue
        for rule in RULES:
            report = Report()
            rule(flow, report)
            if report.items:
                fired.add(rule.__name__)
    assert fired == {rule.__name__ for rule in RULES}


def test_forbidden_tags_construct_nothing(project, monkeypatch):
    monkeypatch.chdir(project)
    bad = BAD_DIR / "yaml-forbidden.yaml"
    flow, report = check_file(place(project, bad))
    assert flow is None
    assert {d.code for d in report.errors} == {"yaml-forbidden"}
    assert not (project / "hacked.txt").exists()
    assert not (REPO / "hacked.txt").exists()


def test_default_flow_passes():
    flow, report = check_file(REPO / "flows.yaml")
    assert [d.format() for d in report.errors] == []
    assert flow is not None
    assert flow.start in flow.nodes


def test_default_flow_loads():
    flow = load_flow(REPO / "flows.yaml")
    assert flow.escape is not None and flow.nodes[flow.escape.to].kind == "handoff"


def test_load_flow_raises_with_every_error(project):
    path = place(project, BAD_DIR / "duplicate-choice.yaml")
    with pytest.raises(FlowError) as err:
        load_flow(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 4
    assert all(line.startswith(f"{path}:") and "[duplicate-choice]" in line for line in lines)


def test_format_shows_path_position_code_and_hint(project):
    path = place(project, BAD_DIR / "unknown-key.yaml")
    _, report = check_file(path)
    first = report.sorted()[0]
    assert first.format() == (f"{path}:13:5: error: unknown key 'promt' in a menu node [unknown-key] "
                              "(hint: did you mean 'prompt'?)")


def test_missing_file_is_reported():
    flow, report = check_file(REPO / "no-such-dir" / "flows.yaml")
    assert flow is None
    [d] = report.items
    assert (d.code, d.pos.line, d.pos.col) == ("no-file", 1, 1)


def test_media_checks_can_be_skipped(project):
    # `ivr validate` on a designer's laptop may not have the media folder yet.
    path = place(project, BAD_DIR / "missing-media.yaml")
    flow, report = check_file(path, check_media=False)
    assert flow is not None
    assert report.items == []


def test_symlink_inside_media_to_inside_media_is_fine(project):
    # The symlink check is about where a file really is, not about links as such.
    (project / "media" / "prompts" / "alias.wav").symlink_to(project / "media" / "prompts" / "hello.wav")
    path = project / "flows.yaml"
    path.write_text(
        "start: welcome\n"
        "escape: {to: agent}\n"
        "nodes:\n"
        "  welcome: {kind: say, prompt: {audio: prompts/alias.wav}, next: agent}\n"
        "  agent: {kind: handoff, queue: general, on_failure: welcome}\n")
    flow, report = check_file(path)
    assert report.items == []
    assert flow is not None
